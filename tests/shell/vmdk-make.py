#!/usr/bin/env python3
"""vmdk-make.py: build the VMDK files the tests need that no installed tool
writes, from the published layouts, and patch fields of existing ones.

These files are self-made: qemu-img cannot create COWD (ESX vmfsSparse) or
seSparse extents, and no VMware-written ones are in the corpus.  The COWD
layout is VMware's "Virtual Disk Format 5.0" technote (ESX Server sparse
extents); seSparse follows the fields and encodings qemu's reader documents.
qemu-img reads both, so the tests judge ferry's reading with it.

  vmdk-make.py cowd DELTA RAW [GRAIN_SECTORS]
      a COWD extent holding the grains of RAW that are not all zero
  vmdk-make.py sesparse DELTA RAW [zero=OFFSET,...] [unmapped=OFFSET,...]
                [first=N]
      a seSparse extent holding RAW's non-zero 4 KiB grains (stored out of
      order, numbered from N, by default 5000 so both halves of the grain
      number are used), with the grains at the given byte offsets marked
      zeroed or unmapped instead
  vmdk-make.py stream OUT RAW [OVERHEAD]
      a streamOptimized file as VMware lays it out (grain directory in the
      footer), RAW's non-zero grains deflated by Python's zlib
  vmdk-make.py patch FILE OFFSET FORMAT VALUE [OFFSET FORMAT VALUE...]
      struct.pack_into FORMAT (e.g. <I, <Q, B) at byte OFFSET of FILE
  vmdk-make.py inspect FILE
      the hosted sparse header, footer, embedded descriptor and stream
      layout (markers counted and checked for order) of FILE, as JSON
  vmdk-make.py gd-entry FILE INDEX VALUE
      set entry INDEX of the (first) grain directory of the hosted sparse
      file FILE (through the footer for streamOptimized files)
  vmdk-make.py gt-entry FILE TABLE INDEX [VALUE]
      print, or set, entry INDEX of grain table TABLE of FILE
"""
import os
import struct
import sys

SECTOR = 512


