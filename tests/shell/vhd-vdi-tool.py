#!/usr/bin/env python3
"""vhd-vdi-tool.py: make, check and damage VHD and VDI files for the tests,
written from the published layouts (Microsoft's Virtual Hard Disk Image
Format Specification 1.0; VirtualBox's VDI header as VDICore.h describes
it), not from any implementation.  qemu-img cannot make differencing VHD
or VDI images (it has no backing files for vpc or vdi), so the tests make
them here, on top of parents that qemu-img made and qemu-io filled.

  vhd-diff CHILD PARENT [--locators W2ru,W2ku,MacX] [--parent-dir DIR]
           [--name NAME] [--wrong-uuid] [--block-size N] [--write OFF:LEN:BYTE]...
      A differencing VHD over PARENT (a VHD): sector-aligned writes of
      BYTE, each setting its sectors' bits in the block bitmap.  The
      locators name PARENT as seen from CHILD (W2ru relative, W2ku an
      absolute Windows path C:\\vms\\NAME, MacX a file URL of PARENT's
      absolute path), the header's parent name is NAME (default PARENT's
      file name).
  vdi-diff CHILD PARENT [--write OFF:LEN:BYTE]... [--discard BLOCK]...
           [--stale-parent] [--undo]
      A differencing VDI over PARENT (a VDI): 1 MiB blocks; a written block
      is copied from PARENT's contents first (as VirtualBox does), then
      written; --discard marks a block ZERO.  --stale-parent records a
      parent modification UUID that is not PARENT's.
  vhd-diff OUT - --size N [--block-size N] [--write OFF:LEN:BYTE]...
      With "-" for the parent: a dynamic VHD of N bytes (for small seeds:
      qemu-img writes 2 MiB blocks only).
  vdi-new OUT SIZE [--block-size N] [--static] [--write OFF:LEN:BYTE]...
      A dynamic (or static) VDI with blocks of N bytes (default 1 MiB).
  vdi-v0 OUT SIZE [--write OFF:LEN:BYTE]...
      A dynamic VDI with a version 0 header (VirtualBox 1.x).
  vhd-check FILE
      Check a VHD as the specification wants it: footer cookie, version,
      checksum, the copy at the start equal to the footer at the end
      (dynamic), the header, the BAT inside the file and clear of the
      metadata, blocks not overlapping, the file ending with the footer.
      Prints what it found; exit 1 on any problem.
  vhd-set FILE WHERE FIELD VALUE [--keep-checksum]
      Set a field (WHERE: footer, header, bat), then fix the checksum
      unless --keep-checksum.  Footer fields are set in both copies.
  vhd-footer FILE [--creator APP] [--geometry C/H/S] [--size N] [--fixed-raw]
      Rewrite both footers' creator application, geometry and sizes
      (checksums fixed).  --fixed-raw turns a raw file into a fixed VHD by
      appending a footer.
  vdi-set FILE FIELD VALUE
      Set a VDI header field (little-endian) or a map entry (map:N).
"""
import os
import struct
import sys
import uuid

SECTOR = 512
VHD_EPOCH = 946684800

# --- VHD ---------------------------------------------------------------

FOOTER_FIELDS = {  # name: (offset, struct format)
    "cookie": (0, "8s"), "features": (8, ">I"), "version": (12, ">I"),
    "data_offset": (16, ">Q"), "timestamp": (24, ">I"),
    "creator_app": (28, "4s"), "creator_version": (32, ">I"),
    "creator_os": (36, "4s"), "original_size": (40, ">Q"),
    "current_size": (48, ">Q"), "geometry": (56, ">I"),
    "disk_type": (60, ">I"), "checksum": (64, ">I"), "uuid": (68, "16s"),
}
HEADER_FIELDS = {
    "cookie": (0, "8s"), "data_offset": (8, ">Q"), "table_offset": (16, ">Q"),
    "version": (24, ">I"), "max_entries": (28, ">I"), "block_size": (32, ">I"),
    "checksum": (36, ">I"), "parent_uuid": (40, "16s"),
}


