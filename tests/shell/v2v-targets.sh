#!/usr/bin/env bash
# v2v-targets: a VM (a VMX written here, with a qcow2 and a raw disk made
# by qemu-img and filled by qemu-io, UEFI with secure boot, two NICs)
# migrated to every target: libvirt (virt-xml-validate accepts the domain,
# virtio by default, the source's devices with --keep-devices, networks
# mapped), qemu (qemu-system-x86_64 starts the script's VM, paused),
# local (the JSON), each disk judged by qemu-img compare and check.  The
# output folder is complete or absent: an existing one is refused; a full
# disk half way and a SIGINT leave only the job's working folder, to
# resume, which ferry job cancel removes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/v2v-lib.sh"
require qemu-img qemu-io python3 virt-xml-validate

cd "$WORK" || die "cd $WORK"
mkdir -p src
qemu-img create -q -f qcow2 src/disk0.qcow2 64M || die "qemu-img create"
qio qcow2 src/disk0.qcow2 "write -s $RAND 0 1M" "write -P 0x11 10M 64k" \
  "write -z 20M 1M" "write -s $RAND $((64 * 1024 * 1024 - 65536)) 65536"
qemu-img create -q -f raw src/disk1.img 32M || die "qemu-img create"
qio raw src/disk1.img "write -s $RAND 1M 2M" "write -P 0x22 30M 4096"
cat >src/vm.vmx <<'EOF'
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "17"
displayName = "Target Test"
guestOS = "rhel8-64"
memSize = "2048"
numvcpus = "4"
cpuid.coresPerSocket = "2"
firmware = "efi"
uefi.secureBoot.enabled = "TRUE"
scsi0.present = "TRUE"
scsi0.virtualDev = "lsilogic"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "disk0.qcow2"
sata0.present = "TRUE"
sata0:1.present = "TRUE"
sata0:1.fileName = "disk1.img"
sata0:2.present = "TRUE"
sata0:2.deviceType = "cdrom-raw"
ethernet0.present = "TRUE"
ethernet0.virtualDev = "vmxnet3"
ethernet0.networkName = "VM Network"
ethernet0.addressType = "static"
ethernet0.address = "00:50:56:01:02:03"
ethernet1.present = "TRUE"
ethernet1.virtualDev = "e1000"
ethernet1.networkName = "Backup"
ethernet1.addressType = "generated"
ethernet1.generatedAddress = "00:0c:29:aa:bb:cc"
EOF

# domain_is WHAT XML EXPR: the Python expression EXPR, over the parsed
# domain d (ElementTree), is true.
domain_is () {
  local out
  if out=$("$PYTHON" - "$2" "$3" <<'EOF' 2>&1
import sys, xml.etree.ElementTree as ET
d = ET.parse(sys.argv[1]).getroot()
disks = [x for x in d.iter('disk') if x.get('device') == 'disk']
nics = list(d.iter('interface'))
ok = eval(sys.argv[2])
sys.exit(0 if ok else 1)
EOF
  ); then
    ok "$1"
  else
    not_ok "$1" "false: $3" "$out" "$(cat "$2")"
  fi
}

