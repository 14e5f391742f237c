#!/usr/bin/env bash
# warm-qmp-kill: a warm migration of a running QEMU guest (the tiny guest,
# writing records all along) killed with SIGKILL in its base copy, before
# its first round saved anything, then run again.  The first run started
# the VM's dirty bitmap before reading a byte; the second must go on from
# the state the first kept (a bitmap name of its own, not the first's
# again) and lose no write.  Judged by qemu-img compare (the target
# equals the source disk once the source is paused and gone) and by the
# target booted in check mode (every record the source announced).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/warm-lib.sh"
require qemu-img qemu-system-x86_64 python3

cd "$WORK" || die "cd $WORK"
mkimg qcow2 disk.qcow2 512M
qio qcow2 disk.qcow2 "write -s $RAND 300M 8M" "write -P 0x5a 160M 100M"
tiny_build
tiny_start src disk.qcow2 qcow2 write ferry.rate=768
tiny_wait_records src 10 || die "the guest wrote no records: $(tail -5 "$WORK/src.log")"

fy job add "qmp:$WORK/src.qmp" --mode warm --to qemu --out out \
  --source-stop pause --cutover now --round-interval 1 --json
expect_exit 0 "job add --mode warm qmp:SOCKET --cutover now"
id=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"] or "")' "$OUT" 2>/dev/null)
[ -n "$id" ] || die "no job: $(cat "$OUT" "$ERR")"

# The kill: the 12th write of the run, in its base copy's target.
FERRY_FAULT=write:12:kill FERRY_FAULT_TRACE="$WORK/kill.trace" \
  "$FERRY" job run "$id" >/dev/null 2>"$WORK/kill.err"
RC=$?
check_true "killed in the base copy: SIGKILL ($RC)" test $RC = 137
check_true "killed in the base copy: no round ran" \
  test "$(job_py "$id" 'len(j.get("rounds", []))')" = 0
check_true "killed in the base copy: the write struck is the target's" \
  grep -q "^12 write .*\.ferry-job-$id/" "$WORK/kill.trace"

tiny_wait_records src $(($(tiny_last_record src) + 5)) ||
  die "the guest stopped writing: $(tail -5 "$WORK/src.log")"
FY_TIMEOUT=600 fy job run "$id"
expect_exit 0 "run again after the kill: exit 0"
check_true "the job is done" test "$(job_py "$id" 'j["state"]')" = done
check_true "rounds ran after the base copy ($(job_py "$id" 'len(j.get("rounds", []))'))" \
  test "$(job_py "$id" 'len(j.get("rounds", [])) >= 2')" = true
check_true "the source VM is paused" \
  test "$(tiny_qmp src query-status | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = paused
check_true "ferry's bitmaps are gone from the source VM" \
  test "$(tiny_qmp src query-block | "$PYTHON" -c '
import json, sys
print(sum(len(d.get("dirty-bitmaps", [])) +
          len(d.get("inserted", {}).get("dirty-bitmaps", []))
          for d in json.load(sys.stdin)))')" = 0
tiny_stop src
target=out/$(job_py "$id" 'j["disks"][0]["target"]')
same_content "the target equals the source disk" disk.qcow2 qcow2 "$target" qcow2
tiny_holds "the target boots and holds every record the source announced" \
  "$target" qcow2 src

# --- killed between "stopped" saved and the VM stopped ------------------------
mkimg qcow2 disk2.qcow2 512M
tiny_start src2 disk2.qcow2 qcow2 write ferry.rate=768
tiny_wait_records src2 10 || die "the guest wrote no records: $(tail -5 "$WORK/src2.log")"
fy job add "qmp:$WORK/src2.qmp" --mode warm --to qemu --out out2 \
  --source-stop pause --cutover manual --round-interval 1 --json --start
expect_exit 0 "job add --mode warm --cutover manual --start"
id=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"] or "")' "$OUT" 2>/dev/null)
[ -n "$id" ] || die "no job: $(cat "$OUT" "$ERR")"
wait_job "$id" 'len(j.get("rounds", [])) >= 2' 300 ||
  die "no rounds: $(job_py "$id" j)"
# A second job of the same VM (through its other monitor: the first job
# holds this one) is refused, the VM having one NBD server, the first
# job's; and its refusal leaves that server alone.
fy job add "qmp:$WORK/src2.ctl.qmp" --mode warm --to qemu --out out3 --json
expect_exit 1 "a second warm job of a VM that a job migrates: refused"
expect_stderr "runs an NBD server already" "the refusal says why"
n=$(job_py "$id" 'len(j["rounds"])')
if wait_job "$id" "len(j['rounds']) >= $n + 2" 120; then
  ok "the first job's rounds go on"
else
  not_ok "the first job's rounds go on" "$(job_py "$id" j)"
fi
pid=$(job_py "$id" 'j.get("runner", "::").split(":")[1]')
kill -KILL "$pid" 2>/dev/null
check_true "the runner killed between rounds (pid $pid), before any cutover" \
  test "$(job_py "$id" '"stopped_at" not in j')" = true
# What that kill leaves: "stopped" saved, the VM never told to stop.
"$PYTHON" - "$FERRY_STORE" "$id" <<'PY'
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
job = int(sys.argv[2])
doc = json.loads(c.execute("SELECT doc FROM jobs WHERE id = ?",
                           (job,)).fetchone()[0])
doc["warm"]["stopped"] = 1
c.execute("UPDATE jobs SET doc = ? WHERE id = ?", (json.dumps(doc), job))
c.commit()
PY
vm_status () {
  tiny_qmp "$1" query-status |
    "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["status"])'
}
check_true "the source VM still runs" test "$(vm_status src2)" = running
tiny_wait_records src2 $(($(tiny_last_record src2) + 5)) ||
  die "the guest stopped writing: $(tail -5 "$WORK/src2.log")"
FY_TIMEOUT=600 fy job run "$id"
expect_exit 0 "the run after 'stopped' was saved: exit 0"
check_true "the job is done" test "$(job_py "$id" 'j["state"]')" = done
check_true "the source VM was stopped again: paused" \
  test "$(vm_status src2)" = paused
tiny_stop src2
target=out2/$(job_py "$id" 'j["disks"][0]["target"]')
same_content "the target equals the source disk" disk2.qcow2 qcow2 \
  "$target" qcow2
tiny_holds "the target holds every record the source announced" \
  "$target" qcow2 src2

done_testing
