#!/usr/bin/env bash
# warm-safety: what a warm migration of a running QEMU (the tiny guest of
# tests/guests/tiny, under TCG, writing all along) must never get wrong
# (issue 14's "Safety"), on two guests and one restart:
#  - a VM that already runs a block job, or serves NBD for someone else, is
#    refused with a message naming the job or the server, and nothing in it
#    changes (no bitmap, no export, the other NBD server still serves);
#  - a QMP path that is no socket, or a socket nobody listens on: a clear
#    error;
#  - bitmaps lost while the job is paused (removed on the test's monitor):
#    a warning, a hash round, and a target equal to the source;
#  - --source-stop shutdown: the guest shuts down at the cutover (its
#    console says FERRY-SHUTDOWN), QEMU stays;
#  - cancel of a running job: ferry's bitmaps and exports leave the VM,
#    which still runs, and no output is left;
#  - the source killed in the middle of a round: the job pauses with an
#    error naming the VM; a new QEMU on the same disk and socket, and the
#    resumed job compares every chunk (its bitmaps went with the old QEMU);
#  - --cutover now cuts over by itself, and the source runs until then.
# Judged by QEMU itself on the test's monitor (query-status, query-block,
# query-block-exports), nbdinfo, qemu-img compare and the check boot of
# each target (tiny_holds).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/warm-lib.sh"
require qemu-img qemu-system-x86_64 python3 nbdinfo

cd "$WORK" || die "cd $WORK"
tiny_build
RATE=ferry.rate=384

# vm_status NAME: QEMU's status of the guest NAME (query-status).
vm_status () {
  tiny_qmp "$1" query-status | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["status"])'
}

# vm_bitmaps NAME: "NODE BITMAP" for each dirty bitmap of NAME's disks.
vm_bitmaps () {
  tiny_qmp "$1" query-block | "$PYTHON" -c '
import json, sys
for d in json.load(sys.stdin):
    i = d.get("inserted") or {}
    for b in i.get("dirty-bitmaps", []):
        print(i["node-name"], b.get("name", "(anonymous)"))'
}

# vm_exports NAME: the ids of NAME's block exports, one a line.
vm_exports () {
  tiny_qmp "$1" query-block-exports | "$PYTHON" -c '
import json, sys
for e in json.load(sys.stdin):
    print(e["id"])'
}

# job_id: the id of the job the last `ferry job add --json` added.
job_id () {
  "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"] or "")' "$OUT" 2>/dev/null
}

# warm_add VM OUT ROUNDS [OPTIONS...]: add and start a warm job of the
# guest VM into OUT and wait until it ran ROUNDS rounds; JOB is its id.
warm_add () {
  local vm=$1 out=$2 want=$3
  shift 3
  fy job add "qmp:$WORK/$vm.qmp" --mode warm --to qemu --out "$out" \
    --json --start "$@"
  expect_exit 0 "job add --mode warm qmp:$vm.qmp $*"
  JOB=$(job_id)
  [ -n "$JOB" ] || die "no job: $(cat "$OUT" "$ERR")"
  wait_job "$JOB" "len(j.get('rounds', [])) >= $want" 240 ||
    die "job $JOB ran no $want rounds: $(job_py "$JOB" j)"
}

# cancelled_clean ID VM: job ID is cancelled, and ferry's bitmaps and
# exports left the guest VM, which still runs.
cancelled_clean () {
  wait_job "$1" 'j["state"] == "cancelled"' 30
  check_true "job $1 is cancelled" test "$(job_py "$1" 'j["state"]')" = cancelled
  check_true "no bitmap of ferry's is left in the VM" test -z "$(vm_bitmaps "$2" | grep ferry-)"
  check_true "no export is left in the VM" test -z "$(vm_exports "$2")"
  check_true "the VM still runs" test "$(vm_status "$2")" = running
}

# rounds ID: how many rounds job ID recorded.
rounds () {
  job_py "$1" 'len(j.get("rounds", []))'
}

