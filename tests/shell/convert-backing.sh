#!/usr/bin/env bash
# convert-backing: backing chains are read through to the bottom.  A chain
# of depth 3 over a raw base (layers of different cluster sizes and
# versions, with zero writes and discards that hide the data below),
# a qcow2 base, a backing file shorter and one longer than the overlay,
# and backing names relative to the overlay's directory.  Every chain is
# flattened to raw and to qcow2 and judged by qemu-img compare against the
# top of the chain, which qemu-img reads through as well.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"

flatten () {
  convert_and_judge "$1: -> raw" "$2" qcow2 flat.raw raw
  convert_and_judge "$1: -> qcow2" "$2" qcow2 flat.qcow2 qcow2
  if [ -f flat.qcow2 ]; then
    check_true "$1: flattened qcow2 has no backing file" \
      test -z "$(qinfo flat.qcow2 qcow2 backing-filename)"
  fi
  rm -f flat.raw flat.qcow2
}

size=$((6 << 20))

# --- depth 3 over a raw base --------------------------------------------------
mkimg raw base.raw $size
qio raw base.raw "write -s $RAND 0 $size"
mkimg qcow2 l1.qcow2 $size "backing_file=base.raw,backing_fmt=raw,cluster_size=65536"
qio qcow2 l1.qcow2 "write -P 0x11 64k 128k" "write -z 1m 1m" "discard 2m 64k" \
  "write -P 0x12 $((3 << 20)) 1000k"
mkimg qcow2 l2.qcow2 $size "backing_file=l1.qcow2,backing_fmt=qcow2,cluster_size=4096,compat=0.10"
qio qcow2 l2.qcow2 "write -P 0x21 96k 8k" "write -P 0x22 $(((1 << 20) + 4096)) 4096" \
  "write -z $((3 << 20)) 64k" "write -c -P 0x23 $((4 << 20)) 4k"
mkimg qcow2 top.qcow2 $size "backing_file=l2.qcow2,backing_fmt=qcow2,cluster_size=1048576"
qio qcow2 top.qcow2 "write -P 0x31 $((5 << 20)) 512" "write -z $((4 << 20)) 4096" \
  "write -s $RAND $(((1 << 20) - 512)) 1024"
flatten "depth 3 over raw" top.qcow2
flatten "depth 2 over raw" l2.qcow2
flatten "depth 1 over raw" l1.qcow2

# -f given explicitly applies to the top image only; the layers below keep
# the formats they record.
rm -f out.raw
fy convert -f qcow2 -O raw top.qcow2 out.raw
expect_exit 0 "-f qcow2 on a chain with a raw base"
[ -f out.raw ] && same_content "-f qcow2 on a chain: qemu-img compare" top.qcow2 qcow2 out.raw raw

# --- qcow2 base with compressed clusters, short and long backing files ----------
mkimg qcow2 qbase.qcow2 2M "cluster_size=512"
qio qcow2 qbase.qcow2 "write -c -P 0x41 1m 512" "write -s $RAND 0 1m" \
  "write -s $RAND $(((1 << 20) + 512)) $(((1 << 20) - 512))"
mkimg qcow2 longer.qcow2 $size "backing_file=qbase.qcow2,backing_fmt=qcow2"
qio qcow2 longer.qcow2 "write -P 0x42 $((5 << 20)) 64k" "write -P 0x43 $((2 << 20)) 512"
flatten "backing file shorter than the overlay" longer.qcow2

mkimg qcow2 shorter.qcow2 1M "backing_file=qbase.qcow2,backing_fmt=qcow2,cluster_size=2097152"
qio qcow2 shorter.qcow2 "write -P 0x44 512 512"
flatten "backing file longer than the overlay" shorter.qcow2

# --- relative names resolve against the overlay's directory ---------------------
mkdir -p d/images d/bases
mkimg qcow2 d/bases/b.qcow2 4M
qio qcow2 d/bases/b.qcow2 "write -P 0x51 0 4m"
( cd d/images && qemu-img create -q -f qcow2 -b ../bases/b.qcow2 -F qcow2 o.qcow2 ) ||
  die "qemu-img create relative backing"
qio qcow2 d/images/o.qcow2 "write -P 0x52 1m 64k"
rm -f out.raw
( cd / && exec "$FERRY" convert -O raw "$WORK/d/images/o.qcow2" "$WORK/out.raw" ) \
  >"$OUT" 2>"$ERR" </dev/null && RC=0 || RC=$?
LAST_CMD="(cd /; ferry convert -O raw $WORK/d/images/o.qcow2 $WORK/out.raw)"
crash_reason
expect_exit 0 "relative backing name, run from another directory"
[ -f out.raw ] && same_content "relative backing name: qemu-img compare" \
  d/images/o.qcow2 qcow2 out.raw raw

# --- a deep chain (10 layers, each changing one cluster) ------------------------
prev=base.raw; prev_fmt=raw
for i in 1 2 3 4 5 6 7 8 9 10; do
  mkimg qcow2 deep$i.qcow2 $size "backing_file=$prev,backing_fmt=$prev_fmt,cluster_size=$((512 << i))"
  qio qcow2 deep$i.qcow2 "write -P $((0x60 + i)) $((i * 300 * 1024)) 70000"
  prev=deep$i.qcow2; prev_fmt=qcow2
done
flatten "chain of 10 layers" deep10.qcow2

# --- -n into an existing overlay: its own clusters must be overwritten ----
# (the overlay holds 0xbb where the backing file holds what the source has;
# leaving out what equals the backing file would keep the 0xbb).
mkdir -p nov
mkimg qcow2 nov/base.qcow2 $((4 << 20))
qio qcow2 nov/base.qcow2 "write -P 0xaa 0 1m"
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 nov/ov.qcow2
qio qcow2 nov/ov.qcow2 "write -P 0xbb 0 64k" "write -P 0xcc 2m 64k"
mkimg raw nov/src.raw $((4 << 20))
qio raw nov/src.raw "write -P 0xaa 0 1m"
fy convert -n -O qcow2 nov/src.raw nov/ov.qcow2
if expect_exit 0 "-n into an existing overlay"; then
  same_content "-n into an existing overlay: qemu-img compare" nov/src.raw raw nov/ov.qcow2 qcow2
  qemu_clean "-n into an existing overlay: qemu-img check" nov/ov.qcow2
fi

done_testing
