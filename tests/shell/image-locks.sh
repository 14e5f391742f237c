#!/usr/bin/env bash
# image-locks: ferry takes the image locks QEMU takes, and QEMU sees them.
#
# - two concurrent convert -n into one target: the second is refused
#   while the first runs (its source an nbdkit export slowed by the delay
#   filter), and the first completes, judged by qemu-img compare;
# - convert -n into an image qemu-nbd holds for writing is refused, and
#   the image is unchanged; reading it (info, map, compare, check,
#   convert, inspect) is refused with a hint, and allowed with -U (inspect
#   -U, which starts an appliance, is in guest-inspect);
# - check -U of an image qemu-nbd writes whose backing file is gone is
#   refused naming it, as qemu-img check -U refuses it;
# - while ferry serve holds an image for writing, qemu-img and qemu-io
#   are refused ("Failed to get ... lock"); while it serves one read-only,
#   qemu-io cannot write it but qemu-img info and convert read it; serve
#   -U --readonly serves an image qemu-nbd writes, serve -U alone is
#   refused.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nbd-lib.sh"
require qemu-img qemu-io qemu-nbd nbdkit nbdinfo nbdcopy timeout

cd "$WORK" || die "cd $WORK"
mb=$((1 << 20))
mkimg qcow2 img.qcow2 $((16 * mb))
qio qcow2 img.qcow2 "write -s $RAND 0 4m" "write -P 0x6b 9m 1m"
cp img.qcow2 img.orig
mkimg raw src.raw $((16 * mb))
qio raw src.raw "write -P 0x44 0 16m"

# --- qemu-nbd holds img.qcow2 for writing ------------------------------------
start_qemu_nbd held -f qcow2 "$WORK/img.qcow2"
held_uri=$URI

fy convert -n -O qcow2 src.raw img.qcow2
expect_exit 1 "convert -n into an image qemu-nbd writes: refused"
expect_stderr "img.qcow2: the image is in use by another process (failed to get a write lock)" \
  "convert -n into an image qemu-nbd writes: the message names the file and the lock"

for cmd in "info" "map" "check" "compare img.orig"; do
  # shellcheck disable=SC2086
  fy $cmd img.qcow2
  if [ -z "$CRASH" ] && [ "$RC" != 0 ]; then
    ok "$cmd of an image qemu-nbd writes: refused (exit $RC)"
  else
    not_ok "$cmd of an image qemu-nbd writes: exit $RC" "$(last_run)"
  fi
  expect_stderr "in use by another process" "$cmd: says it is in use"
  expect_stderr "-U (--force-share)" "$cmd: says how to read it anyway"
  # shellcheck disable=SC2086
  fy $cmd -U img.qcow2
  expect_exit 0 "$cmd -U of an image qemu-nbd writes"
done
# inspect: ferry's own read of the disk, before any appliance starts.
FY_TIMEOUT=60 fy inspect img.qcow2
expect_exit 1 "inspect of an image qemu-nbd writes: refused"
expect_stderr "in use by another process" "inspect: says it is in use"
expect_stderr "-U (--force-share)" "inspect: says how to read it anyway"
fy convert -U -O raw img.qcow2 copy.raw
expect_exit 0 "convert -U from an image qemu-nbd writes" &&
  same_content "convert -U: the copy equals the image" img.orig qcow2 \
    copy.raw raw
fy convert -O raw img.qcow2 copy2.raw
expect_exit 1 "convert from an image qemu-nbd writes, without -U: refused"
check_true "no output left" test ! -e copy2.raw

start_serve shared --readonly -U --socket "$WORK/shared.sock" img.qcow2 ||
  not_ok "serve --readonly -U of an image qemu-nbd writes did not start" \
    "$(cat "$WORK/shared.log")"
if size=$(nbdinfo --size "$URI" 2>&1) && [ "$size" = $((16 * mb)) ]; then
  ok "serve --readonly -U: nbdinfo reads it"
else
  not_ok "serve --readonly -U: nbdinfo --size says '$size'"
fi
stop_serve "serve --readonly -U"
FY_TIMEOUT=20 fy serve -U --socket "$WORK/rw.sock" img.qcow2
expect_exit 1 "serve -U without --readonly: refused"
stop_server
same_content "the image qemu-nbd held is unchanged" img.orig qcow2 \
  img.qcow2 qcow2

# --- check -U of an image qemu-nbd writes whose backing file is gone ----------
# qemu-nbd opens the chain while base.raw exists; then it goes.
mkimg raw base.raw $((4 * mb))
qemu-img create -q -f qcow2 -b base.raw -F raw orphan.qcow2 $((4 * mb)) ||
  die "qemu-img create orphan.qcow2"
