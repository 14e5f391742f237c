#!/usr/bin/env bash
# warm-hash: a warm migration of a raw file that a writer keeps rewriting
# (whole 1 MiB chunks of random bytes, each fsync'd and logged), the hash
# delta: the first round copies the file, each later round hashes it and
# writes only the chunks that changed.  The runner is killed with SIGKILL
# in the middle of a round and resumed; the cutover comes once the writer
# has stopped.  Judged by qemu-img compare (the target equals the file as
# the writer left it) and by the writer's log: each round wrote at least
# the chunks rewritten between the round before and it, and at most those
# rewritten from the round before to its end, never the whole disk.
# Also: --max-downtime that cannot be met keeps the job waiting and says
# why; the options a warm migration refuses.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
CHUNK=$((1 << 20))
mkimg raw src.raw 512M
qio raw src.raw "write -s $RAND 0 8M" "write -P 0x33 8M 200M" \
  "write -P 0x44 300M 50M"
WRITER="$TESTS_DIR/warm-writer.py"

# start_writer LOG: rewrite chunks 0..199 of src.raw, 20 a second.
start_writer () {
  "$PYTHON" "$WRITER" src.raw $CHUNK 0 200 0.05 "$1" &
  WPID=$!
  at_exit "kill $WPID"
  local end=$((SECONDS + 20))
  until grep -q READY "$1" 2>/dev/null; do
    [ $SECONDS -lt $end ] || die "the writer did not start"
    sleep 0.1
  done
}
stop_writer () {
  kill -TERM "$WPID" 2>/dev/null
  wait "$WPID" 2>/dev/null
}
# runner_pid ID: the pid of the process that runs job ID.
runner_pid () {
  job_py "$1" 'j.get("runner", "::").split(":")[1]'
}

# --- refused -----------------------------------------------------------------
fy job add src.raw --to qemu --out bad --no-convert --max-downtime 5
expect_exit 1 "--max-downtime without --mode warm is refused"
expect_stderr "warm migration" "... saying it is a warm migration's option"
fy job add src.raw --mode warm --to qemu --out bad --no-convert --cutover someday
expect_exit 1 "a --cutover that is no time is refused"
expect_stderr "someday" "... naming it"
fy job add src.raw --mode warm --to qemu --out bad --no-convert --test
expect_exit 1 "--test with --mode warm is refused"
fy job add src.raw --mode warm --to qemu --out bad --no-convert --domain x.xml
expect_exit 1 "--domain for a file source is refused"
check_true "nothing was made by the refusals" test ! -e bad

# --- rounds, a kill in the middle of one, the cutover ---------------------------
start_writer w1.log
fy job add src.raw --mode warm --to qemu --out out -O qcow2 --no-convert \
  --round-interval 0.3 --json --start
expect_exit 0 "job add --mode warm --start"
id=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$OUT")
[ -n "$id" ] || die "no job id: $(cat "$OUT" "$ERR")"

if wait_job "$id" 'len(j.get("rounds", [])) >= 3' 120; then
  ok "three rounds while the file is written"
else
  not_ok "three rounds while the file is written" "$(job_py "$id" "{k: j.get(k) for k in ('state', 'error', 'waiting')}")"
fi
check_true "the job awaits its cutover meanwhile" \
  test "$(job_py "$id" 'j["state"]')" = awaiting-cutover
check_true "a predicted downtime is given before the cutover" \
  test "$(job_py "$id" '"predicted_downtime_s" in j')" = true

