#!/usr/bin/env bash
# bench/v2v-guest.sh [BUILD]: the whole migration of a real guest, ferry
# against virt-v2v, on the same OVA in the same run, as a ratio of wall
# time (median of RUNS runs, interleaved).
#
# Input: the test guest (tests/guests: Debian 12 as VMware exports it, an
# OVA with a streamOptimized VMDK, 2 GiB virtual, about 550 MiB of data),
# built once per machine and cached (tests/guests/guest-cache.sh).
#
#   ferry      ferry v2v GUEST.ova --to libvirt --out DIR --progress=none:
#              copy, then inspection and conversion on the copy (one
#              libguestfs appliance), the domain XML, flush, rename.
#   virt-v2v   virt-v2v -i ova GUEST.ova -o local -os DIR -of qcow2
#              (Debian's virt-v2v; its own inspection, conversion and copy).
#
# Both run libguestfs with LIBGUESTFS_BACKEND=direct and under TCG
# (force_tcg): Linux guests hang under KVM on these machines, and the
# appliance's speed then dominates both.  ferry's split (inspection,
# conversion, copy) comes from its own "Times:" line; verification, a boot
# of ferry's output with `ferry verify --boot` to a login prompt, is timed
# once after the runs and printed apart: virt-v2v does not verify, so it is
# not in the ratio, and the total with it is printed too.
#
# Environment: BENCH_DIR, RUNS (3), OUTDIR (out-v2v-guest).
set -euo pipefail

OUTDIR=${OUTDIR:-out-v2v-guest}
. "$(dirname "$0")/lib.sh"
bench_setup virt-v2v guestfish qemu-system-x86_64 qemu-img
export LIBGUESTFS_BACKEND=direct
export LIBGUESTFS_BACKEND_SETTINGS=force_tcg

GUEST_DIR=$("$SRCDIR/tests/guests/guest-cache.sh" debian ova)
OVA=$GUEST_DIR/guest.ova
O=$BENCH_DIR/$OUTDIR
warm "$OVA"

fts=() vts=() ins=() cvs=() cps=()
echo "bench: v2v of the test guest ($RUNS runs each, interleaved; minutes per run under TCG)..."
for i in $(seq "$RUNS"); do
  rm -rf "$O/ferry" "$O/peer"
  mkdir -p "$O/peer"
  sync
  start=$(date +%s.%N)
  "$FERRY" v2v "$OVA" --to libvirt --out "$O/ferry" --progress=none >"$O/ferry.log" 2>&1 ||
    { echo "bench: ferry v2v failed:" >&2; cat "$O/ferry.log" >&2; exit 1; }
  end=$(date +%s.%N)
  fts+=("$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')")
  times=$(grep '^Times:' "$O/ferry.log")
  ins+=("$(echo "$times" | sed -n 's/.*inspection \([0-9.]*\) s.*/\1/p')")
  cvs+=("$(echo "$times" | sed -n 's/.*conversion \([0-9.]*\) s.*/\1/p')")
  cps+=("$(echo "$times" | sed -n 's/.*copy \([0-9.]*\) s.*/\1/p')")
  echo "  ferry run $i: ${fts[-1]} s ($times)"
  sync
  start=$(date +%s.%N)
  virt-v2v -i ova "$OVA" -o local -os "$O/peer" -of qcow2 >"$O/peer.log" 2>&1 ||
    { echo "bench: virt-v2v failed:" >&2; tail -n 30 "$O/peer.log" >&2; exit 1; }
  sync
  end=$(date +%s.%N)
  vts+=("$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')")
  echo "  virt-v2v run $i: ${vts[-1]} s (with a sync of its output)"
done

echo "bench: verification of ferry's output (ferry verify --boot, TCG)..."
start=$(date +%s.%N)
vrc=0
"$FERRY" verify --boot --accel tcg --timeout 900 "$O/ferry" >"$O/verify.log" 2>&1 || vrc=$?
end=$(date +%s.%N)
vt=$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')
[ "$vrc" = 0 ] || { echo "bench: ferry's output did not boot:" >&2; cat "$O/verify.log" >&2; }

ft=$(median "${fts[@]}")
pt=$(median "${vts[@]}")
echo
echo "v2v of the test guest: $("$FERRY" --version | head -1), $(virt-v2v --version 2>/dev/null | head -1), $(nproc) cores, median of $RUNS runs, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-28s %10s\n' "" seconds
printf '%-28s %10.1f\n' "ferry: inspection" "$(median "${ins[@]}")"
printf '%-28s %10.1f\n' "ferry: conversion" "$(median "${cvs[@]}")"
printf '%-28s %10.1f\n' "ferry: copy" "$(median "${cps[@]}")"
printf '%-28s %10.1f\n' "ferry: total (v2v)" "$ft"
printf '%-28s %10.1f\n' "virt-v2v: total" "$pt"
printf '%-28s %10.2f\n' "ratio ferry / virt-v2v" "$(awk -v a="$ft" -v b="$pt" 'BEGIN {print (b > 0) ? a / b : 0}')"
printf '%-28s %10.1f %s\n' "ferry: verification (boot)" "$vt" "$([ "$vrc" = 0 ] && echo "(booted)" || echo "(DID NOT BOOT)")"
printf '%-28s %10.1f\n' "ferry: total with verification" "$(awk -v a="$ft" -v b="$vt" 'BEGIN {print a + b}')"
echo "(each total is the wall time of the whole command; ferry flushes its output before the"
echo " rename, virt-v2v's is followed by a timed sync; verification is ferry's alone)"
rm -rf "$O/ferry" "$O/peer"
