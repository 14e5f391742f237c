#!/usr/bin/env bash
# v2v-checks: each prerequisite check of `ferry v2v`, run before any byte
# moves, on a VMX (or OVF) written here to trip it: a missing disk file,
# disks that cannot be migrated (raw device mapping, independent,
# encrypted), a disk or a manifest line that is a FIFO, a disk that is no
# disk (a text file of 651 bytes, a VMX's "VMDK" of 4), snapshots, too
# little free space, secure boot, MAC addresses that clash, no name, a
# format ferry cannot write, a bad --network-map.
# Errors stop the migration (exit 1, the error repeated on stderr, nothing
# written); warnings let it go ahead; each comes with a remedy.
. "$(dirname "$0")/lib.sh"
require qemu-img python3 gzip

cd "$WORK" || die "cd $WORK"
mkdir -p s
qemu-img create -q -f qcow2 s/disk.qcow2 16M || die "qemu-img create"
cat >s/base.vmx <<'EOF'
displayName = "chk"
guestOS = "other-64"
memSize = "512"
scsi0.present = "TRUE"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "disk.qcow2"
ethernet0.present = "TRUE"
ethernet0.addressType = "static"
ethernet0.address = "00:50:56:00:00:01"
ethernet0.networkName = "net"
EOF

# variant NAME LINE...: s/NAME.vmx, the base with LINEs added (a line
# "-KEY" removes the base's KEY instead).
variant () {
  local name=$1 line
  shift
  cp s/base.vmx "s/$name.vmx"
  for line in "$@"; do
    case $line in
      -*) sed -i "/^${line#-} =/d" "s/$name.vmx" ;;
      *) echo "$line" >>"s/$name.vmx" ;;
    esac
  done
}

# expect_check WHAT SEVERITY TEXT REMEDY: the last dry run listed the
# check (message and remedy) with that severity.
expect_check () {
  local what=$1 sev=$2 text=$3 remedy=$4
  if grep -q -F -- "  $sev: $text" "$OUT" && grep -A1 -F -- "  $sev: $text" "$OUT" |
       grep -q -F -- "    remedy: $remedy"; then
    ok "$what: $sev with its remedy"
  else
    not_ok "$what: $sev '$text' with remedy '$remedy'" "$(last_run)"
  fi
}

# An error: exit 1, repeated on stderr naming the source, nothing written.
refused () {
  local what=$1 src=$2
  expect_failure "$what: refused" "$src"
  expect_stderr "1 check failed: nothing was done" "$what: says nothing was done"
  check_true "$what: nothing written" test ! -e out
}

fy v2v s/base.vmx --to libvirt --out out --dry-run
expect_exit 0 "a clean VM passes"
check_true "clean VM: all checks passed" grep -q "^Checks: all passed" "$OUT"

variant missing "-scsi0:0.fileName" 'scsi0:0.fileName = "gone.qcow2"'
fy v2v s/missing.vmx --to libvirt --out out
refused "missing disk file" s/missing.vmx
expect_check "missing disk file" error "disk scsi0:0: file gone.qcow2 is missing" \
  "put the file where the description says, or fix the name there"
expect_stderr "s/missing.vmx: disk scsi0:0: file gone.qcow2 is missing" "missing disk file: on stderr too"

# A disk or a manifest line that names a FIFO: refused at once, not a
# read that waits for a writer forever.
mkfifo s/fifo.img s/fifo.vmdk || die "mkfifo"
for f in fifo.img fifo.vmdk; do
  variant fifo "-scsi0:0.fileName" "scsi0:0.fileName = \"$f\""
  FY_TIMEOUT=20 fy v2v s/fifo.vmx --to libvirt --out out
  refused "a disk that is a FIFO ($f)" s/fifo.vmx
  expect_check "a disk that is a FIFO ($f)" error "disk scsi0:0: file $f is not a regular file or a block device" \
    "put the file where the description says, or fix the name there"
done
mkdir -p mf
"$PYTHON" "$TESTS_DIR/v2v-tar.py" ovf mf disk.img raw 4096 >mf/mf.ovf
head -c 4096 /dev/zero >mf/disk.img
mkfifo mf/pipe
printf 'SHA256(pipe)= %s\n' "$(printf x | sha256sum | cut -d' ' -f1)" >mf/mf.mf
FY_TIMEOUT=20 fy v2v mf/mf.ovf --to libvirt --out out
expect_exit 1 "a manifest line naming a FIFO: refused"
check_true "a manifest line naming a FIFO: the plan says it is no file" \
  grep -q "error: pipe: .*not a regular file" "$OUT"

variant indep 'scsi0:0.mode = "independent-persistent"'
fy v2v s/indep.vmx --to libvirt --out out
refused "independent disk" s/indep.vmx
expect_check "independent disk" error "disk scsi0:0 is an independent disk (independent-persistent)" \
  "set the disk to dependent mode on the source"

variant enc 'encryption.keySafe = "vmware:key/list/(pair/(phrase/a%2fb))"' 'encryption.data = "AAAA"'
fy v2v s/enc.vmx --to libvirt --out out
refused "encrypted disk" s/enc.vmx
expect_check "encrypted disk" error "disk scsi0:0 is encrypted by the hypervisor" \
  "decrypt the VM on the source first"

