#!/usr/bin/env bash
# warm-chain: a warm migration of a VMware-style VM (a VMX) whose disk is a
# chain of VMDK snapshot deltas (made by qemu-img, written by qemu-io as
# the VM would write them).  The base is copied while the top delta takes
# writes; each snapshot taken meanwhile (a new delta, the VMX pointed at
# it) freezes the delta below it, whose grains alone the next round
# copies; the cutover copies the last delta.  Judged by qemu-img compare
# (the target equals the chain's top) and by qemu-img map: each round
# copied exactly the bytes the frozen delta allocates, never the disk.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
mkdir -p vm
mkimg vmdk vm/base.vmdk 256M
qio vmdk vm/base.vmdk "write -s $RAND 0 8M" "write -P 0x33 8M 100M" \
  "write -P 0x44 150M 40M"
# snapshot NEW PARENT: a delta NEW over PARENT, and the VMX names NEW.
snapshot () {
  qemu-img create -q -f vmdk -o zeroed_grain=on -b "$2" -F vmdk "vm/$1" \
    >"$WORK/.snap" 2>&1 ||
    die "qemu-img create -b $2 vm/$1: $(cat "$WORK/.snap")"
  cat >vm/vm.vmx.new <<EOF
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "17"
displayName = "chain"
guestOS = "rhel8-64"
memSize = "512"
numvcpus = "1"
scsi0.present = "TRUE"
scsi0.virtualDev = "pvscsi"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "$1"
EOF
  mv vm/vm.vmx.new vm/vm.vmx
}
# own_bytes DELTA: bytes the delta itself allocates (qemu-img map: depth 0).
own_bytes () {
  qemu-img map -f vmdk --output=json "vm/$1" | "$PYTHON" -c '
import json, sys
print(sum(e["length"] for e in json.load(sys.stdin) if e["depth"] == 0 and (e["data"] or e["zero"])))'
}
# round_bytes ID N: bytes round N copied.
round_bytes () {
  job_py "$1" "[r['bytes'] for r in j['rounds'] if r['number'] == $2][0]"
}

snapshot d1.vmdk base.vmdk
fy job add vm/vm.vmx --mode warm --to qemu --out out --no-convert \
  --round-interval 0.3 --json --start
expect_exit 0 "job add --mode warm of a VMX whose disk is a delta"
id=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$OUT")
[ -n "$id" ] || die "no job: $(cat "$OUT" "$ERR")"
wait_job "$id" 'len(j.get("rounds", [])) >= 1' 120 ||
  die "no round: $(job_py "$id" "j.get('error')")"

# The VM writes to d1, then a snapshot freezes it.
# (Its zeroed grains hide the base's data: a round must write them.)  The
# rounds are counted first: one may copy d1 as soon as d2 is there.
n=$(job_py "$id" 'j["rounds"][-1]["number"]')
qio vmdk vm/d1.vmdk "write -P 0x55 4M 6M" "write -P 0x66 200M 3M" \
  "write -z 20M 1M"
snapshot d2.vmdk d1.vmdk
wait_job "$id" "any(r['bytes'] > 0 for r in j['rounds'] if r['number'] > $n)" 60 ||
  die "no round copied d1 (rounds: $(job_py "$id" "[r['bytes'] for r in j['rounds']][-20:]"))"
r1=$(job_py "$id" "[r['number'] for r in j['rounds'] if r['bytes'] > 0][0]")
want=$(own_bytes d1.vmdk)
check_true "round $r1 copied d1's own grains: $(round_bytes "$id" "$r1") bytes, qemu-img map says $want" \
  test "$(round_bytes "$id" "$r1")" = "$want"

# Again: d2 written, then frozen by d3.
qio vmdk vm/d2.vmdk "write -P 0x77 64M 5M"
snapshot d3.vmdk d2.vmdk
wait_job "$id" "any(r['bytes'] > 0 for r in j['rounds'] if r['number'] > $r1)" 60 ||
  die "no round copied d2 (rounds: $(job_py "$id" "[r['bytes'] for r in j['rounds']][-20:]"))"
r2=$(job_py "$id" "[r['number'] for r in j['rounds'] if r['bytes'] > 0 and r['number'] > $r1][0]")
want=$(own_bytes d2.vmdk)
check_true "round $r2 copied d2's own grains: $(round_bytes "$id" "$r2") bytes, qemu-img map says $want" \
  test "$(round_bytes "$id" "$r2")" = "$want"
check_true "three rounds or more before the cutover" \
  test "$(job_py "$id" 'len(j["rounds"]) >= 3')" = true
check_true "the job awaits its cutover" \
  test "$(job_py "$id" 'j["state"]')" = awaiting-cutover

# The VM writes to d3 and is powered off: the cutover.
qio vmdk vm/d3.vmdk "write -P 0x88 100M 2M" "write -z 20M 1M"
fy job cutover "$id" --wait
expect_exit 0 "job cutover --wait"
check_true "the job is done" test "$(job_py "$id" 'j["state"]')" = done
want=$(own_bytes d3.vmdk)
check_true "the last round copied d3's own grains ($want bytes)" \
  test "$(job_py "$id" 'j["rounds"][-1]["bytes"]')" = "$want"
check_true "the last round is the final one" \
  test "$(job_py "$id" 'j["rounds"][-1]["final"]')" = true
check_true "no round copied the whole disk" \
  test "$(job_py "$id" 'all(r["bytes"] < 100 << 20 for r in j["rounds"])')" = true
target=out/$(job_py "$id" 'j["disks"][0]["target"]')
same_content "the target equals the chain's top" vm/d3.vmdk vmdk "$target" qcow2
qemu_clean "the target is clean" "$target"
check_true "the QEMU script is there" test -n "$(ls out/*.sh 2>/dev/null)"
check_true "the downtime is measured" \
  test "$(job_py "$id" 'j.get("downtime_s", -1) >= 0')" = true

# A VMX whose disk is no delta: nothing tracks what changes.
mkimg vmdk vm2.vmdk 16M
mkdir -p vm2 && mv vm2.vmdk vm2/flat.vmdk
sed 's/fileName = ".*"/fileName = "flat.vmdk"/' vm/vm.vmx >vm2/vm.vmx
fy job add vm2/vm.vmx --mode warm --to qemu --out out3 --no-convert
expect_exit 1 "a VMX with no snapshot delta is refused for a warm migration"
expect_stderr "snapshot" "... saying a snapshot is needed"

done_testing
