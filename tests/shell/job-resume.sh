#!/usr/bin/env bash
# job-resume: a two-disk migration (a VMX written here, its disks made by
# qemu-img and filled by qemu-io) run as a job and killed with SIGKILL at
# 20 random moments across its steps, resumed by `ferry job run` in a
# fresh process each time.  Every finished output is judged against an
# uninterrupted run's by qemu-img compare, and clean by qemu-img check.
# A raw target, whose partial file shows exactly what was written before
# the kill (qemu-img map), shows that what a resume copies again is at
# most one checkpoint interval plus the workers' requests in flight.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
mkdir -p src
mkimg raw src/d0.img 192M
qio raw src/d0.img "write -s $RAND 0 8M" "write -P 0x33 8M 72M" \
  "write -s $RAND 100M 8M" "write -P 0x44 120M 40M"
mkimg qcow2 src/d1.qcow2 128M
qio qcow2 src/d1.qcow2 "write -P 0x55 0 60M" "write -s $RAND 64M 8M" \
  "write -z 80M 8M" "write -P 0x66 100M 20M"
cat >src/vm.vmx <<'EOF'
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "17"
displayName = "resume"
guestOS = "rhel8-64"
memSize = "1024"
numvcpus = "2"
scsi0.present = "TRUE"
scsi0.virtualDev = "pvscsi"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "d0.img"
scsi0:1.present = "TRUE"
scsi0:1.fileName = "d1.qcow2"
ethernet0.present = "TRUE"
ethernet0.virtualDev = "vmxnet3"
ethernet0.address = "00:50:56:01:02:0a"
ethernet0.addressType = "static"
EOF

# Checkpoints every 8 MiB, so that a kill lands between several of them.
CKPT=$((8 << 20))
export FERRY_CHECKPOINT_BYTES=$CKPT

# The reference: one uninterrupted run.
fy v2v src/vm.vmx --to libvirt --out ref --no-convert
expect_exit 0 "the reference run"
[ -f ref/resume-disk1.qcow2 ] || die "no reference output: $(cat "$ERR")"
REF_MS=$( (time -p "$FERRY" v2v src/vm.vmx --to local --out reftime --no-convert \
  >/dev/null 2>&1) 2>&1 | awk '/^real/ { printf "%d", $2 * 1000 }')
[ "${REF_MS:-0}" -gt 0 ] || REF_MS=1000

# job_state ID: the job's state as `ferry job show --json` gives it.
job_state () {
  "$FERRY" job show --json "$1" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])'
}

# judge OUT WHAT: OUT's disks equal the reference's, and are clean.
judge () {
  local out=$1 what=$2 i
  for i in 1 2; do
    same_content "$what: disk $i equals the uninterrupted run's" \
      "ref/resume-disk$i.qcow2" qcow2 "$out/resume-disk$i.qcow2" qcow2
    qemu_clean "$what: disk $i is clean" "$out/resume-disk$i.qcow2"
  done
  check_true "$what: the domain is there" test -f "$out/resume.xml"
  check_true "$what: no working folder left" \
    test -z "$(ls -A | grep -F ".$out.ferry-")"
}

# --- 20 kills ------------------------------------------------------------
kills=0 run=0 id="" out=""
RANDOM=$$
echo "# seed $$, uninterrupted run ${REF_MS} ms"
while [ $kills -lt 20 ]; do
  if [ -z "$id" ]; then
    run=$((run + 1))
    out=out$run
    fy job add src/vm.vmx --to libvirt --out "$out" --no-convert --json
    expect_exit 0 "run $run: job added" || break
    id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$OUT")
  fi
  # A random moment of the whole run: checks, both copies, description,
  # commit.
  delay_ms=$((RANDOM % (REF_MS + 100)))
  "$FERRY" job run "$id" >"$WORK/run.out" 2>"$WORK/run.err" </dev/null &
  pid=$!
  sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
  if kill -KILL $pid 2>/dev/null; then
    wait $pid 2>/dev/null
    kills=$((kills + 1))
    state=$(job_state "$id")
    case $state in
      interrupted|done|planned) ;;
      *) not_ok "kill $kills at $delay_ms ms: job $id is $state" "$(cat "$WORK/run.err")" ;;
    esac
    check_true "kill $kills at $delay_ms ms: $out does not exist unless whole" \
      sh -c "test ! -e $out || test -f $out/resume.xml"
  else
    wait $pid
  fi
  if [ "$(job_state "$id")" = done ]; then
    judge "$out" "run $run (after $kills kills in all)"
    id=""
  fi