# A raw device mapping: its descriptor, as ESXi writes it.
cat >s/rdm.vmdk <<'EOF'
# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=fffffffe
parentCID=ffffffff
createType="vmfsRawDeviceMap"

# Extent description
RW 2097152 VMFSRDM "rdm-rdm.vmdk"
EOF
variant rdm "-scsi0:0.fileName" 'scsi0:0.fileName = "rdm.vmdk"'
fy v2v s/rdm.vmx --to libvirt --out out
refused "raw device mapping" s/rdm.vmx
expect_check "raw device mapping" error "disk scsi0:0 is a raw device mapping: there is no file to copy" \
  "copy the device's contents into a virtual disk on the source, or detach it"

# An encrypted disk as its own descriptor says (VMware adds encryption.*
# keys to it), read by the VMDK driver's parser.
cat >s/encd.vmdk <<'EOF'
# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"
encryption.keySafe = "vmware:key/list/(pair/(phrase/a%2fb))"
encryption.data = "AAAA"

# Extent description
RW 32768 FLAT "encd-flat.vmdk" 0
EOF
head -c $((32768 * 512)) /dev/zero >s/encd-flat.vmdk
variant encd "-scsi0:0.fileName" 'scsi0:0.fileName = "encd.vmdk"'
fy v2v s/encd.vmx --to libvirt --out out
refused "a disk its descriptor says is encrypted" s/encd.vmx
expect_check "a disk its descriptor says is encrypted" error "disk scsi0:0 is encrypted by the hypervisor" \
  "decrypt the VM on the source first"

# A disk that is no disk: a VMX may name any file of the host, and
# /etc/passwd or /etc/shadow would be copied out as a "disk".  A file in
# no image format whose size is no whole number of 512-byte sectors is
# refused from a VMX (and only warned about from an OVF package, whose
# files stay in its folder); one of whole sectors that holds no VMDK is
# read as raw bytes, with a warning.
head -c 651 /dev/urandom | base64 -w 64 | head -c 651 >s/passwd
printf 'root' >s/four
base64 -w 64 /dev/urandom | head -c 2048 >s/text2k
variant passwd "-scsi0:0.fileName" 'scsi0:0.fileName = "passwd"'
fy v2v s/passwd.vmx --to libvirt --out out
refused "a VMX disk of 651 bytes of text" s/passwd.vmx
expect_check "a VMX disk of 651 bytes of text" error \
  "disk scsi0:0: passwd is 651 bytes, not a whole number of 512-byte sectors, in no disk image format: no hypervisor made it a disk" \
  "check that the description names the disk's file: it may name any file of this host"
variant four "-scsi0:0.fileName" 'scsi0:0.fileName = "four.vmdk"'
mv s/four s/four.vmdk
fy v2v s/four.vmx --to libvirt --out out
refused "a VMX disk of 4 bytes" s/four.vmx
expect_check "a VMX disk of 4 bytes" error \
  "disk scsi0:0: four.vmdk is 4 bytes, less than one 512-byte sector, in no disk image format" \
  "check that the description names the disk's file"
expect_check "a VMX disk of 4 bytes: the .vmdk that is none" warning \
  "disk scsi0:0: the description says vmdk, the file holds raw" "check the disk is the one meant"
variant text2k "-scsi0:0.fileName" 'scsi0:0.fileName = "text2k"'
fy v2v s/text2k.vmx --to libvirt --out out --dry-run
expect_exit 0 "a VMX disk of whole sectors in no format: planned"
expect_check "a VMX disk of whole sectors in no format" warning \
  "disk scsi0:0: text2k holds no VMDK, which a VMX's disks are, nor another image format: it is read as the raw bytes it is" \
  "check that the description names the disk's file"
mkdir -p pk
cp s/passwd pk/disk.img
"$PYTHON" "$TESTS_DIR/v2v-tar.py" ovf pk disk.img raw 651 >pk/pk.ovf
fy v2v pk/pk.ovf --to libvirt --out out --dry-run
expect_exit 0 "an OVF disk of 651 bytes: planned (the package's own file)"
expect_check "an OVF disk of 651 bytes" warning \
  "disk vmdisk1: disk.img is 651 bytes, not a whole number of 512-byte sectors, in no disk image format" \
  "check the disk is the one meant"

# Snapshots: the .vmsd beside the VMX counts one.
variant snap
printf '.encoding = "UTF-8"\nsnapshot.numSnapshots = "1"\nsnapshot0.uid = "1"\n' >s/snap.vmsd
fy v2v s/snap.vmx --to libvirt --out out --dry-run
expect_exit 0 "snapshots: a warning, the dry run passes"
expect_check "snapshots" warning "the VM has snapshots: its current state is migrated, read through each disk's chain; the snapshots are not" \
  "consolidate (delete) the snapshots on the source first"

