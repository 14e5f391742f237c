#!/usr/bin/env bash
# check: ferry check classifies an image the way qemu-img check does: exit
# 0 clean, 2 corruption, 3 leaks only, 1 when it could not check.  Clean
# images of every shape; copies damaged by qcow2-edit.py in one known way
# each (a refcount zeroed, an L2 entry past the end of the file, two L2
# entries sharing a cluster, an L2 table shared by two L1 entries, a
# refcount too high, a cluster with a refcount and no user, an L1, L2 or
# refcount table past the end of the file, the L1 table on the refcount
# table); ferry's report must name each problem.  For each
# damaged copy the test first makes sure qemu-img check sees what was
# planted, then asks ferry.  Faults in the header are found by open and
# check alike, in the same words (one decoder, qcow2-header.c).
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
edit () { "${QCOW2_EDIT[@]}" "$@" || die "qcow2-edit.py $*"; }

# qemu_check_rc IMG: qemu-img check's exit status.
qemu_check_rc () {
  local rc=0
  qemu-img check -f qcow2 "$1" >"$WORK/.qcheck" 2>&1 || rc=$?
  echo $rc
}

# expect_check WHAT IMG WANT: qemu-img check exits WANT (else the planted
# damage is not what the test thinks, and the test stops), then ferry
# check must exit WANT too; --json must give one JSON object.
expect_check () {
  local what=$1 img=$2 want=$3 q
  q=$(qemu_check_rc "$img")
  [ "$q" = "$want" ] || die "$what: qemu-img check exits $q, the test planted $want: $(cat "$WORK/.qcheck")"
  fy check "$img"
  if [ -n "$CRASH" ] || [ "$RC" != "$want" ]; then
    expect_exit "$want" "$what: ferry check"
    echo "#   qemu-img check says:"; sed 's/^/#   /' "$WORK/.qcheck"
  else
    ok "$what: ferry check exits $want like qemu-img check"
    if [ "$want" != 0 ]; then
      check_true "$what: ferry check says what it found" test -s "$OUT" -o -s "$ERR"
    fi
  fi
  fy check --json "$img"
  if [ -z "$CRASH" ] && [ "$RC" = "$want" ] &&
     python3 -c 'import json, sys; assert isinstance(json.load(open(sys.argv[1])), dict)' "$OUT" 2>/dev/null; then
    ok "$what: ferry check --json exits $want with one JSON object"
  else
    not_ok "$what: ferry check --json" "$(last_run)"
  fi
}

# check_says WHAT IMG ERE: ferry check's report on IMG names the problem:
# a line matches the extended regular expression ERE.
check_says () {
  fy check "$2"
  if [ -z "$CRASH" ] && grep -q -E -- "$3" "$OUT"; then
    ok "$1: ferry check names it"
  else
    not_ok "$1: no line of ferry check matches /$3/" "$(last_run)"
  fi
}

# --- clean images ----------------------------------------------------------
n=0
for opts in "compat=0.10" "cluster_size=512" "cluster_size=2M" "compression_type=zstd" \
    "extended_l2=on" "refcount_bits=1" "refcount_bits=64" "lazy_refcounts=on" \
    "data_file=clean.data"; do
  n=$((n + 1))
  case $opts in
    cluster_size=512) cs=512 size=$((4 << 20)) ;;
    cluster_size=2M) cs=$((2 << 20)) size=$((17 << 20)) ;;
    *) cs=65536 size=$((6 << 20)) ;;
  esac
  compress=compress
  case $opts in refcount_bits=1 | data_file=*) compress="" ;; esac
  mkimg qcow2 clean$n.qcow2 $size "$opts"
  fill_pattern qcow2 clean$n.qcow2 $cs $size $compress
  expect_check "clean, $opts" clean$n.qcow2 0
  rm -f clean$n.qcow2 clean.data
done
mkimg qcow2 snap.qcow2 4M
qio qcow2 snap.qcow2 "write -P 1 0 1m"
qemu-img snapshot -c s1 snap.qcow2 || die "snapshot"
qio qcow2 snap.qcow2 "write -P 2 512k 1m"
expect_check "clean, with a snapshot sharing clusters" snap.qcow2 0
mkimg qcow2 empty.qcow2 1T
expect_check "clean, empty 1 TiB" empty.qcow2 0
mkimg qcow2 over.qcow2 4M "backing_file=snap.qcow2,backing_fmt=qcow2"
qio qcow2 over.qcow2 "write -P 3 0 64k"
expect_check "clean, an overlay" over.qcow2 0

