#!/usr/bin/env bash
# warm-qmp: a warm migration of a running QEMU guest (the tiny guest of
# tests/guests/tiny, under TCG) that writes all along: numbered records,
# each fsync'd before it is announced on the serial console, and random
# rewrites of a region.  ferry reaches the VM by its QMP socket: dirty
# bitmaps, the disk exported by the VM itself, rounds.  The runner is
# killed with SIGKILL in the middle of a round and resumed; the cutover
# pauses the source.  Judged by:
#  - qemu-img compare: the target equals the source disk once the source
#    QEMU is gone;
#  - the target booted (check mode) holds the last record the source
#    announced;
#  - QEMU's own count of the bytes the guest wrote (query-blockstats,
#    sampled on a second QMP monitor): each round copied about what the
#    guest wrote between two freezes (within 2x), never the whole disk;
#  - the job's record: rounds with bytes and seconds, a prediction before
#    the cutover, the measured downtime after it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/warm-lib.sh"
require qemu-img qemu-system-x86_64 python3

cd "$WORK" || die "cd $WORK"
tiny_build
mkimg qcow2 disk.qcow2 1G
qio qcow2 disk.qcow2 "write -P 0x5a 256M 200M" "write -s $RAND 600M 8M"

# The sampler: the guest's written bytes every 0.1 s on the second monitor.
SAMPLER=$WORK/sampler.py
cat >"$SAMPLER" <<'EOF'
import json, socket, sys, time
out = open(sys.argv[2], "a", buffering=1)
while True:
    # A connection per sample: the test's monitor stays free between them.
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sys.argv[1])
    f = s.makefile("rw")
    f.readline()
    f.write('{"execute":"qmp_capabilities"}\n'); f.flush(); f.readline()
    f.write('{"execute":"query-blockstats"}\n'); f.flush()
    while True:
        m = json.loads(f.readline())
        if "return" in m:
            break
    s.close()
    wr = sum(d["stats"]["wr_bytes"] for d in m["return"])
    print("%.3f %d" % (time.time(), wr), file=out)
    time.sleep(0.1)
EOF

tiny_start src disk.qcow2 qcow2 write ferry.rate=768
echo "# the tiny guest booted in $TINY_BOOT_S s"
tiny_wait_records src 10 || die "the guest wrote no records: $(tail -5 "$WORK/src.log")"
"$PYTHON" "$SAMPLER" "$WORK/src.ctl.qmp" written.log &
SPID=$!
at_exit "kill $SPID"

fy job add "qmp:$WORK/src.qmp" --mode warm --to qemu --out out \
  --source-stop pause --round-interval 1.5 --json --start
expect_exit 0 "job add --mode warm qmp:SOCKET --start"
id=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"] or "")' "$OUT" 2>/dev/null)
[ -n "$id" ] || die "no job: $(cat "$OUT" "$ERR")"

if wait_job "$id" 'len(j.get("rounds", [])) >= 2' 300; then
  ok "rounds while the guest writes"
else
  not_ok "rounds while the guest writes" "$(job_py "$id" "{k: j.get(k) for k in ('state', 'error', 'waiting')}")"
fi

