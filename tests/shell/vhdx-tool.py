#!/usr/bin/env python3
"""vhdx-tool.py: make and damage VHDX files for the tests, from the
published layout ([MS-VHDX]), independently of ferry's C code.

qemu-img cannot write differencing VHDX, 4096-byte sectors or a log, and
it never writes damaged files, so the tests build those here:

  dump FILE                      the structures, as JSON
  make-child PARENT PARENT_RAW CHILD EXPECTED_RAW [--relative NAME]
             [--no-relative] [--linkage GUID]
                                 a differencing child of PARENT holding one
                                 block of each payload state; EXPECTED_RAW
                                 gets what the child must read as
                                 (PARENT_RAW is the parent's contents)
  set-lss FILE 4096|512          change the logical sector size of a
                                 fixed or dynamic image, laying the BAT out
                                 again for the new chunk ratio
  plant-log FILE MODE            add a log that must be replayed: MODE is
                                 "bat" (a BAT update that maps a new block,
                                 plus a zero descriptor), "wrap" (the same,
                                 as an entry that wraps round the end of the
                                 ring, after an older stale entry),
                                 "truncated" (FlushedFileOffset past the end)
  clear-log FILE                 set LogGuid to zero (the log is ignored)
  corrupt FILE WHAT              one kind of damage (see CORRUPTIONS)
  fuzz FILE SEED                 a few random bytes of one structure changed,
                                 its checksum put right
  sparse-encode FILE OUT         the fuzzers' encoding of a sparse file
"""
import json
import os
import struct
import sys
import uuid

MiB = 1 << 20
KiB = 1 << 10

