#!/usr/bin/env bash
# bench/jobs.sh [BUILD]: what a migration job costs over the bare copy,
# and what a kill costs it.  The same copies, in the same run: a VM (a VMX
# written here) of two raw disks migrated by `ferry job add ... --to local
# -O qcow2 --no-convert` and then `ferry job run ID` (timed: the run, which
# plans and checks again, copies with checkpoints every 64 MiB or 2 s,
# records each step and commits the folder), against `ferry convert -O
# qcow2` of each disk in turn.  Same disks, same format, same threads
# (THREADS, default ferry's own); both flush their targets.  Median of RUNS
# runs each, interleaved; the job's outputs must equal convert's (qemu-img
# compare).  The issue's target: an overhead of at most 2%.
#
# Then a kill: a job run (--progress=json, whose lines say how far it
# got) is killed with SIGKILL once more than half of the data is
# copied, and `ferry job run --json ID` resumes it.  Its events say where
# it resumed ("resuming at N bytes"); the bytes copied again are the data
# the killed run had written on that disk (the data of its partial target,
# which a kill of the process does not lose) less the data of the source
# below N.  The checkpoint interval is 64 MiB or 2 s of copying.
#
# Inputs, made once and kept in BENCH_DIR (default /var/tmp/ferry-bench):
#   tar.raw          1 GiB raw whose first 512 MiB are a tar of /usr (lib.sh)
#   jobs-random.raw  2 GiB sparse raw, 1 GiB of random data in scattered
#                    1 MiB chunks (a fixed seed)
#
# Environment: BENCH_DIR, RUNS (3), THREADS (-m for both; default ferry's).
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_setup qemu-img
make_tar_input

# make_jobs_input: jobs-random.raw (see above).
make_jobs_input () {
  if [ "$(cat jobs-random.ok 2>/dev/null)" != "$INPUT_VERSION" ] || [ ! -f jobs-random.raw ]; then
    echo "bench: making jobs-random.raw (2 GiB, 1 GiB of random data in 1 MiB chunks)..."
    rm -f jobs-random.raw jobs-random.ok
    random_chunks jobs-random.raw 2048 1024 20261207
    echo "$INPUT_VERSION" >jobs-random.ok
  fi
}
make_jobs_input

o=$BENCH_DIR/$OUTDIR
export FERRY_STORE=$o/jobs.db
rm -rf "$o"/jobs* "$o"/job-out "$o"/kill-out "$o"/.job-out.* "$o"/.kill-out.*
cat >"$o/jobs.vmx" <<EOF
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "17"
displayName = "bench"
guestOS = "other-64"
memSize = "1024"
numvcpus = "2"
scsi0.present = "TRUE"
scsi0.virtualDev = "pvscsi"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "$BENCH_DIR/tar.raw"
scsi0:1.present = "TRUE"
scsi0:1.fileName = "$BENCH_DIR/jobs-random.raw"
EOF
disks=(tar.raw jobs-random.raw)