def checksum(buf, field):
    s = sum(buf[:field]) + sum(buf[field + 4:])
    return (~s) & 0xFFFFFFFF


def fix_checksum(buf, field):
    struct.pack_into(">I", buf, field, checksum(buf, field))


def geometry(size):
    """The specification's CHS algorithm (its appendix)."""
    sectors = min(size // SECTOR, 65535 * 16 * 255)
    if sectors >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = sectors // spt
    else:
        spt = 17
        cth = sectors // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = sectors // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = sectors // spt
    return cth // heads, heads, spt


def read_footer(data):
    """The footer of a VHD file's bytes: at the end for fixed disks, the
    copy at the start for others."""
    tail = bytearray(data[-512:])
    if tail[:8] == b"conectix" and struct.unpack(">I", tail[60:64])[0] == 2:
        return tail
    head = bytearray(data[:512])
    if head[:8] == b"conectix":
        return head
    sys.exit("not a VHD file")


def make_footer(disk_type, size, data_offset, creator=b"win ", uid=None,
                geo=None):
    f = bytearray(512)
    c, h, s = geo if geo else geometry(size)
    struct.pack_into(">8sIIQI4sI4sQQIII", f, 0, b"conectix", 2, 0x10000,
                     data_offset, 0x2f000000, creator, 0x000A0000, b"Wi2k",
                     size, size, (c << 16) | (h << 8) | s, disk_type, 0)
    f[68:84] = uid if uid else uuid.uuid4().bytes
    fix_checksum(f, 64)
    return f


def parse_writes(specs):
    out = []
    for w in specs:
        off, length, byte = w.split(":")
        out.append((int(off, 0), int(length, 0), int(byte, 0)))
    return out


def vhd_diff(args):
    child, parent = args[0], args[1]
    opts = {"--locators": "W2ru,W2ku", "--block-size": str(2 << 20),
            "--name": None, "--parent-dir": None, "--size": None}
    writes, wrong_uuid = [], False
    i = 2
    while i < len(args):
        a = args[i]
        if a == "--write":
            writes.append(args[i + 1])
            i += 2
        elif a == "--wrong-uuid":
            wrong_uuid = True
            i += 1
        else:
            opts[a] = args[i + 1]
            i += 2
    dynamic = parent == "-"
    if dynamic:
        pf = make_footer(3, int(opts["--size"], 0), 512)
        opts["--locators"] = ""
    else:
        pf = read_footer(open(parent, "rb").read())
    size = struct.unpack(">Q", pf[48:56])[0]
    puid = bytes(pf[68:84])
    if wrong_uuid:
        puid = uuid.uuid4().bytes
    bs = int(opts["--block-size"])
    nblocks = (size + bs - 1) // bs
    bitmap = max(((bs // SECTOR + 7) // 8 + 511) // 512 * 512, 512)
    name = "" if dynamic else opts["--name"] or os.path.basename(parent)
    locators = [x for x in opts["--locators"].split(",") if x]

    # Layout: footer copy, header, BAT, locator data, blocks, footer.
    bat_off = 1536
    pos = bat_off + (nblocks * 4 + 511) // 512 * 512
    rel = "" if dynamic else os.path.relpath(
        os.path.abspath(parent), os.path.dirname(os.path.abspath(child)))
    loc_entries, loc_data = [], []
    for code in locators:
        if code == "W2ru":
            blob = (".\\" + rel.replace("/", "\\")).encode("utf-16-le")
        elif code == "W2ku":
            blob = ("C:\\vms\\" + name).encode("utf-16-le")
        elif code == "MacX":
            blob = ("file://localhost" + os.path.abspath(parent)
                    .replace(" ", "%20")).encode()
        else:
            sys.exit("unknown locator " + code)
        space = (len(blob) + 511) // 512 * 512
        loc_entries.append((code.encode(), space // 512, len(blob), pos))
        loc_data.append((pos, blob))
        pos += space
    first_block = pos

    header = bytearray(1024)
    struct.pack_into(">8sQQIII", header, 0, b"cxsparse", 2**64 - 1, bat_off,
                     0x10000, nblocks, bs)
    if not dynamic:
        header[40:56] = puid
        struct.pack_into(">I", header, 56, struct.unpack(">I", pf[24:28])[0])
    pname = name.encode("utf-16-be")[:512]
    header[64:64 + len(pname)] = pname
    for k, (code, space, length, off) in enumerate(loc_entries):
        struct.pack_into(">4sIIIQ", header, 576 + 24 * k, code, space, length,
                         0, off)
    fix_checksum(header, 36)

    bat = [0xFFFFFFFF] * nblocks
    blocks = {}  # block number -> (bitmap bytearray, data bytearray)
    for off, length, byte in parse_writes(writes):
        if off % SECTOR or length % SECTOR:
            sys.exit("writes must be sector-aligned")
        for s in range(off // SECTOR, (off + length) // SECTOR):
            b, sin = divmod(s * SECTOR, bs)
            if b not in blocks:
                blocks[b] = (bytearray(bitmap), bytearray(bs))
            bm, data = blocks[b]
            k = sin // SECTOR
            bm[k // 8] |= 0x80 >> (k % 8)
            if dynamic:
                bm[:] = b"\xff" * len(bm)
            data[sin:sin + SECTOR] = bytes([byte]) * SECTOR
    pos = first_block
    out = {}
    # Blocks go into the file in reverse order, as Windows is free to.
    for b in sorted(blocks, reverse=True):
        bat[b] = pos // SECTOR
        out[pos] = blocks[b][0] + blocks[b][1]
        pos += bitmap + bs
    footer = make_footer(3 if dynamic else 4, size, 512)
    with open(child, "wb") as fp:
        fp.write(footer)
        fp.write(header)
        fp.seek(bat_off)
        fp.write(struct.pack(">%dI" % nblocks, *bat))
        for off, blob in loc_data:
            fp.seek(off)
            fp.write(blob)
        for off, blob in out.items():
            fp.seek(off)
            fp.write(blob)
        fp.seek(pos)
        fp.write(footer)


def vhd_check(args):
    path = args[0]
    data = open(path, "rb").read()
    problems = []
    size = len(data)
    if size < 512 or size % 512:
        problems.append("file size %d is not a multiple of 512" % size)
    tail = bytearray(data[-512:])
    if tail[:8] != b"conectix":
        problems.append("the file does not end with a footer")
        print("\n".join(problems))
        return 1
    if checksum(tail, 64) != struct.unpack(">I", tail[64:68])[0]:
        problems.append("footer checksum is wrong")
    if struct.unpack(">I", tail[12:16])[0] != 0x10000:
        problems.append("footer version is not 1.0")
    if not struct.unpack(">I", tail[8:12])[0] & 2:
        problems.append("the reserved feature bit is not set")
    dtype = struct.unpack(">I", tail[60:64])[0]
    cur = struct.unpack(">Q", tail[48:56])[0]
    orig = struct.unpack(">Q", tail[40:48])[0]
    if cur != orig:
        problems.append("original size %d != current size %d" % (orig, cur))
    c, h, s = struct.unpack(">HBB", tail[56:60])
    if (c, h, s) != (65535, 16, 255) and c * h * s * 512 != cur:
        problems.append("geometry %d/%d/%d (%d bytes) does not express the "
                        "current size %d" % (c, h, s, c * h * s * 512, cur))
    info = {"type": dtype, "size": cur, "geometry": "%d/%d/%d" % (c, h, s),
            "creator": tail[28:32].decode("latin1")}
    if dtype == 2:
        if size != cur + 512:
            problems.append("fixed disk of %d bytes in a file of %d" %
                            (cur, size))
    elif dtype == 3:
        head = data[:512]
        if head != bytes(tail):
            problems.append("the footer copy at offset 0 differs from the "
                            "footer at the end")
        doff = struct.unpack(">Q", tail[16:24])[0]
        hdr = bytearray(data[doff:doff + 1024])
        if hdr[:8] != b"cxsparse":
            problems.append("no dynamic header at %d" % doff)
        else:
            if checksum(hdr, 36) != struct.unpack(">I", hdr[36:40])[0]:
                problems.append("dynamic header checksum is wrong")
            toff, _ver, nent, bs = struct.unpack(">QIII", hdr[16:36])
            info.update(block_size=bs, bat_entries=nent)
            need = (cur + bs - 1) // bs
            if nent != need:
                problems.append("BAT has %d entries, the size needs %d "
                                "(Azure wants them equal)" % (nent, need))
            bitmap = max(((bs // 512 + 7) // 8 + 511) // 512 * 512, 512)
            bat = struct.unpack(">%dI" % nent, data[toff:toff + 4 * nent])
            used = sorted(e * 512 for e in bat if e != 0xFFFFFFFF)
            info["blocks"] = len(used)
            meta_end = max(doff + 1024, toff + 4 * nent)
            prev_end = meta_end
            for start in used:
                if start < prev_end:
                    problems.append("block at %d overlaps the metadata or "
                                    "the previous block" % start)
                end = start + bitmap + bs
                if end > size - 512:
                    problems.append("block at %d runs past the footer" %
                                    start)
                if data[start:start + bitmap] != b"\xff" * bitmap:
                    problems.append("block at %d: bitmap not all ones" %
                                    start)
                prev_end = end
            if used and prev_end != size - 512:
                problems.append("%d bytes between the last block and the "
                                "footer" % (size - 512 - prev_end))
    else:
        problems.append("disk type %d" % dtype)
    print(" ".join("%s=%s" % kv for kv in sorted(info.items())))
    for p in problems:
        print("problem: " + p)
    return 1 if problems else 0


def vhd_set(args):
    path, where, field, value = args[:4]
    keep = "--keep-checksum" in args
    data = bytearray(open(path, "rb").read())
    if where == "bat":
        doff = struct.unpack(">Q", data[16:24])[0]
        toff = struct.unpack(">Q", data[doff + 16:doff + 24])[0]
        struct.pack_into(">I", data, toff + 4 * int(field), int(value, 0))
    else:
        fields = FOOTER_FIELDS if where == "footer" else HEADER_FIELDS
        off, fmt = fields[field]
        val = value.encode() if fmt.endswith("s") else int(value, 0)
        if where == "footer":
            places = [p for p in (0, len(data) - 512)
                      if data[p:p + 8] == b"conectix"]
            csum = 64
            length = 512
        else:
            places = [struct.unpack(">Q", data[16:24])[0]]
            csum = 36
            length = 1024
        for p in places:
            struct.pack_into(fmt, data, p + off, val)
            if not keep and field != "checksum":
                buf = data[p:p + length]
                fix_checksum(buf, csum)
                data[p:p + length] = buf
    open(path, "wb").write(data)


def vhd_footer(args):
    path = args[0]
    creator, geo, size, fixed_raw = None, None, None, False
    i = 1
    while i < len(args):
        if args[i] == "--fixed-raw":
            fixed_raw = True
            i += 1
            continue
        if args[i] == "--creator":
            creator = args[i + 1].encode().decode("unicode_escape")
            creator = creator.encode("latin1")
        elif args[i] == "--geometry":
            geo = tuple(int(x) for x in args[i + 1].split("/"))
        elif args[i] == "--size":
            size = int(args[i + 1], 0)
        i += 2
    data = bytearray(open(path, "rb").read())
    if fixed_raw:
        n = len(data)
        data += make_footer(2, size if size is not None else n, 2**64 - 1,
                            creator or b"win ", geo=geo)
        open(path, "wb").write(data)
        return
    for p in (0, len(data) - 512):
        f = data[p:p + 512]
        if f[:8] != b"conectix":
            continue
        if creator:
            f[28:32] = creator
        if geo:
            struct.pack_into(">HBB", f, 56, *geo)
        if size is not None:
            struct.pack_into(">QQ", f, 40, size, size)
        fix_checksum(f, 64)
        data[p:p + 512] = f
    open(path, "wb").write(data)


# --- VDI ---------------------------------------------------------------

VDI_FIELDS = {  # version 1.1 header: name: (offset, format)
    "signature": (64, "<I"), "version": (68, "<I"), "header_size": (72, "<I"),
    "type": (76, "<I"), "off_blocks": (340, "<I"), "off_data": (344, "<I"),
    "disk_size": (368, "<Q"), "block_size": (376, "<I"),
    "block_extra": (380, "<I"), "blocks": (384, "<I"),
    "blocks_allocated": (388, "<I"),
}
VDI_FREE, VDI_ZERO = 0xFFFFFFFF, 0xFFFFFFFE


def vdi_header(h):
    v = {k: struct.unpack_from(f, h, o)[0] for k, (o, f) in VDI_FIELDS.items()}
    v["uuid_create"] = bytes(h[392:408])
    v["uuid_modify"] = bytes(h[408:424])
    return v


def vdi_read(hdr, data, offset, length):
    """Guest bytes of a (non-differencing) VDI."""
    out = bytearray()
    bs = hdr["block_size"]
    off_b = hdr["off_blocks"]
    while length > 0:
        b, i = divmod(offset, bs)
        n = min(length, bs - i)
        e = struct.unpack_from("<I", data, off_b + 4 * b)[0]
        if e in (VDI_FREE, VDI_ZERO):
            out += bytes(n)
        else:
            p = hdr["off_data"] + e * (bs + hdr["block_extra"]) + \
                hdr["block_extra"] + i
            chunk = data[p:p + n]
            out += chunk + bytes(n - len(chunk))
        offset += n
        length -= n
    return out


def apply_writes(writes, bs, new_block):
    """The blocks (number -> bytearray of BS bytes) that WRITES touch, each
    started as new_block(number)."""
    blocks = {}
    for off, length, byte in parse_writes(writes):
        while length > 0:
            b, k = divmod(off, bs)
            m = min(length, bs - k)
            if b not in blocks:
                blocks[b] = new_block(b)
            blocks[b][k:k + m] = bytes([byte]) * m
            off += m
            length -= m
    return blocks


def write_vdi(path, size, bs, img_type, blocks, bmap, linkage=b"",
              parent_modify=b"", reverse=False):
    """A version 1.1 VDI: BLOCKS in the data area (in reverse guest order
    with REVERSE, to exercise the map), BMAP (a list) for the rest."""
    n = len(bmap)
    h = bytearray(512)
    text = b"<<< Oracle VM VirtualBox Disk Image >>>\n"
    h[:len(text)] = text
    off_blocks = 512
    off_data = (off_blocks + 4 * n + 511) // 512 * 512
    struct.pack_into("<IIIII", h, 64, 0xBEDA107F, 0x00010001, 400, img_type,
                     0)
    struct.pack_into("<IIIIIIIQIIII", h, 340, off_blocks, off_data, 0, 0, 0,
                     512, 0, size, bs, 0, n, len(blocks))
    h[392:408] = uuid.uuid4().bytes_le
    h[408:424] = uuid.uuid4().bytes_le
    h[424:424 + len(linkage)] = linkage
    h[440:440 + len(parent_modify)] = parent_modify
    with open(path, "wb") as fp:
        fp.write(h)
        for idx, b in enumerate(sorted(blocks, reverse=reverse)):
            bmap[b] = idx
            fp.seek(off_data + idx * bs)
            fp.write(blocks[b])
        fp.seek(off_blocks)
        fp.write(struct.pack("<%dI" % n, *bmap))
        fp.truncate(off_data + len(blocks) * bs)


def vdi_diff(args):
    child, parent = args[0], args[1]
    writes, discards, stale, undo = [], [], False, False
    i = 2
    while i < len(args):
        if args[i] == "--write":
            writes.append(args[i + 1])
            i += 2
        elif args[i] == "--discard":
            discards.append(int(args[i + 1], 0))
            i += 2
        elif args[i] == "--stale-parent":
            stale = True
            i += 1
        elif args[i] == "--undo":
            undo = True
            i += 1
        else:
            sys.exit("unknown option " + args[i])
    pdata = open(parent, "rb").read()
    ph = vdi_header(pdata)
    size, bs = ph["disk_size"], ph["block_size"]
    n = (size + bs - 1) // bs
    # VirtualBox copies a block from the parent before writing into it.
    blocks = apply_writes(writes, bs,
                          lambda b: vdi_read(ph, pdata, b * bs, bs))
    bmap = [VDI_FREE] * n
    for b in discards:
        bmap[b] = VDI_ZERO
    write_vdi(child, size, bs, 3 if undo else 4, blocks, bmap,
              linkage=ph["uuid_create"],
              parent_modify=(uuid.uuid4().bytes_le if stale
                             else ph["uuid_modify"]),
              reverse=True)


def vdi_new(args):
    out, size = args[0], int(args[1], 0)
    bs, writes, static = 1 << 20, [], False
    i = 2
    while i < len(args):
        if args[i] == "--block-size":
            bs = int(args[i + 1], 0)
            i += 2
        elif args[i] == "--write":
            writes.append(args[i + 1])
            i += 2
        elif args[i] == "--static":
            static = True
            i += 1
        else:
            sys.exit("unknown option " + args[i])
    n = (size + bs - 1) // bs
    blocks = apply_writes(writes, bs, lambda b: bytearray(bs))
    if static:
        for b in range(n):
            blocks.setdefault(b, bytearray(bs))
    write_vdi(out, size, bs, 2 if static else 1, blocks, [VDI_FREE] * n)


def vdi_v0(args):
    out, size = args[0], int(args[1], 0)
    writes = [args[i + 1] for i in range(2, len(args), 2)
              if args[i] == "--write"]
    bs = 1 << 20
    n = (size + bs - 1) // bs
    blocks = apply_writes(writes, bs, lambda b: bytearray(bs))
    h = bytearray(420)
    h[:36] = b"<<< InnoTek VirtualBox Disk Image >>>"[:36]
    struct.pack_into("<III", h, 64, 0xBEDA107F, 0x00000001, 1)
    struct.pack_into("<QIII", h, 352, size, bs, n, len(blocks))
    h[372:388] = uuid.uuid4().bytes_le
    h[388:404] = uuid.uuid4().bytes_le
    bmap = [VDI_FREE] * n
    off_data = 420 + 4 * n
    with open(out, "wb") as fp:
        fp.write(h)
        for idx, b in enumerate(sorted(blocks)):
            bmap[b] = idx
            fp.seek(off_data + idx * bs)
            fp.write(blocks[b])
        fp.seek(420)
        fp.write(struct.pack("<%dI" % n, *bmap))


def vdi_set(args):
    path, field, value = args[:3]
    data = bytearray(open(path, "rb").read())
    if field.startswith("map:"):
        off_b = struct.unpack_from("<I", data, 340)[0]
        struct.pack_into("<I", data, off_b + 4 * int(field[4:]), int(value, 0))
    else:
        off, fmt = VDI_FIELDS[field]
        struct.pack_into(fmt, data, off, int(value, 0))
    open(path, "wb").write(data)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"vhd-diff": vhd_diff, "vhd-check": vhd_check, "vhd-set": vhd_set,
          "vhd-footer": vhd_footer, "vdi-diff": vdi_diff, "vdi-v0": vdi_v0,
          "vdi-set": vdi_set, "vdi-new": vdi_new}.get(cmd)
    if fn is None:
        sys.exit(__doc__)
    sys.exit(fn(args) or 0)


if __name__ == "__main__":
    main()