# resume_hash ID WHAT: resume job ID, whose source lost its bitmaps (WHAT
# says how); its next round must compare every chunk (a hash round), the
# one after trust the new bitmaps.
resume_hash () {
  local id=$1 what=$2 n
  n=$(rounds "$id")
  fy job resume "$id"
  expect_exit 0 "job resume ($what)"
  if wait_job "$id" "len(j['rounds']) > $n + 1" 240; then
    ok "rounds go on after the resume ($what)"
  else
    not_ok "rounds go on after the resume ($what)" "$(job_py "$id" j)"
  fi
  check_true "the first round after the resume compares every chunk (a hash round)" \
    test "$(job_py "$id" "j['rounds'][$n]['kind']")" = hash
  check_true "the round after it is a bitmap round again" \
    test "$(job_py "$id" "j['rounds'][$n + 1]['kind']")" = bitmap
}

mkimg qcow2 a.qcow2 256M
mkimg qcow2 b.qcow2 256M
# Data past the guest's regions: base copies that take a while.
qio qcow2 b.qcow2 "write -P 0x5a 160M 64M"
tiny_start a a.qcow2 qcow2 write $RATE
echo "# the tiny guest a booted in $TINY_BOOT_S s"

# --- a VM that is busy, or that ferry cannot reach ---------------------------
tiny_qmp a blockdev-add '{"driver": "null-co", "node-name": "nul", "size": 268435456}' >/dev/null ||
  die "blockdev-add null-co"
tiny_qmp a blockdev-backup '{"job-id": "bk0", "device": "a-disk", "target": "nul", "sync": "full", "speed": 65536}' >/dev/null ||
  die "blockdev-backup"
# Someone else's NBD server (a pull-mode backup's, say) runs in the VM.
tiny_qmp a nbd-server-start "{\"addr\": {\"type\": \"unix\", \"data\": {\"path\": \"$WORK/other.sock\"}}}" >/dev/null ||
  die "nbd-server-start"
# The backup's own bitmap (copy-before-write's) is there: what the VM had.
bitmaps_before=$(vm_bitmaps a)
fy job add "qmp:$WORK/a.qmp" --mode warm --to qemu --out out-busy --json
expect_exit 1 "job add on a VM that runs a block job is refused"
expect_stderr "bk0" "the message names the block job"
check_true "the refused add left no bitmap in the VM" test "$(vm_bitmaps a)" = "$bitmaps_before"
check_true "the refused add left no export in the VM" test -z "$(vm_exports a)"
check_true "the VM's own NBD server still serves after the refused add" \
  nbdinfo --list "nbd+unix://?socket=$WORK/other.sock"
tiny_qmp a block-job-cancel '{"device": "bk0"}' >/dev/null
for _ in $(seq 100); do
  [ "$(tiny_qmp a query-block-jobs)" = "[]" ] && break
  sleep 0.1
done
tiny_qmp a blockdev-del '{"node-name": "nul"}' >/dev/null ||
  die "the backup job did not go: $(tiny_qmp a query-block-jobs)"

fy job add "qmp:$WORK/a.qmp" --mode warm --to qemu --out out-busy --json
expect_exit 1 "job add on a VM whose NBD server another client runs is refused"
expect_stderr "NBD server" "the message says an NBD server runs"
check_true "that refused add left no bitmap and no export" \
  test -z "$(vm_bitmaps a)$(vm_exports a)"
check_true "the VM's own NBD server still serves after that" \
  nbdinfo --list "nbd+unix://?socket=$WORK/other.sock"
tiny_qmp a nbd-server-stop >/dev/null || die "nbd-server-stop"

: >notsock
fy job add "qmp:$WORK/notsock" --mode warm --to qemu --out out-x
expect_exit 1 "job add on a QMP path that is a plain file fails"
expect_stderr "notsock: not a socket" "the message says it is not a socket"
"$PYTHON" -c 'import socket,sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$WORK/dead.qmp"
fy job add "qmp:$WORK/dead.qmp" --mode warm --to qemu --out out-x
expect_exit 1 "job add on a socket nobody listens on fails"
expect_stderr "dead.qmp: nothing listens" "the message says nothing listens"
check_true "no output for the failed adds" test ! -e out-x -a ! -e out-busy

# --- bitmaps lost while the job is paused; a graceful cutover ----------------
warm_add a out-a 2 --source-stop shutdown --shutdown-timeout 60 --round-interval 1
ida=$JOB
fy job pause "$ida" --wait
expect_exit 0 "job pause --wait"
check_true "the paused job is paused" test "$(job_py "$ida" 'j["state"]')" = paused
check_true "the source still runs while the job is paused" test "$(vm_status a)" = running
mine=$(vm_bitmaps a | grep " ferry-j$ida-")
if [ -n "$mine" ]; then
  ok "the paused job's bitmaps are in the VM ($(echo $mine))"
