# bench/lib.sh: what the benchmarks share.  Source it first; it takes
# the build directory from $1 (default build) and sets SRCDIR, BUILD,
# FERRY, BENCH_DIR (default /var/tmp/ferry-bench), RUNS (3), THREADS and
# PYTHON.  Inputs are made once and kept in BENCH_DIR for every bench.
# OUTDIR (a folder of BENCH_DIR, default out) takes a bench's outputs.

SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$SRCDIR/$BUILD ;; esac
FERRY=$BUILD/cli/ferry
BENCH_DIR=${BENCH_DIR:-/var/tmp/ferry-bench}
RUNS=${RUNS:-3}
THREADS=${THREADS:-}
PYTHON=python3
[ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3

OUTDIR=${OUTDIR:-out}

# bench_setup TOOL...: check that ferry is built and each TOOL is there,
# then work in BENCH_DIR.
bench_setup () {
  local t
  for t in /usr/bin/time "$PYTHON" "$@"; do
    command -v "$t" >/dev/null || { echo "bench: needs $t (scripts/install-deps)" >&2; exit 1; }
  done
  [ -x "$FERRY" ] || { echo "bench: no ferry at $FERRY (build first: ninja -C $BUILD)" >&2; exit 1; }
  mkdir -p "$BENCH_DIR/$OUTDIR"
  cd "$BENCH_DIR"
}

INPUT_VERSION=1     # bump when a recipe below changes

# random_chunks FILE SLOTS USED SEED [FIRST]: FILE, SLOTS MiB sparse, with
# random data in USED of its 1 MiB slots from slot FIRST (0) on (chosen
# with SEED).
random_chunks () {
  "$PYTHON" - "$@" <<'EOF'
import os, random, sys
mib = 1 << 20
path, nr, used, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
first = int(sys.argv[5]) if len(sys.argv) > 5 else 0
slots = random.Random(seed).sample(range(first, nr), used)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.ftruncate(fd, nr * mib)
for slot in sorted(slots):
    os.pwrite(fd, os.urandom(mib), slot * mib)
os.close(fd)
EOF
}

# make_random_inputs: random.raw, 4 GiB sparse with 2 GiB of random data
# in scattered 1 MiB chunks, and random.qcow2, the same made by qemu-img.
make_random_inputs () {
  if [ "$(cat random.ok 2>/dev/null)" != $INPUT_VERSION ]; then
    echo "bench: making random.raw (4 GiB, 2 GiB of random data in 1 MiB chunks)..."
    rm -f random.raw random.qcow2 random.ok
    random_chunks random.raw 4096 2048 20240601
    echo "bench: making random.qcow2 with qemu-img..."
    qemu-img convert -f raw -O qcow2 random.raw random.qcow2
    echo $INPUT_VERSION >random.ok
  fi
}

# make_tar_input: tar.raw, 1 GiB whose first 512 MiB are a tar of /usr.
make_tar_input () {
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
  /usr/bin/time -f '%e %M' -o "$BENCH_DIR/$OUTDIR/.time" "$@" >/dev/null 2>"$BENCH_DIR/$OUTDIR/.err" || {
    echo "bench: failed: $*" >&2
    cat "$BENCH_DIR/$OUTDIR/.err" >&2
    return 1
  }
  tail -n 1 "$BENCH_DIR/$OUTDIR/.time"
}
median () { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# bench_case NAME INPUT OUTPUT "FERRY ARGS" PEER-COMMAND...: ferry convert
# and the peer on the same input, interleaved, RUNS times each; each peer
# run is followed by a timed `sync` of its output (ferry flushes its own
# target before the rename, qemu-img and cp do not).  Adds a row of
# medians to rows[] for print_rows.
rows=()
bench_case () {
  local name=$1 input=$2 output=$3 fargs=$4 i r fmax=0
  shift 4
  local fts=() pts=() pss=() fsize=- psize=- o=$OUTDIR
  echo "bench: $name (input $input, $RUNS runs each, interleaved)..."
  warm "$input"
  for i in $(seq "$RUNS"); do
    # shellcheck disable=SC2086
    r=$(timed "$o/$output" "$FERRY" convert ${THREADS:+-m $THREADS} $fargs "$input" "$o/$output")
    fts+=("${r% *}")
    [ "${r#* }" -gt "$fmax" ] && fmax=${r#* }
    fsize=$(stat -c %s "$o/$output")
    mv "$o/$output" "$o/ferry-$output"
    r=$(timed "$o/$output" "$@" "$input" "$o/$output")
    pts+=("${r% *}")
    r=$(PRESYNC=no timed "$o/.none" sync "$o/$output")
    pss+=("$(awk -v a="${pts[-1]}" -v b="${r% *}" 'BEGIN {print a + b}')")
    psize=$(stat -c %s "$o/$output")
    if [ "$i" != "$RUNS" ]; then
      rm -f "$o/$output" "$o/ferry-$output"
    fi
  done
  # Both outputs must hold the same disk, or the times mean nothing.
  # COMPARE_ARGS (e.g. "-f vpc -F vpc") names their formats where qemu-img
  # would not probe them (a fixed VHD looks raw).
  local same=yes
  # shellcheck disable=SC2086
  qemu-img compare ${COMPARE_ARGS:-} "$o/ferry-$output" "$o/$output" >/dev/null 2>&1 || same=NO
  rm -f "$o/ferry-$output" "$o/$output"
  local ft pt ps
  ft=$(median "${fts[@]}")
  pt=$(median "${pts[@]}")
  ps=$(median "${pss[@]}")
  rows+=("$(printf '%-15s %8.2f %8.2f %6.2f %8.2f %6.2f %11s %11s %7d %5s' "$name" \
    "$ft" "$pt" "$(awk -v a="$ft" -v b="$pt" 'BEGIN {print (b > 0) ? a / b : 0}')" \
    "$ps" "$(awk -v a="$ft" -v b="$ps" 'BEGIN {print (b > 0) ? a / b : 0}')" \
    "$fsize" "$psize" "$((fmax / 1024))" "$same")")
}

# print_rows TITLE: the table of every bench_case so far.
print_rows () {
  echo
  echo "$1: $("$FERRY" --version 2>/dev/null | head -1), $(qemu-img --version | head -1), $(nproc) cores, median of $RUNS runs"
  printf '%-15s %8s %8s %6s %8s %6s %11s %11s %7s %5s\n' case ferry_s peer_s ratio peer+sync ratio \
    ferry_bytes peer_bytes rss_MiB same
  printf '%s\n' "${rows[@]}"
  echo "(ratio = ferry / peer, below 1.0 ferry is faster; peer+sync = the peer followed by"
  echo " sync of its output, as durable as ferry's flushed target; bytes = output size;"
  echo " rss = ferry's peak resident memory; same = qemu-img compare of the two outputs)"
}
