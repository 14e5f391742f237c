#!/usr/bin/env bash
# bad-input: damaged and hostile qcow2 files.  Each one, given to ferry info
# and ferry convert, must get exit status 1 and a message naming the file,
# with no crash, no sanitizer report, no huge allocation (an address-space
# limit and a peak-memory bound in plain builds, ASan's allocation limit in
# sanitized ones), and no target left behind.  Damage is planted with
# qcow2-edit.py into images qemu-img made.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3 timeout

cd "$WORK" || die "cd $WORK"
edit () { "${QCOW2_EDIT[@]}" "$@" || die "qcow2-edit.py $*"; }
field () { edit "$1" header | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"; }

mkimg qcow2 good.qcow2 4M
qio qcow2 good.qcow2 "write -P 0x11 0 128k" "write -P 0x22 1m 64k" "write -c -P 0x33 2m 64k" \
  "write -P 0x44 3m 64k"
mkimg qcow2 good2.qcow2 4M compat=0.10
qio qcow2 good2.qcow2 "write -P 0x11 0 128k"

# refuse WHAT IMG MODES ERE: ferry info and ferry convert both refuse IMG
# (exit 1, message naming it, and ferry convert's message naming the
# structure and what is wrong: it matches the extended regular expression
# ERE), and ferry check does not pass it.  MODES
# (space-separated) info-may-pass: info may also read it (for damage only the data path can
# see), but never crash; check-may-pass: the metadata is sound, so check
# may pass it.
refuse () {
  local what=$1 img=$2 mode=$3 ere=$4
  mkdir -p out && rm -rf out/*
  fy info "$img"
  if [[ " $mode " == *" info-may-pass "* ]] && [ -z "$CRASH" ] && [ "$RC" = 0 ]; then
    ok "$what: ferry info reads the header (the damage is further in)"
  else
    expect_failure "$what: ferry info" "$img"
  fi
  fy info -f qcow2 --json "$img"
  if [[ " $mode " == *" info-may-pass "* ]] && [ -z "$CRASH" ] && [ "$RC" = 0 ]; then
    ok "$what: ferry info -f qcow2 --json reads the header"
  else
    expect_failure "$what: ferry info -f qcow2 --json" "$img"
  fi
  fy convert -O raw "$img" out/x.raw
  expect_failure "$what: ferry convert -O raw" "$img"
  expect_stderr_re "^ferry convert: $(basename "$img"): .*$ere" "$what: the message says what is wrong where"
  fy convert -f qcow2 -O qcow2 "$img" out/x.qcow2
  expect_failure "$what: ferry convert -O qcow2" "$img"
  if [ -z "$(ls -A out)" ]; then
    ok "$what: no target and no temporary file left"
  else
    not_ok "$what: left behind: $(ls -A out | tr '\n' ' ')"
  fi
  fy check "$img"
  if [[ " $mode " == *" check-may-pass "* ]] && [ -z "$CRASH" ]; then
    ok "$what: ferry check (exit $RC) does not crash"
  elif [ -z "$CRASH" ] && [ "$RC" != 0 ]; then
    ok "$what: ferry check does not pass it (exit $RC)"
  else
    not_ok "$what: ferry check" "$(last_run)"
  fi
}
# damage NAME FROM EDIT...: copy FROM to NAME and apply one qcow2-edit.py
# command.
damage () {
  local name=$1 from=$2
  shift 2
  cp "$from" "$name"
  edit "$name" "$@"
}

# --- truncated files ----------------------------------------------------------
for n in 8 20 50 71; do
  head -c $n good2.qcow2 >trunc$n-v2.qcow2
  refuse "v2 header truncated to $n bytes" trunc$n-v2.qcow2 "" "qcow2 header at offset 0x0 is truncated"
done
for n in 80 103; do
  head -c $n good.qcow2 >trunc$n.qcow2
  refuse "v3 header truncated to $n bytes" trunc$n.qcow2 "" "qcow2 header at offset 0x0 is truncated"
done
head -c 65536 good.qcow2 >trunc-cluster.qcow2
refuse "file cut after the header cluster (tables gone)" trunc-cluster.qcow2 "" 'L1 table at offset 0x30000 .*runs past the end of the file'
head -c $(($(stat -c %s good.qcow2) - 65536)) good.qcow2 >trunc-data.qcow2
refuse "file cut in the data clusters" trunc-data.qcow2 info-may-pass 'points to a data cluster at offset 0x[0-9a-f]+ past the end of the file'
: >empty.qcow2
fy info -f qcow2 empty.qcow2
expect_failure "empty file as qcow2: ferry info -f qcow2" empty.qcow2
fy convert -f qcow2 -O raw empty.qcow2 out/e.raw
expect_failure "empty file as qcow2: ferry convert -f qcow2" empty.qcow2

# --- tables past the end of the file --------------------------------------------
damage l1-past-eof.qcow2 good.qcow2 set l1_table_offset $((1 << 40))
refuse "L1 table past the end of the file" l1-past-eof.qcow2 "" 'L1 table at offset 0x10000000000 .*runs past the end of the file'
damage l1-unaligned.qcow2 good.qcow2 set l1_table_offset $(($(field good.qcow2 l1_table_offset) + 8))
refuse "L1 table offset not aligned to a cluster" l1-unaligned.qcow2 "" 'L1 table at offset 0x[0-9a-f]+ is not aligned to the cluster size'
damage rt-past-eof.qcow2 good.qcow2 set refcount_table_offset $((1 << 40))
refuse "refcount table past the end of the file" rt-past-eof.qcow2 info-may-pass 'refcount table at offset 0x10000000000 .*runs past the end of the file'
damage l2-past-eof.qcow2 good.qcow2 l1 0 $(((1 << 63) | (1 << 40)))
refuse "L2 table past the end of the file" l2-past-eof.qcow2 info-may-pass 'L1 entry 0 .*points to an L2 table at offset 0x10000000000 past the end of the file'
damage data-past-eof.qcow2 good.qcow2 l2 65536 $(((1 << 63) | (1 << 40)))
refuse "L2 entry (data cluster) past the end of the file" data-past-eof.qcow2 info-may-pass 'L2 entry 1 of the L2 table of L1 entry 0 points to a data cluster at offset 0x10000000000 past the end of the file'
damage comp-past-eof.qcow2 good.qcow2 l2 $((2 << 20)) $(((1 << 62) | (1 << 40)))
refuse "compressed cluster past the end of the file" comp-past-eof.qcow2 info-may-pass 'L2 entry 32 of the L2 table of L1 entry 0 points to compressed data at offset 0x10000000000 outside the file'
damage l2-unaligned.qcow2 good.qcow2 l2 65536 $(((1 << 63) | ($(edit good.qcow2 host 65536) + 512)))
refuse "data cluster offset not aligned" l2-unaligned.qcow2 info-may-pass 'L2 entry 1 of the L2 table of L1 entry 0 points to offset 0x[0-9a-f]+, which is not aligned to a cluster'

# --- clusters claimed twice ------------------------------------------------------
damage twice-data.qcow2 good.qcow2 l2 0 "$(edit good.qcow2 l2 $((1 << 20)))"
refuse "two L2 entries claim one data cluster" twice-data.qcow2 info-may-pass 'L2 entry [0-9]+ of the L2 table of L1 entry 0 points to the host cluster at offset 0x[0-9a-f]+, which is also a data cluster of another L2 entry'
damage twice-meta.qcow2 good.qcow2 l2 0 $(((1 << 63) | $(field good.qcow2 l1_table_offset)))
refuse "an L2 entry claims the L1 table's cluster" twice-meta.qcow2 info-may-pass "L2 entry 0 of the L2 table of L1 entry 0 points to the host cluster at offset 0x$(printf %x "$(field good.qcow2 l1_table_offset)"), which is also metadata"
damage twice-header.qcow2 good.qcow2 l2 0 $(((1 << 63) | $(field good.qcow2 refcount_table_offset)))
refuse "an L2 entry claims the refcount table's cluster" twice-header.qcow2 info-may-pass "L2 entry 0 of the L2 table of L1 entry 0 points to the host cluster at offset 0x$(printf %x "$(field good.qcow2 refcount_table_offset)"), which is also metadata"
damage l1-on-rt.qcow2 good.qcow2 set l1_table_offset "$(field good.qcow2 refcount_table_offset)"
refuse "the L1 table overlaps the refcount table" l1-on-rt.qcow2 info-may-pass 'refcount table at offset 0x[0-9a-f]+ overlaps metadata'
mkimg qcow2 two-l2.qcow2 2G
qio qcow2 two-l2.qcow2 "write -P 1 0 64k" "write -P 2 1g 64k"
edit two-l2.qcow2 l1 1 "$(edit two-l2.qcow2 l1 0)"
refuse "two L1 entries claim one L2 table" two-l2.qcow2 info-may-pass 'the L2 table of L1 entry 1 at offset 0x[0-9a-f]+ is also metadata'

# --- absurd sizes -------------------------------------------------------------------
for l1 in $((1 << 31)) $(((1 << 31) - 1)) $((1 << 28)) $((1 << 25))  $((0xffffffff)); do
  damage l1size-$l1.qcow2 good.qcow2 set l1_size $l1
  refuse "l1_size $l1" l1size-$l1.qcow2 "" "L1 table at offset 0x[0-9a-f]+ has $l1 entries, more than the limit"
done
damage l1size-small.qcow2 good.qcow2 set l1_size 0
refuse "l1_size 0 for a 4 MiB disk with data" l1size-small.qcow2 "" 'L1 table at offset 0x[0-9a-f]+ has 0 entries, too few for the virtual size'
for size in 0x8000000000000000 0xfffffffffffffe00 0x4000000000000000; do
  damage size-$size.qcow2 good.qcow2 set size $size
  refuse "virtual size $size" size-$size.qcow2 "" "qcow2 header at offset 0x18 has a virtual size of $(printf %u "$size") bytes, which needs an L1 table larger than"
done
for bits in 0 8 22 31 63; do
  damage cbits-$bits.qcow2 good.qcow2 set cluster_bits $bits
  refuse "cluster_bits $bits" cbits-$bits.qcow2 "" "qcow2 header at offset 0x14 has cluster_bits $bits"
done
damage rorder.qcow2 good.qcow2 set refcount_order 7
refuse "refcount_order 7" rorder.qcow2 "" 'qcow2 header at offset 0x60 has refcount_order 7'
damage rtc.qcow2 good.qcow2 set refcount_table_clusters $((0xffffffff))
refuse "refcount_table_clusters 2^32-1" rtc.qcow2 "" 'refcount table at offset 0x[0-9a-f]+ has 4294967295 clusters'
damage hlen-big.qcow2 good.qcow2 set header_length $((1 << 20))
refuse "header_length larger than a cluster" hlen-big.qcow2 "" 'qcow2 header at offset 0x64 has header_length 1048576'
damage hlen-small.qcow2 good.qcow2 set header_length 50
refuse "header_length shorter than a v3 header" hlen-small.qcow2 "" 'qcow2 header at offset 0x64 has header_length 50'
damage snaps.qcow2 good.qcow2 set nb_snapshots $((0xffffffff))
edit snaps.qcow2 set snapshots_offset $((1 << 40))
refuse "2^32-1 snapshots past the end of the file" snaps.qcow2 "" 'snapshot table at offset 0x10000000000 has 4294967295 entries'
damage crypt.qcow2 good.qcow2 set crypt_method 1
refuse "encrypted (AES) image" crypt.qcow2 "info-may-pass check-may-pass" 'qcow2 header at offset 0x20: the image is encrypted'
damage version.qcow2 good.qcow2 set version 4
refuse "qcow2 version 4" version.qcow2 "" 'qcow2 header at offset 0x0 has version 4'

# --- backing files --------------------------------------------------------------------
mkimg qcow2 bf-long.qcow2 4M "backing_file=good.qcow2,backing_fmt=qcow2"
cp bf-long.qcow2 bf-past.qcow2
edit bf-past.qcow2 set backing_file_offset $((1 << 40))
refuse "backing file name past the end of the file" bf-past.qcow2 "" 'backing file name at offset 0x10000000000 .* is outside the header cluster'
cp bf-long.qcow2 bf-size.qcow2
edit bf-size.qcow2 set backing_file_size $((0xffffffff))
refuse "backing file name of 2^32-1 bytes" bf-size.qcow2 "" 'backing file name at offset 0x[0-9a-f]+ has a length of 4294967295 bytes'

mkimg qcow2 gone.qcow2 4M
mkimg qcow2 missing.qcow2 4M "backing_file=gone.qcow2,backing_fmt=qcow2"
rm gone.qcow2
fy convert -O raw missing.qcow2 out/m.raw
expect_failure "missing backing file: ferry convert" missing.qcow2
expect_stderr gone.qcow2 "missing backing file: the message names it"
fy compare missing.qcow2 good.qcow2
expect_exit 2 "missing backing file: ferry compare exits 2"

# a.qcow2 -> b.qcow2 -> a.qcow2, and an image that is its own backing file.
# (qemu-img 7.2 never returns on these: ferry must.)
mkimg qcow2 loop-a.qcow2 4M
mkimg qcow2 loop-b.qcow2 4M "backing_file=loop-a.qcow2,backing_fmt=qcow2"
qemu-img rebase -q -u -f qcow2 -b loop-b.qcow2 -F qcow2 loop-a.qcow2 || die "rebase -u"
mkimg qcow2 self.qcow2 4M
qemu-img rebase -q -u -f qcow2 -b self.qcow2 -F qcow2 self.qcow2 || die "rebase -u"
for img in loop-a.qcow2 self.qcow2; do
  for cmd in "info" "info --json" "convert -O raw" "compare"; do
    case $cmd in
      convert*) args=($cmd "$img" out/l.raw) ;;
      compare) args=(compare "$img" good.qcow2) ;;
      *) args=($cmd "$img") ;;
    esac
    FY_TIMEOUT=20 fy "${args[@]}"
    want=1
    [ "$cmd" = compare ] && want=2
    if [ "$RC" = 124 ]; then
      not_ok "backing loop $img: ferry $cmd did not return within 20 s"
    elif [ "$RC" = "$want" ] && [ -z "$CRASH" ] && grep -q -F loop "$ERR"; then
      ok "backing loop $img: ferry $cmd refuses it and says it loops"
    else
      not_ok "backing loop $img: ferry $cmd: expected exit $want and a message about the loop" "$(last_run)"
    fi
  done
done

# --- damaged images as the target of convert -n ----------------------------------
# ferry writes into an existing image in place, where its tables point, so
# it must refuse one whose tables point somewhere wrong before it writes a
# byte, even where the copy would not reach (two-l2: the second L1 entry),
# and leave the file exactly as it was.
mkimg raw src4.raw 4M
qio raw src4.raw "write -P 0x66 0 4m"
# Extended L2 entries whose subcluster bitmaps lie: subcluster 0 both
# allocated and zero; subclusters allocated in an entry with no cluster.
# put_bitmap IMG INDEX VALUE: write the bitmap word of L2 entry INDEX of
# the first L2 table.
put_bitmap () {
  local l2
  l2=$(($(edit "$1" l1 0) & 0x00fffffffffffe00))
  python3 -c '
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); f.write(struct.pack(">Q", int(sys.argv[3], 0)))' \
    "$1" $((l2 + 16 * $2 + 8)) "$3" || die "put_bitmap $*"
}
mkimg qcow2 extl2.qcow2 4M extended_l2=on
qio qcow2 extl2.qcow2 "write -P 0x11 0 64k" "write -P 0x12 128k 4k"
cp extl2.qcow2 extl2-both.qcow2
put_bitmap extl2-both.qcow2 0 0x00000001ffffffff
cp extl2.qcow2 extl2-nohost.qcow2
put_bitmap extl2-nohost.qcow2 1 0x0000000000000003
# The undamaged one takes the copy (so the checks below do not refuse
# everything).
cp extl2.qcow2 out/target.qcow2
fy convert -n -O qcow2 src4.raw out/target.qcow2
if expect_exit 0 "an undamaged extended L2 image as the target of convert -n"; then
  same_content "an undamaged extended L2 target: qemu-img compare" src4.raw raw out/target.qcow2 qcow2
  qemu_clean "an undamaged extended L2 target: qemu-img check" out/target.qcow2
fi
for t in "l2-unaligned:not aligned to a cluster" \
    "data-past-eof:points to a data cluster at offset 0x10000000000 that is past the end of the file" \
    "comp-past-eof:points to compressed data at offset 0x10000000000 outside the file" \
    "l2-past-eof:points to an L2 table at offset 0x10000000000 past the end of the file" \
    "twice-data:which is also a data cluster of another L2 entry" \
    "twice-meta:which is also metadata" \
    "two-l2:the L2 table of L1 entry 1 at offset 0x[0-9a-f]+ is also metadata" \
    "l1-on-rt:refcount table at offset 0x[0-9a-f]+ overlaps metadata" \
    "extl2-both:L2 entry 0 of the L2 table of L1 entry 0 has the subcluster bitmap 0x00000001ffffffff, which marks subclusters both allocated and zero" \
    "extl2-nohost:L2 entry 1 of the L2 table of L1 entry 0 has the subcluster bitmap 0x0000000000000003, which marks subclusters allocated without a host cluster"; do
  name=${t%%:*}
  ere=${t#*:}
  cp "$name.qcow2" out/target.qcow2
  fy convert -n -O qcow2 src4.raw out/target.qcow2
  expect_failure "$name as the target of convert -n" out/target.qcow2
  expect_stderr_re "$ere" "$name as the target of convert -n: the message says what is wrong"
  if cmp -s "$name.qcow2" out/target.qcow2; then
    ok "$name as the target of convert -n: the file is untouched"
  else
    not_ok "$name as the target of convert -n: the file was changed" \
      "$(cmp "$name.qcow2" out/target.qcow2 2>&1 | head -n 3)"
  fi
done
rm -rf out/*

# --- feature bits ---------------------------------------------------------------------
for bit in 5 9 40 63; do
  damage incompat-$bit.qcow2 good.qcow2 set incompatible_features $((1 << bit))
  refuse "unknown incompatible feature bit $bit" incompat-$bit.qcow2 "" "qcow2 header at offset 0x48 has the unknown incompatible feature bit $bit"
done
fy info incompat-40.qcow2
expect_stderr_re 'feature' "unknown incompatible feature: the message says 'feature'"
damage ctype.qcow2 good.qcow2 set incompatible_features 8
edit ctype.qcow2 set compression_type 7
refuse "unknown compression type 7" ctype.qcow2 "" 'qcow2 header at offset 0x68 has the unknown compression_type 7'
# Unknown compatible and autoclear bits are allowed: the image stays readable.
damage compat-bit.qcow2 good.qcow2 set compatible_features $((1 << 40))
convert_and_judge "unknown compatible feature bit: still read" compat-bit.qcow2 qcow2 out/c.raw raw
damage autoclear-bit.qcow2 good.qcow2 set autoclear_features $((1 << 40))
convert_and_judge "unknown autoclear feature bit: still read" autoclear-bit.qcow2 qcow2 out/a.raw raw
rm -rf out/*

# --- not an image at all -----------------------------------------------------------
mkdir -p adir
fy info adir
expect_failure "a directory: ferry info" adir
fy convert -O raw adir out/d.raw
expect_failure "a directory: ferry convert" adir
fy info -f qcow2 good.qcow2.nosuch
expect_failure "a missing file: ferry info" good.qcow2.nosuch

done_testing
