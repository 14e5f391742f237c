#!/usr/bin/env bash
# fault-qcow2: a fault at every write, flush and rename of a conversion to
# raw, qcow2 and compressed qcow2 (fault-lib.sh says what each must leave),
# and convert -n failing half way.
#
# What -n guarantees: nothing atomic, as with qemu-img convert -n.  The
# copy goes into the existing image in place, so a failure or a kill
# leaves it partly written, part old and part new; ferry says so and exits
# 1 (a kill, of course, says nothing).  Only VHDX promises more (a sound
# file after a kill at any write: fault-vhdx.sh).
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/fault-lib.sh"

size=$((6 * MiB))

make_source $size 65536 compress

fault_convert "raw" src.qcow2 qcow2 d.raw raw -O raw
fault_convert "qcow2" src.qcow2 qcow2 d.qcow2 qcow2 -O qcow2
fault_convert "qcow2 -c" src.qcow2 qcow2 d.qcow2 qcow2 -O qcow2 -c

# --- convert -n, failing half way ---------------------------------------------
mkimg qcow2 old.qcow2 $size
qio qcow2 old.qcow2 "write -P 0x77 0 $size"
rm -f "$WORK/trace"
cp old.qcow2 t.qcow2
FERRY_FAULT_TRACE=$WORK/trace fy convert -n -m 1 -O qcow2 src.qcow2 t.qcow2
expect_exit 0 "-n: without a fault" &&
  same_content "-n: without a fault, the image is the source" src.qcow2 qcow2 t.qcow2 qcow2
writes=$(count_ops "$WORK/trace" write)
# The first write, at open, sets the image's dirty bit: failing it refuses
# the open before anything is written.
cp old.qcow2 t.qcow2
FERRY_FAULT=write:1:eio fy convert -n -m 1 -O qcow2 src.qcow2 t.qcow2
expect_failure "-n, failing from write 1 (the dirty bit): refused" t.qcow2
same_content "-n, failing from write 1 (the dirty bit): the image is as it was" \
  old.qcow2 qcow2 t.qcow2 qcow2
for n in 2 $(((writes + 1) / 2)) "$writes"; do
  cp old.qcow2 t.qcow2
  FERRY_FAULT=write:$n:eio fy convert -n -m 1 -O qcow2 src.qcow2 t.qcow2
  expect_failure "-n, failing from write $n of $writes: refused" t.qcow2
  expect_stderr "t.qcow2 is only partly written" \
    "-n, failing from write $n of $writes: says the target is only partly written"
done
cp old.qcow2 t.qcow2
FERRY_FAULT=sync:1:eio fy convert -n -m 1 -O qcow2 src.qcow2 t.qcow2
expect_failure "-n, failing at the flush: refused" t.qcow2
expect_stderr "t.qcow2 is only partly written" \
  "-n, failing at the flush: says the target is only partly written"

done_testing
