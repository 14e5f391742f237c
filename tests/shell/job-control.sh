#!/usr/bin/env bash
# job-control: migration jobs driven from other processes, as a user
# would from another terminal: pause within 2 s and resume, cancel (no
# partial output left, the record kept), a second runner on a running job
# refused, a full disk (a small tmpfs) failing the job with the reason and
# a retry finishing it once space is freed, a rerun of the same v2v
# resuming its job, a plan of 6 VMs with --parallel 2 and one bad VM, and
# stores that cannot be used (corrupt, not a store, newer schema, locked).
# Outputs are judged by qemu-img compare and check.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3 sqlite3

cd "$WORK" || die "cd $WORK"
mkdir -p src
mkimg raw src/d0.img 1G
qio raw src/d0.img "write -s $RAND 0 8M" "write -P 0x33 8M 600M"
mkimg qcow2 src/d1.qcow2 64M
qio qcow2 src/d1.qcow2 "write -P 0x55 0 30M" "write -s $RAND 40M 8M"
vmx () {                       # vmx NAME DISK0 DISK1
  cat <<EOF
displayName = "$1"
guestOS = "other-64"
memSize = "512"
scsi0.present = "TRUE"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "$2"
scsi0:1.present = "TRUE"
scsi0:1.fileName = "$3"
EOF
}
vmx ctl d0.img d1.qcow2 >src/vm.vmx
export FERRY_CHECKPOINT_BYTES=$((16 << 20))

# json_field FILE KEY: a top-level member of the JSON in FILE.
json_field () {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
job_state () {
  "$FERRY" job show --json "$1" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])'
}
# judge OUT NAME WHAT: the two disks of OUT equal the sources and are clean.
judge () {
  same_content "$3: disk 1 equals its source" src/d0.img raw "$1/$2-disk1.qcow2" qcow2
  same_content "$3: disk 2 equals its source" src/d1.qcow2 qcow2 "$1/$2-disk2.qcow2" qcow2
  qemu_clean "$3: disk 1 is clean" "$1/$2-disk1.qcow2"
  qemu_clean "$3: disk 2 is clean" "$1/$2-disk2.qcow2"
}
# wait_state ID STATE SECONDS: until job ID is in STATE.
wait_state () {
  local i
  for i in $(seq $(($3 * 20))); do
    [ "$(job_state "$1")" = "$2" ] && return 0
    sleep 0.05
  done
  return 1
}
# wait_copying ID: until job ID has copied something.
wait_copying () {
  local i
  for i in $(seq 400); do
    "$FERRY" job show --json "$1" 2>/dev/null | python3 -c '
import json, sys
j = json.load(sys.stdin)
sys.exit(0 if j["state"] == "running" and j["bytes_done"] > (64 << 20) else 1)' && return 0
    sleep 0.05
  done
  return 1
}

# --- pause and resume -------------------------------------------------------
fy job add src/vm.vmx --to libvirt --out p --no-convert -m 1 --json
expect_exit 0 "add: exit 0"
id=$(json_field "$OUT" id)
check_true "add: the job is planned" test "$(json_field "$OUT" state)" = planned
check_true "add: nothing is written yet" test ! -e p
fy job start "$id" --json
expect_exit 0 "start: exit 0"
wait_copying "$id" || not_ok "start: job $id did not get to copying"
t0=$(date +%s%N)
fy job pause "$id" --json
ms=$((($(date +%s%N) - t0) / 1000000))
expect_exit 0 "pause: exit 0"
check_true "pause: the job is paused ($(json_field "$OUT" state))" test "$(json_field "$OUT" state)" = paused
check_true "pause: it stopped within 2 s ($ms ms)" test $ms -le 2000
check_true "pause: no output folder" test ! -e p
check_true "pause: its working folder is kept" test -d ".p.ferry-job-$id"
fy job show "$id"
check_true "show: the copy step stopped, not failed" \
  sh -c "grep -E '^  copy disk 1 +stopped' '$OUT' && ! grep -q 'failed' '$OUT'"
fy job resume "$id" --wait --json
expect_exit 0 "resume --wait: exit 0"
check_true "resume: the job is done ($(json_field "$OUT" state))" test "$(json_field "$OUT" state)" = done
judge p ctl "pause and resume"
check_true "resume: it went on from its checkpoint" \
  sh -c "'$FERRY' job show '$id' | grep -q 'resuming at'"

