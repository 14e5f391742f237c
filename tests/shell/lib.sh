# lib.sh: what every tests/shell/*.sh shares.  Source it first.
#
# A test is a list of checks; each prints "ok N - what" or "not ok N - what"
# with the evidence under it, and the test goes on after a failure so one
# run shows everything that is wrong.  done_testing ends the script: exit 0
# when every check passed, 1 otherwise.  Exit 77 means skipped (a peer tool
# is missing), 99 means the test could not set itself up (Bail out!).  A
# skip prints "1..0 # SKIP reason"; scripts/run-checks lists the reasons,
# and under CI (CI=true) counts each skip as a failure, so a skip is for
# what a developer's machine may lack, never for what install-deps installs
# or what the build does not mean to run (that is not registered).
#
# The judge is always a real peer: qemu-img compare for contents, qemu-img
# check for what ferry writes, qemu-img info and map for what it reports.
#
# Environment (set by tests/meson.build):
#   FERRY    the ferry binary under test (required)
#   SRCDIR   the project's source root
#   CORPUS   ../shared/corpus; FERRY_CORPUS, when set, overrides it, and
#            scripts/corpus-dir also looks beside the repository a clone
#            came from (a test that needs the corpus skips without one)
#   TMPDIR   where the per-test work directory goes (default /tmp)
#   FERRY_VMEM_LIMIT_KB  address-space limit for ferry in builds without
#            sanitizers (default 4 GiB): an allocation that the input does
#            not justify then fails instead of quietly succeeding.

set -u
set -o pipefail

: "${FERRY:?FERRY must name the ferry binary under test}"
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRCDIR=${SRCDIR:-$(cd "$TESTS_DIR/../.." && pwd)}
CORPUS=$("$SRCDIR/scripts/corpus-dir" "$SRCDIR") ||
  CORPUS=${FERRY_CORPUS:-${CORPUS:-$SRCDIR/../shared/corpus}}
TEST_NAME=$(basename "$0" .sh)
# The system's python3 starts ten times faster than a pyenv shim.
if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
python3 () { "$PYTHON" "$@"; }
QCOW2_EDIT=("$PYTHON" "$TESTS_DIR/qcow2-edit.py")

# A build with AddressSanitizer cannot run under an address-space limit
# (its shadow memory alone is terabytes of reservations).
if grep -q -F __asan_init "$FERRY" 2>/dev/null; then
  FERRY_SANITIZED=1
else
  FERRY_SANITIZED=0
fi
FERRY_VMEM_LIMIT_KB=${FERRY_VMEM_LIMIT_KB:-4194304}

# Skip the whole test (exit 77) unless every TOOL is on the PATH.
require () {
  local t
  for t in "$@"; do
    if ! command -v "$t" >/dev/null 2>&1; then
      echo "1..0 # SKIP $TEST_NAME needs $t"
      exit 77
    fi
  done
}

# Stop the test: it could not set itself up, so it proves nothing.
die () {
  echo "Bail out! $TEST_NAME: $*"
  exit 99
}

[ -x "$FERRY" ] || die "FERRY=$FERRY is not an executable"

