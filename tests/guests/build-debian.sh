#!/usr/bin/env bash
# build-debian.sh OUTDIR: build the test guest, a small Debian 12 VM as a
# VMware VM would have it, into OUTDIR (which must not exist yet):
#
#   OUTDIR/disk.vmdk   monolithicSparse VMDK, 2 GiB: an MBR partition table,
#                      one ext4 partition (sda1), GRUB 2 in the MBR; fstab
#                      and the kernel command line name /dev/sda1; an
#                      initramfs made with MODULES=dep while the guest ran
#                      on a SATA (AHCI) disk, so it holds no virtio driver;
#                      open-vm-tools installed; ifupdown configures the
#                      VMware NIC name ens33; consoles on tty0 and ttyS0.
#   OUTDIR/guest.env   facts the tests check (shell assignments).
#   OUTDIR/build.log   what the build printed.
#
# Needs root (debootstrap), debootstrap, guestfish (libguestfs-tools),
# qemu-system-x86_64 and qemu-img.  The packages come from the Debian
# archive this machine's apt configuration names (apt-mirror.sh).  Nothing
# is mounted on the host: libguestfs writes the disk, and GRUB is installed
# by running grub-install inside the libguestfs appliance.
#
# Steps, and why:
#   1. debootstrap --variant=minbase with a kernel, grub-pc, initramfs-tools,
#      systemd, ifupdown and open-vm-tools; drop what a boot test never
#      needs (docs, GPU/media/wireless modules, the .deb cache) to keep the
#      image near 250 MiB of data.
#   2. libguestfs makes the partition and file system, unpacks the tree,
#      installs GRUB and writes grub.cfg with root=/dev/sda1.
#   3. The guest boots once under QEMU with a SATA disk and an init script
#      that runs update-initramfs with MODULES=dep, as an installer on that
#      hardware does, then powers off.  Its console output must show an
#      initramfs without virtio modules, or the build fails.
#   4. qemu-img turns the raw disk into the VMDK.
#
# The root password is "ferry" (an isolated test VM; handy when debugging).
# Run by tests/guests/guest-cache.sh, which caches OUTDIR by this script's
# content: only the first run on a machine pays for it (5 to 15 minutes).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: build-debian.sh OUTDIR}
SUITE=bookworm
HOSTNAME_=ferry-debian12
SIZE=2G
export LIBGUESTFS_BACKEND=direct
# Linux guests hang under KVM on some hosts; TCG always works.
export LIBGUESTFS_BACKEND_SETTINGS=force_tcg

[ "$(id -u)" = 0 ] || { echo "build-debian.sh: debootstrap needs root" >&2; exit 1; }
for t in debootstrap guestfish qemu-system-x86_64 qemu-img; do
  command -v "$t" >/dev/null || { echo "build-debian.sh: $t is not installed (scripts/install-deps)" >&2; exit 1; }
done
[ ! -e "$OUT" ] || { echo "build-debian.sh: $OUT exists" >&2; exit 1; }
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/ferry-guest-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
step () { echo "=== build-debian.sh: $* ($(date +%T))"; }

MIRROR=$("$HERE/apt-mirror.sh" "$SUITE")
PACKAGES=linux-image-amd64,grub-pc,initramfs-tools,systemd-sysv,udev,ifupdown,iproute2,open-vm-tools,kmod
ROOT=$WORK/root
# The debootstrap tree is kept as a tarball beside the builds (STAGE_DIR,
# set by guest-cache.sh), keyed by what debootstrap is asked for, so a
# build that fails later (or a change to the steps below) does not fetch
# and unpack every package again.
stage_key=$(echo "$SUITE $MIRROR $PACKAGES minbase" | sha256sum | cut -c1-16)
stage=${STAGE_DIR:+$STAGE_DIR/debootstrap-$stage_key.tar}
mkdir -p "$ROOT"
if [ -n "$stage" ] && [ -f "$stage" ]; then
  step "debootstrap tree from $stage"
  tar -C "$ROOT" --numeric-owner --xattrs --xattrs-include='*' -xf "$stage"
else
  step "debootstrap $SUITE from $MIRROR"
  timeout 2400 debootstrap --variant=minbase --include="$PACKAGES" \
    "$SUITE" "$ROOT" "$MIRROR"
  if [ -n "$stage" ]; then
    rm -f "$STAGE_DIR"/debootstrap-*.tar
    tar -C "$ROOT" --numeric-owner --xattrs --xattrs-include='*' -cf "$stage.tmp" .
    mv "$stage.tmp" "$stage"
  fi
fi

step "configuring the tree"
echo "$HOSTNAME_" >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$HOSTNAME_" >"$ROOT/etc/hosts"
# As the Debian installer writes it on a VMware VM with a SATA disk.
cat >"$ROOT/etc/fstab" <<'EOF'
# /etc/fstab: static file system information.
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
/dev/sda1       /               ext4    errors=remount-ro 0       1
EOF
# VMware's first NIC is ens33; a static address that QEMU's user network
# also uses, so the interface works wherever it keeps its name.
cat >"$ROOT/etc/network/interfaces" <<'EOF'
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

allow-hotplug ens33
iface ens33 inet static
	address 10.0.2.15/24
	gateway 10.0.2.2
