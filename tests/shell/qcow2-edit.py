#!/usr/bin/env python3
"""qcow2-edit: read and damage qcow2 metadata for the shell tests.

The tests plant one precise fault in an image that qemu-img made, then ask
ferry (and qemu-img, the judge) what they make of it.  This tool knows just
enough of the qcow2 layout (qemu's docs/interop/qcow2.txt) to find the field
or table entry to change; it checks nothing, on purpose.

  qcow2-edit.py IMG header                   print the header as JSON
  qcow2-edit.py IMG set FIELD VALUE          write one header field
  qcow2-edit.py IMG l1 INDEX [VALUE]         print or write an L1 entry
  qcow2-edit.py IMG l2 GUEST_OFF [VALUE]     print or write the L2 entry
                                             (first 64 bits) mapping GUEST_OFF
  qcow2-edit.py IMG host GUEST_OFF           print the host offset of the
                                             cluster holding GUEST_OFF (0: none)
  qcow2-edit.py IMG refcount HOST_OFF [VALUE] print or write a refcount
  qcow2-edit.py IMG append-cluster           grow the file by one cluster and
                                             print the new cluster's offset

Numbers may be written in decimal or 0x hex.  Printed numbers are decimal.
"""
import json
import os
import struct
import sys

# name: (offset, struct format); v3 fields follow the 72-byte v2 header.
FIELDS = {
    "magic": (0, ">I"),
    "version": (4, ">I"),
    "backing_file_offset": (8, ">Q"),
    "backing_file_size": (16, ">I"),
    "cluster_bits": (20, ">I"),
    "size": (24, ">Q"),
    "crypt_method": (32, ">I"),
    "l1_size": (36, ">I"),
    "l1_table_offset": (40, ">Q"),
    "refcount_table_offset": (48, ">Q"),
    "refcount_table_clusters": (56, ">I"),
    "nb_snapshots": (60, ">I"),
    "snapshots_offset": (64, ">Q"),
    "incompatible_features": (72, ">Q"),
    "compatible_features": (80, ">Q"),
    "autoclear_features": (88, ">Q"),
    "refcount_order": (96, ">I"),
    "header_length": (100, ">I"),
    "compression_type": (104, ">B"),
}
OFFSET_MASK = 0x00FFFFFFFFFFFE00


def num(s):
    return int(s, 0)


class Image:
    def __init__(self, path):
        self.f = open(path, "r+b")
        self.h = {}
        raw = self.read(0, 112)
        for name, (off, fmt) in FIELDS.items():
            n = struct.calcsize(fmt)
            if off + n <= len(raw):
                self.h[name] = struct.unpack_from(fmt, raw, off)[0]
        if self.h.get("version", 2) < 3:
            for k in ("incompatible_features", "compatible_features",
                      "autoclear_features", "compression_type"):
                self.h.pop(k, None)
            self.h["refcount_order"] = 4
            self.h["header_length"] = 72
        self.cs = 1 << self.h["cluster_bits"]
        self.ext_l2 = bool(self.h.get("incompatible_features", 0) & 16)

    def read(self, off, n):
        self.f.seek(off)
        return self.f.read(n)

    def write(self, off, data):
        self.f.seek(off)
        self.f.write(data)

    def get64(self, off):
        return struct.unpack(">Q", self.read(off, 8))[0]

    def put64(self, off, v):
        self.write(off, struct.pack(">Q", v & 0xFFFFFFFFFFFFFFFF))

    def l1_entry_offset(self, index):
        return self.h["l1_table_offset"] + 8 * index

    def l2_entry_offset(self, guest):
        entry_size = 16 if self.ext_l2 else 8
        l2_entries = self.cs // entry_size
        cluster = guest // self.cs
        l1 = self.get64(self.l1_entry_offset(cluster // l2_entries))
        l2 = l1 & OFFSET_MASK
        if l2 == 0:
            sys.exit("qcow2-edit: no L2 table for guest offset %d" % guest)
        return l2 + entry_size * (cluster % l2_entries)

    def refcount_bits(self):
        return 1 << self.h["refcount_order"]

    def refcount_location(self, host):
        """(byte offset, bit shift, width) of HOST's refcount entry."""
        bits = self.refcount_bits()
        per_block = self.cs * 8 // bits
        cluster = host // self.cs
        rt = self.h["refcount_table_offset"]
        block = self.get64(rt + 8 * (cluster // per_block)) & ~0x1FF
        if block == 0:
            sys.exit("qcow2-edit: no refcount block for host offset %d" % host)
        index = cluster % per_block
        if bits >= 8:
            return block + index * bits // 8, 0, bits
        byte = block + index * bits // 8
        # Sub-byte refcounts are packed from the least significant bit.
        return byte, (index * bits) % 8, bits

    def get_refcount(self, host):
        off, shift, bits = self.refcount_location(host)
        if bits >= 8:
            return int.from_bytes(self.read(off, bits // 8), "big")
        return (self.read(off, 1)[0] >> shift) & ((1 << bits) - 1)

    def set_refcount(self, host, value):
        off, shift, bits = self.refcount_location(host)
        if bits >= 8:
            self.write(off, value.to_bytes(bits // 8, "big"))
        else:
            mask = ((1 << bits) - 1) << shift
            b = self.read(off, 1)[0]
            self.write(off, bytes([(b & ~mask) | ((value << shift) & mask)]))


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    img = Image(argv[1])
    cmd, args = argv[2], argv[3:]
    if cmd == "header":
        print(json.dumps(img.h))
    elif cmd == "set":
        off, fmt = FIELDS[args[0]]
        width = 8 * struct.calcsize(fmt)
        img.write(off, struct.pack(fmt, num(args[1]) & ((1 << width) - 1)))
    elif cmd == "l1":
        off = img.l1_entry_offset(num(args[0]))
        if len(args) > 1:
            img.put64(off, num(args[1]))
        else:
            print(img.get64(off))
    elif cmd == "l2":
        off = img.l2_entry_offset(num(args[0]))
        if len(args) > 1:
            img.put64(off, num(args[1]))
        else:
            print(img.get64(off))
    elif cmd == "host":
        entry = img.get64(img.l2_entry_offset(num(args[0])))
        print(entry & OFFSET_MASK if not entry & (1 << 62) else 0)
    elif cmd == "refcount":
        if len(args) > 1:
            img.set_refcount(num(args[0]), num(args[1]))
        else:
            print(img.get_refcount(num(args[0])))
    elif cmd == "append-cluster":
        end = os.fstat(img.f.fileno()).st_size
        end = (end + img.cs - 1) // img.cs * img.cs
        img.f.truncate(end + img.cs)
        print(end)
    else:
        sys.exit("qcow2-edit: unknown command %s" % cmd)
    img.f.close()


if __name__ == "__main__":
    main(sys.argv)
