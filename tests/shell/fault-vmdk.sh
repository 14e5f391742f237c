#!/usr/bin/env bash
# fault-vmdk: a fault at every write, flush and rename of a conversion to
# each VMDK subformat ferry writes: monolithicSparse, streamOptimized,
# monolithicFlat (a descriptor and a flat extent) and twoGbMaxExtentSparse
# (a descriptor and sparse extents); fault-lib.sh says what each must
# leave.  The two-file subformats put their extents in place before the
# descriptor (lib/image/vmdk-files.c): a kill between the two leaves
# extents under their final names, which the next run must remove too.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/fault-lib.sh"

size=$((6 * MiB))

make_source $size

for sub in monolithicSparse streamOptimized monolithicFlat twoGbMaxExtentSparse; do
  fault_convert "vmdk $sub" src.qcow2 qcow2 d.vmdk vmdk -O vmdk -o subformat=$sub
done

done_testing