# The kill: in the middle of the round after the next one starts.
n=$(job_py "$id" 'j["rounds"][-1]["number"]')
wait_job "$id" "j['rounds'][-1]['number'] > $n" 60
sleep 0.$((RANDOM % 4 + 1))
pid=$(runner_pid "$id")
KILL_AT=$(date +%s.%N)
if [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; then
  ok "the runner killed in a round (pid $pid, after $(job_py "$id" 'len(j["rounds"])') rounds)"
else
  not_ok "the runner killed in a round" "runner: $(job_py "$id" 'j.get("runner")')"
fi
sleep 0.3
check_true "the killed job shows as interrupted" \
  test "$(job_py "$id" 'j["state"]')" = interrupted
fy job resume "$id"
expect_exit 0 "job resume after the kill"
k=$(job_py "$id" 'j["rounds"][-1]["number"]')
if wait_job "$id" "j['rounds'][-1]['number'] >= $k + 2" 120; then
  ok "two more rounds after the resume"
else
  not_ok "two more rounds after the resume" "$(job_py "$id" "{k: j.get(k) for k in ('state', 'error', 'waiting')}")"
fi
stop_writer
last=$(tail -n 1 w1.log)
fy job cutover "$id" --wait --json
expect_exit 0 "job cutover --wait"
check_true "the job is done" test "$(job_py "$id" 'j["state"]')" = done
target=out/$(job_py "$id" 'j["disks"][0]["target"]')
same_content "the target equals the source as the writer left it (last write: $last)" \
  src.raw raw "$target" qcow2
qemu_clean "the target is clean" "$target"
check_true "the rounds are recorded with bytes and seconds" \
  test "$(job_py "$id" 'all("bytes" in r and "seconds" in r for r in j["rounds"])')" = true
check_true "the last round is the final one, after the stop" \
  test "$(job_py "$id" 'j["rounds"][-1]["final"]')" = true
check_true "the measured downtime is given" \
  test "$(job_py "$id" 'j.get("downtime_s", -1) >= 0')" = true
check_true "the working files are gone" test ! -e "$WORK/.jobs/warm-job-$id"

# Each round after the first against the writer's log (see the top).
"$PYTHON" - "$WORK/.jobs/ferry.db" w1.log <<EOF >rounds.txt
import json, subprocess, sys
j = json.loads(subprocess.run(["$FERRY", "job", "show", "--json", "$id"],
                              capture_output=True, text=True).stdout)
writes = []
for line in open(sys.argv[2]):
    p = line.split()
    if len(p) == 2:
        writes.append((float(p[0]), int(p[1])))
rounds = j["rounds"]
bad = 0
for a, b in zip(rounds, rounds[1:]):
    if b["number"] == 1:
        continue              # a restart's base: nothing to judge by
    # A write is logged once durable, so one logged just after a round's
    # end may be in it: 0.1 s of slack.  The round after the kill has no
    # lower bound: the killed round wrote (and recorded) part of it.
    lo = {n for t, n in writes if a["started"] + a["seconds"] + 0.1 < t < b["started"]}
    if a["started"] < $KILL_AT < b["started"]:
        lo = set()
    hi = {n for t, n in writes if a["started"] < t < b["started"] + b["seconds"]}
    got = b["bytes"] // $CHUNK
    ok = len(lo) <= got <= len(hi) + 1
    bad += not ok
    print("round %d: %d chunks written, the writer changed %d to %d%s" % (
        b["number"], got, len(lo), len(hi), "" if ok else "  <-- out of range"))
print("whole" if any(r["bytes"] >= 512 << 20 for r in rounds[1:]) else "never whole")
sys.exit(1 if bad else 0)
EOF
rc=$?
if [ $rc = 0 ]; then ok "each round wrote what the writer changed"
else not_ok "each round wrote what the writer changed" "$(cat rounds.txt)"; fi
sed 's/^/# /' rounds.txt
check_true "no round after the first wrote the whole disk" grep -q "never whole" rounds.txt

# --- a downtime limit that cannot be met ----------------------------------------
start_writer w2.log
fy job add src.raw --mode warm --to qemu --out out2 --no-convert \
  --round-interval 0.2 --cutover now --max-downtime 0.001 --json --start
expect_exit 0 "job add --cutover now --max-downtime 0.001"
id2=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$OUT")
if wait_job "$id2" '"max-downtime" in j.get("waiting", "")' 120; then
  ok "a limit the rounds cannot meet: the job waits and says why"
else
  not_ok "a limit the rounds cannot meet: the job waits and says why" "$(job_py "$id2" "{k: j.get(k) for k in ('state', 'error', 'waiting')}")"
fi
echo "# $(job_py "$id2" 'j["waiting"]')"
check_true "... and does not cut over" test "$(job_py "$id2" 'j["state"]')" = awaiting-cutover
fy job cancel "$id2" --wait
expect_exit 0 "job cancel of the waiting job"
stop_writer
check_true "the cancelled job left no output" test ! -e out2

# --- a cutover at a time ---------------------------------------------------------
fy job add src.raw --mode warm --to qemu --out out3 --no-convert \
  --round-interval 0.3 --cutover +3 --json --start
expect_exit 0 "job add --cutover +3"
id3=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$OUT")
check_true "its cutover time is kept as a time (UTC)" \
  test "$(job_py "$id3" 'j["options"]["cutover"].endswith("Z")')" = true
if wait_job "$id3" 'j["state"] == "done"' 60; then
  ok "the job cut over by itself at its time"
else
  not_ok "the job cut over by itself at its time" "$(job_py "$id3" "{k: j.get(k) for k in ('state', 'error', 'waiting')}")"
fi
check_true "... not before it ($(job_py "$id3" 'round(j["stopped_at"] - j["created"], 1)') s after it was added)" \
  test "$(job_py "$id3" 'j["stopped_at"] - j["created"] >= 2.9')" = true
same_content "its target equals the source" src.raw raw \
  "out3/$(job_py "$id3" 'j["disks"][0]["target"]')" qcow2
check_true "the source is there, untouched by ferry's runs" test -s src.raw

# --- a paused warm job cancelled, another removed: their working files go ----
for how in cancel rm; do
  fy job add src.raw --mode warm --to qemu --out "out-$how" --no-convert \
    --round-interval 0.2 --cutover manual --json --start
  expect_exit 0 "job add (to $how later)"
  jid=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$OUT")
  wait_job "$jid" 'len(j.get("rounds", [])) >= 2' 120 ||
    die "no rounds: $(job_py "$jid" j)"
  fy job pause "$jid" --wait
  expect_exit 0 "job pause --wait (to $how later)"
  check_true "a paused warm job keeps its hash tables" \
    test -s "$WORK/.jobs/warm-job-$jid/disk0.hashes"
  fy job "$how" "$jid"
  expect_exit 0 "job $how of the paused warm job"
  check_true "job $how of a paused warm job removes its working files" \
    test ! -e "$WORK/.jobs/warm-job-$jid"
  check_true "job $how of a paused warm job removes its output" \
    test ! -e "out-$how"
done

done_testing
