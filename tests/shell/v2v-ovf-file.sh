#!/usr/bin/env bash
# v2v-ovf-file: an OVF whose disk item names a File of References directly
# (HostResource ovf:/file/ID), as VMware VirtualCenter exports may, beside
# one that names a Disk of DiskSection (ovf:/disk/ID).  DSP0243 allows
# both; the file is then the disk, its format probed and its size the
# image's own.  The plan lists both disks, and both are migrated, from the
# folder and from an OVA; qemu-img compare judges each output disk against
# its source.  A file reference that leads nowhere is refused, naming the
# item.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/v2v-lib.sh"
require qemu-img qemu-io python3 tar virt-xml-validate

cd "$WORK" || die "cd $WORK"
mkdir -p pkg

# Two disks as VirtualCenter ships them: streamOptimized VMDKs.
mkimg raw pkg/one.raw 16M
qio raw pkg/one.raw "write -s $RAND 0 1M" "write -P 0x31 9M 64k" \
  "write -s $RAND $((16 * 1024 * 1024 - 4096)) 4096"
mkimg raw pkg/two.raw 8M
qio raw pkg/two.raw "write -P 0x52 0 4096" "write -s $RAND 3M 512k" \
  "write -s $RAND $((8 * 1024 * 1024 - 512)) 512"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized pkg/one.raw pkg/vc-disk1.vmdk ||
  die "qemu-img convert"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized pkg/two.raw pkg/vc-file1.vmdk ||
  die "qemu-img convert"

# vc_ovf [HOSTRESOURCE2]: the descriptor (v2v-tar.py, VMware's dialect),
# its second disk item naming HOSTRESOURCE2 (ovf:/file/vmfile1, the file
# vc-file1.vmdk, by default).
vc_ovf () {
  "$PYTHON" "$TESTS_DIR/v2v-tar.py" ovf-file vc vc-disk1.vmdk vmdk $((16 << 20)) \
    vc-file1.vmdk "$@"
}
vc_ovf >pkg/vc.ovf
(cd pkg && tar -cf ../vc.ova vc.ovf vc-disk1.vmdk vc-file1.vmdk) || die "tar cf"

# --- the plan: both disks, the file's format and size from the image -------
fy v2v pkg/vc.ovf --to libvirt --out dry --dry-run --json
expect_exit 0 "ovf:/file/ disk: the dry run plans"
check_true "ovf:/file/ disk: two disks planned, the second a vmdk of 8 MiB on scsi 0:1" \
  "$PYTHON" -c '
import json, sys
p = json.load(open(sys.argv[1]))
d = p["disks"]
assert len(d) == 2, d
assert d[1]["source-format"] == "vmdk", d[1]
assert d[1]["virtual-size"] == 8 << 20, d[1]
assert d[0]["virtual-size"] == 16 << 20, d[0]
assert d[1]["migrated"], d[1]
v = p["vm"]["disks"][1]
assert (v["file"], v["bus"], v["controller"], v["unit"]) == ("vc-file1.vmdk", "scsi", 0, 1), v
' "$OUT"
fy v2v pkg/vc.ovf --to libvirt --out dry --dry-run
check_true "ovf:/file/ disk: the human plan names the file" grep -q "vc-file1.vmdk" "$OUT"

# --- migrated from the folder and from the OVA -------------------------------
for src in pkg/vc.ovf vc.ova; do
  out=out-$(basename "$src" | tr . -)
  fy v2v "$src" --to libvirt --out "$out"
  expect_exit 0 "$src: migrated"
  if [ -f "$out/vc-disk2.qcow2" ]; then
    same_content "$src: disk 1 (ovf:/disk/) equals its source" pkg/one.raw raw "$out/vc-disk1.qcow2" qcow2
    same_content "$src: disk 2 (ovf:/file/) equals its source" pkg/two.raw raw "$out/vc-disk2.qcow2" qcow2
    qemu_clean "$src: disk 2 is clean" "$out/vc-disk2.qcow2"
    validate "$src" "$out/vc.xml"
    check_true "$src: the domain has both disks" \
      test "$(grep -c "<disk type=.file. device=.disk.>" "$out/vc.xml")" = 2
  else
    not_ok "$src: no second disk written" "$(ls -R "$out" 2>&1)"
  fi
done

# --- a file reference that leads nowhere -------------------------------------
vc_ovf ovf:/file/nosuch >pkg/bad.ovf
fy v2v pkg/bad.ovf --to libvirt --out bad --dry-run
expect_failure "ovf:/file/ naming no file: refused" bad.ovf
expect_stderr "item 6 (Hard disk 2): HostResource 'ovf:/file/nosuch' names no file of References" \
  "ovf:/file/ naming no file: the message names the item"
# The same file attached twice.
vc_ovf ovf:/file/file1 >pkg/twice.ovf
fy v2v pkg/twice.ovf --to libvirt --out bad --dry-run
expect_failure "a file attached twice: refused" twice.ovf
expect_stderr "is attached twice" "a file attached twice: says so"

done_testing
