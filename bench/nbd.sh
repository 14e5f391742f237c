#!/usr/bin/env bash
# bench/nbd.sh [BUILD]: ferry over NBD against nbdcopy and qemu-nbd, on
# the same inputs in the same run, as ratios of wall time (median of RUNS
# runs, interleaved).  The input is bench/convert.sh's random.raw (4 GiB,
# 2 GiB of random data in scattered 1 MiB chunks) and its qcow2 copy,
# shared in BENCH_DIR.
#
# Cases (ferry vs peer):
#   qemu-nbd -> file       ferry convert URI FILE     vs nbdcopy --flush URI FILE
#                          (qemu-nbd -r serving random.raw; both flush)
#   qemu-nbd -> file -t u  ferry convert -t unsafe    vs nbdcopy (neither flushes)
#   serve qcow2 -> null    nbdcopy URI null: reading ferry serve of random.qcow2
#                          vs reading qemu-nbd -r serving the same file
#
# Servers listen on Unix sockets in BENCH_DIR/OUTDIR (default out-nbd) and
# are started before the timed runs and stopped at the end.  Each input is
# read once first, so that every run finds it in the page cache.
#
# Environment: BENCH_DIR, RUNS (3), OUTDIR.
set -euo pipefail

OUTDIR=${OUTDIR:-out-nbd}
. "$(dirname "$0")/lib.sh"
bench_setup qemu-img qemu-nbd nbdcopy nbdkit
make_random_inputs

SOCKS=$BENCH_DIR/$OUTDIR
PIDS=()
cleanup () {
  local p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null || true; done
  rm -f "$SOCKS"/*.sock "$SOCKS"/*.uri "$SOCKS"/ferry.out "$SOCKS"/peer.out
}
trap cleanup EXIT

# wait_for FILE: wait up to 30 s for FILE to be there and not empty.
wait_for () {
  local i
  for ((i = 0; i < 600; i++)); do
    [ -s "$1" ] || [ -S "$1" ] && return 0
    sleep 0.05
  done
  echo "bench: $1 did not appear" >&2
  exit 1
}

# start_qemu_nbd NAME FMT FILE: qemu-nbd -r on SOCKS/NAME.sock; its URI
# in $URI.
start_qemu_nbd () {
  rm -f "$SOCKS/$1.sock"
  qemu-nbd -t -r -f "$2" -k "$SOCKS/$1.sock" "$3" >/dev/null 2>&1 &
  PIDS+=($!)
  wait_for "$SOCKS/$1.sock"
  URI="nbd+unix:///?socket=$SOCKS/$1.sock"
}

# start_serve NAME FILE: ferry serve --readonly on SOCKS/NAME.sock; its
# URI in $URI.
start_serve () {
  rm -f "$SOCKS/$1.sock"
  "$FERRY" serve --readonly --socket "$SOCKS/$1.sock" "$2" >"$SOCKS/$1.uri" &
  PIDS+=($!)
  wait_for "$SOCKS/$1.uri"
  URI=$(head -n 1 "$SOCKS/$1.uri")
}

rows=()
# bench_pair NAME FERRY_OUT PEER_OUT "FERRY COMMAND" "PEER COMMAND": time
# both, interleaved; when the outputs are files, they must hold the same
# bytes, or the times mean nothing.
bench_pair () {
  local name=$1 fout=$2 pout=$3 fcmd=$4 pcmd=$5 i r fmax=0 same=-
  local fts=() pts=()
  echo "bench: $name ($RUNS runs each, interleaved)..."
  for i in $(seq "$RUNS"); do
    # shellcheck disable=SC2086
    r=$(timed "$fout" $fcmd)
    fts+=("${r% *}")
    [ "${r#* }" -gt "$fmax" ] && fmax=${r#* }
    # shellcheck disable=SC2086
    r=$(timed "$pout" $pcmd)
    pts+=("${r% *}")
  done
  if [ -f "$fout" ] && [ -f "$pout" ]; then
    same=yes
    cmp -s "$fout" "$pout" || same=NO
  fi
  rm -f "$fout" "$pout"
  local ft pt
  ft=$(median "${fts[@]}")
  pt=$(median "${pts[@]}")
  rows+=("$(printf '%-22s %8.2f %8.2f %6.2f %7d %5s' "$name" "$ft" "$pt" \
    "$(awk -v a="$ft" -v b="$pt" 'BEGIN {print (b > 0) ? a / b : 0}')" \
    "$((fmax / 1024))" "$same")")
}

# --- copying from qemu-nbd into a local file ---------------------------------------
warm random.raw
start_qemu_nbd qraw raw random.raw
QRAW=$URI
bench_pair "qemu-nbd -> file" "$SOCKS/ferry.out" "$SOCKS/peer.out" \
  "$FERRY convert $QRAW $SOCKS/ferry.out" \
  "nbdcopy --flush $QRAW $SOCKS/peer.out"
bench_pair "qemu-nbd -> file -t u" "$SOCKS/ferry.out" "$SOCKS/peer.out" \
  "$FERRY convert -t unsafe $QRAW $SOCKS/ferry.out" \
  "nbdcopy $QRAW $SOCKS/peer.out"

# --- serving a qcow2 image to nbdcopy ----------------------------------------------------
warm random.qcow2
start_qemu_nbd qqcow qcow2 random.qcow2
QQCOW=$URI
start_serve fqcow random.qcow2
FQCOW=$URI
bench_pair "serve qcow2 -> null" "$SOCKS/none" "$SOCKS/none" \
  "nbdcopy $FQCOW null:" "nbdcopy $QQCOW null:"

echo
echo "$("$FERRY" --version 2>/dev/null | head -1), $(qemu-nbd --version | head -1), $(nbdcopy --version | head -1), nbdkit $(nbdkit --version | cut -d' ' -f2), $(nproc) cores, median of $RUNS runs"
printf '%-22s %8s %8s %6s %7s %5s\n' case ferry_s peer_s ratio rss_MiB same
printf '%s\n' "${rows[@]}"
echo "(ratio = ferry / peer, below 1.0 ferry is faster; for 'serve', ferry_s is nbdcopy"
echo " reading ferry serve and peer_s nbdcopy reading qemu-nbd; rss = the timed ferry"
echo " command's peak memory (nbdcopy's own for 'serve'); same = cmp of the two outputs)"