done
if [ -n "$id" ]; then
  fy job run "$id"
  expect_exit 0 "run $run: the last resume finishes"
  check_true "run $run: job $id is done" test "$(job_state "$id")" = done
  judge "$out" "run $run"
fi
check_true "20 kills spread over more than one run ($run)" test $run -ge 2

# --- what a resume copies again ------------------------------------------
# Raw targets: the partial file holds exactly what was written before the
# kill.  Each kill comes while disk 1 is copied; the resumed copy starts at
# the last checkpoint, at most CKPT + what the workers held (2 workers, 4
# MiB each) below the end of what was written.
qemu-img create -q -f raw src/big.img 1G || die "qemu-img create"
qio raw src/big.img "write -s $RAND 0 8M" "write -P 0x77 8M 500M"
sed 's/d0.img/big.img/' src/vm.vmx >src/big.vmx
fy job add src/big.vmx --to local -O raw -m 2 --out rawout --no-convert --json
expect_exit 0 "raw: job added"
id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$OUT")
for k in 1 2 3; do
  "$FERRY" job run "$id" >/dev/null 2>"$WORK/run.err" </dev/null &
  pid=$!
  # Until the copy of disk 1 is under way.
  for i in $(seq 400); do
    f=$(ls -d .rawout.ferry-job-*/resume-disk1.img 2>/dev/null)
    [ -n "$f" ] && [ "$(du -k "$f" | cut -f1)" -gt $(((k * 120) << 10)) ] && break
    sleep 0.01
  done
  kill -KILL $pid 2>/dev/null
  wait $pid 2>/dev/null
  f=$(ls -d .rawout.ferry-job-*/resume-disk1.img 2>/dev/null)
  [ -n "$f" ] || { not_ok "raw kill $k: no partial disk 1"; continue; }
  # The end of the last data qemu-img finds in the partial file.
  written=$(qemu-img map -f raw --output=json "$f" | python3 -c '
import json, sys
print(max([e["start"] + e["length"] for e in json.load(sys.stdin) if e["data"]] or [0]))')
  # Resumed, and killed again as soon as it says where it resumes, so
  # that the next round has a partial disk 1 to measure.
  "$FERRY" job run "$id" >/dev/null 2>"$WORK/run.err" </dev/null &
  pid=$!
  for i in $(seq 500); do
    "$FERRY" job show "$id" 2>/dev/null | grep -q "disk 1 .*resuming at" &&
      [ "$("$FERRY" job show "$id" | grep -c 'resuming at')" -ge "$k" ] && break
    sleep 0.01
  done
  kill -KILL $pid 2>/dev/null
  wait $pid 2>/dev/null
  resumed=$("$FERRY" job show --json "$id" | python3 -c '
import json, re, sys
ev = [e["message"] for e in json.load(sys.stdin)["events"] if "disk 1" in e["message"] and "resuming at" in e["message"]]
print(re.search(r"resuming at (\d+)", ev[-1]).group(1) if ev else -1)')
  again=$((written - resumed))
  echo "# raw kill $k: written up to $written, resumed at $resumed: $again bytes again"
  check_true "raw kill $k: resumed ($resumed) at most one checkpoint interval and the requests in flight below what was written ($written)" \
    test "$resumed" -ge 0 -a "$again" -le $((CKPT + (8 << 20)))
done
# (The short runs between the kills may have finished it.)
if [ "$(job_state "$id")" != done ]; then
  fy job run "$id"
  expect_exit 0 "raw: the last resume finishes"
fi
check_true "raw: the job is done" test "$(job_state "$id")" = done
same_content "raw: disk 1 equals the source" src/big.img raw rawout/resume-disk1.img raw
same_content "raw: disk 2 equals the source" src/d1.qcow2 qcow2 rawout/resume-disk2.img raw

done_testing