start_qemu_nbd orphan -f qcow2 "$WORK/orphan.qcow2"
rm base.raw
out=$(qemu-img check -U orphan.qcow2 2>&1)
if [ $? != 0 ] && grep -q "base.raw" <<<"$out"; then
  ok "qemu-img check -U of the orphan qemu-nbd holds: refused, naming base.raw"
else
  not_ok "qemu-img check -U of the orphan: expected a refusal naming base.raw" "$out"
fi
fy check -U orphan.qcow2
expect_failure "check -U of an image qemu-nbd writes, its backing file gone" base.raw
expect_stderr "missing" "check -U of the orphan: says the backing file is missing"
fy check orphan.qcow2
expect_exit 1 "check of the orphan without -U: refused"
expect_stderr "in use by another process" "check of the orphan without -U: says it is in use"
stop_server

# --- ferry serve holds an image --------------------------------------------------
start_serve rw --socket "$WORK/rw.sock" img.qcow2 ||
  not_ok "serve did not start" "$(cat "$WORK/rw.log")"
out=$(qemu-img convert -O raw img.qcow2 q.raw 2>&1)
if [ $? != 0 ] && grep -q "Failed to get .*lock" <<<"$out"; then
  ok "qemu-img convert from an image ferry serves writable: refused"
else
  not_ok "qemu-img convert from an image ferry serves writable: not refused" "$out"
fi
out=$(qemu-io -f qcow2 -c "write -P 1 0 512" img.qcow2 2>&1)
if grep -q "Failed to get .*lock" <<<"$out"; then
  ok "qemu-io writing an image ferry serves writable: refused"
else
  not_ok "qemu-io writing an image ferry serves writable: not refused" "$out"
fi
stop_serve "serve (writable)"
qemu_clean "after serve: qemu-img check" img.qcow2

start_serve ro --readonly --socket "$WORK/ro.sock" img.qcow2 ||
  not_ok "serve --readonly did not start" "$(cat "$WORK/ro.log")"
out=$(qemu-io -f qcow2 -c "write -P 1 0 512" img.qcow2 2>&1)
if grep -q "Failed to get .*lock" <<<"$out"; then
  ok "qemu-io writing an image ferry serves read-only: refused"
else
  not_ok "qemu-io writing an image ferry serves read-only: not refused" "$out"
fi
if out=$(qemu-img info img.qcow2 2>&1); then
  ok "qemu-img info of an image ferry reads"
else
  not_ok "qemu-img info of an image ferry reads" "$out"
fi
if out=$(qemu-img convert -O raw img.qcow2 q2.raw 2>&1); then
  same_content "qemu-img convert of an image ferry reads" img.orig qcow2 \
    q2.raw raw
else
  not_ok "qemu-img convert of an image ferry reads" "$out"
fi
fy info img.qcow2
expect_exit 0 "ferry info of an image ferry serves read-only"
stop_serve "serve --readonly"
same_content "the image ferry served is unchanged" img.orig qcow2 \
  img.qcow2 qcow2

# --- two writers ---------------------------------------------------------------------
# The first convert reads a slow export (each read waits 0.5 s), so it
# holds its target for seconds; the second, meanwhile, is refused.
truncate -s $((16 * mb)) target.raw
nbdkit -U - pattern size=$((16 * mb)) --run 'nbdcopy "$uri" pattern.raw' ||
  die "nbdcopy of the pattern"
start_nbdkit slow --filter=delay pattern size=$((16 * mb)) delay-read=500ms
(timeout 120 "$FERRY" convert -n -m 1 -O raw "$URI" target.raw \
   >first.out 2>&1; echo $? >first.rc) &
first=$!
# Its lock refusing others' writes (byte 201) shows in /proc/locks.
if wait_until 20 grep -q ":$(stat -c %i target.raw) 201 201\$" /proc/locks; then
  fy convert -n -O raw src.raw target.raw
  expect_exit 1 "a second convert -n into the same target: refused"
  expect_stderr "in use by another process" \
    "a second convert -n: says the target is in use"
else
  not_ok "the first convert -n never took its locks" "$(cat first.out)"
fi
wait "$first"
if [ "$(cat first.rc)" = 0 ]; then
  ok "the first convert -n finished"
  same_content "the first convert -n: the target is its source" \
    pattern.raw raw target.raw raw
else
  not_ok "the first convert -n: exit $(cat first.rc)" "$(cat first.out)"
fi
stop_server

done_testing