# --- cancel -------------------------------------------------------------------
fy job add src/vm.vmx --to libvirt --out c --no-convert -m 1 --start --json
expect_exit 0 "add --start: exit 0"
id=$(json_field "$OUT" id)
wait_copying "$id" || not_ok "add --start: job $id did not get to copying"
# A second runner on the running job.
fy job run "$id"
expect_exit 1 "a second runner: refused"
expect_stderr_re "job $id is already being run by process [0-9]+" "a second runner: says who runs it"
fy job rm "$id"
expect_exit 1 "rm while it runs: refused"
expect_stderr "cancel it first" "rm while it runs: says to cancel it first"
fy job cancel "$id" --json
expect_exit 0 "cancel: exit 0"
check_true "cancel: the job is cancelled" test "$(json_field "$OUT" state)" = cancelled
check_true "cancel: nothing left (no output, no working folder)" \
  sh -c "test ! -e c && test -z \"\$(ls -A | grep -F .c.ferry)\""
fy job show "$id"
expect_exit 0 "cancel: the record is kept"
fy job rm "$id"
expect_exit 0 "rm: exit 0"
fy job show "$id"
expect_exit 1 "rm: the record is gone"
expect_stderr "no job $id in" "rm: show says there is no such job"

# --- a rerun of the same v2v resumes its job ---------------------------------
set -m
"$FERRY" v2v src/vm.vmx --to libvirt --out v --no-convert -m 1 >"$OUT" 2>"$ERR" </dev/null &
pid=$!
set +m
for i in $(seq 400); do
  ls -d .v.ferry-job-*/ctl-disk1.qcow2 >/dev/null 2>&1 &&
    [ "$(du -k .v.ferry-job-*/ctl-disk1.qcow2 | cut -f1)" -gt 65536 ] && break
  sleep 0.05
done
kill -INT $pid
RC=0
wait $pid || RC=$?
check_true "v2v, SIGINT: died of it ($RC)" test $RC = 130
expect_stderr_re "interrupted; .*v was not written; job [0-9]+ is paused: ferry job resume [0-9]+" \
  "v2v, SIGINT: says which job to resume"
fy v2v src/vm.vmx --to libvirt --out v --no-convert -m 1
expect_exit 0 "v2v again: exit 0"
expect_stderr_re "resuming job [0-9]+ \\(paused\\)" "v2v again: resumes the paused job"
judge v ctl "v2v resumed"
check_true "v2v again: no working folder left" test -z "$(ls -A | grep -F .v.ferry)"

# --- a full disk -------------------------------------------------------------
# A 200 MiB tmpfs; 138 MiB of data to write as raw; 110 MiB of it taken
# while the job runs.
mkimg raw src/e0.img 128M
qio raw src/e0.img "write -s $RAND 0 8M" "write -P 0x35 8M 92M"
vmx enospc e0.img d1.qcow2 >src/e.vmx
mkdir small
if mount -t tmpfs -o size=200m ferry-test "$WORK/small" 2>"$WORK/mount.err"; then
  at_exit umount -l "$WORK/small"
  head -c $((120 << 20)) /dev/zero >small/ballast
  fy job add src/e.vmx --to libvirt -O raw --out small/o --no-convert --json
  expect_exit 1 "full disk: the space check refuses a job that cannot fit"
  expect_stderr "no job was added" "full disk: says no job was added"
  rm small/ballast
  fy job add src/e.vmx --to libvirt -O raw --out small/o --no-convert --json
  expect_exit 0 "full disk: a job that fits is added"
  id=$(json_field "$OUT" id)
  "$FERRY" job run "$id" >"$OUT" 2>"$ERR" </dev/null &
  pid=$!
  # Once the copy is under way, what is left of the space goes.
  for i in $(seq 400); do
    f=$(ls -d small/.o.ferry-job-*/enospc-disk1.img 2>/dev/null)
    [ -n "$f" ] && [ "$(du -k "$f" | cut -f1)" -gt 20480 ] && break
    sleep 0.02
  done
  # Stopped while another process fills the disk.
  kill -STOP $pid
  head -c $((200 << 20)) /dev/zero >small/ballast 2>/dev/null
  kill -CONT $pid
  RC=0
  wait $pid || RC=$?
  LAST_CMD="ferry job run $id, the disk filled while it runs"
  expect_exit 1 "full disk: the job fails"
  expect_stderr "No space left on device" "full disk: says the disk is full"
  check_true "full disk: the job is failed" test "$(job_state "$id")" = failed
  check_true "full disk: the reason is in the record" \
    sh -c "'$FERRY' job show '$id' | grep -q 'error: .*No space left'"
  rm small/ballast
  fy job retry "$id" --wait --json
  expect_exit 0 "full disk: retry after freeing space"
  check_true "full disk: the job is done" test "$(json_field "$OUT" state)" = done
  same_content "full disk: disk 1 equals its source" src/e0.img raw small/o/enospc-disk1.img raw
  same_content "full disk: disk 2 equals its source" src/d1.qcow2 qcow2 small/o/enospc-disk2.img raw
  # What was done before the failure is not done again: disk 1 is copied
  # once, whichever disk the disk filled up in.
  check_true "full disk: the retry went on from where it failed" \
    test "$("$FERRY" job show "$id" | grep -c 'copy of disk 1 done')" = 1