# --- libvirt, virtio ---------------------------------------------------------
fy v2v src/vm.vmx --to libvirt --out lv
expect_exit 0 "VMX -> libvirt"
x="lv/Target Test.xml"
if [ -f "$x" ]; then
  validate "libvirt" "$x"
  same_content "libvirt: disk 1 equals the source" src/disk0.qcow2 qcow2 "lv/Target Test-disk1.qcow2" qcow2
  same_content "libvirt: disk 2 equals the source" src/disk1.img raw "lv/Target Test-disk2.qcow2" qcow2
  qemu_clean "libvirt: disk 1 is clean" "lv/Target Test-disk1.qcow2"
  domain_is "libvirt: the name" "$x" "d.findtext('name') == 'Target Test'"
  domain_is "libvirt: 2 GiB, 4 vCPUs as 2 sockets of 2 cores" "$x" \
    "d.findtext('memory') == '2097152' and d.findtext('vcpu') == '4' and d.find('cpu/topology').get('sockets') == '2' and d.find('cpu/topology').get('cores') == '2'"
  domain_is "libvirt: UEFI with secure boot and SMM" "$x" \
    "d.find('os').get('firmware') == 'efi' and d.find(\"os/firmware/feature[@name='secure-boot']\").get('enabled') == 'yes' and d.find('features/smm') is not None"
  domain_is "libvirt: virtio disks vda and vdb by absolute path, qcow2" "$x" \
    "[(x.find('target').get('dev'), x.find('target').get('bus'), x.find('driver').get('type')) for x in disks] == [('vda','virtio','qcow2'), ('vdb','virtio','qcow2')] and disks[0].find('source').get('file') == '$WORK/lv/Target Test-disk1.qcow2'"
  domain_is "libvirt: the CD-ROM kept, empty" "$x" \
    "len([x for x in d.iter('disk') if x.get('device') == 'cdrom' and x.find('source') is None]) == 1"
  domain_is "libvirt: virtio NICs with their MACs, on the default network" "$x" \
    "[(n.find('mac').get('address'), n.find('model').get('type'), n.find('source').get('network')) for n in nics] == [('00:50:56:01:02:03','virtio','default'), ('00:0c:29:aa:bb:cc','virtio','default')]"
fi
check_true "libvirt: the summary names the VM and the output" \
  grep -q "Migrated Target Test in .* s:" "$OUT"

# --- libvirt, the source's devices, networks mapped, a new name ------------
fy v2v src/vm.vmx --to libvirt --out keep --keep-devices --name web01 \
  --network-map "VM Network=br-prod" --network-map isolated
expect_exit 0 "VMX -> libvirt --keep-devices --network-map --name"
x=keep/web01.xml
if [ -f "$x" ]; then
  validate "libvirt --keep-devices" "$x"
  domain_is "keep-devices: the new name" "$x" "d.findtext('name') == 'web01'"
  domain_is "keep-devices: SCSI (lsilogic) unit 0 and SATA unit 1" "$x" \
    "[(x.find('target').get('bus'), x.find('address').get('unit')) for x in disks] == [('scsi','0'), ('sata','1')] and d.find(\"devices/controller[@type='scsi']\").get('model') == 'lsilogic'"
  domain_is "keep-devices: vmxnet3 and e1000 on br-prod and isolated" "$x" \
    "[(n.find('model').get('type'), n.find('source').get('network')) for n in nics] == [('vmxnet3','br-prod'), ('e1000','isolated')]"
  same_content "keep-devices: disk 2 equals the source" src/disk1.img raw keep/web01-disk2.qcow2 qcow2
fi

# --- qemu --------------------------------------------------------------------
fy v2v src/vm.vmx --to qemu --out qm -O raw
expect_exit 0 "VMX -> qemu -O raw"
s="qm/Target Test.sh"
if [ -f "$s" ]; then
  check_true "qemu: the script is executable" test -x "$s"
  same_content "qemu: disk 1 equals the source" src/disk0.qcow2 qcow2 "qm/Target Test-disk1.img" raw
  same_content "qemu: disk 2 equals the source" src/disk1.img raw "qm/Target Test-disk2.img" raw
  check_true "qemu: the script passes sh -n" sh -n "$s"
  if command -v qemu-system-x86_64 >/dev/null && [ -f /usr/share/OVMF/OVMF_CODE_4M.secboot.fd ]; then
    # QEMU itself judges the command line: it must start the VM (paused,
    # no display) from a copy of the folder moved elsewhere.  TCG: nested
    # KVM (CI) may lack the SMM that secure boot needs.
    mv qm qm-moved
    rm -f qemu.pid
    if out=$(timeout 60 "qm-moved/Target Test.sh" -machine accel=tcg \
               -display none -S -daemonize \
               -pidfile "$WORK/qemu.pid" -monitor none -serial none 2>&1); then
      ok "qemu: qemu-system-x86_64 starts the VM from the moved folder"
    else
      not_ok "qemu: qemu-system-x86_64 starts the VM from the moved folder" "$out" "$(cat "qm-moved/Target Test.sh")"
    fi
    [ -s qemu.pid ] && kill "$(cat qemu.pid)" 2>/dev/null
    check_true "qemu: the UEFI variable store was made beside the script" \
      test -f qm-moved/firmware-vars.fd
  else
    not_ok "qemu: qemu-system-x86_64 or OVMF missing, the script cannot be judged (scripts/install-deps installs them)"
  fi
