#!/usr/bin/env bash
# guest-inspect: ferry inspect on the test guest reports what the build put
# in it (tests/guests/build-debian.sh and its guest.env): an MBR disk with
# one bootable ext4 partition, Debian 12 on x86_64 named ferry-debian12,
# GRUB 2 on BIOS, systemd, the kernel with its virtio modules, open-vm-tools
# as a package, ifupdown configuring ens33, and fstab and the kernel
# command line naming /dev/sda1 by its bus name.  A disk qemu-nbd writes:
# refused, and read with -U.  Then bad input: a missing image, an image
# that is not a disk ferry reads.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/guest-lib.sh"
. "$(dirname "$0")/nbd-lib.sh"
require python3 qemu-img qemu-nbd
guest_setup
cd "$WORK" || die "cd $WORK"

FY_TIMEOUT=600 fy inspect --json "$GUEST_VMDK"
expect_exit 0 "ferry inspect --json on the test guest"
cp "$OUT" inspect.json
os='j["operating-systems"][0]'
check_json "one operating system" inspect.json 'len(j["operating-systems"])' 1
check_json "it is Linux" inspect.json "$os[\"type\"]" linux
check_json "distribution" inspect.json "$os[\"distro\"]" "$GUEST_DISTRO"
check_json "version" inspect.json "$os[\"major-version\"]" "$GUEST_VERSION"
check_json "architecture" inspect.json "$os[\"arch\"]" x86_64
check_json "hostname" inspect.json "$os[\"hostname\"]" "$GUEST_HOSTNAME"
check_json "root device" inspect.json "$os[\"root\"]" /dev/sda1
check_json "package format and manager" inspect.json "$os[\"package-format\"] + ' ' + $os[\"package-management\"]" "deb apt"
check_json "init system" inspect.json "$os[\"init-system\"]" systemd
check_json "boot loader" inspect.json "$os[\"bootloader\"] + ' ' + $os[\"bootloader-config\"]" "grub2 /boot/grub/grub.cfg"
check_json "firmware" inspect.json "$os[\"firmware\"]" bios
check_json "initramfs tool" inspect.json "$os[\"initramfs-tool\"]" update-initramfs
check_json "SELinux not configured" inspect.json "$os[\"selinux\"]" None
check_json "the kernel" inspect.json "[k[\"version\"] for k in $os[\"kernels\"]]" "[\"$GUEST_KERNEL\"]"
check_json "the kernel's virtio drivers (modules)" inspect.json \
  "$os[\"kernels\"][0][\"virtio\"]" '{"virtio_pci": true, "virtio_blk": true, "virtio_scsi": true, "virtio_net": true}'
check_json "kernel image and initrd" inspect.json \
  "$os[\"kernels\"][0][\"vmlinuz\"] + ' ' + $os[\"kernels\"][0][\"initrd\"]" \
  "/boot/vmlinuz-$GUEST_KERNEL /boot/initrd.img-$GUEST_KERNEL"
check_json "open-vm-tools, packaged" inspect.json \
  "[(t[\"hypervisor\"], t[\"name\"], t[\"package\"]) for t in $os[\"hypervisor-tools\"]]" \
  '[["vmware", "open-vm-tools", "open-vm-tools"]]'
check_json "the network file and its interface" inspect.json \
  "[(n[\"path\"], n[\"kind\"], n[\"interfaces\"]) for n in $os[\"network-files\"]]" \
  '[["/etc/network/interfaces", "ifupdown", ["ens33"]]]'
check_json "fstab: / on /dev/sda1, named by device" inspect.json \
  "[(f[\"spec\"], f[\"mountpoint\"], f[\"type\"], f[\"naming\"]) for f in $os[\"fstab\"]]" \
  '[["/dev/sda1", "/", "ext4", "device"]]'
check_json "the kernel command line names /dev/sda1" inspect.json "$os[\"boot-devices\"]" '["/dev/sda1"]'
check_json "partition table" inspect.json \
  '[(p["device"], p["table"], p["type"], p["bootable"], p["start"]) for p in j["partitions"]]' \
  '[["/dev/sda1", "msdos", "83", true, 1048576]]'
check_json "file system and its UUID" inspect.json \
  '[(f["device"], f["type"], f["uuid"]) for f in j["filesystems"]]' \
  "[[\"/dev/sda1\", \"ext4\", \"$GUEST_ROOT_UUID\"]]"
check_json "no LVM" inspect.json 'j["lvm"]' '[]'

# The human form carries the same facts (a few of them, as a reader sees them).
FY_TIMEOUT=600 fy inspect "$GUEST_VMDK"
expect_exit 0 "ferry inspect (human)"
for want in "distribution:    debian 12." "hostname:        $GUEST_HOSTNAME" \
            "boot loader:     grub2 (/boot/grub/grub.cfg)" "vmware: open-vm-tools" \
            "/etc/network/interfaces (ifupdown): ens33" "by device"; do
  if grep -q -F -- "$want" "$OUT"; then ok "human form shows '$want'"
  else not_ok "human form lacks '$want'" "$(cat "$OUT")"; fi
done

# A disk another process writes: inspect refuses it before any appliance
# starts, and -U reads it all the same (a blank disk: the appliance ran
# and found no operating system).
qemu-img create -q -f qcow2 held.qcow2 64M || die "qemu-img create held.qcow2"
start_qemu_nbd held -f qcow2 "$WORK/held.qcow2"
FY_TIMEOUT=60 fy inspect held.qcow2
expect_exit 1 "inspect of a disk qemu-nbd writes: refused"
expect_stderr "in use by another process" "inspect of a held disk: says it is in use"
FY_TIMEOUT=600 fy inspect -U held.qcow2
expect_exit 0 "inspect -U of a disk qemu-nbd writes"
if grep -q "No operating system found" "$OUT"; then
  ok "inspect -U of a blank held disk: the appliance read it, no operating system"
else
  not_ok "inspect -U of a blank held disk: expected 'No operating system found'" "$(last_run)"
fi
stop_server

# Bad input: nothing is started for an image that cannot be read.
fy inspect "$WORK/missing.vmdk"
expect_failure "a missing image" missing.vmdk
printf 'KDMV but not really a VMDK' >bad.vmdk
fy inspect -f vmdk bad.vmdk
expect_failure "an image that is not what -f says" bad.vmdk
fy inspect
expect_exit 1 "no image given"
expect_stderr "expected the VM's disk images" "no image given: says what is missing"
done_testing
