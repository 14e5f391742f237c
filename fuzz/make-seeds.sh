#!/usr/bin/env bash
# make-seeds.sh DIR: write the fuzzers' seed corpus into DIR.  Small qcow2
# images of several shapes, made with qemu-img and qemu-io at run time (no
# binary files are kept in the repository), plus a raw file, and the
# corpus's qcow v1 image and fuzzer-made VHD when ../shared is there.
# VMDK: sparse, stream, COWD and seSparse files, a descriptor, and the
# corpus's fuzzer-made afl9.vmdk.  Small VHD and VDI images.
# Each image has small clusters so that it stays under 128 KiB.  A libvirt
# domain and a QEMU script as v2v writes them; job specs (JSON).
set -euo pipefail

dir=${1:?usage: make-seeds.sh DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
corpus=$("$here/../scripts/corpus-dir") || corpus=""   # ../shared/corpus
mkdir -p "$dir"
cd "$dir"

if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
  echo "make-seeds: no qemu-img/qemu-io; seeding with a bare qcow2 header" >&2
  printf 'QFI\xfb\0\0\0\3' >min.qcow2
  exit 0
fi

# seed NAME SIZE CREATE-OPTIONS QEMU-IO-COMMAND...
seed () {
  local name=$1 size=$2 opts=$3 c args=()
  shift 3
  qemu-img create -q -f qcow2 ${opts:+-o "$opts"} "$name" "$size"
  for c in "$@"; do args+=(-c "$c"); done
  [ ${#args[@]} -eq 0 ] || qemu-io -f qcow2 "${args[@]}" "$name" >/dev/null
}

seed v3-512.qcow2 64k cluster_size=512 \
  "write -P 0x11 0 1536" "write -z 4096 1024" "write -c -P 0x22 8192 512" "discard 512 512"
seed v2-512.qcow2 64k cluster_size=512,compat=0.10 \
  "write -P 0x11 0 1024" "write -c -P 0x33 2048 512"
seed v3-1k.qcow2 1m cluster_size=1024 \
  "write -P 0x44 1000 3000" "write -z 65536 2048" "write -P 0x45 $((1024 * 1024 - 512)) 512"
seed v3-4k-zstd.qcow2 256k cluster_size=4096,compression_type=zstd \
  "write -c -P 0x55 0 4096" "write -P 0x56 8192 100"
seed v3-4k-zlib.qcow2 256k cluster_size=4096 \
  "write -c -P 0x57 4096 4096" "write -z 8192 4096"
seed rc1.qcow2 32k cluster_size=512,refcount_bits=1 "write -P 0x66 0 512"
seed rc64.qcow2 32k cluster_size=512,refcount_bits=64 "write -P 0x67 512 512"
qemu-img create -q -f qcow2 -u -b base.qcow2 -F qcow2 -o cluster_size=512 backing.qcow2 64k
seed lazy.qcow2 64k cluster_size=512,lazy_refcounts=on "write -P 0x78 0 512"
seed datafile.qcow2 64k cluster_size=512,data_file=seed.data "write -P 0x79 0 512"
rm -f seed.data
seed extl2.qcow2 64k cluster_size=16384,extended_l2=on \
  "write -P 0x88 512 512" "write -z 2048 512"
seed snap.qcow2 16k cluster_size=512 "write -P 0x99 0 512"
qemu-img snapshot -c s1 snap.qcow2
qemu-io -f qcow2 -c "write -P 0x9a 0 512" snap.qcow2 >/dev/null
seed big.qcow2 64G cluster_size=16384 "write -P 0xaa $((63 << 30)) 512"
rm -f base.qcow2
# VMDK: a small file of each sparse kind, and descriptors (text).
qemu-img create -q -f vmdk vmdk-sparse.vmdk 1M
qemu-io -f vmdk -c "write -P 0x11 0 512" vmdk-sparse.vmdk >/dev/null
qemu-img create -q -f raw vmdk-src.raw 1M
qemu-io -f raw -c "write -P 0x12 0 64k" -c "write -P 0x13 512k 512" vmdk-src.raw >/dev/null
if command -v python3 >/dev/null; then
  mk=("python3" "$here/../tests/shell/vmdk-make.py")
  "${mk[@]}" cowd vmdk-cowd.vmdk vmdk-src.raw 1
  qemu-img create -q -f raw vmdk-se.raw 256k
  qemu-io -f raw -c "write -P 0x14 0 8k" -c "write -P 0x15 100k 512" vmdk-se.raw >/dev/null
  "${mk[@]}" sesparse vmdk-se.vmdk vmdk-se.raw zero=16384 first=1
  rm -f vmdk-se.raw
  "${mk[@]}" stream vmdk-stream.vmdk vmdk-src.raw 2
fi
rm -f vmdk-src.raw
cat >vmdk-desc.txt <<'EOF2'
# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=fffffffe
parentCID=12345678
createType="custom"
parentFileNameHint="base.vmdk"
RW 2048 FLAT "a b.bin" 2048
RDONLY 1024 ZERO
RW 4096 VMFS "c.bin"
RW 4096 SPARSE "s001.vmdk"
NOACCESS 100 VMFSSPARSE "delta.vmdk"
RW 8 SESPARSE "se.vmdk"
ddb.adapterType = "lsilogic"
ddb.geometry.cylinders="16383"
EOF2
# VHD and VDI: qemu-img writes 2 MiB and 1 MiB blocks, too large for a
# seed once written, so the images with data come from vhd-vdi-tool.py
# (from the published layouts) with 4 KiB blocks.
vvtool=$here/../tests/shell/vhd-vdi-tool.py
qemu-img create -q -f vpc -o force_size=on empty.vhd 1m
qemu-img create -q -f vpc -o subformat=fixed fixed.vhd 64k
qemu-io -f vpc -c "write -P 0x5a 4096 8192" fixed.vhd >/dev/null
qemu-img create -q -f vdi empty.vdi 1m
if command -v python3 >/dev/null && [ -f "$vvtool" ]; then
  python3 "$vvtool" vhd-diff dyn.vhd - --size 65536 --block-size 4096 \
    --write 0:1024:0x11 --write 8192:512:0x22 --write 65024:512:0x23
  python3 "$vvtool" vhd-diff diff.vhd dyn.vhd --block-size 4096 \
    --locators W2ru,W2ku,MacX --write 4096:1024:0x33
  python3 "$vvtool" vdi-new dyn.vdi 65536 --block-size 4096 \
    --write 100:5000:0x44 --write 60000:100:0x45
  python3 "$vvtool" vdi-new static.vdi 32768 --block-size 4096 --static
  python3 "$vvtool" vdi-diff diff.vdi dyn.vdi --write 0:512:0x46 --discard 3
fi
head -c 4096 /dev/urandom >random.raw
# gzip streams for fuzz-stream, which takes an input that starts with
# gzip's magic as the stream itself: two members, a member with zero
# padding after it, one with bytes after it that are no member.
if command -v gzip >/dev/null; then
  { head -c 2048 random.raw | gzip -c; tail -c 2048 random.raw | gzip -c; } >stream-two.gz
  { head -c 512 random.raw | gzip -c; head -c 100 /dev/zero; } >stream-padded.gz
  { printf 'disk' | gzip -c; printf 'garbage'; } >stream-garbage.gz
  [ -f vmdk-stream.vmdk ] && gzip -c vmdk-stream.vmdk >stream-vmdk.gz
fi
if [ -d "$corpus" ]; then
  cp "$corpus/qemu/qcow1-image.qcow" . 2>/dev/null || true
  bzip2 -dc "$corpus/broken/afl5.img.bz2" >afl5.img 2>/dev/null || rm -f afl5.img
  bzip2 -dc "$corpus/broken/afl9.vmdk.bz2" >afl9.vmdk 2>/dev/null || rm -f afl9.vmdk
  cat "$corpus/virtualbox/ubuntu.2.0-disk1.vmdk" >vbox-stream.vmdk 2>/dev/null ||
    rm -f vbox-stream.vmdk
fi
# VHDX seeds, in fuzz-vhdx's sparse encoding (a real VHDX is at least
# 4 MiB, mostly zeroes): dynamic and fixed images qemu-img made, one with
# a log to replay, and a differencing child from vhdx-tool.py.
vt="$here/../tests/shell/vhdx-tool.py"
vseed () {
  local name=$1 size=$2 opts=$3 c args=()
  shift 3
  qemu-img create -q -f vhdx ${opts:+-o "$opts"} "$name.vhdx" "$size"
  for c in "$@"; do args+=(-c "$c"); done
  [ ${#args[@]} -eq 0 ] || qemu-io -f vhdx "${args[@]}" "$name.vhdx" >/dev/null
}
if [ -f "$vt" ] && command -v python3 >/dev/null; then
  vseed vhdx-dyn 6M block_size=1M "write -P 0x11 0 512" "write -P 0x12 3M 4096"
  vseed vhdx-fixed 3M subformat=fixed,block_size=1M "write -P 0x13 1M 512"
  vseed vhdx-big 5G block_size=1M "write -P 0x14 $((4096 << 20)) 512"
  vseed vhdx-log 6M block_size=1M "write -P 0x15 0 512"
  python3 "$vt" plant-log vhdx-log.vhdx wrap
  qemu-img convert -O raw vhdx-dyn.vhdx vhdx-dyn.vhdx.raw
  python3 "$vt" make-child vhdx-dyn.vhdx vhdx-dyn.vhdx.raw vhdx-child.vhdx vhdx-child.want
  for f in vhdx-*.vhdx; do
    python3 "$vt" sparse-encode "$f" "${f%.vhdx}.vhdx-seed"
  done
  rm -f vhdx-*.vhdx vhdx-*.raw vhdx-child.want
fi
# VM descriptions (fuzz-ovf, fuzz-vmx, fuzz-tar): the corpus's OVF, VMX
# and OVA files, and a small OVA made here with tar.
if [ -d "$corpus" ]; then
  for f in "$corpus"/ovf/*.ovf "$corpus"/ovf/*.mf "$corpus"/vmx/*.vmx \
           "$corpus"/virtualbox/*.ovf "$corpus"/broken/*.ova; do
    [ -f "$f" ] && cp "$f" "vm-$(basename "$f")"
  done
  if [ -f "$corpus/virtualbox/ubuntu.2.0.ovf" ] && command -v tar >/dev/null; then
    mkdir -p ova.d
    cp "$corpus/virtualbox/ubuntu.2.0.ovf" "$corpus/virtualbox/ubuntu.2.0.mf" ova.d/
    head -c 1024 "$corpus/virtualbox/ubuntu.2.0-disk1.vmdk" >ova.d/ubuntu.2.0-disk1.vmdk
    tar -C ova.d -cf vm-made.ova ubuntu.2.0.ovf ubuntu.2.0.mf ubuntu.2.0-disk1.vmdk
    tar -C ova.d --format=gnu -cf vm-made-gnu.ova ubuntu.2.0.ovf
    rm -rf ova.d
  fi
fi
# What v2v writes for KVM, for fuzz-libvirt and fuzz-qemu-script: a
# domain and a launch script as ferry writes them (SCSI and SATA disks
# kept, UEFI, a NIC with its MAC).
cat >target-domain.xml <<'EOF2'
<?xml version="1.0" encoding="UTF-8"?>
<domain type="kvm">
  <name>seed</name>
  <memory unit="KiB">1048576</memory>
  <vcpu>2</vcpu>
  <os firmware="efi">
    <type arch="x86_64" machine="q35">hvm</type>
    <loader secure="yes"/>
  </os>
  <devices>
    <disk type="file" device="disk">
      <driver name="qemu" type="qcow2"/>
      <source file="seed-disk1.qcow2"/>
      <target dev="sda" bus="scsi"/>
      <address type="drive" controller="0" bus="0" target="0" unit="0"/>
    </disk>
    <controller type="scsi" index="0" model="lsilogic"/>
    <disk type="file" device="disk">
      <driver name="qemu" type="raw"/>
      <source file="/var/lib/seed-disk2.img"/>
      <target dev="sdb" bus="sata"/>
    </disk>
    <disk type="file" device="cdrom">
      <target dev="sdc" bus="sata"/>
      <readonly/>
    </disk>
    <interface type="network">
      <mac address="00:50:56:00:00:01"/>
      <source network="default"/>
      <model type="vmxnet3"/>
    </interface>
    <video><model type="vga"/></video>
  </devices>
</domain>
EOF2
cat >target-script.sh <<'EOF2'
#!/bin/sh
set -e
here=$(cd "$(dirname "$0")" && pwd)
opt() { printf '%s' "$1" | sed 's/,/,,/g'; }
exec qemu-system-x86_64 \
  -name guest='seed,,1' \
  -machine q35,accel=kvm:tcg \
  -smp 2,sockets=1,cores=2,threads=1 \
  -m 1024 \
  -global driver=cfi.pflash01,property=secure,value=on \
  -drive if=pflash,format=raw,readonly=on,file="$(opt "$code")" \
  -device lsi53c895a,id=scsi0 \
  -drive file="$(opt "$here")"/'seed disk,,1.qcow2',format=qcow2,if=none,id=disk0 \
  -device scsi-hd,drive=disk0,bus=scsi0.0,scsi-id=0,bootindex=0 \
  -drive file="$(opt "$here")"/'it'\''s.img',format=raw,if=none,id=disk1 \
  -device ide-hd,drive=disk1,bus=ide.0 \
  -drive if=none,id=cd0,media=cdrom \
  -device ide-cd,drive=cd0,bus=ide.1 \
  -netdev user,id=net0 -device virtio-net-pci,netdev=net0,mac=00:50:56:00:00:01 \
  "$@"
EOF2
# Guest files for fuzz-guest-text: the first byte picks the parser.
printf '\000/dev/sda1 / ext4 errors=remount-ro 0 1\nUUID=12 none swap sw 0 0\n' >guest-fstab
printf '\001\tlinux /vmlinuz root=/dev/sda1 ro resume=/dev/sda2 quiet\nGRUB_DISABLE_LINUX_UUID=true\n' >guest-grub
printf '\002auto ens33\niface ens33 inet dhcp\nnetwork:\n  ethernets:\n    eth0:\n      match:\n        driver: vmxnet3\nDEVICE=eth1\nHWADDR=00:50:56:aa:bb:cc\n' >guest-net
printf '\004[  OK  ] \033[0;32mStarted\033[0m getty\r\nBegin: Waiting for root file system ... \nDebian GNU/Linux 12 host ttyS0\n\nhost login: ' >guest-console
# Job specs for fuzz-job-spec: a VM of a plan file, a job's options as
# the store keeps them (every member), and refusals of each kind.
cat >job-spec-plan.json <<'EOF2'
{"source": "a.ova", "to": "libvirt", "out": "/srv/a", "format": "qcow2"}
EOF2
cat >job-spec-all.json <<'EOF2'
{"source": "/vms/web/web.vmx", "to": "ova", "out": "/srv/web", "format": "vmdk",
 "name": "web01", "network-map": ["VM Network=br0", "default"],
 "keep-devices": true, "flavor": "virtualbox", "threads": 4, "cache": "unsafe",
 "no-convert": false, "no-guest-agent": true, "verify": true,
 "verify-timeout": 900, "test": true}
EOF2
printf '{"source": "b.vbox", "to": "qemu", "out": "b", "network-map": "br1", "cache": "writeback"}' >job-spec-netmap.json
printf '{"source": "c.ovf", "to": "local", "out": "c", "threads": -1, "verify-timeout": 1e9}' >job-spec-bad-number.json
printf '{"source": "d.ova", "to": "libvirt", "out": "d", "unknown": 1}' >job-spec-unknown.json
printf '[{"source": "e.ova"}]' >job-spec-array.json
printf '{"source": "f.ova", "to": "qemu", "out": "f\u0000g", "name": "\ud83d\ude00"' >job-spec-truncated.json
# QMP messages for fuzz-qmp: a session as QEMU writes it (greeting,
# returns, events, an error, query-block), and broken ones.
cat >qmp-session.txt <<'EOF2'
{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}
{"return": {}, "id": 1}
{"timestamp": {"seconds": 1733600000, "microseconds": 12}, "event": "STOP"}
{"return": {"status": "paused", "singlestep": false, "running": false}, "id": 2}
{"id": 3, "error": {"class": "CommandNotFound", "desc": "The command foo has not been found"}}
{"return": [{"io-status": "ok", "device": "", "locked": false, "removable": false, "inserted": {"iops_rd": 0, "detect_zeroes": "off", "image": {"virtual-size": 67108864, "filename": "/vm/d.qcow2", "cluster-size": 65536, "format": "qcow2", "actual-size": 200704, "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "refcount-bits": 16}}, "dirty-flag": false}, "ro": false, "node-name": "disk0", "drv": "qcow2", "file": "/vm/d.qcow2", "dirty-bitmaps": [{"name": "ferry-1", "recording": true, "persistent": false, "busy": false, "granularity": 65536, "count": 0}]}, "qdev": "/machine/peripheral/vd0/virtio-backend", "type": "unknown"}], "id": 4}
EOF2
sed -i 's/\\r$/\r/' qmp-session.txt
printf '{"error": {"desc": "no class"}, "id": 5}\n{"event": 7}\n[1]\n{"return": {}} {}\n{"return": {"a": [[[[[[[[1]]]]]]]]}\n{"return": "\\ud800"}\n' >qmp-broken.txt
printf 'SSH-2.0-OpenSSH_9.2\r\n{"return": {' >qmp-not-qmp.txt
# The fuzzers take inputs up to 128 KiB; a larger seed would only be cut.
for f in *; do
  [ "$(stat -c %s "$f")" -le 131072 ] || rm -f "$f"
done