else
  not_ok "the paused job's bitmaps are in the VM" "$(vm_bitmaps a)"
fi
while read -r node bitmap; do
  tiny_qmp a block-dirty-bitmap-remove "{\"node\": \"$node\", \"name\": \"$bitmap\"}" >/dev/null ||
    die "block-dirty-bitmap-remove $node $bitmap"
done <<<"$mine"
resume_hash "$ida" "the bitmaps removed while paused"
check_true "the job warned that the bitmaps were lost" \
  test "$(job_py "$ida" 'any(e["level"] == "warning" and "bitmaps" in e["message"] for e in j["events"])')" = true
# Again while the rounds run: the next round that would trust them finds
# them gone (before its freeze, or refused by it, or at its merge).
n=$(rounds "$ida")
vm_bitmaps a | grep " ferry-j$ida-b" | while read -r node bitmap; do
  tiny_qmp a block-dirty-bitmap-remove "{\"node\": \"$node\", \"name\": \"$bitmap\"}" >/dev/null 2>&1
done
if wait_job "$ida" "any(r['kind'] == 'hash' for r in j['rounds'][$n:])" 120; then
  ok "bitmaps removed while the job runs: a hash round follows"
else
  not_ok "bitmaps removed while the job runs: a hash round follows" "$(job_py "$ida" j)"
fi
check_true "the job goes on (state $(job_py "$ida" 'j["state"]'))" \
  test "$(job_py "$ida" 'j["state"] in ("running", "awaiting-cutover")')" = true
check_true "the source still ran before the cutover" test "$(vm_status a)" = running
fy job cutover "$ida" --wait
expect_exit 0 "job cutover --wait (a graceful shutdown)"
check_true "the job is done" test "$(job_py "$ida" 'j["state"]')" = done
check_true "the guest shut down at the cutover (FERRY-SHUTDOWN on its console)" \
  grep -q -a '^FERRY-SHUTDOWN' a.log
st=$(vm_status a)
check_true "QEMU stays after the guest's shutdown (status $st)" \
  test "$st" = shutdown -o "$st" = paused
check_true "ferry's bitmaps and exports left the VM" \
  test -z "$(vm_bitmaps a | grep ferry-)$(vm_exports a)"
tiny_stop a
target=out-a/$(job_py "$ida" 'j["disks"][0]["target"]')
same_content "the target equals the source disk (bitmaps lost on the way)" \
  a.qcow2 qcow2 "$target" qcow2
tiny_holds "the target holds every record the source announced" \
  "$target" qcow2 a

# --- cancel of a running job -------------------------------------------------
tiny_start b b.qcow2 qcow2 write $RATE
warm_add b out-c 1 --round-interval 1
idc=$JOB
check_true "the running job has its bitmaps in the VM" test -n "$(vm_bitmaps b | grep " ferry-j$idc-")"
fy job cancel "$idc"
expect_exit 0 "job cancel of the running warm job"
cancelled_clean "$idc" b
check_true "no output is left" test -z "$(ls -A out-c 2>/dev/null)"

# --- cancel of a paused job: no runner holds it, ferry job cancel cleans -----
warm_add b out-p 1 --round-interval 1
idp=$JOB
fy job pause "$idp" --wait
expect_exit 0 "job pause --wait"
check_true "the paused job keeps its bitmaps in the VM" \
  test -n "$(vm_bitmaps b | grep " ferry-j$idp-")"
fy job cancel "$idp"
expect_exit 0 "job cancel of the paused warm job"
cancelled_clean "$idp" b
check_true "its working folder is gone" test ! -e "$WORK/.jobs/warm-job-$idp"

# --- the source killed mid-round, back, and resumed --------------------------
warm_add b out-k 2 --source-stop pause --round-interval 0.5
idk=$JOB
n=$(rounds "$idk")
wait_job "$idk" "len(j['rounds']) > $n" 60
sleep 0.$((RANDOM % 4 + 1))
tiny_stop b KILL
if wait_job "$idk" 'j["state"] == "paused"' 60; then
  ok "the job pauses when its source dies"
