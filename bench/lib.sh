# bench/lib.sh: what the benchmarks in bench/ share.  Source it from a
# bench script (whose $1 is the build directory); it checks the tools,
# goes into BENCH_DIR and defines:
#   bench_random_input   random.raw (4 GiB sparse, 2 GiB of random data in
#                        scattered 1 MiB chunks, half of the 1 MiB slots
#                        chosen with a fixed seed) and random.qcow2 (the
#                        same, converted by qemu-img)
#   bench_tar_input      tar.raw (1 GiB, its first 512 MiB a tar of /usr)
#   bench_case           time ferry convert and a peer on one input,
#                        interleaved, RUNS times; a row of the table
#   bench_table          print the table of every case run
#   warm, timed, median  the pieces bench_case is made of
# Inputs are made once and kept; bump INPUT_VERSION when a recipe changes.
#
# Environment: BENCH_DIR (/var/tmp/ferry-bench), RUNS (3), THREADS (ferry
# -m; default ferry's own).
set -euo pipefail

SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$SRCDIR/$BUILD ;; esac
FERRY=$BUILD/cli/ferry
BENCH_DIR=${BENCH_DIR:-/var/tmp/ferry-bench}
RUNS=${RUNS:-3}
THREADS=${THREADS:-}
PYTHON=python3
[ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3

for t in qemu-img /usr/bin/time "$PYTHON"; do
  command -v "$t" >/dev/null || { echo "bench: needs $t (scripts/install-deps)" >&2; exit 1; }
done
[ -x "$FERRY" ] || { echo "bench: no ferry at $FERRY (build first: ninja -C $BUILD)" >&2; exit 1; }

mkdir -p "$BENCH_DIR/out"
cd "$BENCH_DIR"
INPUT_VERSION=1     # bump when the recipe below changes

# --- inputs ------------------------------------------------------------------
bench_random_input () {
  if [ "$(cat random.ok 2>/dev/null)" != $INPUT_VERSION ]; then
    echo "bench: making random.raw (4 GiB, 2 GiB of random data in 1 MiB chunks)..."
    rm -f random.raw random.qcow2 random.ok
    "$PYTHON" - random.raw <<'EOF'
import os, random, sys
mib = 1 << 20
slots = random.Random(20240601).sample(range(4096), 2048)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.ftruncate(fd, 4096 * mib)
for slot in sorted(slots):
    os.pwrite(fd, os.urandom(mib), slot * mib)
os.close(fd)
EOF
    echo "bench: making random.qcow2 with qemu-img..."
    qemu-img convert -f raw -O qcow2 random.raw random.qcow2
    echo $INPUT_VERSION >random.ok
  fi
}

bench_tar_input () {
  if [ "$(cat tar.ok 2>/dev/null)" != $INPUT_VERSION ]; then
    echo "bench: making tar.raw (1 GiB, 512 MiB of a tar of /usr)..."
    rm -f tar.raw tar.ok
    { tar cf - /usr 2>/dev/null || true; } | head -c $((512 << 20)) >tar.raw
    have=$(stat -c %s tar.raw)
    [ "$have" -eq $((512 << 20)) ] || echo "bench: note: /usr gave only $have bytes of tar"
    truncate -s 1G tar.raw
    echo $INPUT_VERSION >tar.ok
  fi
}

# warm FILE: read the file's data once so that the runs find it cached.
warm () {
  "$PYTHON" - "$1" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
end, off = os.fstat(fd).st_size, 0
while off < end:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    while d < h:
        n = len(os.pread(fd, min(8 << 20, h - d), d))
        if n == 0:
            break
        d += n
    off = h
EOF
}

# timed OUTFILE COMMAND...: remove OUTFILE, run COMMAND, print "seconds
# peak_kib".
timed () {
  local out=$1
  shift
  rm -f "$out"
  # Start from a clean slate: no dirty pages of an earlier run being
  # written back while this one is timed (PRESYNC=no for the timed sync
  # of a peer's output, which must find that output still dirty).
  [ "${PRESYNC:-yes}" = no ] || sync
  /usr/bin/time -f '%e %M' -o "$BENCH_DIR/out/.time" "$@" >/dev/null 2>"$BENCH_DIR/out/.err" || {
    echo "bench: failed: $*" >&2
    cat "$BENCH_DIR/out/.err" >&2
    return 1
  }
  tail -n 1 "$BENCH_DIR/out/.time"
}
median () { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

rows=()
# bench_case NAME INPUT OUTPUT "FERRY ARGS" PEER-COMMAND...
# COMPARE_ARGS (e.g. "-f vpc -F vpc") gives qemu-img compare the formats
# of the two outputs where probing would not find them.
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
  # shellcheck disable=SC2086
  qemu-img compare ${COMPARE_ARGS:-} "out/ferry-$output" "out/$output" >/dev/null 2>&1 || same=NO
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

# bench_table: the table of every bench_case run so far.
bench_table () {
  echo
  echo "$("$FERRY" --version 2>/dev/null | head -1), $(qemu-img --version | head -1), $(nproc) cores, median of $RUNS runs"
  printf '%-15s %8s %8s %6s %8s %6s %11s %11s %7s %5s\n' case ferry_s peer_s ratio peer+sync ratio \
    ferry_bytes peer_bytes rss_MiB same
  printf '%s\n' "${rows[@]}"
  echo "(ratio = ferry / peer, below 1.0 ferry is faster; peer+sync = the peer followed by"
  echo " sync of its output, as durable as ferry's flushed target; bytes = output size;"
  echo " rss = ferry's peak resident memory; same = qemu-img compare of the two outputs)"
}