# The kill: in the middle of a round.
n=$(job_py "$id" 'j["rounds"][-1]["number"]')
wait_job "$id" "j['rounds'][-1]['number'] > $n" 60
sleep 0.$((RANDOM % 9 + 1))
pid=$(job_py "$id" 'j.get("runner", "::").split(":")[1]')
if [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; then
  ok "the runner killed (pid $pid)"
else
  not_ok "the runner killed" "runner: $(job_py "$id" 'j.get("runner")')"
fi
sleep 0.5
fy job resume "$id"
expect_exit 0 "job resume after the kill"
k=$(job_py "$id" 'j["rounds"][-1]["number"]')
if wait_job "$id" "j['rounds'][-1]['number'] >= max($k + 2, 4)" 300; then
  ok "rounds go on after the resume ($(job_py "$id" 'len(j["rounds"])') in all)"
else
  not_ok "rounds go on after the resume" "$(job_py "$id" "{k: j.get(k) for k in ('state', 'error', 'waiting')}")"
fi
check_true "a predicted downtime is given before the cutover ($(job_py "$id" 'j.get("predicted_downtime_s")') s)" \
  test "$(job_py "$id" 'j.get("predicted_downtime_s", -1) >= 0')" = true
check_true "the job awaits its cutover" \
  test "$(job_py "$id" 'j["state"]')" = awaiting-cutover

fy job cutover "$id" --wait --json
expect_exit 0 "job cutover --wait"
check_true "the job is done" test "$(job_py "$id" 'j["state"]')" = done
kill "$SPID" 2>/dev/null
wait "$SPID" 2>/dev/null
check_true "the source VM is paused, not gone" \
  test "$(tiny_qmp src query-status | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = paused
echo "# downtime $(job_py "$id" 'j.get("downtime_s")') s, predicted $(job_py "$id" 'j.get("predicted_downtime_s")') s, disks final after $(job_py "$id" 'j.get("disks_final_s")') s"
# --domain: the VM's description from its libvirt XML, its disks from QMP
# (the VM is paused now: planning only reads it).
cat >dom.xml <<EOF
<domain type='kvm'>
  <name>described</name>
  <memory unit='MiB'>512</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$WORK/disk.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
EOF
fy job add "qmp:$WORK/src.qmp" --mode warm --domain dom.xml --to qemu --out out2 --json
expect_exit 0 "job add --domain XML"
id2=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"] or "")' "$OUT" 2>/dev/null)
check_true "the job's VM is the XML's" test "$(job_py "$id2" 'j.get("vm")')" = described
check_true "planning left no export in the VM" \
  test "$(tiny_qmp src query-block-exports)" = "[]"
check_true "nor a bitmap" test "$(tiny_qmp src query-block | "$PYTHON" -c '
import json, sys
print(sum(len(d.get("inserted", {}).get("dirty-bitmaps", [])) for d in json.load(sys.stdin)))')" = 0
sed "s|<disk type|<disk type='file' device='disk'><source file='$WORK/x.qcow2'/><target dev='vdb' bus='virtio'/></disk><disk type|" dom.xml >dom2.xml
fy job add "qmp:$WORK/src.qmp" --mode warm --domain dom2.xml --to qemu --out out3
expect_exit 1 "a --domain with more disks than the VM has is refused"
expect_stderr "none of the running VM's disks" "... naming the disk"
tiny_stop src
target=out/$(job_py "$id" 'j["disks"][0]["target"]')
same_content "the target equals the source disk" disk.qcow2 qcow2 "$target" qcow2
qemu_clean "the target is clean" "$target"
tiny_holds "the target boots and holds every record the source announced" \
  "$target" qcow2 src

# Rounds against the guest's writes (see the top).
job_py "$id" 'j["rounds"]' >rounds.json
"$PYTHON" - rounds.json written.log <<'EOF' >judge.txt
import json, sys
rounds = json.load(open(sys.argv[1]))
samples = [tuple(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
def written(t):
    best = None
    for ts, wr in samples:
        if ts <= t:
            best = wr
    return best
bad = judged = 0
for a, b in zip(rounds, rounds[1:]):
    if b["final"] or a["kind"] != "bitmap" or b["kind"] != "bitmap":
        continue
    w0, w1 = written(a["started"]), written(b["started"])
    if w0 is None or w1 is None or w1 - w0 < (1 << 20):
        continue
    w = w1 - w0
    ok = w / 2 - (256 << 10) <= b["bytes"] <= 2 * w + (256 << 10)
    judged += 1
    bad += not ok
    print("round %d: copied %d bytes, the guest wrote %d%s" % (
        b["number"], b["bytes"], w, "" if ok else "  <-- not within 2x"))
print("judged %d" % judged)
print("whole" if any(r["bytes"] >= 1 << 30 for r in rounds) else "never whole")
sys.exit(1 if bad or judged == 0 else 0)
EOF
rc=$?
sed 's/^/# /' judge.txt
if [ $rc = 0 ]; then ok "each round copied what the guest wrote, within 2x"
else not_ok "each round copied what the guest wrote, within 2x" "$(cat judge.txt)"; fi
check_true "no round copied the whole disk" grep -q "never whole" judge.txt

done_testing
