#!/usr/bin/env bash
# bench/vhdx.sh [BUILD]: ferry convert to and from VHDX against qemu-img,
# on the same inputs in the same run, as ratios of wall time (median of
# RUNS runs; bench/lib.sh has the machinery and the input recipe).
#
# Inputs, made once and kept in BENCH_DIR (default /var/tmp/ferry-bench):
#   random.raw   4 GiB sparse raw, 2 GiB of random data in scattered 1 MiB
#                chunks (the input of bench/convert.sh)
#   random.vhdx  the same, converted by qemu-img (dynamic, qemu-img's
#                default 16 MiB blocks): the vhdx -> raw input
#
# Cases (ferry vs qemu-img convert with the same output options):
#   raw -> vhdx           dynamic, each tool's default block size (the same)
#   raw -> vhdx fixed     -o subformat=fixed
#   vhdx -> raw
#   vhdx -> qcow2
# and the first and third again with ferry's -t unsafe, which skips the
# final flush as qemu-img's default cache mode does.  As in convert.sh,
# "peer+sync" adds a timed sync of qemu-img's output, for the same
# durability as ferry's flushed target.
#
# Environment: BENCH_DIR, RUNS (3), THREADS (ferry -m; default ferry's own).
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

bench_setup qemu-img
make_random_inputs
if [ "$(cat random-vhdx.ok 2>/dev/null)" != $INPUT_VERSION ] || [ ! -f random.vhdx ]; then
  echo "bench: making random.vhdx with qemu-img..."
  rm -f random.vhdx random-vhdx.ok
  qemu-img convert -f raw -O vhdx random.raw random.vhdx
  echo $INPUT_VERSION >random-vhdx.ok
fi

bench_case "raw -> vhdx" random.raw r2x.vhdx "-O vhdx" qemu-img convert -O vhdx
bench_case "raw -> vhdx fix" random.raw r2xf.vhdx "-O vhdx -o subformat=fixed" \
  qemu-img convert -O vhdx -o subformat=fixed
bench_case "vhdx -> raw" random.vhdx x2r.raw "-O raw" qemu-img convert -O raw
bench_case "vhdx -> qcow2" random.vhdx x2q.qcow2 "-O qcow2" qemu-img convert -O qcow2
bench_case "raw->vhdx -t u" random.raw r2x.vhdx "-t unsafe -O vhdx" qemu-img convert -O vhdx
bench_case "vhdx->raw -t u" random.vhdx x2r.raw "-t unsafe -O raw" qemu-img convert -O raw

print_rows "bench/vhdx.sh"