EOF
# The login banner shows ens33's address: a boot test reads it on the
# serial console to see that networking came up.
printf 'Debian GNU/Linux 12 \\n \\l\nens33: \\4{ens33}\n\n' >"$ROOT/etc/issue"
echo 'root:ferry' | chroot "$ROOT" chpasswd
# GRUB on the serial console too, kernel on /dev/sda1 by name (as an old
# installer, or a VMware template, leaves it).
sed -i -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=1/' \
  -e 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT=""/' \
  -e 's/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"/' \
  "$ROOT/etc/default/grub"
cat >>"$ROOT/etc/default/grub" <<'EOF'
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_LINUX_UUID=true
GRUB_DISABLE_OS_PROBER=true
EOF
sed -i 's/^MODULES=.*/MODULES=dep/' "$ROOT/etc/initramfs-tools/initramfs.conf"
# The one-off init of step 3.
cat >"$ROOT/usr/local/sbin/ferry-build-initramfs" <<'EOF'
#!/bin/sh
# Run once as init= by build-debian.sh: rebuild the initramfs with
# MODULES=dep on the hardware this boot runs on, report, power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
mount -o remount,rw /
echo "ferry-build: root on $(readlink -f /sys/class/block/sda)"
update-initramfs -u -k all 2>&1
for i in /boot/initrd.img-*; do
  echo "ferry-build: $i virtio modules: $(lsinitramfs "$i" | grep -c '/virtio')"
  echo "ferry-build: $i ahci modules: $(lsinitramfs "$i" | grep -c '/ahci.ko')"
done
rm -f /usr/local/sbin/ferry-build-initramfs
sync
echo "ferry-build: done"
mount -o remount,ro /
echo o >/proc/sysrq-trigger
sleep 60
EOF
chmod 755 "$ROOT/usr/local/sbin/ferry-build-initramfs"
# Small: no documentation, no locales, no package cache, no drivers for
# hardware a VM never has.
rm -rf "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
  "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*_Packages
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
KVER=$(basename "$(ls -d "$ROOT"/lib/modules/*)")
for d in drivers/gpu drivers/media drivers/infiniband drivers/iio drivers/staging \
         drivers/net/wireless drivers/bluetooth drivers/isdn drivers/usb/gadget \
         sound net/bluetooth net/wireless net/mac80211; do
  rm -rf "$ROOT/lib/modules/$KVER/kernel/$d"
done
chroot "$ROOT" depmod -a "$KVER"
# The initramfs debootstrap made has every driver (MODULES=most, the
# default then); step 3 boots with it and replaces it.
tar -C "$ROOT" --numeric-owner --xattrs --xattrs-include='*' -cf "$WORK/root.tar" .
rm -rf "$ROOT"

step "making the disk with libguestfs"
RAW=$WORK/disk.raw
truncate -s "$SIZE" "$RAW"
timeout 1800 guestfish --rw -a "$RAW" <<EOF
run
part-init /dev/sda mbr
part-add /dev/sda p 2048 -1
part-set-bootable /dev/sda 1 true
mkfs ext4 /dev/sda1
mount /dev/sda1 /
tar-in $WORK/root.tar / xattrs:true
echo "--- probe in the guest's root"
sh "PATH=/usr/sbin:/usr/bin:/sbin:/bin; grub-probe --target=device / 2>&1; grub-probe --target=device /boot/grub 2>&1; grep -E ' / | /boot' /proc/self/mountinfo 2>&1 || true"
echo "--- grub-install by the appliance"
debug sh "grub-install --target=i386-pc --directory=/sysroot/usr/lib/grub/i386-pc --boot-directory=/sysroot/boot /dev/sda 2>&1"
sh "PATH=/usr/sbin:/usr/bin:/sbin:/bin update-grub 2>&1"
sh "grep -E 'linux.*vmlinuz' /boot/grub/grub.cfg"
download /boot/vmlinuz-$KVER $WORK/vmlinuz
download /boot/initrd.img-$KVER $WORK/initrd
umount-all
EOF
rm -f "$WORK/root.tar"

step "booting once on SATA to make the initramfs with MODULES=dep"
timeout 1800 qemu-system-x86_64 -accel tcg -m 1024 -nodefaults -display none \
  -no-reboot -serial "file:$WORK/console.log" \
  -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd" \
  -append "root=/dev/sda1 rootwait console=ttyS0,115200n8 init=/usr/local/sbin/ferry-build-initramfs" \
  -device ahci,id=ahci -drive file="$RAW",format=raw,if=none,id=d0 \
  -device ide-hd,drive=d0,bus=ahci.0 -nic none || true
sed -n '/ferry-build:/p' "$WORK/console.log"
if ! grep -q 'ferry-build: done' "$WORK/console.log" ||
   ! grep -q "ferry-build: /boot/initrd.img-$KVER virtio modules: 0" "$WORK/console.log" ||
   grep -q "ferry-build: /boot/initrd.img-$KVER ahci modules: 0" "$WORK/console.log"; then
  echo "build-debian.sh: the MODULES=dep initramfs was not made as expected; console:" >&2
  tail -n 60 "$WORK/console.log" >&2
  exit 1
fi

step "converting to VMDK"
qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse,adapter_type=ide \
  "$RAW" "$OUT/disk.vmdk"
ROOT_UUID=$(guestfish --ro -a "$OUT/disk.vmdk" run : get-e2uuid /dev/sda1 2>/dev/null || true)
cat >"$OUT/guest.env" <<EOF
GUEST_HOSTNAME=$HOSTNAME_
GUEST_KERNEL=$KVER
GUEST_ROOT_UUID=$ROOT_UUID
GUEST_DISTRO=debian
GUEST_VERSION=12
EOF
step "done: $OUT"
