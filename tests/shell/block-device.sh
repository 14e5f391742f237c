#!/usr/bin/env bash
# block-device: raw on a block device (a loop device over a file of the
# test's): ferry reads its size from the device, converts into it with -n
# (zeroes written with BLKZEROOUT or plain writes, since a device keeps
# old data) and out of it, judged by qemu-img compare.  Skipped where no
# loop device can be had.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io losetup

cd "$WORK" || die "cd $WORK"
mb=$((1 << 20))

truncate -s $((16 * mb)) backing-store.img
dev=$(losetup -f --show backing-store.img 2>/dev/null) || {
  echo "# no loop device here: skipped"
  exit 77
}
at_exit "losetup -d $dev"
# The device starts full of old data that the copy must replace.
qemu-io -f raw -c "write -P 0xee 0 16m" "$dev" >/dev/null 2>&1 ||
  die "qemu-io could not write $dev"

mkimg qcow2 src.qcow2 $((16 * mb))
qio qcow2 src.qcow2 "write -P 0x11 0 1m" "write -z 2m 1m" "write -P 0x22 5m 64k" \
  "write -c -P 0x33 9m 64k"

fy info --json "$dev"
if expect_exit 0 "ferry info on a block device"; then
  check_true "ferry info on a block device: probed as raw, 16 MiB" \
    python3 -c "import json,sys; o=json.load(open('$OUT')); sys.exit(not (o['format']=='raw' and o['virtual-size']==$((16 * mb))))"
fi

fy convert -n -O raw src.qcow2 "$dev"
if expect_exit 0 "convert -n into a block device"; then
  # Every old byte is gone, holes included (qemu-img reads the device).
  same_content "convert -n into a block device: qemu-img compare" src.qcow2 qcow2 "$dev" raw
fi

fy convert -O qcow2 "$dev" out.qcow2
if expect_exit 0 "convert out of a block device"; then
  same_content "convert out of a block device: qemu-img compare" "$dev" raw out.qcow2 qcow2
  qemu_clean "convert out of a block device: qemu-img check" out.qcow2
fi

# A device too small for the source is refused before anything is written.
mkimg raw big.raw $((32 * mb))
fy convert -n -O raw big.raw "$dev"
expect_failure "convert -n into a device smaller than the source" "$dev"

done_testing
