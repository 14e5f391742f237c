#!/usr/bin/env bash
# v2v-roundtrip: OVAs out.  A VM (a VMX written here, two disks filled by
# qemu-io, UEFI with secure boot, two NICs, a CD-ROM) migrated to an OVA,
# in VMware's and in VirtualBox's dialect: GNU tar lists the descriptor,
# the manifest, then the disks; sha256sum agrees with the manifest; each
# disk is a streamOptimized VMDK that qemu-img reads equal to the source
# and checks clean.  Then the OVA migrated back: the description ferry
# reads from it is the source's (name, CPUs and topology, memory,
# firmware, secure boot, disks and where they sit, NICs with their MACs
# and networks, the CD-ROM), and the disks are equal; an OVA made from
# that OVA reads the same again.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3 tar sha256sum

if ! "$FERRY" --help | grep -q '^formats:.* vmdk'; then
  echo "1..0 # SKIP this ferry has no vmdk driver"
  exit 77
fi
cd "$WORK" || die "cd $WORK"
mkdir -p src
qemu-img create -q -f qcow2 src/sys.qcow2 48M || die "qemu-img create"
qio qcow2 src/sys.qcow2 "write -s $RAND 0 3M" "write -P 0x11 20M 64k" \
  "write -z 30M 1M" "write -s $RAND $((48 * 1024 * 1024 - 65536)) 65536"
qemu-img create -q -f raw src/data.img 20M || die "qemu-img create"
qio raw src/data.img "write -P 0x22 1M 2M" "write -s $RAND 10M 512k"
cat >src/rt.vmx <<'EOF'
config.version = "8"
virtualHW.version = "17"
displayName = "round trip"
guestOS = "rhel8-64"
memSize = "3072"
numvcpus = "4"
cpuid.coresPerSocket = "2"
firmware = "efi"
uefi.secureBoot.enabled = "TRUE"
scsi0.present = "TRUE"
scsi0.virtualDev = "pvscsi"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "sys.qcow2"
sata0.present = "TRUE"
sata0:2.present = "TRUE"
sata0:2.fileName = "data.img"
sata0:3.present = "TRUE"
sata0:3.deviceType = "cdrom-raw"
ethernet0.present = "TRUE"
ethernet0.virtualDev = "vmxnet3"
ethernet0.networkName = "VM Network"
ethernet0.addressType = "static"
ethernet0.address = "00:50:56:11:22:33"
ethernet1.present = "TRUE"
ethernet1.virtualDev = "e1000"
ethernet1.networkName = "Storage"
ethernet1.addressType = "generated"
ethernet1.generatedAddress = "00:0c:29:44:55:66"
EOF

# model FILE JSON: the parts of a dry run's model a round trip keeps, one
# comparable line.
model () {
  "$PYTHON" - "$1" <<'EOF'
import json, sys
vm = json.load(open(sys.argv[1]))["vm"]
print(json.dumps({
    "name": vm["name"], "vcpus": vm["vcpus"], "topology": vm.get("topology"),
    "memory": vm["memory"], "firmware": vm["firmware"],
    "secure-boot": vm["secure-boot"],
    "disks": [(d["bus"], d.get("controller"), d.get("unit"), d.get("capacity"))
              for d in vm["disks"]],
    "cdroms": [(c["bus"], c.get("controller"), c.get("unit")) for c in vm["cdroms"]],
    "nics": [(n.get("mac"), n.get("network"), n.get("model", "").lower())
             for n in vm["nics"]],
}, sort_keys=True))
EOF
}

# The source as ferry reads it (capacities come from the images).
fy v2v src/rt.vmx --to local --out x --dry-run --json
expect_exit 0 "the source VMX reads"
"$PYTHON" - "$OUT" src/sys.qcow2 src/data.img >src.json <<'EOF'
import json, subprocess, sys
j = json.load(open(sys.argv[1]))
for d, img in zip(j["vm"]["disks"], sys.argv[2:]):
    d["capacity"] = json.loads(subprocess.check_output(
        ["qemu-img", "info", "--output=json", img]))["virtual-size"]
json.dump(j, open("/dev/stdout", "w"))
EOF
want=$(model src.json)

