#!/usr/bin/env bash
# nbd-contexts: metadata contexts other than base:allocation, through the
# library's ferry_image_context_extents as ferry map shows them.  A
# persistent dirty bitmap added with qemu-img bitmap, writes made with
# qemu-io after it, exported by qemu-nbd -B: ferry map --context
# qemu:dirty-bitmap:NAME lists exactly the ranges written (whole 64 KiB
# granules), and agrees with nbdinfo --map.  qemu:allocation-depth of an
# overlay (qemu-nbd -A) agrees with nbdinfo.  A context that is not
# offered, on a file or an export, is an error that lists what is.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nbd-lib.sh"
require qemu-img qemu-io qemu-nbd nbdinfo python3

cd "$WORK" || die "cd $WORK"
mb=$((1 << 20))
kb=1024
size=$((16 * mb))

mkimg qcow2 disk.qcow2 $size
# Before the bitmap: not dirty.
qio qcow2 disk.qcow2 "write -P 0x11 0 2m" "write -P 0x12 8m 1m"
qemu-img bitmap --add --granularity 64k disk.qcow2 bm0 >bitmap.log 2>&1 ||
  die "qemu-img bitmap --add: $(cat bitmap.log)"
# After it: each of these marks the 64 KiB granules it touches.
qio qcow2 disk.qcow2 \
  "write -P 0x21 $((1 * mb)) $((64 * kb))" \
  "write -P 0x22 $((5 * mb)) $((128 * kb))" \
  "write -P 0x23 $((5 * mb + 192 * kb)) $((64 * kb))" \
  "write -z $((9 * mb)) $((64 * kb))" \
  "write -P 0x24 $((14 * mb + 100)) 200" \
  "write -P 0x25 $((size - 64 * kb)) $((64 * kb))"
# Those writes as dirty ranges, in granules: [start, length).
dirty=(
  "$((1 * mb)) $((64 * kb))"
  "$((5 * mb)) $((128 * kb))"
  "$((5 * mb + 192 * kb)) $((64 * kb))"
  "$((9 * mb)) $((64 * kb))"
  "$((14 * mb)) $((64 * kb))"
  "$((size - 64 * kb)) $((64 * kb))"
)
# The expected map, in nbdinfo's layout: clean between the dirty ranges.
pos=0
for r in "${dirty[@]}"; do
  read -r s l <<<"$r"
  [ "$s" -gt "$pos" ] && printf '%10d  %10d  %3d  clean\n' "$pos" $((s - pos)) 0
  printf '%10d  %10d  %3d  dirty\n' "$s" "$l" 1
  pos=$((s + l))
done >expected.map
[ "$pos" -lt "$size" ] && printf '%10d  %10d  %3d  clean\n' "$pos" $((size - pos)) 0 >>expected.map

start_qemu_nbd bm -r -f qcow2 -B bm0 disk.qcow2
fy map --context qemu:dirty-bitmap:bm0 "$URI"
expect_exit 0 "map of the dirty bitmap" &&
  same_output "the dirty bitmap lists exactly the ranges written after it was added" "$OUT" expected.map
nbdinfo --map=qemu:dirty-bitmap:bm0 "$URI" >nbdinfo.map 2>&1
same_output "the dirty bitmap: nbdinfo --map says the same" "$OUT" nbdinfo.map
nbdinfo --map=qemu:dirty-bitmap:bm0 --json "$URI" >nbdinfo.json 2>&1
fy map --json --context qemu:dirty-bitmap:bm0 "$URI"
same_output "the dirty bitmap in JSON: nbdinfo --map --json says the same" "$OUT" nbdinfo.json
fy info --json "$URI"
check_true "info lists the bitmap's context" \
  grep -q '"contexts":"base:allocation, qemu:dirty-bitmap:bm0"' "$OUT"
fy map "$URI"
nbdinfo --map "$URI" >base.map
same_output "base:allocation alongside the bitmap" "$OUT" base.map
fy map --context qemu:dirty-bitmap:other "$URI"
expect_exit 1 "a bitmap the export does not have"
expect_stderr "no metadata context 'qemu:dirty-bitmap:other' (this image offers: base:allocation, qemu:dirty-bitmap:bm0)" \
  "a missing bitmap: the message lists what is offered"
stop_server

# --- allocation depth of an overlay -------------------------------------------------
mkimg qcow2 base.qcow2 $size
qio qcow2 base.qcow2 "write -P 0x31 0 4m" "write -P 0x32 10m 1m"
mkimg qcow2 top.qcow2 $size "backing_file=base.qcow2,backing_fmt=qcow2"
qio qcow2 top.qcow2 "write -P 0x41 2m 4m" "write -z 11m 64k"
start_qemu_nbd depth -r -f qcow2 -A top.qcow2
fy map --context qemu:allocation-depth "$URI"
nbdinfo --map=qemu:allocation-depth "$URI" >depth.map 2>&1
expect_exit 0 "map of qemu:allocation-depth" &&
  same_output "allocation depth: nbdinfo --map says the same" "$OUT" depth.map
check_true "allocation depth: the backing layer shows as depth 2" \
  grep -q 'backing depth 2' "$OUT"
stop_server

# --- files offer base:allocation only ----------------------------------------------------
fy map --context qemu:dirty-bitmap:bm0 disk.qcow2
expect_exit 1 "a file has no dirty bitmap context"
expect_stderr "disk.qcow2: no metadata context 'qemu:dirty-bitmap:bm0' (this image offers: base:allocation)" \
  "a file: the message lists base:allocation"
fy map --context base:allocation top.qcow2
qemu-img map --output=json top.qcow2 >/dev/null 2>&1 || die "qemu-img map"
expect_exit 0 "base:allocation named explicitly on a file"

done_testing