fi

# QEMU's options split at commas: a name with commas (and '=') and a folder
# with one must still give a VM that starts.
fy v2v src/vm.vmx --to qemu --out qc -O raw --name 'web,db=1'
expect_exit 0 "VMX -> qemu, a name with a comma"
if [ -f "qc/web,db=1.sh" ]; then
  mv qc "q,c moved"
  rm -f qemu.pid
  if out=$(timeout 60 "q,c moved/web,db=1.sh" -machine accel=tcg -display none -S \
             -daemonize -pidfile "$WORK/qemu.pid" -monitor none -serial none 2>&1); then
    ok "qemu: a name and a folder with commas: the VM starts"
  else
    not_ok "qemu: a name and a folder with commas: the VM starts" "$out" "$(cat "q,c moved/web,db=1.sh")"
  fi
  [ -s qemu.pid ] && kill "$(cat qemu.pid)" 2>/dev/null
  # ferry verify --boot reads the same script back (its disks, UEFI) and
  # boots it: the disks hold no OS, so it must time out at the console,
  # not fail to find a disk or a firmware file.
  # (QEMU with TCG maps far more than lib.sh's limit for ferry itself)
  FERRY_VMEM_LIMIT_KB=unlimited fy verify --boot --accel tcg --timeout 8 --json "q,c moved"
  expect_exit 1 "verify --boot of the script with commas: no OS, so no login prompt"
  if python3 -c 'import json, sys; j = json.load(open(sys.argv[1]))
sys.exit(0 if not j["booted"] and j["reason"].startswith("no login prompt on the console within 8 s") else 1)' "$OUT"; then
    ok "...QEMU ran its disks and UEFI firmware until the timeout"
  else
    not_ok "...verify --boot reason" "$(cat "$OUT" "$ERR")"
  fi
fi

# A name with a double quote, to an OVA: its VMDKs are named without it
# (a VMDK descriptor cannot quote one), and the OVA reads back.
fy v2v src/vm.vmx --to ova --out qo --name 'say "hi"'
expect_exit 0 "VMX -> ova, a name with a double quote"
fy v2v "qo/say _hi_.ova" --to local --out qo2 --dry-run --json
expect_exit 0 "the OVA of a name with a double quote reads back" &&
  check_true "the OVA keeps the name with its double quotes" "$PYTHON" -c '
import json, sys
assert json.load(open(sys.argv[1]))["vm"]["name"] == "say \"hi\""' "$OUT"

# --- local -------------------------------------------------------------------
fy v2v src/vm.vmx --to local --out loc --network-map "Backup=backup2"
expect_exit 0 "VMX -> local"
if [ -f "loc/Target Test.json" ]; then
  check_true "local: the JSON describes the VM and where its disks went" "$PYTHON" -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["name"] == "Target Test" and j["vcpus"] == 4 and j["memory"] == 2 << 30