# --- damaged copies ----------------------------------------------------------------
mkimg qcow2 good.qcow2 4M
qio qcow2 good.qcow2 "write -P 0x11 0 128k" "write -P 0x22 1m 64k" "write -P 0x33 2m 64k"
host=$(edit good.qcow2 host 0)
[ "$host" -gt 0 ] || die "no host cluster for guest 0"

cp good.qcow2 d1.qcow2
edit d1.qcow2 refcount "$host" 0
expect_check "refcount of a data cluster zeroed" d1.qcow2 2
check_says "refcount of a data cluster zeroed" d1.qcow2 "^d1.qcow2: cluster 0x$(printf %x "$host"): refcount 0, referenced 1\$"

cp good.qcow2 d2.qcow2
edit d2.qcow2 l2 0 $(((1 << 63) | (1 << 30)))
expect_check "L2 entry past the end of the file" d2.qcow2 2
check_says "L2 entry past the end of the file" d2.qcow2 'data cluster at 0x40000000 \(guest offset 0x0\) points past the end of the file'

cp good.qcow2 d3.qcow2
edit d3.qcow2 l2 65536 "$(edit d3.qcow2 l2 $((1 << 20)))"
expect_check "two L2 entries share a data cluster" d3.qcow2 2
check_says "two L2 entries share a data cluster" d3.qcow2 'refcount 1, referenced 2$'

cp good.qcow2 d4.qcow2
l1=$(edit d4.qcow2 header | python3 -c 'import json,sys; print(json.load(sys.stdin)["l1_table_offset"])')
edit d4.qcow2 l2 0 $(((1 << 63) | l1))
expect_check "an L2 entry points at the L1 table" d4.qcow2 2
check_says "an L2 entry points at the L1 table" d4.qcow2 "data cluster at 0x$(printf %x "$l1") .*overlaps the active L1 table"

mkimg qcow2 big.qcow2 2G
qio qcow2 big.qcow2 "write -P 1 0 64k" "write -P 2 1g 64k"
cp big.qcow2 d5.qcow2
edit d5.qcow2 l1 1 "$(edit d5.qcow2 l1 0)"
expect_check "two L1 entries share an L2 table" d5.qcow2 2

cp good.qcow2 d6.qcow2
edit d6.qcow2 refcount 0 0
expect_check "refcount of the header cluster zeroed" d6.qcow2 2

cp good.qcow2 d7.qcow2
rt=$(edit d7.qcow2 header | python3 -c 'import json,sys; print(json.load(sys.stdin)["refcount_table_offset"])')
python3 -c '
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); f.write(struct.pack(">Q", 1 << 40))' d7.qcow2 "$rt"
expect_check "refcount block past the end of the file" d7.qcow2 2
check_says "refcount block past the end of the file" d7.qcow2 'refcount block at 0x10000000000 .*points past the end of the file'

# A refcount too high on a cluster in use: a leak, and a COPIED flag that
# no longer agrees (qemu-img counts both).
cp good.qcow2 d12.qcow2
edit d12.qcow2 refcount "$host" 2
expect_check "refcount 2 on a data cluster with one user" d12.qcow2 2
check_says "refcount 2 on a data cluster with one user" d12.qcow2 "cluster 0x$(printf %x "$host") is leaked: refcount 2, referenced 1"
check_says "refcount 2 on a data cluster with one user: COPIED" d12.qcow2 "data cluster at 0x$(printf %x "$host") has refcount 2 but an active L2 entry has the COPIED flag set"

# Tables out of bounds, and metadata overlapping metadata.
cp good.qcow2 d8.qcow2
edit d8.qcow2 set l1_table_offset $((1 << 40))
expect_check "L1 table past the end of the file" d8.qcow2 2
check_says "L1 table past the end of the file" d8.qcow2 'L1 table at 0x10000000000 .*past the end of the file'
cp good.qcow2 d9.qcow2
edit d9.qcow2 l1 0 $(((1 << 63) | (1 << 40)))
expect_check "L2 table past the end of the file" d9.qcow2 2
check_says "L2 table past the end of the file" d9.qcow2 'L2 table at 0x10000000000 \(L1 index 0\) points past the end of the file'
cp good.qcow2 d10.qcow2
edit d10.qcow2 set refcount_table_offset $((1 << 40))
expect_check "refcount table past the end of the file" d10.qcow2 2
check_says "refcount table past the end of the file" d10.qcow2 'refcount table at 0x10000000000 .*past the end of the file'
cp good.qcow2 d11.qcow2
edit d11.qcow2 set l1_table_offset "$rt"
expect_check "the L1 table overlaps the refcount table" d11.qcow2 2
check_says "the L1 table overlaps the refcount table" d11.qcow2 "L1 table at 0x$(printf %x "$rt") overlaps the refcount table"

