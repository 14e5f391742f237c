#!/usr/bin/env bash
# convert-safety: nothing that looks like a finished target is left behind
# when a convert does not finish.  An existing target is refused unless -n;
# wrong options are refused before anything is created; a full target disk
# (a 2 MiB tmpfs, or without root a 2 MiB file-size limit) fails with a
# message and leaves no target; half way
# through a convert the target exists only under a temporary name, and
# Ctrl-C (SIGINT) then leaves neither the target nor a temporary file:
# ferry cleans up within 2 s and dies of the signal (exit status 130), as
# qemu-img does.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
mb=$((1 << 20))
mkimg raw src.raw $((8 * mb))
qio raw src.raw "write -s $RAND 0 6m" "write -P 0x5 7m 512"
mkimg qcow2 src.qcow2 $((8 * mb))
qio qcow2 src.qcow2 "write -s $RAND 0 6m"

# --- an existing target ----------------------------------------------------------
mkdir -p t
echo "precious data" >t/dst.raw
fy convert -O raw src.raw t/dst.raw
expect_failure "existing target refused" t/dst.raw
check_true "existing target untouched" grep -q -x "precious data" t/dst.raw
only_files "existing target refused: no temporary file" t dst.raw

# -n writes into it: a raw file of the right size, a qcow2 made by qemu-img.
truncate -s $((8 * mb)) t/n.raw
fy convert -n -O raw src.raw t/n.raw
expect_exit 0 "-n into an existing raw file" &&
  same_content "-n raw: qemu-img compare" src.raw raw t/n.raw raw
mkimg qcow2 t/n.qcow2 $((8 * mb))
fy convert -n -O qcow2 src.raw t/n.qcow2
if expect_exit 0 "-n into an existing qcow2 image"; then
  same_content "-n qcow2: qemu-img compare" src.raw raw t/n.qcow2 qcow2
  qemu_clean "-n qcow2: qemu-img check" t/n.qcow2
