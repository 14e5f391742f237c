#!/usr/bin/env bash
# same-file: ferry never writes the image it reads, and never waits on a
# file that is not an image.
#
# - convert -n with SRC and DST the same file (the same path, a symbolic
#   link, a hard link; a VMDK's flat extent; a backing file of SRC) is
#   refused with "SRC and DST are the same file", exit 1, and the source
#   compares equal (qemu-img compare) to a copy taken before.
# - ferry serve --socket naming the image is refused plainly.
# - a FIFO as IMAGE (every command), as a -n target and as a backing file
#   is refused in well under a second, naming the FIFO; timeout turns a
#   regression (open() waiting for a writer) into a failure, not a hang.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io timeout

mkdir "$WORK/t" && cd "$WORK/t" || die "cd $WORK/t"
mb=$((1 << 20))
mkimg qcow2 src.qcow2 $((8 * mb))
qio qcow2 src.qcow2 "write -s $RAND 0 3m" "write -P 0x5c 5m 64k"
cp src.qcow2 orig.qcow2

# refused_same WHAT ARGS...: ferry convert ARGS is refused as the same
# file, and src.qcow2 is as it was.
refused_same () {
  local what=$1
  shift
  fy convert "$@"
  expect_exit 1 "$what: refused"
  expect_stderr "SRC and DST are the same file" "$what: the message says why"
  same_content "$what: the source is unchanged" orig.qcow2 qcow2 \
    src.qcow2 qcow2
}

# --- the same file, by every name -------------------------------------------
refused_same "the same path" -n -O raw src.qcow2 src.qcow2
refused_same "the same path, -O qcow2" -n -O qcow2 src.qcow2 src.qcow2
ln -s src.qcow2 link.qcow2
refused_same "a symbolic link" -n -O raw src.qcow2 link.qcow2
refused_same "a symbolic link as SRC" -n -O qcow2 link.qcow2 src.qcow2
ln src.qcow2 hard.qcow2
refused_same "a hard link" -n -O raw src.qcow2 hard.qcow2
refused_same "a hard link, -O qcow2" -n -O qcow2 hard.qcow2 src.qcow2

# A backing file of SRC as DST: writing it would change what SRC reads.
mkimg raw base.raw $((8 * mb))
qio raw base.raw "write -P 0x11 0 2m"
cp base.raw base.orig
qemu-img create -q -f qcow2 -b base.raw -F raw top.qcow2 $((8 * mb)) ||
  die "qemu-img create top.qcow2"
qio qcow2 top.qcow2 "write -P 0x22 1m 64k"
fy convert -n -O raw top.qcow2 base.raw
expect_exit 1 "a backing file of SRC as DST: refused"
expect_stderr "SRC and DST are the same file" \
  "a backing file of SRC as DST: the message says why"
expect_stderr "backing chain" "a backing file of SRC as DST: the message says how"
same_content "a backing file of SRC as DST: unchanged" base.orig raw base.raw raw

# A VMDK's flat extent as DST.
qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk $((4 * mb)) ||
  die "qemu-img create flat.vmdk"
qio vmdk flat.vmdk "write -P 0x33 0 1m"
cp flat-flat.vmdk flat-flat.orig
fy convert -n -O raw flat.vmdk flat-flat.vmdk
expect_exit 1 "the flat extent of a VMDK SRC as DST: refused"
expect_stderr "SRC and DST are the same file" \
  "the flat extent of a VMDK SRC as DST: the message says why"
check_true "the flat extent is unchanged" cmp -s flat-flat.orig flat-flat.vmdk
# ... and a VMDK DST one of whose extents is SRC.
fy convert -n -O vmdk flat-flat.vmdk flat.vmdk
expect_exit 1 "a VMDK DST whose extent is SRC: refused"
expect_stderr "SRC and DST are the same file" \
  "a VMDK DST whose extent is SRC: the message says why"
check_true "a VMDK DST whose extent is SRC: unchanged" \
  cmp -s flat-flat.orig flat-flat.vmdk

# Different files are still fine, and a copy compares equal.
qemu-img create -q -f qcow2 other.qcow2 $((8 * mb)) || die "qemu-img create"
fy convert -n -O qcow2 src.qcow2 other.qcow2
expect_exit 0 "-n into another file still works" &&
  same_content "-n into another file: equal" src.qcow2 qcow2 other.qcow2 qcow2

# --- serve: a socket where the image is --------------------------------------
FY_TIMEOUT=20 fy serve --socket "$PWD/src.qcow2" src.qcow2
expect_exit 1 "serve --socket naming the image: refused"
expect_stderr "same file" "serve --socket naming the image: the message says why"
same_content "serve --socket naming the image: unchanged" orig.qcow2 qcow2 \
  src.qcow2 qcow2

# --- FIFOs --------------------------------------------------------------------
mkfifo pipe.img
# quick WHAT ARGS...: ferry ARGS fails within 5 s (timeout), naming the
# FIFO as what it is, and in well under a second.
quick () {
  local what=$1 t0 ms
  shift
  t0=$(date +%s%N)
  FY_TIMEOUT=5 fy "$@"
  ms=$((($(date +%s%N) - t0) / 1000000))
  if [ "$RC" = 124 ]; then
    not_ok "$what: still waiting after 5 s" "$(last_run)"
    return
  fi
  if [ "$1" = compare ]; then
    expect_exit 2 "$what: refused (compare's error status)"
  else
    expect_failure "$what: refused" pipe.img
  fi
  expect_stderr "a FIFO" "$what: the message says what it is"
  # Beyond what ferry takes to start and fail on a missing file (a
  # loaded machine or the sanitizers make that slow).
  if [ $((ms - base_ms)) -lt 1000 ]; then
    ok "$what: in $ms ms (a missing file: $base_ms ms)"
  else
    not_ok "$what: took $ms ms (a missing file: $base_ms ms)"
  fi
}
t0=$(date +%s%N)
fy info nosuch.img
base_ms=$((($(date +%s%N) - t0) / 1000000))
quick "info of a FIFO" info pipe.img
quick "info -f raw of a FIFO" info -f raw pipe.img
quick "convert from a FIFO" convert pipe.img out.raw
quick "convert -n into a FIFO" convert -n -O raw src.qcow2 pipe.img
quick "compare with a FIFO" compare src.qcow2 pipe.img
quick "map of a FIFO" map pipe.img
quick "check of a FIFO" check pipe.img
quick "serve of a FIFO" serve --socket "$PWD/never.sock" pipe.img
only_files "nothing left by the refusals" . base.orig base.raw flat-flat.orig \
  flat-flat.vmdk flat.vmdk hard.qcow2 link.qcow2 orig.qcow2 \
  other.qcow2 pipe.img src.qcow2 top.qcow2

# A FIFO as a backing file.
qemu-img create -q -f qcow2 -u -b pipe.img -F raw fifo-top.qcow2 $((8 * mb)) ||
  die "qemu-img create fifo-top.qcow2"
quick "info of an image whose backing file is a FIFO" info fifo-top.qcow2
quick "convert of an image whose backing file is a FIFO" convert \
  fifo-top.qcow2 out.raw
check_true "no output left" test ! -e out.raw

done_testing