# Snapshots: the disk is a VMDK snapshot over a parent (qemu-img makes
# both); its current state is what a migration copies.
qemu-img create -q -f vmdk s/base.vmdk 16M || die "qemu-img create"
qio vmdk s/base.vmdk "write -P 0x31 0 1M"
qemu-img create -q -f vmdk -b base.vmdk -F vmdk s/snap-000001.vmdk || die "qemu-img create"
qio vmdk s/snap-000001.vmdk "write -P 0x32 512k 1M"
variant chain "-scsi0:0.fileName" 'scsi0:0.fileName = "snap-000001.vmdk"'
fy v2v s/chain.vmx --to libvirt --out out --dry-run --json
expect_exit 0 "snapshot chain: a warning, the dry run passes"
check_true "snapshot chain: the disk is flagged, the VM has snapshots" "$PYTHON" -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["vm"]["disks"][0].get("snapshot") is True and j["vm"]["snapshots"] is True
assert any("the VM has snapshots" in c["message"] for c in j["checks"])
' "$OUT"
fy v2v s/chain.vmx --to libvirt --out chain-out
expect_exit 0 "snapshot chain: migrated"
[ -f chain-out/chk-disk1.qcow2 ] &&
  same_content "snapshot chain: the current state, read through the chain" \
    s/snap-000001.vmdk vmdk chain-out/chk-disk1.qcow2 qcow2

variant sb 'firmware = "efi"' 'uefi.secureBoot.enabled = "TRUE"'
fy v2v s/sb.vmx --to libvirt --out out --dry-run
expect_exit 0 "secure boot: a warning, the dry run passes"
expect_check "secure boot" warning "the VM boots with UEFI secure boot" \
  "install OVMF's secure boot build on the host"
fy v2v s/sb.vmx --to ova --out out --dry-run
expect_check "secure boot, OVA target" warning "the VM boots with UEFI secure boot: it is kept in the OVF" \
  "check that the target enables secure boot"

variant mac 'ethernet1.present = "TRUE"' 'ethernet1.addressType = "static"' \
  'ethernet1.address = "00:50:56:00:00:01"'
fy v2v s/mac.vmx --to libvirt --out out
refused "MAC clash" s/mac.vmx
expect_check "MAC clash" error "NICs ethernet0 and ethernet1 have the same MAC address 00:50:56:00:00:01" \
  "give one of them another address on the source"

variant noname "-displayName"
fy v2v s/noname.vmx --to libvirt --out out
refused "no name" s/noname.vmx
expect_check "no name" error "the VM has no name" "give it a name (--name NAME)"
fy v2v s/noname.vmx --to libvirt --out out --name given --dry-run
expect_exit 0 "no name, --name given: passes"

variant nomem "-memSize"
fy v2v s/nomem.vmx --to libvirt --out out --dry-run
expect_exit 0 "no memory size: a warning"
expect_check "no memory size" warning "the description gives no memory size: the target gets 1 GiB" \
  "set the memory on the target"

fy v2v s/base.vmx --to libvirt --out out -O nosuch
refused "unknown -O format" s/base.vmx
expect_check "unknown -O format" error "ferry cannot write nosuch images" "choose another disk format (-O FMT)"

fy v2v s/base.vmx --to libvirt --out out --network-map =x
expect_exit 1 "--network-map =x refused"
expect_stderr "network map rule '=x': expected SRC=DST with both names (--network-map SRC=DST)" "--network-map =x: says why"

# Too little space: a gzip-compressed streamOptimized VMDK whose header
# and OVF declare 1 PiB, all of it data says the OVF (ferry cannot know
# better without inflating the whole stream, which it does only for a raw
# disk, whose size nothing else records).
qemu-img create -q -f vmdk -o subformat=streamOptimized s/tiny.vmdk 1M || die "qemu-img create"
"$PYTHON" -c '
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(12)
    f.write(struct.pack("<Q", 1 << 41))   # capacity, in sectors: 1 PiB
' s/tiny.vmdk || die "patching the VMDK header"
gzip -c s/tiny.vmdk >s/tiny.vmdk.gz
"$PYTHON" "$TESTS_DIR/v2v-tar.py" ovf big tiny.vmdk.gz vmdk $((1 << 50)) gzip |
  sed 's/ovf:diskId="vmdisk1"/ovf:diskId="vmdisk1" ovf:populatedSize="1125899906842624"/' >s/big.ovf
fy v2v s/big.ovf --to libvirt --out out
expect_failure "too little space: refused" s/big.ovf
expect_check "too little space" error "the output needs about 10905" \
  "free some space there, or choose another output folder (--out DIR)"
check_true "too little space: says how much is free where" \
  grep -q "MiB (the disks' data), and $WORK has [0-9]* MiB free" "$OUT"

# The checks in JSON, for programs.
fy v2v s/mac.vmx --to libvirt --out out --dry-run --json
expect_exit 1 "--json with an error: exit 1"
check_true "--json: the checks with severity, message and remedy" "$PYTHON" -c '
import json, sys
j = json.load(open(sys.argv[1]))
c = [x for x in j["checks"] if x["severity"] == "error"]
assert len(c) == 1 and "same MAC address" in c[0]["message"] and c[0]["remedy"]
assert j["target"] == "libvirt" and j["description"] == "chk.xml"
' "$OUT"

done_testing
