#!/usr/bin/env bash
# vhd-diff: differencing VHD disks.  qemu-img cannot make them (it has no
# backing files for vpc), so vhd-vdi-tool.py builds them from the
# specification's layout on top of parents that qemu-img made and qemu-io
# filled; the expected disk is qemu-img's reading of the parent with the
# same writes made by qemu-io on a raw copy.  qemu-img compare judges.
#
# Covered: the parent found through each locator (W2ru relative, from a
# subfolder too; W2ku's file name beside the child; MacX's absolute path;
# the header's parent name alone), writes across block boundaries and
# inside one sector run, a fixed parent, a chain of two differencing
# disks, extents (the child's own sectors, the parent's, holes), a missing
# parent (the message names the path the child expects), a parent with
# another unique id, and qemu-img's own reading, which ignores the parent.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/vhd-vdi-lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
MiB=$((1 << 20))
SIZE=$((10 * MiB))

# The writes every child gets: a sector run inside one block, a run across
# the boundary of blocks 0 and 1, one sector in a block the parent has no
# data in, and the last sector of the disk.
WRITES=(0:4096:0x33 $((2 * MiB - 1024)):2048:0x44 $((7 * MiB)):512:0x55
        $((SIZE - 512)):512:0x66)
tool_writes () { local w; for w in "${WRITES[@]}"; do printf -- '--write %s ' "$w"; done; }
qio_writes () {
  local w o l b
  for w in "${WRITES[@]}"; do
    IFS=: read -r o l b <<<"$w"
    printf 'write -P %s %s %s\n' "$b" "$o" "$l"
  done
}
mapfile -t QIO_WRITES < <(qio_writes)

# expected PARENT FMT OUT: qemu-img's reading of PARENT plus the writes.
expected () {
  qemu-img convert -f "$2" -O raw "$1" "$3" || die "qemu-img convert $1"
  qio raw "$3" "${QIO_WRITES[@]}"
}

# read_child WHAT CHILD EXPECTED: ferry reads CHILD as EXPECTED.
read_child () {
  local what=$1 child=$2 exp=$3
  rm -f child.raw
  fy convert -O raw "$child" child.raw
  expect_exit 0 "$what: ferry convert" || return 1
  same_content "$what: qemu-img compare with the expected disk" child.raw raw "$exp" raw
}