cp good.qcow2 l1.qcow2
new=$(edit l1.qcow2 append-cluster)
edit l1.qcow2 refcount "$new" 1
expect_check "a cluster with a refcount and no user (leak)" l1.qcow2 3
check_says "a cluster with a refcount and no user (leak)" l1.qcow2 "cluster 0x$(printf %x "$new") is leaked: refcount 1, referenced 0"

cp good.qcow2 l2.qcow2
for i in 1 2 3; do
  new=$(edit l2.qcow2 append-cluster)
  edit l2.qcow2 refcount "$new" 1
done
expect_check "three leaked clusters" l2.qcow2 3

# --- the header: one decoder for open and check --------------------------------------
# A fault in the header is found by ferry info (open) and ferry check alike,
# in the same words: check reports open's message as one line (exit 2),
# and what open cannot read at all check cannot check (exit 1).  Some of
# these qemu-img opens (it reads a backing name up to a NUL, takes a name
# of no bytes for none, ignores a data file name without its bit); ferry
# refuses them, and so its check reports them.
# same_fault WHAT IMG [RC]: ferry info refuses IMG; ferry check exits RC
# (default 2) with open's message as a line of its report.
same_fault () {
  local what=$1 img=$2 want=${3:-2} msg
  fy info "$img"
  expect_failure "$what: ferry info refuses it" "$img" || return
  msg=$(sed -n "s|^ferry info: $img: ||p" "$ERR")
  fy check "$img"
  expect_exit "$want" "$what: ferry check exits $want" || return
  if [ "$want" = 1 ]; then
    check_true "$what: ferry check gives open's message" grep -q -F -x "ferry check: $img: $msg" "$ERR"
  else
    check_true "$what: ferry check reports open's message" grep -q -F -x "$img: $msg" "$OUT"
  fi
}
mkimg qcow2 hb.qcow2 1M
mkimg qcow2 hh.qcow2 1M "backing_file=hb.qcow2,backing_fmt=qcow2"
bf=$(edit hh.qcow2 header | python3 -c 'import json,sys; print(json.load(sys.stdin)["backing_file_offset"])')
cp hh.qcow2 h-nul.qcow2
printf '\0' | dd of=h-nul.qcow2 bs=1 seek=$((bf + 1)) conv=notrunc status=none
same_fault "a NUL byte in the backing file name" h-nul.qcow2
cp hh.qcow2 h-len0.qcow2
edit h-len0.qcow2 set backing_file_size 0
same_fault "a backing file name of no bytes" h-len0.qcow2
cp hh.qcow2 h-past.qcow2
edit h-past.qcow2 set backing_file_offset $((1 << 40))
same_fault "a backing file name past the header cluster" h-past.qcow2
mkimg qcow2 h-df.qcow2 1M data_file=h-df.data
edit h-df.qcow2 set incompatible_features 0
same_fault "a data file name without the external data file bit" h-df.qcow2
mkimg qcow2 h-ct.qcow2 1M
edit h-ct.qcow2 set incompatible_features 8
same_fault "the compression type bit without a compression type" h-ct.qcow2
mkimg qcow2 h-x.qcow2 1M cluster_size=4096
edit h-x.qcow2 set incompatible_features 16
same_fault "extended L2 entries with 4 KiB clusters" h-x.qcow2
# field_fault WHAT FIELD VALUE [RC]: same_fault on a clean image with one
# header field set to VALUE.
mkimg qcow2 h-good.qcow2 1M
n=0
field_fault () {
  n=$((n + 1))
  cp h-good.qcow2 "h-$n.qcow2"
  edit "h-$n.qcow2" set "$2" "$3"
  same_fault "$1" "h-$n.qcow2" "${4:-2}"
}
field_fault "refcount_order 7" refcount_order 7
field_fault "header_length 50" header_length 50
field_fault "an L1 table too short for the virtual size" size $((1 << 40))
field_fault "cluster_bits 8" cluster_bits 8
field_fault "version 4" version 4 1
field_fault "an unknown incompatible feature" incompatible_features $((1 << 9)) 1

# --- could not check ---------------------------------------------------------------
fy check nosuch.qcow2
expect_failure "ferry check on a missing file" nosuch.qcow2
head -c 40 good.qcow2 >trunc.qcow2
fy check -f qcow2 trunc.qcow2
if [ -z "$CRASH" ] && { [ "$RC" = 1 ] || [ "$RC" = 2 ]; }; then
  ok "ferry check on a truncated header: exit $RC"
else
  not_ok "ferry check on a truncated header: exit $RC, expected 1 or 2" "$(last_run)"
fi

done_testing