assert j["firmware"] == "uefi" and j["secure-boot"] is True
assert [d["target"]["path"] for d in j["disks"]] == ["Target Test-disk1.qcow2", "Target Test-disk2.qcow2"]
assert [(d["bus"], d["unit"]) for d in j["disks"]] == [("scsi", 0), ("sata", 1)]
assert [n["network"] for n in j["nics"]] == ["VM Network", "backup2"]
' "loc/Target Test.json"
  same_content "local: disk 2 equals the source" src/disk1.img raw "loc/Target Test-disk2.qcow2" qcow2
fi

# -t unsafe flushes nothing; the output is the same.
fy v2v src/vm.vmx --to local --out unsafe -t unsafe
expect_exit 0 "VMX -> local, -t unsafe"
[ -f "unsafe/Target Test-disk1.qcow2" ] &&
  same_content "-t unsafe: disk 1 equals the source" src/disk0.qcow2 qcow2 "unsafe/Target Test-disk1.qcow2" qcow2
fy v2v src/vm.vmx --to local --out unsafe2 -t sometimes
expect_exit 1 "-t sometimes refused"
expect_stderr "-t sometimes: expected unsafe, writeback, none, writethrough or directsync" \
  "-t sometimes: says what it takes"

# --- the output folder: complete or absent ----------------------------------
mkdir exists
fy v2v src/vm.vmx --to libvirt --out exists
expect_exit 1 "an existing output folder is refused"
expect_stderr "exists already" "existing output folder: the message says so"
check_true "existing output folder: left empty" test -z "$(ls -A exists)"

# A full disk half way (a file size limit stands in for it): the second
# disk cannot be written.
qemu-img create -q -f raw src/big.img 64M || die "qemu-img create"
qio raw src/big.img "write -s $RAND 0 8M" "write -s $RAND 8M 8M" "write -s $RAND 16M 8M"
sed 's/disk1.img/big.img/' src/vm.vmx >src/big.vmx
FY_FSIZE_KB=16384 fy v2v src/big.vmx --to libvirt --out full
expect_exit 1 "a full disk half way fails"
expect_stderr_re "disk 2 .*big\.img.*(File too large|No space)" "full disk: the message names the disk"
check_true "full disk: no output folder" test ! -e full
expect_stderr_re "job [0-9]+ keeps what was done: ferry job retry [0-9]+" \
  "full disk: says the job can be retried"
job_left "full disk" full

# SIGINT while a disk is copied.
for i in $(seq 32); do cat "$RAND"; done >src/huge.img
sed 's/disk1.img/huge.img/' src/vm.vmx >src/huge.vmx
set -m
"$FERRY" v2v src/huge.vmx --to libvirt --out int -m 1 --progress=json >"$OUT" 2>"$ERR" </dev/null &
pid=$!
set +m
waited=0
while kill -0 $pid 2>/dev/null && ! grep -q '"phase":"copy"' "$OUT" && [ $waited -lt 3000 ]; do
  sleep 0.005
  waited=$((waited + 1))
done
kill -STOP $pid 2>/dev/null
if [ "$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)" = Z ] || ! kill -INT $pid 2>/dev/null; then
  wait $pid
  not_ok "SIGINT: ferry ended before the signal came; the test needs a slower case"
else
  check_true "SIGINT: while it runs, only the working folder exists" \
    sh -c "test ! -e int && ls -A | grep -q '^\.int\.ferry-'"
  t0=$(date +%s%N)
  kill -CONT $pid
  RC=0
  wait $pid || RC=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  LAST_CMD="ferry v2v src/huge.vmx --to libvirt --out int, then SIGINT"
  # ferry cleans up, then dies of the signal, as qemu-img does.
  check_true "SIGINT: died of it (exit status $RC, expected 130)" test "$RC" = 130
  check_true "SIGINT: ended within 2 s ($ms ms)" test "$ms" -le 2000
  expect_stderr "interrupted; $WORK/int was not written; job" "SIGINT: says the output was not written"
  check_true "SIGINT: no output folder" test ! -e int
  job_left "SIGINT" int
fi

done_testing
