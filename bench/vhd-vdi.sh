#!/usr/bin/env bash
# bench/vhd-vdi.sh [BUILD]: ferry convert to and from VHD and VDI against
# qemu-img convert, on the same inputs in the same run, as ratios of wall
# time (median of RUNS runs).
#
# Inputs (made once and kept in BENCH_DIR; random.raw by bench/lib.sh):
#   random.raw   4 GiB sparse raw, 2 GiB of random data in scattered 1 MiB
#                chunks (the input of bench/convert.sh)
#   random.vhd   the same as a dynamic VHD, by qemu-img convert -O vpc
#                (force_size=on, so its size is exactly 4 GiB)
#   random.vdi   the same as a dynamic VDI, by qemu-img convert -O vdi
#
# Cases (ferry vs qemu-img convert):
#   raw -> vhd, raw -> fixed vhd, vhd -> raw,
#   raw -> vdi, raw -> static vdi, vdi -> raw,
#   and the four dynamic cases again with ferry's -t unsafe (qemu-img's
#   default, which leaves the target unflushed), like for like.
#
# qemu-img gets force_size=on for VHD output so that both outputs are the
# same 4 GiB disk (without it qemu-img rounds up to a CHS geometry).  As in
# bench/convert.sh, the peer's time is also given followed by a timed sync
# of its output, as durable as ferry's flushed target.
#
# Environment: BENCH_DIR, RUNS (3), THREADS (ferry -m; default ferry's own).
set -euo pipefail

OUTDIR=${OUTDIR:-out-vhd-vdi}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

bench_setup qemu-img
make_random_inputs
if [ "$(cat vhd-vdi.ok 2>/dev/null)" != "$INPUT_VERSION" ] || [ ! -f random.vhd ] ||
   [ ! -f random.vdi ]; then
  echo "bench: making random.vhd and random.vdi with qemu-img..."
  rm -f random.vhd random.vdi vhd-vdi.ok
  qemu-img convert -f raw -O vpc -o force_size=on random.raw random.vhd
  qemu-img convert -f raw -O vdi random.raw random.vdi
  echo "$INPUT_VERSION" >vhd-vdi.ok
fi

VHD_CMP="-f vpc -F vpc"
COMPARE_ARGS=$VHD_CMP bench_case "raw -> vhd" random.raw r2v.vhd "-O vhd" \
  qemu-img convert -O vpc -o force_size=on
COMPARE_ARGS=$VHD_CMP bench_case "raw -> vhd fixed" random.raw r2f.vhd \
  "-O vhd -o subformat=fixed" qemu-img convert -O vpc -o subformat=fixed,force_size=on
bench_case "vhd -> raw" random.vhd v2r.raw "-O raw" qemu-img convert -f vpc -O raw
bench_case "raw -> vdi" random.raw r2d.vdi "-O vdi" qemu-img convert -O vdi
bench_case "raw -> vdi static" random.raw r2s.vdi "-O vdi -o static=on" \
  qemu-img convert -O vdi -o static=on
bench_case "vdi -> raw" random.vdi d2r.raw "-O raw" qemu-img convert -f vdi -O raw
# Like for like with qemu-img's default cache mode, which does not flush.
COMPARE_ARGS=$VHD_CMP bench_case "raw->vhd -t u" random.raw r2v.vhd \
  "-t unsafe -O vhd" qemu-img convert -O vpc -o force_size=on
bench_case "vhd->raw -t u" random.vhd v2r.raw "-t unsafe -O raw" qemu-img convert -f vpc -O raw
bench_case "raw->vdi -t u" random.raw r2d.vdi "-t unsafe -O vdi" qemu-img convert -O vdi
bench_case "vdi->raw -t u" random.vdi d2r.raw "-t unsafe -O raw" qemu-img convert -f vdi -O raw

print_rows "bench/vhd-vdi.sh"