# --- the work directory, removed on any exit ----------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-$TEST_NAME.XXXXXX") || die "mktemp"
# Migrations are jobs kept in a store: the test's own, never the user's.
export FERRY_STORE="$WORK/.jobs/ferry.db"
CLEANUP_HOOKS=()
# Run COMMAND... when the test ends (before the work directory goes).
at_exit () {
  CLEANUP_HOOKS+=("$*")
}
_cleanup () {
  local h
  for h in "${CLEANUP_HOOKS[@]+"${CLEANUP_HOOKS[@]}"}"; do
    eval "$h" >/dev/null 2>&1 || true
  done
  if [ -n "${KEEP_WORK:-}" ]; then
    echo "# work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap _cleanup EXIT
trap 'exit 130' INT TERM
OUT=$WORK/.stdout
ERR=$WORK/.stderr

# --- results --------------------------------------------------------------
NR_CHECKS=0
NR_FAILED=0
ok () {
  NR_CHECKS=$((NR_CHECKS + 1))
  echo "ok $NR_CHECKS - $*"
}
# not_ok WHAT [EVIDENCE...]: a failed check; each EVIDENCE line is shown.
not_ok () {
  NR_CHECKS=$((NR_CHECKS + 1))
  NR_FAILED=$((NR_FAILED + 1))
  echo "not ok $NR_CHECKS - $1"
  shift
  local line
  for line in "$@"; do
    printf '%s\n' "$line" | sed 's/^/#   /'
  done
  return 1
}
# check_true WHAT CONDITION-COMMAND...: ok when the command succeeds.
check_true () {
  local what=$1
  shift
  if "$@"; then ok "$what"; else not_ok "$what" "false: $*"; fi
}
# not COMMAND...: succeeds when COMMAND fails (for check_true).
not () {
  ! "$@"
}
done_testing () {
  echo "1..$NR_CHECKS"
  if [ "$NR_FAILED" -gt 0 ]; then
    echo "# $TEST_NAME: $NR_FAILED of $NR_CHECKS checks failed"
    exit 1
  fi
  [ "$NR_CHECKS" -gt 0 ] || die "no checks ran"
  exit 0
}

# --- running ferry --------------------------------------------------------
# fy ARGS...: run ferry.  Afterwards RC is its exit status, $OUT and $ERR
# hold its stdout and stderr, LAST_CMD the command line, and CRASH says why
# the run counts as a crash ("" when it does not): killed by a signal, or a
# sanitizer report on stderr (UBSan goes on after its report by default).
# PEAK_KB is ferry's peak resident memory in KiB where /usr/bin/time can
# tell (not under sanitizers, whose shadow memory would swamp it).
fy () {
  LAST_CMD="ferry $*"
  RC=0
  PEAK_KB=""
  local pre=()
  # FY_TIMEOUT=SECONDS: give up on a run that does not end (exit 124).
  [ -n "${FY_TIMEOUT:-}" ] && pre=(timeout "$FY_TIMEOUT")
  if [ "$FERRY_SANITIZED" = 1 ]; then
    (fy_limits && exec "${pre[@]}" "$FERRY" "$@") \
      >"$OUT" 2>"$ERR" </dev/null || RC=$?
  elif [ -x /usr/bin/time ]; then
    (ulimit -v "$FERRY_VMEM_LIMIT_KB" && fy_limits &&
      exec "${pre[@]}" /usr/bin/time -f %M -o "$WORK/.peak" "$FERRY" "$@") \
      >"$OUT" 2>"$ERR" </dev/null || RC=$?
    PEAK_KB=$(tail -n 1 "$WORK/.peak" 2>/dev/null | grep -E "^[0-9]+$")
  else
    (ulimit -v "$FERRY_VMEM_LIMIT_KB" && fy_limits &&
      exec "${pre[@]}" "$FERRY" "$@") >"$OUT" 2>"$ERR" </dev/null || RC=$?
  fi
  crash_reason
}
# fy_limits: the optional limits of one run, in its subshell.
# FY_FSIZE_KB=N: no file may grow past N KiB (writes fail with EFBIG, and
# SIGXFSZ is ignored), a full disk where no small file system can be
# mounted.
fy_limits () {
  if [ -n "${FY_FSIZE_KB:-}" ]; then
    ulimit -f "$FY_FSIZE_KB" || return 1
    trap '' XFSZ
  fi
}
# Set CRASH from RC and $ERR.
crash_reason () {
  CRASH=""
  if [ "$RC" -ge 128 ]; then
    CRASH="killed by signal $((RC - 128))"
  fi
  if grep -q -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|Sanitizer:DEADLYSIGNAL|SUMMARY: [A-Za-z]*Sanitizer' "$ERR"; then
    CRASH="${CRASH:+$CRASH, }sanitizer report"
  fi
}
# The evidence about the last ferry run, as lines for not_ok.
last_run () {
  echo "command: $LAST_CMD"
  echo "exit status: $RC${CRASH:+ ($CRASH)}"
  if [ -s "$ERR" ]; then
    echo "stderr:"
    head -c 4000 "$ERR"
  fi
  if [ -s "$OUT" ]; then
    echo "stdout:"
    head -c 2000 "$OUT"
  fi
}
# expect_exit WANT WHAT: the last ferry run exited WANT without crashing.
expect_exit () {
  local want=$1 what=$2
  if [ -n "$CRASH" ]; then
    not_ok "$what: crashed" "$(last_run)"
  elif [ "$RC" != "$want" ]; then
    not_ok "$what: exit status $RC, expected $want" "$(last_run)"
  else
    ok "$what"
  fi
}
# expect_stderr TEXT WHAT: the last run's stderr contains TEXT (fixed string).
expect_stderr () {
  local text=$1 what=$2
  if grep -q -F -- "$text" "$ERR"; then
    ok "$what"
  else
    not_ok "$what: stderr lacks '$text'" "$(last_run)"
  fi
}
# expect_stderr_re REGEX WHAT: the last run's stderr matches the ERE.
expect_stderr_re () {
  local re=$1 what=$2
  if grep -q -i -E -- "$re" "$ERR"; then
    ok "$what"
  else
    not_ok "$what: stderr does not match /$re/" "$(last_run)"
  fi
}
# expect_failure WHAT FILE: the last run failed the way bad input must:
# exit status 1, no crash, a message that names FILE (its base name), and
# no sign of an allocation the input does not justify.
expect_failure () {
  local what=$1 file
  file=$(basename "$2")
  if [ -n "$CRASH" ]; then
    not_ok "$what: crashed" "$(last_run)"
  elif [ "$RC" != 1 ]; then
    not_ok "$what: exit status $RC, expected 1" "$(last_run)"
  elif ! grep -q -F -- "$file" "$ERR"; then
    not_ok "$what: the message does not name $file" "$(last_run)"
  elif grep -q -i -E 'out of memory|cannot allocate memory' "$ERR"; then
    not_ok "$what: ran out of memory (an allocation the input does not justify)" "$(last_run)"
  elif [ -n "$PEAK_KB" ] && [ "$PEAK_KB" -gt 204800 ]; then
    not_ok "$what: peak memory $PEAK_KB KiB for a tiny bad image" "$(last_run)"
  else
    ok "$what"
  fi
}

# job_left WHAT OUT: a migration into OUT that stopped short (interrupted,
# or failed once it had begun to copy) keeps its job's working folder
# beside OUT, to be resumed; one that failed before leaves nothing.  Either
# way, `ferry job cancel` of that job leaves no trace under OUT's name.
job_left () {
  local what=$1 out=$2 dir base kept id
  dir=$(dirname "$out")
  base=$(basename "$out")
  kept=$(ls -A "$dir" | grep -E "^\.$base\.ferry-job-[0-9]+\$" || true)
  case $(printf '%s' "$kept" | grep -c .) in
    0) ok "$what: nothing left beside $out" ;;
    1)
      id=${kept##*-}
      if "$FERRY" job cancel "$id" >"$WORK/.cancel" 2>&1; then
        check_true "$what: the job's working folder, kept to resume, goes with ferry job cancel" \
          test -z "$(ls -A "$dir" | grep -F ".$base.ferry")"
      else
        not_ok "$what: ferry job cancel $id" "$(cat "$WORK/.cancel")"
      fi ;;
    *) not_ok "$what: one working folder at most beside $out" "$kept" ;;
  esac
}