else
  not_ok "the job pauses when its source dies" "$(job_py "$idk" j)"
fi
err=$(job_py "$idk" 'j.get("error")')
if [[ $err == *"$WORK/b.qmp"* ]]; then
  ok "its error names the VM: $err"
else
  not_ok "its error names the VM" "error: $err"
fi
tiny_start b b.qcow2 qcow2 write $RATE
resume_hash "$idk" "a new QEMU on the same disk and socket"
fy job cutover "$idk" --wait
expect_exit 0 "job cutover --wait after the restart"
check_true "the source is paused by the cutover" test "$(vm_status b)" = paused
target=out-k/$(job_py "$idk" 'j["disks"][0]["target"]')
# The source is paused, not gone: its disk is read as a user would, -U.
if out=$(qemu-img compare -U -f qcow2 -F qcow2 b.qcow2 "$target" 2>&1); then
  ok "the target equals the disk of the restarted VM"
else
  not_ok "the target equals the disk of the restarted VM" "$out"
fi
tiny_holds "the target holds every record the restarted source announced" \
  "$target" qcow2 b

# --- --cutover now: by itself, the source running until then ---------------
tiny_qmp b cont >/dev/null || die "cont"

# A downtime no prediction fits: the rounds go on, the job says why, the
# source runs.
warm_add b out-m 3 --cutover now --max-downtime 0.001 --round-interval 0.5
idm=$JOB
check_true "with --max-downtime 0.001 the job does not cut over" \
  test "$(job_py "$idm" 'j["state"]')" = awaiting-cutover
why=$(job_py "$idm" 'j.get("waiting")')
if [[ $why == *"predicted downtime"*"0.001"* ]]; then
  ok "it says why: $why"
else
  not_ok "it says why" "waiting: $why"
fi
check_true "the source still runs" test "$(vm_status b)" = running
fy job cancel "$idm"
expect_exit 0 "job cancel of the job that waits for its downtime"
cancelled_clean "$idm" b
# QEMU's status, sampled on the test's monitor; each sample's time is
# taken after the answer, so a sample older than the stop saw the VM
# before it.
while :; do
  st=$(vm_status b) && printf '%s %s\n' "$(date +%s.%N)" "$st"
  sleep 0.05
done >status.log 2>/dev/null &
SPID=$!
at_exit "kill $SPID"
fy job add "qmp:$WORK/b.qmp" --mode warm --to qemu --out out-n \
  --cutover now --source-stop pause --round-interval 1 --json --start
expect_exit 0 "job add --mode warm --cutover now"
idn=$(job_id)
[ -n "$idn" ] || die "no job: $(cat "$OUT" "$ERR")"
if wait_job "$idn" 'j["state"] in ("done", "failed", "paused")' 240; then
  check_true "the job cut over by itself and is done ($(job_py "$idn" 'len(j["rounds"])') rounds)" \
    test "$(job_py "$idn" 'j["state"]')" = done
else
  not_ok "the job cut over by itself" "$(job_py "$idn" j)"
fi
kill "$SPID" 2>/dev/null
wait "$SPID" 2>/dev/null
job_py "$idn" '"%s %s" % (j.get("started"), j.get("stopped_at"))' >times.txt
"$PYTHON" - status.log times.txt <<'EOF' >status.txt
import sys
started, stopped = map(float, open(sys.argv[2]).read().split())
before = [l.split() for l in open(sys.argv[1]) if float(l.split()[0]) < stopped - 0.05]
during = [l for l in before if float(l[0]) >= started]
bad = [l for l in before if l[1] != "running"]
print("%d samples from the job's start to its stop (%.1f s later), %d before, "
      "%d not running: %s" % (len(during), stopped - started, len(before),
                              len(bad), bad[:3]))
sys.exit(1 if bad or not during else 0)
EOF
rc=$?
if [ "$rc" = 0 ]; then ok "the source ran until the cutover: $(cat status.txt)"
else not_ok "the source ran until the cutover" "$(cat status.txt)"; fi
check_true "the source is paused after the cutover" test "$(vm_status b)" = paused
tiny_stop b
target=out-n/$(job_py "$idn" 'j["disks"][0]["target"]')
same_content "the target of --cutover now equals the source disk" \
  b.qcow2 qcow2 "$target" qcow2

done_testing