# --- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) -------------------
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_zeros(n, crc=0):
    """CRC-32C continued over N zero bytes (fast enough for 64 KiB)."""
    crc ^= 0xFFFFFFFF
    for _ in range(n):
        crc = _TABLE[crc & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def with_crc(buf, field):
    """BUF (bytearray) with the CRC-32C at FIELD recomputed."""
    buf[field:field + 4] = b"\0\0\0\0"
    buf[field:field + 4] = struct.pack("<I", crc32c(buf))
    return buf


def guid_bytes(s):
    return uuid.UUID(s).bytes_le


def guid_str(b):
    return "{%s}" % uuid.UUID(bytes_le=bytes(b))


G_BAT = guid_bytes("2DC27766-F623-4200-9D64-115E9BFD4A08")
G_META = guid_bytes("8B7CA206-4790-4B9A-B8FE-575F050F886E")
G_PARAMS = guid_bytes("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
G_SIZE = guid_bytes("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
G_ID = guid_bytes("BECA12AB-B2E6-4523-93EF-C309E000C746")
G_LSS = guid_bytes("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
G_PSS = guid_bytes("CDA348C7-445D-4471-9CC9-E9885251C556")
G_LOCATOR = guid_bytes("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
G_LOC_VHDX = guid_bytes("B04AEFB7-D19E-4A81-B789-25B8E9445913")

NOT_PRESENT, UNDEFINED, ZERO, UNMAPPED, FULL, PARTIAL = 0, 1, 2, 3, 6, 7
SB_PRESENT = 6


def rd(f, off, n):
    f.seek(off)
    d = f.read(n)
    return d + b"\0" * (n - len(d))


def wr(f, off, data):
    f.seek(off)
    f.write(data)


class Vhdx:
    """The structures of an existing file (current header, first valid
    region table, metadata items, BAT)."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.headers = []
            for off in (64 * KiB, 128 * KiB):
                h = bytearray(rd(f, off, 4096))
                ok = h[:4] == b"head" and struct.unpack_from("<I", h, 4)[0] == \
                    crc32c(h[:4] + b"\0\0\0\0" + h[8:])
                self.headers.append((off, h, ok))
            valid = [x for x in self.headers if x[2]]
            self.hoff, self.hdr, _ = max(valid, key=lambda x: struct.unpack_from("<Q", x[1], 8)[0])
            self.seq = struct.unpack_from("<Q", self.hdr, 8)[0]
            self.log_length, self.log_offset = struct.unpack_from("<IQ", self.hdr, 68)
            self.data_write_guid = bytes(self.hdr[32:48])
            rt = rd(f, 192 * KiB, 64 * KiB)
            self.regions = {}
            for i in range(struct.unpack_from("<I", rt, 8)[0]):
                e = rt[16 + 32 * i:48 + 32 * i]
                self.regions[bytes(e[:16])] = struct.unpack_from("<QII", e, 16)
            self.bat_offset, self.bat_length, _ = self.regions[G_BAT]
            self.meta_offset, self.meta_length, _ = self.regions[G_META]
            mt = rd(f, self.meta_offset, 64 * KiB)
            self.items = {}
            for i in range(struct.unpack_from("<H", mt, 10)[0]):
                e = mt[32 + 32 * i:64 + 32 * i]
                off, ln, flags = struct.unpack_from("<III", e, 16)
                self.items[bytes(e[:16])] = (32 + 32 * i, off, ln, flags,
                                             rd(f, self.meta_offset + off, ln))
            self.block_size, pflags = struct.unpack_from("<II", self.items[G_PARAMS][4])
            self.has_parent = bool(pflags & 2)
            self.fixed = bool(pflags & 1)
            self.size = struct.unpack_from("<Q", self.items[G_SIZE][4])[0]
            self.lss = struct.unpack_from("<I", self.items[G_LSS][4])[0]
            self.geometry()
            raw = rd(f, self.bat_offset, self.entries * 8)
            self.bat = list(struct.unpack("<%dQ" % self.entries, raw))
            f.seek(0, 2)
            self.file_size = f.tell()

    def geometry(self):
        self.chunk_ratio = (1 << 23) * self.lss // self.block_size
        self.data_blocks = -(-self.size // self.block_size)
        self.sb_blocks = -(-self.data_blocks // self.chunk_ratio)
        if self.has_parent:
            self.entries = self.sb_blocks * (self.chunk_ratio + 1)
        else:
            self.entries = self.data_blocks + (self.data_blocks - 1) // self.chunk_ratio \
                if self.data_blocks else 0

    def payload_index(self, b):
        return b + b // self.chunk_ratio

    def write_headers(self, f, **changes):
        """Rewrite both headers with CHANGES applied (log_guid=bytes)."""
        for i, (off, h, _) in enumerate(self.headers):
            h = bytearray(self.hdr)
            struct.pack_into("<Q", h, 8, self.seq + 1 + i)
            if "log_guid" in changes:
                h[48:64] = changes["log_guid"]
            if "version" in changes:
                struct.pack_into("<H", h, 66, changes["version"])
            wr(f, off, bytes(with_crc(h, 4)))
        self.seq += 2

    def write_item(self, f, guid, data):
        entry, off, ln, flags, _ = self.items[guid]
        assert len(data) == ln
        wr(f, self.meta_offset + off, data)


def dump(path):
    v = Vhdx(path)
    states = {}
    present_end = 0
    for b in range(v.data_blocks):
        s = v.bat[v.payload_index(b)] & 7
        states[s] = states.get(s, 0) + 1
        if s in (FULL, PARTIAL):
            present_end = min((b + 1) * v.block_size, v.size)
    print(json.dumps({
        "sequence": v.seq, "log_offset": v.log_offset, "log_length": v.log_length,
        "log_guid": guid_str(v.hdr[48:64]), "data_write_guid": guid_str(v.data_write_guid),
        "bat_offset": v.bat_offset, "bat_length": v.bat_length,
        "meta_offset": v.meta_offset, "block_size": v.block_size,
        "logical_sector_size": v.lss, "virtual_size": v.size,
        "has_parent": v.has_parent, "fixed": v.fixed, "bat_entries": v.entries,
        "chunk_ratio": v.chunk_ratio, "block_states": states,
        "present_end": present_end,
        "file_size": v.file_size,
    }, indent=1))


# --- building a file from scratch ------------------------------------------------

def utf16(s):
    return s.encode("utf-16-le")


def build_locator(pairs):
    """The parent locator item for PAIRS [(key, value)]."""
    head = bytearray(G_LOC_VHDX + struct.pack("<HH", 0, len(pairs)))
    table = bytearray()
    strings = bytearray()
    base = 20 + 12 * len(pairs)
    for k, val in pairs:
        kb, vb = utf16(k), utf16(val)
        ko = base + len(strings)
        strings += kb
        vo = base + len(strings)
        strings += vb
        table += struct.pack("<IIHH", ko, vo, len(kb), len(vb))
    return bytes(head + table + strings)


def write_new_file(path, size, block_size, lss, has_parent, bat, extra_items,
                   blobs):
    """A VHDX with the given BAT (list of entries) and metadata; BLOBS is a
    list of (offset, bytes) to place (bitmaps, payload).  The BAT goes at
    2 MiB, the metadata after it, the log (empty) at 1 MiB."""
    bat_length = max(MiB, -(-len(bat) * 8 // MiB) * MiB)
    bat_offset = 2 * MiB
    meta_offset = bat_offset + bat_length
    with open(path, "wb") as f:
        f.truncate(meta_offset + MiB)
        wr(f, 0, b"vhdxfile" + utf16("vhdx-tool.py"))
        for i, off in enumerate((64 * KiB, 128 * KiB)):
            h = bytearray(4096)
            h[:4] = b"head"
            struct.pack_into("<Q", h, 8, 10 + i)
            h[16:32] = uuid.uuid4().bytes_le
            h[32:48] = uuid.uuid4().bytes_le if i == 0 else h_data
            h_data = bytes(h[32:48])
            struct.pack_into("<HHIQ", h, 64, 0, 1, MiB, MiB)
            wr(f, off, bytes(with_crc(h, 4)))
        rt = bytearray(64 * KiB)
        rt[:4] = b"regi"
        struct.pack_into("<I", rt, 8, 2)
        rt[16:32] = G_BAT
        struct.pack_into("<QII", rt, 32, bat_offset, bat_length, 1)
        rt[48:64] = G_META
        struct.pack_into("<QII", rt, 64, meta_offset, MiB, 1)
        with_crc(rt, 4)
        wr(f, 192 * KiB, bytes(rt))
        wr(f, 256 * KiB, bytes(rt))
        items = [
            (G_PARAMS, 4, struct.pack("<II", block_size, 2 if has_parent else 0)),
            (G_SIZE, 6, struct.pack("<Q", size)),
            (G_ID, 6, uuid.uuid4().bytes_le),
            (G_LSS, 6, struct.pack("<I", lss)),
            (G_PSS, 6, struct.pack("<I", 4096)),
        ] + extra_items
        mt = bytearray(b"metadata" + struct.pack("<HH", 0, len(items)) + bytes(20))
        data = bytearray()
        for g, flags, payload in items:
            mt += g + struct.pack("<IIII", 64 * KiB + len(data), len(payload), flags, 0)
            data += payload
        wr(f, meta_offset, bytes(mt))
        wr(f, meta_offset + 64 * KiB, bytes(data))
        wr(f, bat_offset, struct.pack("<%dQ" % len(bat), *bat))
        for off, blob in blobs:
            wr(f, off, blob)


def make_child(parent, parent_raw, child, expected, relative=None,
               no_relative=False, linkage=None):
    p = Vhdx(parent)
    bs, lss, size = p.block_size, p.lss, p.size
    if p.data_blocks < 6:
        sys.exit("make-child: the parent needs at least 6 blocks")
    c = Vhdx.__new__(Vhdx)
    c.block_size, c.lss, c.size, c.has_parent = bs, lss, size, True
    c.geometry()
    bat = [0] * c.entries
    with open(parent_raw, "rb") as f:
        want = bytearray(f.read())
    assert len(want) == size, "parent raw has %d bytes, parent %d" % (len(want), size)

    data_start = c.entries * 8
    data_start = 2 * MiB + max(MiB, -(-data_start // MiB) * MiB) + MiB
    sb_offset = data_start
    blocks_at = sb_offset + MiB
    blobs = []
    # Patterns stay in the first 16 KiB of a block (the rest is zeroes),
    # so the file encodes small as a fuzzing seed.
    head = 16 * KiB
    # Block 0: fully present, a pattern.
    blob0 = bytes([0xC1]) * head + bytes(bs - head)
    bat[c.payload_index(0)] = blocks_at | FULL
    blobs.append((blocks_at, blob0))
    want[0:bs] = blob0
    # Block 1: partially present.  Sectors 0-7, 100 and the last are here;
    # the rest comes from the parent.
    spb = bs // lss
    present = set(range(8)) | {100, spb - 1}
    blob1 = bytearray(bs)
    for s in range(spb):
        if s in present:
            blob1[s * lss:(s + 1) * lss] = bytes([0xC2]) * lss
        elif s * lss < head:
            blob1[s * lss:(s + 1) * lss] = bytes([0xEE]) * lss
    bat[c.payload_index(1)] = (blocks_at + bs) | PARTIAL
    blobs.append((blocks_at + bs, bytes(blob1)))
    bitmap = bytearray(MiB)
    first = 1 * spb                       # bit of block 1's first sector
    for s in present:
        bitmap[(first + s) // 8] |= 1 << ((first + s) % 8)
    bat[c.chunk_ratio] = sb_offset | SB_PRESENT   # the bitmap of chunk 0
    blobs.append((sb_offset, bytes(bitmap)))
    for s in present:
        want[bs + s * lss:bs + (s + 1) * lss] = bytes([0xC2]) * lss
    # Block 2: zero (hides the parent); 3: not present (the parent shows);
    # 4: unmapped and 5: undefined (zeroes), with stale offsets.
    bat[c.payload_index(2)] = ZERO
    want[2 * bs:3 * bs] = bytes(bs)
    bat[c.payload_index(4)] = (blocks_at + 2 * bs) | UNMAPPED
    want[4 * bs:5 * bs] = bytes(bs)
    bat[c.payload_index(5)] = UNDEFINED
    want[5 * bs:min(6 * bs, size)] = bytes(min(6 * bs, size) - 5 * bs)

    link = linkage or guid_str(p.data_write_guid)
    name = relative or os.path.basename(parent)
    pairs = [("parent_linkage", link)]
    if not no_relative:
        pairs.append(("relative_path", name.replace("/", "\\")))
    pairs.append(("absolute_win32_path", "\\\\?\\C:\\Hyper-V\\elsewhere\\" +
                  os.path.basename(parent)))
    write_new_file(child, size, bs, lss, True, bat,
                   [(G_LOCATOR, 4, build_locator(pairs))], blobs)
    with open(expected, "wb") as f:
        f.write(want)


def set_lss(path, lss):
    v = Vhdx(path)
    assert not v.has_parent, "set-lss: only fixed or dynamic images"
    assert v.size % lss == 0, "set-lss: the size is not a multiple of %d" % lss
    payload = [v.bat[v.payload_index(b)] for b in range(v.data_blocks)]
    v.lss = lss
    v.geometry()
    bat = [0] * v.entries
    for b, e in enumerate(payload):
        bat[v.payload_index(b)] = e
    assert len(bat) * 8 <= v.bat_length
    with open(path, "r+b") as f:
        wr(f, v.bat_offset, struct.pack("<%dQ" % len(bat), *bat) + bytes(v.bat_length - len(bat) * 8))
        v.write_item(f, G_LSS, struct.pack("<I", lss))
        v.write_item(f, G_PSS, struct.pack("<I", 4096))


# --- the log ------------------------------------------------------------------------

def log_entry(seq, log_guid, tail, descs, flushed, last):
    """One log entry: DESCS is a list of ("zero", offset, length) or
    ("data", offset, 4096 bytes).  Returns its sectors as bytes."""
    ndata = sum(1 for d in descs if d[0] == "data")
    dsect = 1 if len(descs) <= 126 else 1 + -(-(len(descs) - 126) // 128)
    total = (dsect + ndata) * 4096
    hdr = bytearray(dsect * 4096)
    hdr[:4] = b"loge"
    struct.pack_into("<IIQII", hdr, 8, total, tail, seq, len(descs), 0)
    hdr[32:48] = log_guid
    struct.pack_into("<QQ", hdr, 48, flushed, last)
    sectors = bytearray()
    for i, d in enumerate(descs):
        o = 64 + 32 * i
        if d[0] == "zero":
            hdr[o:o + 4] = b"zero"
            struct.pack_into("<IQQQ", hdr, o + 4, 0, d[2], d[1], seq)
        else:
            data = d[2]
            hdr[o:o + 4] = b"desc"
            hdr[o + 4:o + 8] = data[4092:4096]
            hdr[o + 8:o + 16] = data[0:8]
            struct.pack_into("<QQ", hdr, o + 16, d[1], seq)
            s = bytearray(data)
            s[0:4] = b"data"
            struct.pack_into("<I", s, 4, seq >> 32)
            struct.pack_into("<I", s, 4092, seq & 0xFFFFFFFF)
            sectors += s
    entry = hdr + sectors
    struct.pack_into("<I", entry, 4, crc32c(entry))
    return bytes(entry)


def plant_log(path, mode):
    """Map the first not-present block to new data through the log only."""
    v = Vhdx(path)
    assert not v.has_parent
    b = next(b for b in range(v.data_blocks) if v.bat[v.payload_index(b)] & 7 != FULL)
    i = v.payload_index(b)
    new_block = -(-v.file_size // MiB) * MiB
    pattern = bytes([0xA7]) * (16 * KiB)
    # The BAT sector holding entry I, as it must read after the replay.
    sec_off = v.bat_offset + (i * 8) // 4096 * 4096
    with open(path, "r+b") as f:
        sector = bytearray(rd(f, sec_off, 4096))
        struct.pack_into("<Q", sector, (i * 8) % 4096, new_block | FULL)
        f.truncate(new_block + v.block_size)
        wr(f, new_block, pattern)
        log_guid = uuid.uuid4().bytes_le
        # A zero descriptor over the metadata region's free space, which
        # must stay zero: harmless, but exercised.
        descs = [("data", sec_off, bytes(sector)),
                 ("zero", v.meta_offset + MiB - 8192, 8192)]
        size = new_block + v.block_size
        flushed = size if mode != "truncated" else size + 64 * MiB
        log = bytearray(v.log_length)
        if mode == "wrap":
            # An old entry (sequence 5) that a newer sequence (6, 7)
            # follows, the last of which wraps round the end of the ring:
            # its data sector is the first sector of the log.
            stale = log_entry(5, log_guid, 8192, [("zero", sec_off, 4096)], size, size)
            log[8192:8192 + len(stale)] = stale
            first_pos = v.log_length - 2 * 4096
            e6 = log_entry(6, log_guid, first_pos, [("zero", v.meta_offset + MiB - 4096, 4096)],
                           size, size)
            e7 = log_entry(7, log_guid, first_pos, descs, size, size)
            log[first_pos:first_pos + len(e6)] = e6
            p = first_pos + len(e6)
            room = v.log_length - p
            log[p:] = e7[:room]
            log[:len(e7) - room] = e7[room:]
        else:
            e = log_entry(1, log_guid, 0, descs, flushed, size)
            log[0:len(e)] = e
        wr(f, v.log_offset, bytes(log))
        v.write_headers(f, log_guid=log_guid)


def clear_log(path):
    v = Vhdx(path)
    with open(path, "r+b") as f:
        v.write_headers(f, log_guid=bytes(16))


# --- damage ----------------------------------------------------------------------------

def set_bat(f, v, index, value):
    wr(f, v.bat_offset + index * 8, struct.pack("<Q", value))


def rewrite_region_table(f, entries, where=(192 * KiB, 256 * KiB)):
    rt = bytearray(64 * KiB)
    rt[:4] = b"regi"
    struct.pack_into("<I", rt, 8, len(entries))
    for i, (g, off, ln, req) in enumerate(entries):
        rt[16 + 32 * i:32 + 32 * i] = g
        struct.pack_into("<QII", rt, 32 + 32 * i, off, ln, req)
    with_crc(rt, 4)
    for w in where:
        wr(f, w, bytes(rt))


def corrupt(path, what):
    v = Vhdx(path)
    with open(path, "r+b") as f:
        b0 = v.payload_index(0)
        if what == "header1-crc":
            wr(f, 64 * KiB + 200, b"\x55")
        elif what == "headers-crc":
            wr(f, 64 * KiB + 200, b"\x55")
            wr(f, 128 * KiB + 200, b"\x55")
        elif what == "header-version":
            v.write_headers(f, version=2)
        elif what == "same-sequence":
            h = bytearray(v.hdr)
            struct.pack_into("<Q", h, 8, 99)
            wr(f, 64 * KiB, bytes(with_crc(bytearray(h), 4)))
            h[16] ^= 1
            wr(f, 128 * KiB, bytes(with_crc(h, 4)))
        elif what == "region1-crc":
            wr(f, 192 * KiB + 100, b"\x55")
        elif what == "regions-crc":
            wr(f, 192 * KiB + 100, b"\x55")
            wr(f, 256 * KiB + 100, b"\x55")
        elif what == "region-unknown-required":
            rewrite_region_table(f, [(G_BAT, v.bat_offset, v.bat_length, 1),
                                     (G_META, v.meta_offset, v.meta_length, 1),
                                     (uuid.uuid4().bytes_le, v.file_size, MiB, 1)])
        elif what == "region-past-eof":
            rewrite_region_table(f, [(G_BAT, v.file_size, v.bat_length, 1),
                                     (G_META, v.meta_offset, v.meta_length, 1)])
        elif what == "bat-past-eof":
            set_bat(f, v, b0, (v.file_size + 64 * MiB) | FULL)
        elif what == "bat-huge-offset":
            set_bat(f, v, b0, 0xFFFFFFFFFFF00000 | FULL)
        elif what == "bat-reserved-state":
            set_bat(f, v, b0, 4)
        elif what == "bat-over-metadata":
            set_bat(f, v, b0, v.meta_offset | FULL)
        elif what == "bat-no-offset":
            set_bat(f, v, b0, FULL)
        elif what == "bat-duplicate":
            # Block 1 placed on block 0's data: readable, but ferry check
            # must see the overlap.
            set_bat(f, v, v.payload_index(1), v.bat[b0] & ~7 | FULL)
        elif what == "bat-partial":
            set_bat(f, v, b0, v.bat[b0] & ~7 | PARTIAL)
        elif what == "size-huge":
            v.write_item(f, G_SIZE, struct.pack("<Q", 1 << 60))
        elif what == "size-64t":
            # Legal size, but the BAT region cannot hold the entries.
            v.write_item(f, G_SIZE, struct.pack("<Q", 64 << 40))
        elif what == "size-unaligned":
            v.write_item(f, G_SIZE, struct.pack("<Q", v.size + 100))
        elif what == "block-size":
            v.write_item(f, G_PARAMS, struct.pack("<II", 3 * MiB, 0))
        elif what == "lss":
            v.write_item(f, G_LSS, struct.pack("<I", 1024))
        elif what == "meta-signature":
            wr(f, v.meta_offset, b"metaXXXX")
        elif what == "meta-item-outside":
            entry = v.items[G_SIZE][0]
            wr(f, v.meta_offset + entry + 16, struct.pack("<I", v.meta_length - 4))
        elif what == "meta-unknown-required":
            entry = v.items[G_ID][0]
            wr(f, v.meta_offset + entry, uuid.uuid4().bytes_le)
            wr(f, v.meta_offset + entry + 24, struct.pack("<I", 4))
        elif what == "meta-missing-size":
            entry = v.items[G_SIZE][0]
            wr(f, v.meta_offset + entry, uuid.uuid4().bytes_le)
            wr(f, v.meta_offset + entry + 24, struct.pack("<I", 0))
        elif what == "log-outside":
            h = bytearray(v.hdr)
            h[48:64] = uuid.uuid4().bytes_le
            struct.pack_into("<IQ", h, 68, MiB, v.file_size + MiB)
            for off in (64 * KiB, 128 * KiB):
                wr(f, off, bytes(with_crc(bytearray(h), 4)))
        else:
            sys.exit("corrupt: unknown damage '%s'" % what)


CORRUPTIONS = """header1-crc headers-crc header-version same-sequence region1-crc
regions-crc region-unknown-required region-past-eof bat-past-eof bat-huge-offset
bat-reserved-state bat-over-metadata bat-no-offset bat-duplicate bat-partial size-huge size-64t
size-unaligned block-size lss meta-signature meta-item-outside meta-unknown-required
meta-missing-size log-outside""".split()


def fuzz(path, seed):
    """Change a few bytes of one structure, chosen by SEED, and put its
    checksum right where it has one, so the damage gets past the CRC."""
    import random
    rnd = random.Random(seed)
    v = Vhdx(path)
    targets = [("header", v.hoff, 80, 4), ("region", 192 * KiB, 16 + 32 * 3, 4),
               ("metadata", v.meta_offset, 64 * KiB + 64, None),
               ("bat", v.bat_offset, max(8, v.entries * 8), None),
               ("log", v.log_offset, 4096, None)]
    name, off, span, crc = targets[rnd.randrange(len(targets))]
    with open(path, "r+b") as f:
        size = 4096 if name == "header" else 64 * KiB if name == "region" else span
        buf = bytearray(rd(f, off, size))
        for _ in range(rnd.randint(1, 8)):
            i = rnd.randrange(min(span, len(buf)))
            buf[i] = rnd.choice([0, 0xFF, rnd.randrange(256), buf[i] ^ (1 << rnd.randrange(8))])
        if crc is not None:
            with_crc(buf, crc)
        wr(f, off, bytes(buf))
    print(name)


def sparse_encode(path, out):
    """The fuzzers' encoding: u64 file size, then records of u32 offset in
    units of 16 bytes, u16 length, and the bytes; only non-zero runs."""
    with open(path, "rb") as f:
        data = f.read()
    rec = bytearray(struct.pack("<Q", len(data)))
    pos = 0
    step = 16
    while pos < len(data):
        if data[pos:pos + step].strip(b"\0") == b"":
            pos += step
            continue
        end = pos
        while end < len(data) and end - pos < 65535 - step and \
                data[end:end + step].strip(b"\0") != b"":
            end += step
        chunk = data[pos:end]
        rec += struct.pack("<IH", pos // step, len(chunk)) + chunk
        pos = end
    with open(out, "wb") as f:
        f.write(rec)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "dump":
        dump(args[0])
    elif cmd == "make-child":
        opts = {}
        pos = []
        i = 0
        while i < len(args):
            if args[i] == "--relative":
                opts["relative"] = args[i + 1]
                i += 2
            elif args[i] == "--no-relative":
                opts["no_relative"] = True
                i += 1
            elif args[i] == "--linkage":
                opts["linkage"] = args[i + 1]
                i += 2
            else:
                pos.append(args[i])
                i += 1
        make_child(*pos, **opts)
    elif cmd == "set-lss":
        set_lss(args[0], int(args[1]))
    elif cmd == "plant-log":
        plant_log(args[0], args[1])
    elif cmd == "clear-log":
        clear_log(args[0])
    elif cmd == "corrupt":
        corrupt(args[0], args[1])
    elif cmd == "list-corruptions":
        print("\n".join(CORRUPTIONS))
    elif cmd == "fuzz":
        fuzz(args[0], int(args[1]))
    elif cmd == "sparse-encode":
        sparse_encode(args[0], args[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