else
  not_ok "full disk: cannot mount a tmpfs" "$(cat "$WORK/mount.err")"
fi

# --- a plan of 6 VMs, one bad, 2 at a time ------------------------------------
for v in 1 2 3 4 5; do
  mkimg qcow2 src/p$v.qcow2 32M
  qio qcow2 src/p$v.qcow2 "write -P 0x$v$v 0 8M"
  vmx "vm$v" p$v.qcow2 d1.qcow2 >src/p$v.vmx
done
vmx vm6 missing.vmdk d1.qcow2 >src/p6.vmx
python3 - >plan.json <<'EOF'
import json
vms = [{"source": "src/p%d.vmx" % v, "to": "local", "out": "plan/vm%d" % v,
        "format": "qcow2", "no-convert": True} for v in range(1, 7)]
print(json.dumps({"vms": vms}))
EOF
mkdir plan
fy plan run plan.json --parallel 2 --json
expect_exit 1 "plan: exit 1 (one VM failed)"
plan_id=$(json_field "$OUT" id)
python3 - "$OUT" >"$WORK/plan.sum" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
print(" ".join(sorted(j["state"] for j in p["jobs"])))
EOF
check_true "plan: 5 done, 1 failed ($(cat "$WORK/plan.sum"))" \
  test "$(cat "$WORK/plan.sum")" = "done done done done done failed"
for v in 1 2 3 4 5; do
  same_content "plan: vm$v's disk equals its source" src/p$v.qcow2 qcow2 plan/vm$v/vm$v-disk1.qcow2 qcow2
done
# At most 2 at once: the runs' step times, from the store.
fy job list --plan "$plan_id" --json
python3 - "$OUT" >"$WORK/overlap" <<'EOF'
import json, sys
spans = []
for j in json.load(open(sys.argv[1])):
    if j.get("started") and j.get("finished"):
        spans.append((j["started"], j["finished"]))
print(max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans) if spans else 0)
EOF
check_true "plan: at most 2 ran at once ($(cat "$WORK/overlap"))" test "$(cat "$WORK/overlap")" -le 2
fy plan show "$plan_id"
expect_exit 0 "plan show: exit 0"
check_true "plan show: names the failed VM's reason" grep -q "missing.vmdk" "$OUT"

# --per-source 1: the three VMs of one folder one at a time; --stagger 2:
# their starts 2 s apart (over 1.5 s by the runners' clocks).
for v in 1 2 3; do vmx "s$v" p$v.qcow2 d1.qcow2 >src/s$v.vmx; done
python3 - >plan3.json <<'EOF'
import json
print(json.dumps({"vms": [{"source": "src/s%d.vmx" % v, "to": "local",
                           "out": "plan3/s%d" % v, "no-convert": True}
                          for v in (1, 2, 3)]}))
EOF
mkdir plan3
fy plan run plan3.json --parallel 3 --per-source 1 --stagger 2 --json
expect_exit 0 "plan, --per-source 1 --stagger 2: exit 0"
python3 - "$OUT" >"$WORK/plan3.sum" <<'EOF'
import json, sys
jobs = json.load(open(sys.argv[1]))["jobs"]
spans = sorted((j["started"], j["finished"]) for j in jobs)
overlap = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
gap = min(b[0] - a[0] for a, b in zip(spans, spans[1:]))
print(len(jobs), overlap, "%.2f" % gap, " ".join(j["state"] for j in jobs))
EOF
read -r n overlap gap states <"$WORK/plan3.sum"
check_true "plan, --per-source 1: all 3 done ($states)" test "$states" = "done done done"
check_true "plan, --per-source 1: one at a time ($overlap)" test "$overlap" = 1
check_true "plan, --stagger 2: starts well over 1 s apart ($gap s)" \
  python3 -c "import sys; sys.exit(0 if float('$gap') >= 1.5 else 1)"

