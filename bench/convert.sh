#!/usr/bin/env bash
# bench/convert.sh [BUILD]: ferry convert against its peers, on the same
# inputs in the same run, as ratios of wall time (median of RUNS runs).
#
# Inputs, made once and kept in BENCH_DIR (default /var/tmp/ferry-bench):
#   random.raw   4 GiB sparse raw, 2 GiB of random data in scattered 1 MiB
#                chunks (half of the 1 MiB slots, chosen with a fixed seed)
#   random.qcow2 the same, converted by qemu-img (the qcow2 -> raw input)
#   tar.raw      1 GiB raw whose first 512 MiB are a tar of /usr
#                (compressible, like a real disk)
#
# Cases (ferry vs peer):
#   raw -> qcow2    qemu-img convert -O qcow2
#   qcow2 -> raw    qemu-img convert -O raw
#   raw -> raw      cp --sparse=always
#   -c qcow2 (tar)  qemu-img convert -c -O qcow2
#
# ferry flushes its target before the rename; qemu-img convert (whose
# target cache mode is "unsafe" by default) and cp do not, and leave the
# data in the page cache.  So each peer run is followed by a timed
# `sync FILE`, and the table gives both ratios: against the peer as users
# run it, and against the peer plus that sync (the same durability as
# ferry's).
#
# Each input is read once before its case so that every run starts with it
# in the page cache (24 GiB of memory holds them all); outputs are removed
# between runs.  The table shows median seconds, the ratios ferry/peer,
# output sizes for -c, and ferry's peak RSS (GNU time's %M).
#
# Environment: BENCH_DIR, RUNS (3), THREADS (ferry -m; default ferry's own).
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_setup qemu-img
make_random_inputs
make_tar_input

rows=()
# bench_case NAME INPUT OUTPUT "FERRY ARGS" PEER-COMMAND...
bench_case () {
  local name=$1 input=$2 output=$3 fargs=$4 i r fmax=0
  shift 4
  local fts=() pts=() pss=() fsize=- psize=-
  echo "bench: $name (input $input, $RUNS runs each, interleaved)..."
  warm "$input"
  for i in $(seq "$RUNS"); do
    # shellcheck disable=SC2086
    r=$(timed "out/$output" "$FERRY" convert ${THREADS:+-m $THREADS} $fargs "$input" "out/$output")
    fts+=("${r% *}")
    [ "${r#* }" -gt "$fmax" ] && fmax=${r#* }
    fsize=$(stat -c %s "out/$output")
    mv "out/$output" "out/ferry-$output"
    r=$(timed "out/$output" "$@" "$input" "out/$output")
    pts+=("${r% *}")
    r=$(PRESYNC=no timed "out/.none" sync "out/$output")
    pss+=("$(awk -v a="${pts[-1]}" -v b="${r% *}" 'BEGIN {print a + b}')")
    psize=$(stat -c %s "out/$output")
    if [ "$i" != "$RUNS" ]; then
      rm -f "out/$output" "out/ferry-$output"
    fi
  done
  # Both outputs must hold the same disk, or the times mean nothing.
  local same=yes
  qemu-img compare "out/ferry-$output" "out/$output" >/dev/null 2>&1 || same=NO
  rm -f "out/ferry-$output" "out/$output"
  local ft pt ps
  ft=$(median "${fts[@]}")
  pt=$(median "${pts[@]}")
  ps=$(median "${pss[@]}")
  rows+=("$(printf '%-15s %8.2f %8.2f %6.2f %8.2f %6.2f %11s %11s %7d %5s' "$name" \
    "$ft" "$pt" "$(awk -v a="$ft" -v b="$pt" 'BEGIN {print (b > 0) ? a / b : 0}')" \
    "$ps" "$(awk -v a="$ft" -v b="$ps" 'BEGIN {print (b > 0) ? a / b : 0}')" \
    "$fsize" "$psize" "$((fmax / 1024))" "$same")")
}

bench_case "raw -> qcow2" random.raw r2q.qcow2 "-O qcow2" qemu-img convert -O qcow2
bench_case "qcow2 -> raw" random.qcow2 q2r.raw "-O raw" qemu-img convert -O raw
bench_case "raw -> raw" random.raw r2r.raw "-O raw" cp --sparse=always
bench_case "-c qcow2 (tar)" tar.raw c.qcow2 "-c -O qcow2" qemu-img convert -c -O qcow2
# Like for like with the peers' defaults, which do not flush: ferry's
# -t unsafe leaves its target unflushed too (compare the "ratio" column).
bench_case "raw->qcow2 -t u" random.raw r2q.qcow2 "-t unsafe -O qcow2" qemu-img convert -O qcow2
bench_case "qcow2->raw -t u" random.qcow2 q2r.raw "-t unsafe -O raw" qemu-img convert -O raw
bench_case "raw->raw -t u" random.raw r2r.raw "-t unsafe -O raw" cp --sparse=always

echo
echo "$("$FERRY" --version 2>/dev/null | head -1), $(qemu-img --version | head -1), $(nproc) cores, median of $RUNS runs"
printf '%-15s %8s %8s %6s %8s %6s %11s %11s %7s %5s\n' case ferry_s peer_s ratio peer+sync ratio \
  ferry_bytes peer_bytes rss_MiB same
printf '%s\n' "${rows[@]}"
echo "(ratio = ferry / peer, below 1.0 ferry is faster; peer+sync = the peer followed by"
echo " sync of its output, as durable as ferry's flushed target; bytes = output size;"
echo " rss = ferry's peak resident memory; same = qemu-img compare of the two outputs)"