def nonzero_grains(raw, grain_bytes):
    """(index, bytes) of every grain of RAW that is not all zero."""
    size = os.path.getsize(raw)
    out = []
    with open(raw, "rb") as f:
        for i in range((size + grain_bytes - 1) // grain_bytes):
            f.seek(i * grain_bytes)
            data = f.read(grain_bytes).ljust(grain_bytes, b"\0")
            if data.strip(b"\0"):
                out.append((i, data))
    return size, out


def make_cowd(path, raw, grain=1):
    grain = int(grain)
    gbytes = grain * SECTOR
    size, grains = nonzero_grains(raw, gbytes)
    sectors = size // SECTOR
    gtes = 4096
    nr_gd = (sectors + grain * gtes - 1) // (grain * gtes)
    gd_offset = 4                                   # after the 2048-byte header
    gd_sectors = (nr_gd * 4 + SECTOR - 1) // SECTOR
    gt_sectors = gtes * 4 // SECTOR
    tables = sorted({i // gtes for i, _ in grains})
    gt_at = {}
    next_sector = gd_offset + gd_sectors
    for t in tables:
        gt_at[t] = next_sector
        next_sector += gt_sectors
    gd = [0] * nr_gd
    gts = {t: [0] * gtes for t in tables}
    blobs = []
    for i, data in grains:
        gts[i // gtes][i % gtes] = next_sector
        blobs.append((next_sector, data))
        next_sector += grain
    for t in tables:
        gd[t] = gt_at[t]
    hdr = bytearray(2048)
    struct.pack_into("<4sIIIIIII", hdr, 0, b"COWD", 1, 3, sectors, grain,
                     gd_offset, nr_gd, next_sector)
    # union: the child's parent file name and generation
    struct.pack_into("<1024sI", hdr, 32, b"base.vmdk", 1)
    struct.pack_into("<I60s512sI", hdr, 1060, 1, b"delta", b"", 1)
    with open(path, "wb") as f:
        f.write(hdr)
        f.seek(gd_offset * SECTOR)
        f.write(struct.pack("<%dI" % nr_gd, *gd))
        for t in tables:
            f.seek(gt_at[t] * SECTOR)
            f.write(struct.pack("<%dI" % gtes, *gts[t]))
        for at, data in blobs:
            f.seek(at * SECTOR)
            f.write(data)
        f.truncate(next_sector * SECTOR)


def make_stream(path, raw, overhead=128):
    """A streamOptimized file in VMware's layout (grain directory in the
    footer), with RAW's non-zero 64 KiB grains deflated by Python's zlib;
    OVERHEAD sectors before the first grain."""
    import zlib
    overhead = int(overhead)
    gbytes = 128 * SECTOR
    size, grains = nonzero_grains(raw, gbytes)
    sectors = (size + SECTOR - 1) // SECTOR
    nr_gd = (sectors + 128 * 512 - 1) // (128 * 512)

    def header(gd):
        h = bytearray(SECTOR)
        struct.pack_into("<4sIIQQQQIQQQB4sH", h, 0, b"KDMV", 3, 0x30001,
                         sectors, 128, 1, 1, 512, 0, gd, overhead, 0,
                         b"\n \r\n", 1)
        return bytes(h)

    def marker(n, typ):
        m = bytearray(SECTOR)
        struct.pack_into("<QII", m, 0, n, 0, typ)
        return bytes(m)

    desc = ('# Disk DescriptorFile\nversion=1\nCID=1234abcd\n'
            'parentCID=ffffffff\ncreateType="streamOptimized"\n'
            'RDONLY %d SPARSE "x.vmdk"\nddb.adapterType = "ide"\n' % sectors)
    out = bytearray(header(0xffffffffffffffff))
    out += desc.encode().ljust(SECTOR, b"\0")
    out += bytes(overhead * SECTOR - len(out))
    gd = [0] * nr_gd
    gt, cur = [0] * 512, None

    def end_table():
        nonlocal out
        if cur is not None and any(gt):
            out += marker(4, 1)
            gd[cur] = len(out) // SECTOR
            out += struct.pack("<512I", *gt)
    for i, data in grains:
        if i // 512 != cur:
            end_table()
            cur, gt = i // 512, [0] * 512
        gt[i % 512] = len(out) // SECTOR
        z = zlib.compress(data)
        g = struct.pack("<QI", i * 128, len(z)) + z
        out += g + bytes(-len(g) % SECTOR)
    end_table()
    out += marker((nr_gd * 4 + SECTOR - 1) // SECTOR, 2)
    gd_at = len(out) // SECTOR
    d = struct.pack("<%dI" % nr_gd, *gd)
    out += d + bytes(-len(d) % SECTOR)
    out += marker(1, 3) + header(gd_at) + marker(0, 0)
    open(path, "wb").write(out)


def parse_offsets(args, key):
    out = set()
    for a in args:
        if a.startswith(key + "="):
            out |= {int(x) for x in a[len(key) + 1:].split(",") if x}
    return out


def make_sesparse(path, raw, *args):
    gbytes = 8 * SECTOR
    size, grains = nonzero_grains(raw, gbytes)
    zero = {o // gbytes for o in parse_offsets(args, "zero")}
    unmapped = {o // gbytes for o in parse_offsets(args, "unmapped")}
    sectors = size // SECTOR
    gtes = 4096                                     # 64 sectors of u64
    nr_gd = (sectors + 8 * gtes - 1) // (8 * gtes)
    gd_sectors = max(1, (nr_gd * 8 + SECTOR - 1) // SECTOR)
    used = sorted({i // gtes for i, _ in grains} |
                  {i // gtes for i in zero | unmapped})
    # Tables stored in reverse order of their directory index.
    table_no = {t: n for n, t in enumerate(reversed(used))}
    gd_offset = 2
    gt_offset = gd_offset + gd_sectors
    gt_sectors = 64 * max(1, len(used))
    grains_offset = gt_offset + gt_sectors
    gd = [0] * nr_gd
    gts = {t: [0] * gtes for t in used}
    for t in used:
        gd[t] = 0x1000000000000000 | table_no[t]
    blobs = []
    last = 0
    first = min(parse_offsets(args, "first") or {5000})
    # Grain numbers from FIRST (past 4096 by default, so both halves of
    # the number are used), in reverse order of the disk.
    for k, (i, data) in enumerate(reversed(grains)):
        if i in zero or i in unmapped:
            continue
        n = first + 3 * k
        gts[i // gtes][i % gtes] = (0x3000000000000000 |
                                   ((n & 0xfff) << 48) | (n >> 12))
        blobs.append((grains_offset + n * 8, data))
        last = max(last, n + 1)
    for i in zero:
        gts[i // gtes][i % gtes] = 0x2000000000000000
    for i in unmapped:
        gts[i // gtes][i % gtes] = 0x1000000000000000
    const = bytearray(SECTOR)
    struct.pack_into("<26Q", const, 0,
                     0xcafebabe, 0x0000000200000001, sectors, 8, 64, 0,
                     0, 0, 0, 0,
                     1, 1,                          # volatile header
                     0, 0, 0, 0,                    # journal header, journal
                     gd_offset, gd_sectors,
                     gt_offset, gt_sectors,
                     0, 0, 0, 0,                    # free bitmap, backmap
                     grains_offset, last * 8)
    vol = bytearray(SECTOR)
    struct.pack_into("<4Q", vol, 0, 0xcafecafe, len(used), 1, 0)
    with open(path, "wb") as f:
        f.write(const)
        f.write(vol)
        f.seek(gd_offset * SECTOR)
        f.write(struct.pack("<%dQ" % nr_gd, *gd))
        for t in used:
            f.seek((gt_offset + 64 * table_no[t]) * SECTOR)
            f.write(struct.pack("<%dQ" % gtes, *gts[t]))
        for at, data in blobs:
            f.seek(at * SECTOR)
            f.write(data)
        f.truncate((grains_offset + last * 8) * SECTOR)


def patch(path, *args):
    with open(path, "r+b") as f:
        for i in range(0, len(args), 3):
            off, fmt, val = int(args[i], 0), args[i + 1], int(args[i + 2], 0)
            buf = bytearray(struct.calcsize(fmt))
            struct.pack_into(fmt, buf, 0, val)
            f.seek(off)
            f.write(buf)


def gd_sector(f):
    """The sector of the grain directory of the hosted sparse file F."""
    f.seek(0)
    gd = struct.unpack_from("<Q", f.read(SECTOR), 56)[0]
    if gd == 0xffffffffffffffff:
        f.seek(0, 2)
        f.seek(f.tell() - 1024)
        gd = struct.unpack_from("<Q", f.read(SECTOR), 56)[0]
    return gd


def gd_entry(path, index, value):
    with open(path, "r+b") as f:
        f.seek(gd_sector(f) * SECTOR + 4 * int(index))
        f.write(struct.pack("<I", int(value, 0)))


def gt_entry(path, table, index, value=None):
    """Set (or print) entry INDEX of grain table TABLE of a hosted sparse
    file."""
    with open(path, "r+b") as f:
        f.seek(gd_sector(f) * SECTOR + 4 * int(table))
        gt = struct.unpack("<I", f.read(4))[0]
        f.seek(gt * SECTOR + 4 * int(index))
        if value is None:
            print(struct.unpack("<I", f.read(4))[0])
        else:
            f.write(struct.pack("<I", int(value, 0)))


HEADER_FIELDS = ("version", "flags", "capacity", "grain", "desc_offset",
                 "desc_size", "gtes_per_gt", "rgd_offset", "gd_offset",
                 "overhead", "unclean", "nl_chars", "compress")


def decode_header(b):
    v = struct.unpack_from("<4sIIQQQQIQQQB4sH", b, 0)
    if v[0] != b"KDMV":
        return None
    d = dict(zip(HEADER_FIELDS, v[1:]))
    d["nl_chars"] = d["nl_chars"].hex()
    return d


def inspect(path):
    """Print the header, footer, descriptor and stream layout as JSON."""
    import json
    data = open(path, "rb").read()
    h = decode_header(data[:SECTOR])
    out = {"header": h, "footer": None, "descriptor": None, "stream": None}
    if h is None:
        print(json.dumps(out))
        return
    if h["desc_offset"]:
        a = h["desc_offset"] * SECTOR
        out["descriptor"] = data[a:a + h["desc_size"] * SECTOR].split(
            b"\0")[0].decode("utf-8", "replace")
    if h["flags"] & (1 << 17):
        st = {"grains": 0, "gt": 0, "gd": 0, "footer": 0, "eos": 0,
              "lba_ascending": True, "tables_after_grains": True,
              "ends_with_eos": False}
        pos, last_lba, gt_lbas = h["overhead"] * SECTOR, -1, []
        while pos + 16 <= len(data):
            lba, size = struct.unpack_from("<QI", data, pos)
            if size:
                st["grains"] += 1
                if lba <= last_lba:
                    st["lba_ascending"] = False
                last_lba = lba
                gt_lbas.append(lba)
                pos += (12 + size + SECTOR - 1) // SECTOR * SECTOR
                continue
            typ = struct.unpack_from("<I", data, pos + 12)[0]
            if typ == 1:
                st["gt"] += 1
                # every grain this table maps comes before it
                t = struct.unpack_from("<%dI" % (lba * 128), data, pos + SECTOR)
                for e in t:
                    if e and e * SECTOR >= pos:
                        st["tables_after_grains"] = False
            elif typ == 2:
                st["gd"] += 1
            elif typ == 3:
                st["footer"] += 1
                out["footer"] = decode_header(data[pos + SECTOR:pos + 2 * SECTOR])
                out["footer_at"] = pos + SECTOR
            elif typ == 0:
                st["eos"] += 1
                st["ends_with_eos"] = pos + SECTOR == len(data)
                break
            pos += SECTOR + lba * SECTOR
        out["stream"] = st
    print(json.dumps(out))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {"cowd": make_cowd, "sesparse": make_sesparse, "stream": make_stream,
     "patch": patch,
     "gd-entry": gd_entry, "gt-entry": gt_entry, "inspect": inspect}[cmd](*args)


if __name__ == "__main__":
    main()
