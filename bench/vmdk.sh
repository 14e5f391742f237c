#!/usr/bin/env bash
# bench/vmdk.sh [BUILD]: ferry against qemu-img on VMDK, on the same inputs
# in the same run, as ratios of wall time (median of RUNS runs), with the
# columns of bench/convert.sh (bench_case in bench/lib.sh).  The VMDK
# inputs are made once by qemu-img from the shared random.raw and tar.raw:
#   tar-stream.vmdk  tar.raw as qemu-img writes a streamOptimized VMDK
#   random.vmdk      random.raw as a monolithicSparse VMDK (qemu-img)
#
# Cases (ferry vs qemu-img, and the goal of issue 3):
#   raw -> stream    convert -O vmdk -o subformat=streamOptimized of tar.raw:
#                    ratio at most 0.25, output at most 5% larger
#   stream -> raw    convert -O raw of tar-stream.vmdk: at most 0.5
#   stream -> qcow2  convert -O qcow2 of tar-stream.vmdk: at most 0.5
#   raw -> vmdk      convert -O vmdk (monolithicSparse) of random.raw: <= 1.0
#   vmdk -> raw      convert -O raw of random.vmdk: at most 1.0
# and the same with ferry's -t unsafe, which skips the final flush as
# qemu-img's default cache mode does (compare the "ratio" column).
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_setup qemu-img
make_random_inputs
make_tar_input

VMDK_INPUT_VERSION=1     # bump when the recipe below changes
if [ "$(cat vmdk.ok 2>/dev/null)" != $VMDK_INPUT_VERSION ]; then
  echo "bench: making tar-stream.vmdk and random.vmdk with qemu-img..."
  rm -f tar-stream.vmdk random.vmdk vmdk.ok
  qemu-img convert -f raw -O vmdk -o subformat=streamOptimized tar.raw tar-stream.vmdk
  qemu-img convert -f raw -O vmdk random.raw random.vmdk
  echo $VMDK_INPUT_VERSION >vmdk.ok
fi

bench_case "raw -> stream" tar.raw r2s.vmdk "-O vmdk -o subformat=streamOptimized" \
  qemu-img convert -O vmdk -o subformat=streamOptimized
stream_row=${rows[-1]}
bench_case "stream -> raw" tar-stream.vmdk s2r.raw "-O raw" qemu-img convert -O raw
bench_case "stream -> qcow2" tar-stream.vmdk s2q.qcow2 "-O qcow2" qemu-img convert -O qcow2
bench_case "raw -> vmdk" random.raw r2v.vmdk "-O vmdk" qemu-img convert -O vmdk
bench_case "vmdk -> raw" random.vmdk v2r.raw "-O raw" qemu-img convert -O raw
bench_case "stream->raw -t u" tar-stream.vmdk s2r.raw "-t unsafe -O raw" qemu-img convert -O raw
bench_case "raw->vmdk -t u" random.raw r2v.vmdk "-t unsafe -O vmdk" qemu-img convert -O vmdk
bench_case "vmdk->raw -t u" random.vmdk v2r.raw "-t unsafe -O raw" qemu-img convert -O raw

print_rows "bench/vmdk.sh"
echo "streamOptimized output: $(echo "$stream_row" | awk '{printf "ferry %d bytes, qemu-img %d bytes, ferry/qemu-img %.3f", $(NF-3), $(NF-2), $(NF-3) / $(NF-2)}')"