# job_py ID EXPR: the Python expression EXPR over job ID's JSON (j, as
# `ferry job show --json` gives it); empty when the job cannot be read.
job_py () {
  "$FERRY" job show --json "$1" 2>/dev/null | "$PYTHON" -c '
import json, sys
j = json.load(sys.stdin)
v = eval(sys.argv[1])
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)
' "$2" 2>/dev/null
}
# wait_job ID EXPR SECONDS: wait until job_py ID EXPR prints True; false
# when SECONDS pass first.
wait_job () {
  local id=$1 expr=$2 end=$((SECONDS + $3))
  while [ $SECONDS -lt $end ]; do
    [ "$(job_py "$id" "$expr")" = true ] && return 0
    sleep 0.2
  done
  return 1
}

# --- making images with the peers -----------------------------------------
# mkimg FMT PATH SIZE [OPTIONS]: qemu-img create.
mkimg () {
  local fmt=$1 path=$2 size=$3 opts=${4:-}
  qemu-img create -q -f "$fmt" ${opts:+-o "$opts"} "$path" "$size" \
    >"$WORK/.mkimg" 2>&1 || die "qemu-img create -f $fmt ${opts:+-o $opts} $path $size: $(cat "$WORK/.mkimg")"
}
# qio FMT IMG CMD...: run each qemu-io command on IMG; any failure stops
# the test (the image would not be what the test thinks it is).
qio () {
  local fmt=$1 img=$2 c args=()
  shift 2
  for c in "$@"; do args+=(-c "$c"); done
  qemu-io -f "$fmt" "${args[@]}" "$img" >"$WORK/.qio" 2>&1 ||
    die "qemu-io -f $fmt $* $img: $(cat "$WORK/.qio")"
  if grep -q -i -E 'failed|error|not supported' "$WORK/.qio"; then
    die "qemu-io -f $fmt $* $img: $(cat "$WORK/.qio")"
  fi
}
# A file of random bytes for qemu-io's write -s (path in $RAND).  Written
# at a disk's offset 0, random bytes would now and then look like a boot
# sector (0xeb at byte 0: 1 run in 256) or another signature ferry's
# blank-disk test knows (0x55aa at 510, ext4's 0x53ef at 1080), and a v2v
# of that disk would start an appliance: such bytes are changed by one bit.
RAND=$WORK/.random
head -c $((8 << 20)) /dev/urandom >"$RAND" || die "no /dev/urandom"
# unsign OFFSET HEX: flip the low bit of the byte at OFFSET when the bytes
# there read HEX.
unsign () {
  local at
  at=$(od -A n -t x1 -j "$1" -N $((${#2} / 2)) "$RAND" | tr -d ' \n')
  [ "$at" = "$2" ] || return 0
  printf "\\x$(printf %02x $((0x${2:0:2} ^ 1)))" |
    dd of="$RAND" bs=1 seek="$1" conv=notrunc status=none || die "dd $RAND"
}
unsign 0 eb
unsign 510 55aa
unsign 1080 53ef

# fill_pattern FMT IMG CLUSTER SIZE [compress]: write the standard mix into
# IMG (virtual SIZE >= 8*CLUSTER + 1536): random data across a cluster
# boundary, a pattern straddling another, a zeroed data cluster, a
# discarded one, a compressed one (qcow2 only, with "compress"), a data
# cluster that is mostly zero bytes, a partly zeroed cluster, and data in
# the last partial cluster.
fill_pattern () {
  local fmt=$1 img=$2 cs=$3 size=$4 compress=${5:-}
  local cmds=(
    "write -s $RAND 0 $((cs + 512))"
    "write -P 0xb2 $((2 * cs - 1024)) 2048"
    "write -P 0xc3 $((3 * cs)) $cs"
    "write -z $((3 * cs)) $cs"
    "write -P 0xd4 $((4 * cs)) $cs"
    "discard $((4 * cs)) $cs"
    "write -P 0 $((6 * cs)) $cs"
    "write -P 0x5a $((6 * cs + cs / 2)) 512"
    "write -s $RAND $((7 * cs)) $cs"
    "write -z $((7 * cs)) 512"
    "write -s $RAND $((size - 1536)) 1536"
  )
  [ "$compress" = compress ] && cmds+=("write -c -P 0xe5 $((5 * cs)) $cs")
  qio "$fmt" "$img" "${cmds[@]}"
}

# --- judging with the peers ------------------------------------------------
# qinfo IMG [FMT] KEY: one field of qemu-img info --output=json ("a.b" for
# nested keys); empty when absent.
qinfo () {
  local img=$1 fmt=$2 key=$3
  qemu-img info ${fmt:+-f "$fmt"} --output=json "$img" 2>/dev/null |
    python3 -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else (json.dumps(v) if not isinstance(v, str) else v))
' "$key"
}
# same_content WHAT A FMT_A B FMT_B: qemu-img compare finds A and B equal.
same_content () {
  local what=$1 a=$2 fa=$3 b=$4 fb=$5 out rc=0
  out=$(qemu-img compare -f "$fa" -F "$fb" "$a" "$b" 2>&1) || rc=$?
  if [ "$rc" = 0 ]; then
    ok "$what"
  else
    not_ok "$what: qemu-img compare exit $rc" "qemu-img compare -f $fa -F $fb $a $b" "$out"
  fi
}
# qemu_clean WHAT IMG [FMT]: qemu-img check finds no errors and no leaks
# in IMG (of FMT, qcow2 by default).
qemu_clean () {
  local what=$1 img=$2 fmt=${3:-qcow2} out rc=0
  out=$(qemu-img check -f "$fmt" "$img" 2>&1) || rc=$?
  if [ "$rc" = 0 ]; then
    ok "$what"
  else
    not_ok "$what: qemu-img check exit $rc" "$out"
  fi
}
# expect_format WHAT IMG FMT: qemu-img probes IMG as FMT.
expect_format () {
  local what=$1 img=$2 want=$3 got
  got=$(qinfo "$img" "" format)
  if [ "$got" = "$want" ]; then
    ok "$what"
  else
    not_ok "$what: qemu-img sees format '$got', expected '$want'"
  fi
}

# convert_and_judge WHAT SRC SRC_FMT DST DST_FMT [FERRY OPTIONS...]: ferry
# converts SRC to DST; qemu-img must find the same contents and the same
# virtual size (rounded up to 512 for qcow2 output), and, for qcow2 output,
# a clean image.  Returns non-zero when any of that fails.
convert_and_judge () {
  local what=$1 src=$2 sf=$3 dst=$4 df=$5 ssize dsize
  shift 5
  rm -f "$dst"
  fy convert -f "$sf" -O "$df" "$@" "$src" "$dst"
  if [ -n "$CRASH" ] || [ "$RC" != 0 ]; then
    expect_exit 0 "$what: ferry convert"
    return 1
  fi
  if [ ! -f "$dst" ]; then
    not_ok "$what: ferry convert exited 0 but $dst does not exist" "$(last_run)"
    return 1
  fi
  expect_format "$what: output probes as $df" "$dst" "$df" || return 1
  same_content "$what: qemu-img compare" "$src" "$sf" "$dst" "$df" || return 1
  ssize=$(qinfo "$src" "$sf" virtual-size)
  dsize=$(qinfo "$dst" "$df" virtual-size)
  if [ "$ssize" != "$dsize" ] &&
     ! { [ "$df" = qcow2 ] && [ "$dsize" = $(((ssize + 511) / 512 * 512)) ]; }; then
    not_ok "$what: virtual size $dsize, source has $ssize"
    return 1
  fi
  if [ "$df" = qcow2 ]; then
    qemu_clean "$what: qemu-img check" "$dst" || return 1
  fi
  return 0
}

# only_files WHAT DIR NAME...: DIR holds exactly the files NAME... (names
# may hold blanks).
only_files () {
  local what=$1 dir=$2 got want
  shift 2
  got=$(ls -A "$dir" | sort | tr '\n' '|')
  want=$(printf '%s\n' "$@" | sed '/^$/d' | sort | tr '\n' '|')
  if [ "$got" = "$want" ]; then ok "$what"; else not_ok "$what: $dir holds [$got], expected [$want]"; fi
}

# allocated_bytes FILE: bytes the file takes on disk.
allocated_bytes () {
  echo $(($(stat -c %b "$1") * $(stat -c %B "$1")))
}

# map_agrees WHAT IMG [FMT]: ferry map --json and qemu-img map agree on
# which ranges of IMG hold data and which read as zeroes without it
# (adjacent runs of one kind merged: the two cut runs differently).  The
# judge of every driver's extents, whose copy would still compare equal
# if they called everything data.
map_agrees () {
  local what=$1 img=$2 fmt=${3:-} want got
  want=$(qemu-img map --output=json ${fmt:+-f "$fmt"} "$img" 2>&1 | "$PYTHON" -c '
import json, sys
runs = []
for e in json.load(sys.stdin):
    k = "data" if e["data"] else "zero" if e["zero"] else "unallocated"
    if runs and runs[-1][2] == k and runs[-1][0] + runs[-1][1] == e["start"]:
        runs[-1][1] += e["length"]
    else:
        runs.append([e["start"], e["length"], k])
print(" ".join("%d+%d:%s" % tuple(r) for r in runs))' 2>&1)
  fy map --json ${fmt:+-f "$fmt"} "$img"
  expect_exit 0 "$what: ferry map" || return 1
  got=$("$PYTHON" -c '
import json, sys
runs = []
for e in json.load(open(sys.argv[1])):
    k = "zero" if e["type"] & 2 else "data"
    if runs and runs[-1][2] == k and runs[-1][0] + runs[-1][1] == e["offset"]:
        runs[-1][1] += e["length"]
    else:
        runs.append([e["offset"], e["length"], k])
print(" ".join("%d+%d:%s" % tuple(r) for r in runs))' "$OUT" 2>&1)
  if [ "$got" = "$want" ]; then
    ok "$what: ferry map agrees with qemu-img map"
  else
    not_ok "$what: ferry map disagrees with qemu-img map" "qemu-img: $want" "ferry:    $got"
  fi
}