for flavor in vmware virtualbox; do
  out=ova-$flavor
  fy v2v src/rt.vmx --to ova --flavor "$flavor" --out "$out"
  expect_exit 0 "$flavor: VMX -> OVA"
  ova="$out/round trip.ova"
  [ -f "$ova" ] || continue
  check_true "$flavor: the folder holds the OVA alone" test "$(ls "$out")" = "round trip.ova"
  members=$(tar tf "$ova" | tr '\n' '|')
  check_true "$flavor: GNU tar lists the descriptor, the manifest, then the disks" \
    test "$members" = "round trip.ovf|round trip.mf|round trip-disk1.vmdk|round trip-disk2.vmdk|"
  mkdir -p "x-$flavor"
  tar -C "x-$flavor" -xf "$ova" || die "tar xf"
  if out2=$(cd "x-$flavor" && sed -E 's/^SHA256\((.*)\)= ([0-9a-f]+)$/\2  \1/' "round trip.mf" |
              sha256sum -c - 2>&1); then
    ok "$flavor: sha256sum agrees with the manifest"
  else
    not_ok "$flavor: sha256sum agrees with the manifest" "$out2"
  fi
  check_true "$flavor: the descriptor is well-formed XML" \
    "$PYTHON" -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' "x-$flavor/round trip.ovf"
  for i in 1 2; do
    v="x-$flavor/round trip-disk$i.vmdk"
    check_true "$flavor: disk $i is a streamOptimized VMDK (qemu-img info)" \
      sh -c "qemu-img info '$v' | grep -q 'create type: streamOptimized'"
    if out2=$(qemu-img check -f vmdk "$v" 2>&1); then
      ok "$flavor: disk $i: qemu-img check"
    else
      not_ok "$flavor: disk $i: qemu-img check" "$out2"
    fi
  done
  same_content "$flavor: disk 1 equals the source" src/sys.qcow2 qcow2 "x-$flavor/round trip-disk1.vmdk" vmdk
  same_content "$flavor: disk 2 equals the source" src/data.img raw "x-$flavor/round trip-disk2.vmdk" vmdk

  # Back: what ferry reads from the OVA is what it wrote.
  fy v2v "$ova" --to local --out "back-$flavor" --dry-run --json
  expect_exit 0 "$flavor: the OVA reads back (manifest verified)"
  cp "$OUT" "back-$flavor.json"
  got=$(model "back-$flavor.json")
  if [ "$flavor" = vmware ]; then
    check_true "vmware: the description read back is the source's" test "$got" = "$want"
    [ "$got" = "$want" ] || not_ok "vmware: description differs" "source: $want" "back:   $got"
  else
    # VirtualBox's OVF keeps no core count and no firmware (the plan
    # warns), and VirtualBox has no vmxnet3: E1000 stands in.
    check_true "virtualbox: the description read back, as VirtualBox has it" "$PYTHON" - "$want" "$got" <<'EOF'
import json, sys
w, g = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for k in ("name", "vcpus", "memory", "disks", "cdroms"):
    assert w[k] == g[k], (k, w[k], g[k])
assert [(n[0], n[1]) for n in w["nics"]] == [(n[0], n[1]) for n in g["nics"]], g
assert [n[2] for n in g["nics"]] == ["e1000", "e1000"], g
EOF
    fy v2v src/rt.vmx --to ova --flavor virtualbox --out x --dry-run
    check_true "virtualbox: the plan warns that the import boots BIOS" \
      grep -q "warning: the VM boots with UEFI, which VirtualBox's OVF cannot say" "$OUT"
  fi
  fy v2v "$ova" --to libvirt --out "lv-$flavor"
  expect_exit 0 "$flavor: the OVA migrated to libvirt"
  [ -f "lv-$flavor/round trip-disk2.qcow2" ] &&
    same_content "$flavor: back in qcow2, disk 2 equals the source" src/data.img raw \
      "lv-$flavor/round trip-disk2.qcow2" qcow2
done

# An OVA of the OVA: the same description and disks again.
fy v2v "ova-vmware/round trip.ova" --to ova --out ova-again
expect_exit 0 "OVA -> OVA"
fy v2v "ova-again/round trip.ova" --to local --out x --dry-run --json
check_true "OVA -> OVA: the description is unchanged" test "$(model "$OUT")" = "$(model back-vmware.json)"
mkdir -p x-again && tar -C x-again -xf "ova-again/round trip.ova" || die "tar xf"
same_content "OVA -> OVA: disk 1 equals the source" src/sys.qcow2 qcow2 "x-again/round trip-disk1.vmdk" vmdk

done_testing