# json_member FILE EXPR: EXPR (Python, over the JSON d of FILE) printed.
json_member () {
  "$PYTHON" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# add_job OUT: add the bench VM's job into OUT, print its id.
add_job () {
  # shellcheck disable=SC2086
  "$FERRY" job add --json "$o/jobs.vmx" --to local --out "$1" -O qcow2 --no-convert \
    ${THREADS:+-m $THREADS} >"$o/jobs-add.json" 2>"$o/jobs-add.err" || {
    echo "bench: ferry job add failed:" >&2
    cat "$o/jobs-add.err" >&2
    exit 1
  }
  json_member "$o/jobs-add.json" 'd["id"]'
}

# convert_both: ferry convert of each disk, one after the other (a command
# of its own, for timed).
# shellcheck disable=SC2016  # expanded by sh -c
convert_both=(sh -c '"$0" convert $1 -O qcow2 "$2" "$3" && "$0" convert $1 -O qcow2 "$4" "$5"'
  "$FERRY" "${THREADS:+-m $THREADS}" "${disks[0]}" "$o/conv-0.qcow2" "${disks[1]}" "$o/conv-1.qcow2")

echo "bench: job run against ferry convert of the same 2 disks ($RUNS runs each, interleaved)..."
for d in "${disks[@]}"; do warm "$d"; done
jts=() cts=() ats=()
for i in $(seq "$RUNS"); do
  rm -rf "$o/job-out"
  t0=$(date +%s.%N)
  id=$(add_job "$o/job-out")
  ats+=("$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')")
  r=$(timed "$o/.none" "$FERRY" job run --progress=none "$id")
  jts+=("${r% *}")
  [ "$(json_member <("$FERRY" job show --json "$id") 'd["state"]')" = "done" ] || {
    echo "bench: job $id did not end done" >&2
    exit 1
  }
  rm -f "$o/conv-0.qcow2" "$o/conv-1.qcow2"
  r=$(timed "$o/.none" "${convert_both[@]}")
  cts+=("${r% *}")
  if [ "$i" != "$RUNS" ]; then
    rm -rf "$o/job-out"
    rm -f "$o/conv-0.qcow2" "$o/conv-1.qcow2"
  fi
done
same=yes
qemu-img compare "$o/job-out/bench-disk1.qcow2" "$o/conv-0.qcow2" >/dev/null 2>&1 || same=NO
qemu-img compare "$o/job-out/bench-disk2.qcow2" "$o/conv-1.qcow2" >/dev/null 2>&1 || same=NO
rm -rf "$o/job-out" "$o/conv-0.qcow2" "$o/conv-1.qcow2"
jt=$(median "${jts[@]}")
ct=$(median "${cts[@]}")
at=$(median "${ats[@]}")

echo "bench: a job run killed with SIGKILL half way, then resumed..."
rm -rf "$o/kill-out"
id=$(add_job "$o/kill-out")
"$FERRY" job run --progress=json "$id" >"$o/jobs-kill.jsonl" 2>"$o/jobs-kill.err" &
pid=$!
# The trigger is the run's own progress lines (the store's progress is
# saved once a second, too late at page-cache speed); past half of the
# data, checkpoints of 64 MiB have been made.
total=0 done_=0
while kill -0 "$pid" 2>/dev/null; do
  line=$(tail -n 1 "$o/jobs-kill.jsonl" 2>/dev/null || true)
  done_=$(sed -n 's/.*"done":\([0-9]*\),"total":\([0-9]*\).*/\1/p' <<<"$line")
  total=$(sed -n 's/.*"done":\([0-9]*\),"total":\([0-9]*\).*/\2/p' <<<"$line")
  if [ -n "$total" ] && [ "$total" -gt 0 ] && [ "$done_" -gt $((total / 2)) ]; then
    kill -KILL "$pid"
    break
  fi
  sleep 0.02
done
wait "$pid" 2>/dev/null && { echo "bench: the job ended before the kill" >&2; exit 1; }
# The killed run's last progress line: the disk and its data done.
read -r kdisk kdone < <("$PYTHON" - "$o/jobs-kill.jsonl" <<'EOF'
import json, sys
last = None
for line in open(sys.argv[1]):
    try:
        p = json.loads(line)
    except ValueError:
        continue
    if p.get("phase") == "copy" and "disk" in p:
        last = p
print(last["disk"], last["disk_done"])
EOF
)
# What the killed run wrote: the data of the partial targets in the job's
# working folder (a kill of the process loses nothing it wrote).
written=$(qemu-img map -U -f qcow2 --output=json "$o/.kill-out.ferry-job-$id/bench-disk$kdisk.qcow2" |
  "$PYTHON" -c 'import json, sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))')
rt=$(timed "$o/.none" "$FERRY" job run --json "$id")
"$FERRY" job show --json "$id" >"$o/jobs-show.json"
state=$(json_member "$o/jobs-show.json" 'd["state"]')
resumed=$(json_member "$o/jobs-show.json" '" ".join(e["message"] for e in d["events"] if "resuming at" in e["message"])')
n=$(sed -n "s/.*disk $kdisk ([^)]*): resuming at \([0-9]*\) bytes.*/\1/p" <<<"$resumed" | head -1)
# The data of disk KDISK's source below N (its allocated bytes).
below=$("$PYTHON" - "${disks[kdisk - 1]}" "${n:-0}" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
end, off, data = int(sys.argv[2]), 0, 0
while off < end:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    if d >= end:
        break
    h = min(os.lseek(fd, d, os.SEEK_HOLE), end)
    data += h - d
    off = h
print(data)
EOF
)
ksame=yes
qemu-img compare "${disks[0]}" "$o/kill-out/bench-disk1.qcow2" >/dev/null 2>&1 || ksame=NO
qemu-img compare "${disks[1]}" "$o/kill-out/bench-disk2.qcow2" >/dev/null 2>&1 || ksame=NO
rm -rf "$o/kill-out"

mib () { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo
echo "bench/jobs.sh: $("$FERRY" --version 2>/dev/null | head -1), $(nproc) cores, median of $RUNS runs"
echo "data: $(mib $(( (512 << 20) + (1024 << 20) ))) in 2 raw disks -> qcow2, flushed"
printf '%-28s %8.2f s\n' "ferry job run" "$jt" "ferry convert (each disk)" "$ct"
printf '%-28s %8.2f s  (planning and checks, not in the run)\n' "ferry job add" "$at"
awk -v j="$jt" -v c="$ct" 'BEGIN {printf "%-28s %8.3f\n%-28s %+7.1f %%  (target: at most 2 %%)\n", "ratio job / convert", j / c, "overhead", (j / c - 1) * 100}'
echo "outputs equal (qemu-img compare): $same"
echo
echo "kill: SIGKILL at $(mib "$done_") of $(mib "$total") of data; the killed run's last"
echo "  progress line: disk $kdisk at $(mib "$kdone") of its data"
echo "resume: state $state in $(awk -v t="${rt% *}" 'BEGIN {printf "%.2f", t}') s; ${resumed:-no 'resuming at' event}"
if [ -n "$n" ]; then
  echo "  disk $kdisk resumed at offset $(mib "$n"), $(mib "$below") of its data below it"
  echo "  the killed run had written $(mib "$written") of its data (its partial target)"
  echo "  bytes copied again: $(mib $((written - below))) (checkpoint interval: 64 MiB or 2 s)"
else
  echo "  disk $kdisk did not resume: copied again from the start ($(mib "$kdone"))"
fi
echo "resumed outputs equal their sources (qemu-img compare): $ksame"