fi
rm -rf t/*
# A target that is the source.
cp src.raw t/same.raw
fy convert -n -O raw t/same.raw t/same.raw
check_true "source as its own -n target: no crash (exit $RC)" test -z "$CRASH"
rm -rf t/*

# --- wrong options ---------------------------------------------------------------------
bad_option () {
  local what=$1
  shift
  rm -rf t/*
  fy convert "$@" src.raw t/out.img
  if [ -z "$CRASH" ] && [ "$RC" = 1 ] && [ -s "$ERR" ]; then
    ok "$what refused"
  else
    not_ok "$what: expected exit 1 with a message" "$(last_run)"
  fi
  only_files "$what: nothing created" t
}
bad_option "-O nosuch" -O nosuch
bad_option "-f nosuch" -f nosuch -O raw
bad_option "-o cluster_size=3" -O qcow2 -o cluster_size=3
bad_option "-o cluster_size=4M" -O qcow2 -o cluster_size=4M
bad_option "-o cluster_size=256" -O qcow2 -o cluster_size=256
bad_option "-o bogus=1" -O qcow2 -o bogus=1
bad_option "-o compat=9" -O qcow2 -o compat=9
bad_option "-o compression_type=lzma" -O qcow2 -o compression_type=lzma
bad_option "-o preallocation=maybe" -O qcow2 -o preallocation=maybe
bad_option "-o refcount_bits=3" -O qcow2 -o refcount_bits=3
bad_option "-o backing_file=nosuch.qcow2" -O qcow2 -o backing_file=nosuch.qcow2,backing_fmt=qcow2
bad_option "-o for raw" -O raw -o cluster_size=65536
bad_option "-m x" -O raw -m x
bad_option "-t bogus" -O raw -t bogus

# --- -n without -O writes raw, never through a header found in the target ----
rm -rf t/*
truncate -s $((8 * mb)) t/disk.raw
qemu-img create -q -f qcow2 t/hdr.qcow2 1M
dd if=t/hdr.qcow2 of=t/disk.raw conv=notrunc status=none
rm t/hdr.qcow2
fy convert -n src.raw t/disk.raw
if expect_exit 0 "-n without -O into a raw disk that holds a qcow2 header"; then
  same_content "-n without -O: written as raw" src.raw raw t/disk.raw raw
  check_true "-n without -O: the disk kept its size" test "$(stat -c %s t/disk.raw)" = $((8 * mb))
fi

# --- -B with a comma in the backing file's name -------------------------------
rm -rf t/*
cp src.qcow2 "t/ba,se.qcow2"
fy convert -O qcow2 -B "ba,se.qcow2" -F qcow2 src.raw t/over.qcow2
if expect_exit 0 "-B with a comma in the name"; then
  same_content "-B with a comma: qemu-img compare" src.raw raw t/over.qcow2 qcow2
  check_true "-B with a comma: backing name kept" \
    sh -c "qemu-img info t/over.qcow2 | grep -q 'backing file: ba,se.qcow2'"
fi

# --- a closed progress pipe does not kill ferry half way ----------------------
rm -rf t/*
"$FERRY" convert --progress=json -O qcow2 src.raw t/pipe.qcow2 | head -c 1 >/dev/null
rc=${PIPESTATUS[0]}
if [ "$rc" = 0 ]; then
  ok "closed progress pipe: exit 0"
  same_content "closed progress pipe: target complete" src.raw raw t/pipe.qcow2 qcow2
else
  not_ok "closed progress pipe: exit $rc"
fi
only_files "closed progress pipe: no temporary file left" t pipe.qcow2

# --- -t unsafe: no flush, but the same complete image, renamed into place ------
rm -rf t/*
for fmt in raw qcow2; do
  fy convert -t unsafe -O $fmt src.raw t/unsafe.$fmt
  if expect_exit 0 "-t unsafe -O $fmt"; then
    same_content "-t unsafe -O $fmt: qemu-img compare" src.raw raw t/unsafe.$fmt $fmt
    [ $fmt = qcow2 ] && qemu_clean "-t unsafe -O qcow2: qemu-img check" t/unsafe.qcow2
  fi
done
only_files "-t unsafe: no temporary file left" t unsafe.raw unsafe.qcow2
rm -rf t/*
fy convert -O raw nosuch.raw t/out.raw
expect_failure "missing source" nosuch.raw
only_files "missing source: nothing created" t
fy convert -O raw src.raw
check_true "convert without a target fails without a crash (exit $RC)" test "$RC" != 0 -a -z "$CRASH"
fy convert -O raw src.raw nosuchdir/out.raw
expect_failure "target in a missing directory" nosuchdir/out.raw

# --- a full target disk -------------------------------------------------------------------
# A 2 MiB tmpfs where one can be mounted (root); elsewhere a 2 MiB limit
# on file size (ulimit -f) stands in for it, and writes fail with EFBIG
# ("File too large") instead of ENOSPC.
mkdir -p full
if mount -t tmpfs -o size=2m ferry-test-full full 2>/dev/null; then
  at_exit umount "$WORK/full"
  full_how="2 MiB tmpfs"
  full_says='No space left on device'
  fsize_kb=""
else
  full_how="2 MiB file-size limit"
  full_says='File too large'
  fsize_kb=2048
fi
echo "# full disk: $full_how"
for fmt in raw qcow2; do
  for c in "" -c; do
    [ "$fmt" = raw ] && [ -n "$c" ] && continue
    FY_FSIZE_KB=$fsize_kb fy convert $c -O $fmt src.raw full/out.$fmt
    expect_failure "full disk ($full_how), -O $fmt $c" full/out.$fmt
    expect_stderr_re "^ferry convert: full/out\.$fmt: .*$full_says" \
      "full disk ($full_how), -O $fmt $c: says the disk is full"
    only_files "full disk ($full_how), -O $fmt $c: no target, no temporary file" full
  done
done
# -n into an existing file on a full disk still fails cleanly.
truncate -s $((8 * mb)) full/n.raw
FY_FSIZE_KB=$fsize_kb fy convert -n -O raw src.raw full/n.raw
expect_failure "full disk ($full_how), -n -O raw" full/n.raw
expect_stderr_re "^ferry convert: full/n\.raw: .*$full_says" \
  "full disk ($full_how), -n -O raw: says the disk is full"
rm -f full/n.raw
mountpoint -q full && umount "$WORK/full"

# --- Ctrl-C -------------------------------------------------------------------------------------
# A source big enough that the convert is still running when the signal
# comes: 768 MiB of incompressible data (one random 8 MiB block repeated).
mkdir -p big
for i in $(seq 96); do cat "$RAND"; done >big/src.raw
interrupt () {
  local what=$1 pid waited=0
  shift
  rm -f big/dst
  # An earlier run's output must not count as this one's first progress
  # line: ferry truncates $OUT only once it has started.
  : >"$OUT"
  # With job control on, the background ferry does not start with SIGINT
  # ignored, as it would in a plain script: it sees what a terminal's
  # Ctrl-C would give it.
  set -m
  "$FERRY" convert "$@" --progress=json big/src.raw big/dst >"$OUT" 2>"$ERR" </dev/null &
  pid=$!
  set +m
  # Wait until the target (or its temporary file) appears or the first
  # progress line does, freeze ferry there so that it cannot finish first,
  # then deliver SIGINT.
  while kill -0 $pid 2>/dev/null && [ ! -s "$OUT" ] && [ "$(ls -A big | wc -l)" -lt 2 ] &&
        [ $waited -lt 3000 ]; do
    sleep 0.005
    waited=$((waited + 1))
  done
  kill -STOP $pid 2>/dev/null
  if [ "$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)" = Z ] || ! kill -INT $pid 2>/dev/null; then
    wait $pid
    RC=$?
    LAST_CMD="ferry convert $* --progress=json big/src.raw big/dst"
    crash_reason
    not_ok "$what: ferry ended before the signal came (exit $RC); the test needs a slower case" "$(last_run)"
    return
  fi
  # Half way, the target exists only under its temporary name.
  if [ ! -e big/dst ] && ls -A big | grep -q -E '^\.dst\.ferry-[0-9a-f]{12}$'; then
    ok "$what: while it runs, only a temporary .dst.ferry-* exists"
  else
    not_ok "$what: while it runs, big holds [$(ls -A big | tr '\n' ' ')]"
  fi
  t0=$(date +%s%N)
  kill -CONT $pid
  RC=0
  wait $pid || RC=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  LAST_CMD="ferry convert $* --progress=json big/src.raw big/dst, then SIGINT"
  if [ "$RC" != 130 ] || grep -q -E 'Sanitizer|runtime error:' "$ERR"; then
    not_ok "$what: expected death by SIGINT (exit status 130)" "$(last_run)"
  else
    ok "$what: died of SIGINT (exit status 130)"
    expect_stderr "ferry convert: interrupted; big/dst was not written" \
      "$what: says the target was not written"
  fi
  check_true "$what: ended within 2 s of the signal ($ms ms)" test "$ms" -le 2000
  only_files "$what: no target, no temporary file" big src.raw
}
interrupt "SIGINT during raw -> qcow2" -O qcow2
interrupt "SIGINT during raw -> raw" -O raw
interrupt "SIGINT during raw -> qcow2 -c" -O qcow2 -c

done_testing