# --- show --watch ---------------------------------------------------------------
fy job add src/vm.vmx --to local --out w --no-convert -m 1 --start --json
id=$(json_field "$OUT" id)
fy job show --watch --json "$id"
expect_exit 0 "show --watch: exit 0 when the job ends"
python3 - "$OUT" >"$WORK/watch" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
lines = [json.loads(l) for l in text.splitlines() if l.startswith("{") and l.endswith("}")]
last = json.loads(text[text.rindex("\n{\n") + 1:]) if "\n{\n" in text else {}
print(len(lines), lines[0]["state"] if lines else "-", last.get("state", "-"))
EOF
read -r nlines first last <"$WORK/watch"
check_true "show --watch: progress lines while it runs, then the job, done ($nlines, $first, $last)" \
  test "$nlines" -ge 1 -a "$last" = done

# --- a VM of a plan paused before its turn is not run ------------------------
last=$("$FERRY" job list --json | python3 -c 'import json, sys; print(max([j["id"] for j in json.load(sys.stdin)] or [0]))')
python3 - >plan2.json <<'EOF'
import json
print(json.dumps({"vms": [
    {"source": "src/vm.vmx", "to": "local", "out": "plan2/big", "format": "qcow2", "no-convert": True},
    {"source": "src/p1.vmx", "to": "local", "out": "plan2/small", "format": "qcow2", "no-convert": True}]}))
EOF
mkdir plan2
"$FERRY" plan run plan2.json --parallel 1 >"$WORK/plan2.out" 2>&1 &
plan_pid=$!
wait_state $((last + 1)) running 20 || not_ok "plan 2: its first job did not start"
fy job pause $((last + 2)) --json
expect_exit 0 "plan 2: pause of the queued job: exit 0"
check_true "plan 2: the queued job is paused" test "$(json_field "$OUT" state)" = paused
wait "$plan_pid"
check_true "plan 2: the first job is done" test "$(job_state $((last + 1)))" = done
check_true "plan 2: the paused job stayed paused ($(job_state $((last + 2))))" \
  test "$(job_state $((last + 2)))" = paused
check_true "plan 2: the paused job wrote nothing" test ! -e plan2/small

# --- a VM of a plan whose source was missing, resumed once it is there -------
python3 - >plan4.json <<'EOF'
import json
print(json.dumps({"vms": [{"source": "src/late.vmx", "to": "local", "out": "plan4/late",
                           "format": "qcow2", "no-convert": True}]}))
EOF
mkdir plan4
fy plan run plan4.json --json
expect_exit 1 "plan 4: exit 1 (its source is missing)"
id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["jobs"][0]["id"])' "$OUT")
check_true "plan 4: the job failed" test "$(job_state "$id")" = failed
vmx late p2.qcow2 d1.qcow2 >src/late.vmx
fy job resume "$id" --wait --json
expect_exit 0 "plan 4: resume once the source is there: exit 0"
check_true "plan 4: the job is done ($(json_field "$OUT" state))" test "$(json_field "$OUT" state)" = done
same_content "plan 4: its disk equals the source" src/p2.qcow2 qcow2 plan4/late/late-disk1.qcow2 qcow2
check_true "plan 4: no working folder left" test -z "$(ls -A plan4 | grep -F .late.ferry)"

# --- a runner killed after the commit's rename -------------------------------
# A traced run of the same migration counts the syncs up to the output's
# parent's, after the rename.
fy job add src/p3.vmx --to local --out k0 --no-convert --json
FERRY_FAULT_TRACE="$WORK/k0.trace" "$FERRY" job run "$(json_field "$OUT" id)" >/dev/null 2>&1
n=$(awk '$2 == "sync" { n++ } $2 == "rename" { r = 1 } r && $2 == "sync" { print n; exit }' "$WORK/k0.trace")
fy job add src/p3.vmx --to local --out k --no-convert --json
id=$(json_field "$OUT" id)
FERRY_FAULT=sync:$n:kill "$FERRY" job run "$id" >/dev/null 2>&1 &
pid=$!
RC=0
wait "$pid" || RC=$?
check_true "killed after the rename: SIGKILL ($RC)" test $RC = 137
check_true "killed after the rename: the output is in place" test -d k
fy job run "$id"
expect_exit 0 "killed after the rename: run again: exit 0"
check_true "killed after the rename: the job is done" test "$(job_state "$id")" = done
fy job show "$id"
check_true "killed after the rename: the takeover names the killed runner" \
  grep -q "its last runner ([^:]*:$pid:[0-9]*) is gone" "$OUT"
