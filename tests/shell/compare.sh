#!/usr/bin/env bash
# compare: ferry compare exits 0 for equal guest contents ("Images are
# identical."), 1 with the first differing byte offset ("Content mismatch at
# offset N!") and 2 on error; across formats, holes, zero clusters and
# backing chains.  Every planted difference's offset is known exactly.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"

mb=$((1 << 20))
mkimg raw a.raw $((8 * mb))
fill_pattern raw a.raw 65536 $((8 * mb))
qemu-img convert -q -f raw -O qcow2 -o cluster_size=4096 a.raw a.qcow2 || die "convert"
qemu-img convert -q -c -f raw -O qcow2 a.raw a-c.qcow2 || die "convert -c"

# expect_equal WHAT A B [FERRY OPTIONS]
expect_equal () {
  local what=$1 a=$2 b=$3
  shift 3
  fy compare "$@" "$a" "$b"
  expect_exit 0 "$what: equal" && expect_stderr_or_out "Images are identical." "$what: says identical"
}
expect_stderr_or_out () {
  if grep -q -F -- "$1" "$OUT" "$ERR"; then ok "$2"; else not_ok "$2: no '$1'" "$(last_run)"; fi
}
# expect_differ WHAT A B OFFSET [FERRY OPTIONS]
expect_differ () {
  local what=$1 a=$2 b=$3 off=$4
  shift 4
  fy compare "$@" "$a" "$b"
  expect_exit 1 "$what: differ" &&
    expect_stderr_or_out "Content mismatch at offset $off!" "$what: first difference at $off"
}
# plant FILE OFFSET BYTE: overwrite one byte of a raw file.
plant () {
  printf "$(printf '\\%03o' "$3")" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

expect_equal "raw vs itself" a.raw a.raw
expect_equal "raw vs qcow2" a.raw a.qcow2
expect_equal "qcow2 vs raw" a.qcow2 a.raw
expect_equal "qcow2 vs compressed qcow2" a.qcow2 a-c.qcow2
expect_equal "with -f raw -F qcow2" a.raw a-c.qcow2 -f raw -F qcow2

# One byte changed, at offsets of every kind: the first byte, inside data,
# inside a former hole, inside zeroed clusters, the last byte.
i=0
for off in 0 12345 $((3 * 65536 + 777)) $((4 * 65536 + 65535)) $((5 * mb + 1)) $((8 * mb - 1)); do
  i=$((i + 1))
  cp a.raw b$i.raw
  orig=$(od -An -tu1 -j "$off" -N1 a.raw | tr -d ' ')
  plant b$i.raw "$off" $(((orig + 1) % 256))
  qemu-img convert -q -f raw -O qcow2 b$i.raw b$i.qcow2 || die "convert"
  expect_differ "one byte changed at $off, raw vs raw" a.raw b$i.raw "$off"
  expect_differ "one byte changed at $off, qcow2 vs qcow2" a.qcow2 b$i.qcow2 "$off"
  expect_differ "one byte changed at $off, compressed qcow2 vs raw" a-c.qcow2 b$i.raw "$off"
  rm -f b$i.raw b$i.qcow2
done
# Two differences: the first one counts.
cp a.raw two.raw
plant two.raw $((7 * mb)) 1
plant two.raw $((2 * mb + 3)) 1
expect_differ "two differences, the earlier reported" a.raw two.raw $((2 * mb + 3))

# Data against a hole, and a hole against data.
truncate -s $((8 * mb)) hole.raw
mkimg qcow2 one.qcow2 $((8 * mb))
qio qcow2 one.qcow2 "write -P 0x9 $((6 * mb + 100)) 5"
expect_differ "hole vs data" hole.raw one.qcow2 $((6 * mb + 100))
expect_differ "data vs hole" one.qcow2 hole.raw $((6 * mb + 100))
# Zero clusters, explicit zero data and holes are all equal.
mkimg qcow2 zeroes.qcow2 $((8 * mb))
qio qcow2 zeroes.qcow2 "write -z 0 2m" "write -P 0 3m 1m"
expect_equal "zero clusters and zero data vs a hole" zeroes.qcow2 hole.raw

# Through a backing chain.
mkimg qcow2 over.qcow2 $((8 * mb)) "backing_file=a.qcow2,backing_fmt=qcow2"
expect_equal "empty overlay vs its backing file" over.qcow2 a.raw
qio qcow2 over.qcow2 "write -z 65536 512"
expect_differ "overlay zeroing backing data" over.qcow2 a.raw 65536

# Different sizes: equal when the extra part reads as zeroes.
cp a.raw longer.raw
truncate -s $((9 * mb)) longer.raw
fy compare a.raw longer.raw
expect_exit 0 "longer image with a zero tail: equal"
plant longer.raw $((8 * mb + 4097)) 7
expect_differ "longer image with data in the tail" a.raw longer.raw $((8 * mb + 4097))

# Errors: exit 2, with a message naming the file.
fy compare a.raw nosuch.raw
expect_exit 2 "missing file: exit 2" && expect_stderr nosuch.raw "missing file: message names it"
fy compare -f nosuch a.raw a.raw
expect_exit 2 "unknown format: exit 2"
cp a.qcow2 bad.qcow2
"${QCOW2_EDIT[@]}" bad.qcow2 set incompatible_features 0x8000000000 || die "edit"
fy compare a.raw bad.qcow2
expect_exit 2 "unknown incompatible feature: exit 2" &&
  expect_stderr bad.qcow2 "unknown incompatible feature: message names the file"
cp a.qcow2 past.qcow2
"${QCOW2_EDIT[@]}" past.qcow2 l2 0 $(((1 << 63) | (1 << 40))) || die "edit"
fy compare a.raw past.qcow2
expect_exit 2 "L2 entry past the end of the file: exit 2" &&
  expect_stderr past.qcow2 "L2 entry past EOF: message names the file"
fy compare a.raw
check_true "compare with one image fails with exit 2 (got $RC)" test "$RC" = 2 -a -z "$CRASH"

done_testing
