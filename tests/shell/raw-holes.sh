#!/usr/bin/env bash
# raw-holes: raw targets keep the source's holes, and zero runs of 4 KiB or
# more inside data become holes (raw) or unallocated clusters (qcow2).
# Holes are read back with SEEK_DATA/SEEK_HOLE; contents are judged by
# qemu-img compare.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"

# is_hole FILE START LENGTH: [START, START+LENGTH) holds no data on disk.
is_hole () {
  python3 - "$@" <<'EOF'
import os, sys
path, start, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDONLY)
try:
    data = os.lseek(fd, start, os.SEEK_DATA)
except OSError:              # ENXIO: no data from START to the end
    sys.exit(0)
sys.exit(0 if data >= start + length else 1)
EOF
}
# data_ranges FILE: the file's data extents, for evidence.
data_ranges () {
  python3 - "$1" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
end, off, out = os.fstat(fd).st_size, 0, []
while off < end:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    out.append("%d+%d" % (d, h - d))
    off = h
print("data extents: " + (" ".join(out) or "none"))
EOF
}
expect_hole () {
  if is_hole "$2" "$3" "$4"; then
    ok "$1"
  else
    not_ok "$1: $2 has data in [$3, $(($3 + $4)))" "$(data_ranges "$2")"
  fi
}
# qcow2_unallocated WHAT IMG START LENGTH: qemu-img map shows no data there.
qcow2_no_data () {
  local m
  m=$(qemu-img map -f qcow2 --output=json "$2" | python3 -c '
import json, sys
s, l = int(sys.argv[1]), int(sys.argv[2])
bad = [m for m in json.load(sys.stdin)
       if m["data"] and m["start"] < s + l and m["start"] + m["length"] > s]
print(bad if bad else "")' "$3" "$4")
  if [ -z "$m" ]; then ok "$1"; else not_ok "$1: data mapped there" "$m"; fi
}

# --- holes in a sparse source stay holes ------------------------------------
mb=$((1 << 20))
truncate -s $((64 * mb)) sparse.raw
for off in 3 17 40; do
  dd if="$RAND" of=sparse.raw bs=1M seek=$off count=1 conv=notrunc status=none
done
convert_and_judge "sparse raw -> raw" sparse.raw raw out.raw raw
if [ -f out.raw ]; then
  alloc=$(allocated_bytes out.raw)
  check_true "sparse raw -> raw: $alloc bytes allocated for 3 MiB of data" \
    test "$alloc" -le $((4 * mb))
  # (qemu-img writes the first 4 KiB of every raw target; allow that much.)
  expect_hole "sparse raw -> raw: the hole before the data" out.raw 65536 $((3 * mb - 65536))
  expect_hole "sparse raw -> raw: the hole between data" out.raw $((18 * mb)) $((22 * mb))
  expect_hole "sparse raw -> raw: the hole at the end" out.raw $((41 * mb)) $((23 * mb))
fi
convert_and_judge "sparse raw -> qcow2" sparse.raw raw out.qcow2 qcow2
if [ -f out.qcow2 ]; then
  check_true "sparse raw -> qcow2: file under 5 MiB" \
    test "$(stat -c %s out.qcow2)" -lt $((5 * mb))
  convert_and_judge "sparse qcow2 -> raw" out.qcow2 qcow2 back.raw raw
  [ -f back.raw ] && check_true "sparse qcow2 -> raw: at most 4 MiB allocated" \
    test "$(allocated_bytes back.raw)" -le $((4 * mb))
fi
rm -f out.raw out.qcow2 back.raw

# --- zero runs inside data become holes ------------------------------------------
# A fully allocated file: random data with zero runs written as data: 4 MiB
# aligned, 64 KiB at a 4 KiB boundary, 8 KiB unaligned (so only the 4 KiB
# block wholly inside it can become a hole), and 2 KiB (too short).
cat "$RAND" "$RAND" "$RAND" >dense.raw
python3 - dense.raw <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
for off, n in ((4 << 20, 4 << 20), ((10 << 20) + 4096, 65536),
               ((12 << 20) + 1000, 8192), ((14 << 20) + 512, 2048)):
    os.pwrite(fd, bytes(n), off)
os.fsync(fd)
EOF
check_true "dense source has no holes" test "$(allocated_bytes dense.raw)" -ge $((24 * mb))
convert_and_judge "zero runs: raw -> raw" dense.raw raw out.raw raw
if [ -f out.raw ]; then
  expect_hole "zero run of 4 MiB became a hole" out.raw $((4 * mb)) $((4 * mb))
  expect_hole "zero run of 64 KiB became a hole" out.raw $((10 * mb + 4096)) 65536
  expect_hole "the 4 KiB block inside an unaligned 8 KiB zero run became a hole" \
    out.raw $((12 * mb + 4096)) 4096
  check_true "zero runs: at most 20 MiB allocated of 24" \
    test "$(allocated_bytes out.raw)" -le $((20 * mb))
fi
convert_and_judge "zero runs: raw -> qcow2" dense.raw raw out.qcow2 qcow2
[ -f out.qcow2 ] &&
  qcow2_no_data "zero run of 4 MiB holds no data clusters in qcow2" out.qcow2 $((4 * mb)) $((4 * mb))
convert_and_judge "zero runs: raw -> qcow2, 4 KiB clusters" dense.raw raw out4k.qcow2 qcow2 \
  -o cluster_size=4096
[ -f out4k.qcow2 ] &&
  qcow2_no_data "zero run of 64 KiB holds no data clusters (4 KiB clusters)" \
    out4k.qcow2 $((10 * mb + 4096)) 65536

# --- zero clusters of a qcow2 source become holes in raw ------------------------
mkimg qcow2 z.qcow2 $((8 * mb))
qio qcow2 z.qcow2 "write -s $RAND 0 8m" "write -z 1m 2m" "write -P 0 5m 1m" "discard 7m 1m"
convert_and_judge "qcow2 with zero clusters -> raw" z.qcow2 qcow2 z.raw raw
if [ -f z.raw ]; then
  expect_hole "qcow2 zero clusters became a hole" z.raw $mb $((2 * mb))
  expect_hole "qcow2 data clusters of zero bytes became a hole" z.raw $((5 * mb)) $mb
  expect_hole "qcow2 discarded clusters became a hole" z.raw $((7 * mb)) $mb
fi

# --- -n into an existing raw file that holds old data ---------------------------
head -c $((8 * mb)) "$RAND" >target.raw
fy convert -n -f qcow2 -O raw z.qcow2 target.raw
if expect_exit 0 "-n into a raw file full of old data"; then
  same_content "-n: old data under the source's holes is gone" z.qcow2 qcow2 target.raw raw
fi

done_testing