check_true "killed after the rename: the commit was found done" grep -q "found done" "$OUT"

# Cancel of a job killed after its rename: it is done, and its output stays.
fy job add src/p3.vmx --to local --out k2 --no-convert --json
id=$(json_field "$OUT" id)
FERRY_FAULT=sync:$n:kill "$FERRY" job run "$id" >/dev/null 2>&1
check_true "cancel after the rename: the output is in place" test -d k2
fy job cancel "$id"
expect_exit 1 "cancel after the rename: refused"
expect_stderr "is in place" "cancel after the rename: says its output is in place"
check_true "cancel after the rename: not recorded cancelled" test "$(job_state "$id")" != cancelled
fy job run "$id"
expect_exit 0 "cancel after the rename: run: exit 0"
check_true "cancel after the rename: the job is done" test "$(job_state "$id")" = done
same_content "cancel after the rename: disk 1 equals its source" src/p3.qcow2 qcow2 k2/vm3-disk1.qcow2 qcow2

# --- a disk's copy removed by hand from the working folder -------------------
fy job add src/p4.vmx --to local --out g0 --no-convert --json
FERRY_FAULT_TRACE="$WORK/g0.trace" "$FERRY" job run "$(json_field "$OUT" id)" >/dev/null 2>&1
n=$(awk '$2 == "write" { n++ } $2 == "write" && $3 ~ /-disk2\./ { print n; exit }' "$WORK/g0.trace")
fy job add src/p4.vmx --to local --out g --no-convert --json
id=$(json_field "$OUT" id)
FERRY_FAULT=write:$n:kill "$FERRY" job run "$id" >/dev/null 2>&1
check_true "copy removed by hand: killed while copying disk 2" \
  test -f ".g.ferry-job-$id/vm4-disk1.qcow2"
rm -f ".g.ferry-job-$id/vm4-disk1.qcow2"
fy job run "$id"
expect_exit 0 "copy removed by hand: run again: exit 0"
check_true "copy removed by hand: the output has disk 1" test -f g/vm4-disk1.qcow2
same_content "copy removed by hand: disk 1 equals its source" src/p4.qcow2 qcow2 g/vm4-disk1.qcow2 qcow2
same_content "copy removed by hand: disk 2 equals its source" src/d1.qcow2 qcow2 g/vm4-disk2.qcow2 qcow2

# --- --wait: the exit status says how the job ended ---------------------------
fy job add src/p5.vmx --to local --out w2 --no-convert --json
id=$(json_field "$OUT" id)
mv src/p5.qcow2 src/p5.away
fy job start "$id" --wait --json
expect_exit 1 "start --wait of a job that fails: exit 1"
check_true "start --wait of a job that fails: it failed" test "$(json_field "$OUT" state)" = failed
mv src/p5.away src/p5.qcow2
fy job resume "$id" --wait --json
expect_exit 0 "resume --wait, its source back: exit 0"
check_true "resume --wait, its source back: done" test "$(json_field "$OUT" state)" = done

# --- stores that cannot be used ----------------------------------------------
head -c 8192 /dev/urandom >bad.db
fy job list --store bad.db
expect_exit 1 "a corrupt store: refused"
expect_stderr "bad.db: not a ferry job store" "a corrupt store: says so"
echo "hello" >text.db
fy job list --store text.db
expect_exit 1 "a text file as the store: refused"
expect_stderr "text.db: not a ferry job store" "a text file: says so"
fy job list --store new.db
expect_exit 0 "a new store: made"
sqlite3 new.db "PRAGMA user_version = 99" || die "sqlite3"
fy job list --store new.db
expect_exit 1 "a newer schema: refused"
expect_stderr "schema version 99, newer than this ferry knows" "a newer schema: says so"
fy job list --store locked.db
sqlite3 locked.db "PRAGMA user_version" >/dev/null || die "sqlite3"
(echo "BEGIN EXCLUSIVE; CREATE TABLE lockit (a);"; sleep 3) |
  sqlite3 locked.db &
lockpid=$!
sleep 0.5
FERRY_STORE_BUSY_TIMEOUT=500 fy job add --store locked.db src/vm.vmx --to local --out l --no-convert
expect_exit 1 "a locked store: refused"
expect_stderr "locked by another process" "a locked store: says so"
wait $lockpid

done_testing