for sub in dynamic fixed; do
  mkdir -p "$sub/sub"
  parent=$sub/parent.vhd
  mkimg vpc "$parent" "$SIZE" "subformat=$sub,force_size=on"
  qio vpc "$parent" "write -P 0x11 0 6M" "write -P 0x22 8M 1M" "write -z 1M 4096"
  expected "$parent" vpc "$sub/exp.raw"

  # W2ru, beside the parent and in a subfolder.
  # shellcheck disable=SC2046
  vvtool vhd-diff "$sub/child.vhd" "$parent" --locators W2ru,W2ku $(tool_writes)
  read_child "$sub parent, W2ru" "$sub/child.vhd" "$sub/exp.raw"
  check_true "$sub parent, W2ru: ferry info names the locator" \
    test "$(ferry_fact "$sub/child.vhd" format-specific.parent-found-by)" = W2ru
  check_true "$sub parent, W2ru: ferry info names the backing file" \
    test "$(ferry_fact "$sub/child.vhd" backing-filename)" = parent.vhd
  # shellcheck disable=SC2046
  vvtool vhd-diff "$sub/sub/child.vhd" "$parent" --locators W2ru $(tool_writes)
  read_child "$sub parent, W2ru from a subfolder" "$sub/sub/child.vhd" "$sub/exp.raw"

  # Convert the child to every format, through the chain.
  rm -f child.qcow2
  fy convert -O qcow2 "$sub/child.vhd" child.qcow2
  expect_exit 0 "$sub parent: differencing vhd -> qcow2"
  qemu_clean "$sub parent: differencing vhd -> qcow2: qemu-img check" child.qcow2
  same_content "$sub parent: differencing vhd -> qcow2 holds the expected disk" \
    child.qcow2 qcow2 "$sub/exp.raw" raw
  fy convert -O vhd "$sub/child.vhd" flat.vhd
  expect_exit 0 "$sub parent: differencing vhd -> dynamic vhd"
  same_content "$sub parent: the flattened vhd holds the expected disk" \
    flat.vhd vpc "$sub/exp.raw" raw
  rm -f child.qcow2 flat.vhd

  # Extents: the child's own sectors are data, the parent's unwritten
  # blocks holes, as qemu-img map sees ferry's flattened qcow2.
  fy convert -O qcow2 "$sub/child.vhd" map.qcow2
  holes=$(qemu-img map --output=json map.qcow2 | python3 -c '
import json, sys
print(sum(e["length"] for e in json.load(sys.stdin) if not e["data"]))')
  check_true "$sub parent: the flattened disk keeps the parent's holes ($holes bytes)" \
    test "$holes" -ge $((MiB))
  rm -f map.qcow2
done

# W2ku alone: the absolute Windows path means nothing here; its file name
# is looked for beside the child.
mkdir -p w2ku
cp dynamic/parent.vhd w2ku/base.vhd
# shellcheck disable=SC2046
vvtool vhd-diff w2ku/child.vhd w2ku/base.vhd --locators W2ku $(tool_writes)
read_child "W2ku only" w2ku/child.vhd dynamic/exp.raw
check_true "W2ku only: found by W2ku" \
  test "$(ferry_fact w2ku/child.vhd format-specific.parent-found-by)" = W2ku

# MacX alone: a file URL of the parent's absolute path (with a space).
mkdir -p "mac x"
cp dynamic/parent.vhd "mac x/parent disk.vhd"
# shellcheck disable=SC2046
vvtool vhd-diff macx-child.vhd "mac x/parent disk.vhd" --locators MacX $(tool_writes)
read_child "MacX only" macx-child.vhd dynamic/exp.raw

# No locator at all: the header's parent name, beside the child.
mkdir -p named
cp dynamic/parent.vhd named/the-parent.vhd
# shellcheck disable=SC2046
vvtool vhd-diff named/child.vhd named/the-parent.vhd --locators "" $(tool_writes)
read_child "the header's parent name only" named/child.vhd dynamic/exp.raw

# A chain: a differencing disk over a differencing disk.
cp dynamic/child.vhd dynamic/mid.vhd
vvtool vhd-diff dynamic/top.vhd dynamic/mid.vhd --write $((3 * MiB)):1024:0x77
cp dynamic/exp.raw top-exp.raw
qio raw top-exp.raw "write -P 0x77 $((3 * MiB)) 1024"
read_child "a chain of two differencing disks" dynamic/top.vhd top-exp.raw
fy info dynamic/top.vhd
check_true "a chain: ferry info shows three layers" \
  test "$(grep -c '^image:' "$OUT")" = 3

# A missing parent: the message names the path the child expects.
mkdir -p lost/vms
cp dynamic/parent.vhd lost/parent.vhd
# shellcheck disable=SC2046
vvtool vhd-diff lost/vms/child.vhd lost/parent.vhd --locators W2ru,W2ku \
  $(tool_writes)
rm lost/parent.vhd
fy convert -O raw lost/vms/child.vhd lost.raw
expect_failure "missing parent: refused" child.vhd
expect_stderr "lost/vms/../parent.vhd" \
  "missing parent: the message names the path the child expects"
expect_stderr "W2ru" "missing parent: the message names the locator"
check_true "missing parent: no target left" test ! -e lost.raw

# A parent with another unique id (the child was made from another disk).
# shellcheck disable=SC2046
vvtool vhd-diff dynamic/wrong.vhd dynamic/parent.vhd --wrong-uuid $(tool_writes)
fy info dynamic/wrong.vhd
expect_failure "a parent with another unique id: refused" wrong.vhd
expect_stderr "unique id" "a parent with another unique id: the message says so"

# qemu-img 7.2 opens a differencing VHD as if it were dynamic and never
# reads its parent: the parent's data is missing from its reading.  ferry
# reads the parent, which is what the disk holds (above).
if qemu-img compare -f vpc -F raw dynamic/child.vhd dynamic/exp.raw >/dev/null 2>&1; then
  not_ok "qemu-img was expected to ignore the parent of a differencing vhd (update this test)"
else
  ok "qemu-img 7.2 ignores the parent of a differencing vhd; ferry reads it"
fi

# Writing into a differencing disk is refused with a clear message.
head -c $SIZE /dev/zero >zero.raw
fy convert -n -O vhd zero.raw dynamic/child.vhd
expect_exit 1 "-n into a differencing vhd is refused"
expect_stderr "differencing" "-n into a differencing vhd: the message says why"

done_testing
