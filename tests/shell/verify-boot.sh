#!/usr/bin/env bash
# verify-boot: ferry verify --boot and v2v --verify on the smallest guests,
# boot sectors assembled here (tests/guests/boot-sector.S), each booted by
# QEMU, the judge of what the guest does:
#   - tcg-only prints three stages, then a login prompt under TCG and
#     nothing more under KVM, as Linux guests hang on hosts whose KVM is
#     broken: the default accelerator (auto) must see the stall, restart
#     under TCG and boot it, saying why, in the text, the JSON and v2v's
#     result, in well under a minute;
#   - slow prints a line every two seconds: alive, so never restarted;
#   - hang prints and hangs everywhere: after the stall TCG gets what is
#     left of the timeout, not a second one;
#   - panic prints a kernel panic: a known failure, final under KVM and
#     under TCG;
#   - root-wait prints what Debian's initramfs prints while it waits for
#     its root device: under auto a stall, judged again under TCG;
#   - lockup keeps printing Linux's reports of a soft lockup and an RCU
#     stall under KVM (output that never lets the console go quiet), and
#     logs in after two of them under TCG: under auto the first report is
#     a stall; under TCG, and under --accel kvm, they are warnings.
# Also: a KVM that does not start, one that fails after the guest printed
# ("KVM internal error", QEMU exiting or paused), and bad option values.  The stalls are
# set short (--kvm-stall, FERRY_KVM_STALL for v2v), yet above the seconds
# QEMU can take to print its first line on a loaded machine.
# A KVM that hangs is needed whether or not this host has one: a stand-in
# QEMU (below) runs the "KVM" boots under TCG with the CPU's hypervisor
# signature hidden, so tcg-only hangs there exactly as under a real KVM,
# and FERRY_KVM_DEVICE tells ferry that KVM is there.  The host's own
# accelerators are then tried as they are: with /dev/kvm (CI), tcg-only
# hangs under the real KVM and must boot through the fall-back, and the
# panic is seen under real KVM; without it, auto must go straight to TCG
# and say that KVM is not available.
. "$(dirname "$0")/lib.sh"
require qemu-system-x86_64 as ld python3

# QEMU under TCG maps far more than lib.sh's address-space limit, which is
# there for ferry's own allocations.
FERRY_VMEM_LIMIT_KB=unlimited
FY_TIMEOUT=120
cd "$WORK" || die "cd $WORK"
for g in tcg-only hang panic slow root-wait lockup; do
  "$SRCDIR/tests/guests/make-boot-sector.sh" "$g" "$g.img" 2>"$WORK/.mk" ||
    die "the $g test guest: $(cat "$WORK/.mk")"
done

# The stand-in for a KVM that hangs guests: ferry's "-accel kvm -cpu host"
# becomes TCG with a CPU whose hypervisor leaf is not TCG's.
cat >hung-kvm-qemu <<'EOF'
#!/usr/bin/env bash
args=() prev=""
for a in "$@"; do
  if [ "$prev" = -accel ] && [ "$a" = kvm ]; then a=tcg; fi
  if [ "$prev" = -cpu ] && [ "$a" = host ]; then a=qemu64,tcg-cpuid=off; fi
  args+=("$a")
  prev=$a
done
exec qemu-system-x86_64 "${args[@]}"
EOF
chmod +x hung-kvm-qemu
: >fake-kvm
# standin ARGS...: fy under the stand-in KVM.
standin () {
  FERRY_QEMU=$WORK/hung-kvm-qemu FERRY_KVM_DEVICE=$WORK/fake-kvm fy "$@"
}
# timed_fy ARGS...: fy, with the run's wall time in SECONDS_TAKEN (the
# test's own clock, not ferry's report).
timed_fy () {
  local t0
  t0=$(date +%s.%N)
  "$@"
  SECONDS_TAKEN=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
}
# result_is WHAT EXPR: the Python expression EXPR over j, the JSON of the
# last run's stdout, is true.
result_is () {
  local what=$1 expr=$2 out
  if out=$("$PYTHON" -c 'import json, os, re, sys
PANIC = "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"
j = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)' "$OUT" "$expr" 2>&1); then
    ok "$what"
  else
    not_ok "$what" "expected: $expr" "$out" "$(last_run)"
  fi
}
# faster_than WHAT SECONDS: the last timed run took less.
faster_than () {
  if awk -v t="$SECONDS_TAKEN" -v m="$2" 'BEGIN { exit !(t < m) }'; then
    ok "$1 (${SECONDS_TAKEN} s)"
  else
    not_ok "$1: took $SECONDS_TAKEN s, expected under $2" "$(last_run)"
  fi
}
# no_qemu_left WHAT IMG: no QEMU of IMG is still running.
no_qemu_left () {
  local left
  left=$(pgrep -a -f -- "file=$WORK/$2" || true)
  if [ -z "$left" ]; then ok "$1"; else not_ok "$1" "$left"; fi
}

# --- runs in the background: started after section 1, judged later -------
# The root waits (section 8) and the KVM failures and stuck CPUs (6b, 6c)
# mostly wait, so they run beside the other checks.
# background NAME ARGS...: ferry ARGS under the stand-in KVM (the QEMU
# BG_QEMU names, else hung-kvm-qemu), in the background, its output in
# NAME.out and NAME.err, its wall time in NAME.time, its pid in BG_PID.
background () {
  local name=$1
  shift
  (
    t0=$(date +%s.%N) rc=0
    FERRY_QEMU=${BG_QEMU:-$WORK/hung-kvm-qemu} FERRY_KVM_DEVICE=$WORK/fake-kvm \
      timeout 150 "$FERRY" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null || rc=$?
    awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }' >"$WORK/$name.time"
    exit "$rc"
  ) &
  BG_PID=$!
}
# collect NAME PID ARGS...: wait for the run, then RC, OUT, ERR, LAST_CMD
# and SECONDS_TAKEN describe it as for fy and timed_fy.
collect () {
  local name=$1 pid=$2
  shift 2
  RC=0
  wait "$pid" || RC=$?
  OUT=$WORK/$name.out ERR=$WORK/$name.err LAST_CMD="ferry $*"
  SECONDS_TAKEN=$(cat "$WORK/$name.time" 2>/dev/null)
  crash_reason
}
# --- bad values: refused before anything boots ------------------------------
for bad in "--kvm-stall 0" "--kvm-stall 5x" "--timeout 4294967297" "--timeout -1"; do
  # shellcheck disable=SC2086
  fy verify --boot $bad "$WORK/hang.img"
  expect_exit 1 "verify --boot $bad: refused"
  expect_stderr "${bad% *} ${bad#* }: expected seconds (1 to 86400)" "...saying what it expects"
done

# --- 1. a guest that prints, then hangs under KVM --------------------------
# Before the fall-back covered a stall after output, this waited out all
# 60 s and failed.
timed_fy standin verify --boot --kvm-stall 8 --timeout 60 "$WORK/tcg-only.img"
expect_exit 0 "auto: a guest that stalls under KVM after printing boots under TCG"
faster_than "...well within the timeout" 40
# (the prompt's trailing blank may come in a later read than the rest)
if grep -q -E "^booted in [0-9]+ s \(tcg; KVM stalled after 'Starting init\.\.\.' for 8 s\): \"ferry-test login: ?\"$" "$OUT"; then
  ok "...and says it booted under TCG because KVM stalled after the last line it printed"
else
  not_ok "...the result names TCG and the stall" "$(last_run)"
fi
no_qemu_left "...the stalled KVM QEMU and the TCG one are both gone" tcg-only.img

# (ferry stops its QEMU when it ends normally; should the test end first,
# the QEMUs of this work directory go too)
at_exit 'for p in $(pgrep -f -- "file=$WORK/"); do kill "$p"; done'
rw_auto_args=(verify --boot --kvm-stall 10 --timeout 120 --json "$WORK/root-wait.img")
background rw-auto "${rw_auto_args[@]}"
rw_auto=$BG_PID
rw_kvm_args=(verify --boot --accel kvm --timeout 120 --json "$WORK/root-wait.img")
background rw-kvm "${rw_kvm_args[@]}"
rw_kvm=$BG_PID

# A KVM that fails after the guest printed (judged in 6b).  QEMU reports a
# broken nested KVM on its stderr ("KVM internal error" at any stage) and
# then exits, or stays with the VM paused and the console silent (what
# QEMU does after an internal error).  The stand-in's "KVM" prints the
# first stages of tcg-only, then fails so 3 s in.
cat >kvm-error-qemu <<'EOF'
#!/usr/bin/env bash
case " $* " in
  *" -accel kvm "*)
    printf 'SeaBIOS-style boot: ferry test guest\r\n'
    sleep 1
    printf 'Booting Linux...\r\n'
    sleep 2
    printf 'KVM internal error. Suberror: 1\nemulation failure\nEAX=00000000 EBX=00000000 ECX=00000000 EDX=000306a9\n' >&2
    if [ "$KVM_ERROR" = pause ]; then exec -a "kvm-error-paused-$WORK" sleep 300; fi
    exit 1 ;;
esac
exec qemu-system-x86_64 "$@"
EOF
chmod +x kvm-error-qemu
at_exit 'for p in $(pgrep -f -- "kvm-error-paused-$WORK"); do kill "$p"; done'
ke_exit_args=(verify --boot --timeout 60 --json "$WORK/tcg-only.img")
KVM_ERROR=exit WORK=$WORK BG_QEMU=$WORK/kvm-error-qemu background ke-exit "${ke_exit_args[@]}"
ke_exit=$BG_PID
ke_pause_args=(verify --boot --timeout 60 --json "$WORK/tcg-only.img")
KVM_ERROR=pause WORK=$WORK BG_QEMU=$WORK/kvm-error-qemu background ke-pause "${ke_pause_args[@]}"
ke_pause=$BG_PID
# A guest whose kernel keeps reporting a stuck CPU (judged in 6c).
lk_auto_args=(verify --boot --kvm-stall 8 --timeout 40 --json "$WORK/lockup.img")
background lk-auto "${lk_auto_args[@]}"
lk_auto=$BG_PID
lk_kvm_args=(verify --boot --accel kvm --timeout 8 --json "$WORK/lockup.img")
background lk-kvm "${lk_kvm_args[@]}"
lk_kvm=$BG_PID

# --- 2. slow but alive: never restarted ------------------------------------
timed_fy standin verify --boot --kvm-stall 10 --timeout 60 --json "$WORK/slow.img"
expect_exit 0 "auto: a guest that prints every 2 s for 12 s boots"
result_is "...under KVM, with no fall-back (the stall is silence, not the time taken)" \
  'j["accel"] == "kvm" and j["fallback"] is None'

# --- 3. a guest that hangs everywhere: one timeout in all ------------------
timed_fy standin verify --boot --kvm-stall 8 --timeout 16 "$WORK/hang.img"
expect_exit 1 "auto: a guest that hangs under both fails"
expect_stderr_re "hang\.img did not boot: no login prompt on the console within 16 s \(after 1[67] s, tcg; KVM stalled after 'SeaBIOS-style boot: ferry test guest' for 8 s\)" \
  "...at the timeout, under TCG after the stall under KVM, and says so"
faster_than "...TCG ran for what was left of the 16 s, not a fresh timeout" 20
expect_stderr "  | SeaBIOS-style boot: ferry test guest" "...with the console's last lines"

# --- 4. --accel kvm: no fall-back ------------------------------------------
timed_fy standin verify --boot --accel kvm --kvm-stall 3 --timeout 5 --json "$WORK/tcg-only.img"
expect_exit 1 "--accel kvm: a stall is not given up"
result_is "...it times out under KVM" \
  'j["accel"] == "kvm" and j["fallback"] is None and j["reason"] == "no login prompt on the console within 5 s"'

# --- 4b. a KVM that does not start -----------------------------------------
cat >no-kvm-qemu <<'EOF'
#!/usr/bin/env bash
case " $* " in
  *" -accel kvm "*)
    echo "qemu-system-x86_64: -accel kvm: failed to initialize kvm: Permission denied" >&2
    exit 1 ;;
esac
exec qemu-system-x86_64 "$@"
EOF
chmod +x no-kvm-qemu
FERRY_QEMU=$WORK/no-kvm-qemu FERRY_KVM_DEVICE=$WORK/fake-kvm \
  fy verify --boot --timeout 60 --json "$WORK/tcg-only.img"
expect_exit 0 "auto: a KVM that does not start"
result_is "...gives way to TCG, with QEMU's reason" \
  'j["accel"] == "tcg" and j["fallback"] == "KVM did not start: qemu-system-x86_64: -accel kvm: failed to initialize kvm: Permission denied"'

# --- 5. known failures, under (stand-in) KVM and TCG -----------------------
# The panic's whole line: a failure used to be judged on whatever part of
# its line the first read brought ("Kernel panic - not syncing", no reason).
standin verify --boot --kvm-stall 10 --timeout 60 --json "$WORK/panic.img"
expect_exit 1 "auto: a kernel panic under KVM"
result_is "...is final under KVM (no restart), the panic's whole line in the report" \
  'j["reason"] == "kernel panic: \"%s\"" % PANIC and j["matched"] == PANIC and j["accel"] == "kvm" and j["fallback"] is None'
fy verify --boot --accel tcg --timeout 60 --json "$WORK/panic.img"
expect_exit 1 "--accel tcg: a kernel panic"
result_is "...is seen under TCG" 'j["matched"] == PANIC and j["accel"] == "tcg"'

# --- 6. v2v --verify reports the accelerator -------------------------------
mkdir -p src
cp tcg-only.img src/boot.img
cat >src/vm.vmx <<'EOF'
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "17"
displayName = "stall"
guestOS = "other-64"
memSize = "256"
ide0:0.present = "TRUE"
ide0:0.fileName = "boot.img"
EOF
FERRY_KVM_STALL=8 standin v2v src/vm.vmx --to qemu --out v2v-out -O raw \
  --no-convert --verify --verify-timeout 60 --json
expect_exit 0 "v2v --verify: the stalling guest boots under TCG"
result_is "...its result says tcg, why, and the login line" \
  'j["result"]["verified"] and j["result"]["verification"]["accel"] == "tcg" and j["result"]["verification"]["fallback"] == "KVM stalled after '"'"'Starting init...'"'"' for 8 s" and j["result"]["verification"]["matched"].strip() == "ferry-test login:"'

# --- 6b. a KVM that fails after the guest printed (started after 1) -------
# Before, only an exit within 30 s whose first stderr line said "kvm" in
# lower case gave way to TCG: this exit was a final failure, and the pause
# waited out the whole stall (30 s by default, as here).
KVM_FAILED="KVM failed after 'Booting Linux...': KVM internal error. Suberror: 1"
export KVM_FAILED
collect ke-exit "$ke_exit" "${ke_exit_args[@]}"
expect_exit 0 "auto: a KVM QEMU that exits with 'KVM internal error' after the guest printed"
result_is "...gives way to TCG, which boots the guest, saying where KVM failed and QEMU's words" \
  'j["accel"] == "tcg" and j["fallback"] == os.environ["KVM_FAILED"] and j["matched"].strip() == "ferry-test login:"'
collect ke-pause "$ke_pause" "${ke_pause_args[@]}"
expect_exit 0 "auto: a KVM QEMU that says 'KVM internal error' and stays, its VM paused"
result_is "...gives way to TCG as well" \
  'j["accel"] == "tcg" and j["fallback"] == os.environ["KVM_FAILED"]'
faster_than "...at once, not after the 30 s stall" 20
if pgrep -f -- "kvm-error-paused-$WORK" >/dev/null; then
  not_ok "...the paused QEMU is stopped" "$(pgrep -a -f -- "kvm-error-paused-$WORK")"
else
  ok "...the paused QEMU is stopped"
fi

# --- 6c. a guest whose kernel keeps reporting a stuck CPU (started after 1)
# Before, output every second kept the stall clock from ever running out:
# this waited out its 40 s under KVM and failed.
collect lk-auto "$lk_auto" "${lk_auto_args[@]}"
expect_exit 0 "auto: a guest that KVM hangs while its kernel keeps reporting a stuck CPU"
result_is "...gives way to TCG at the first report, quoting it; under TCG the same reports do not stop the boot" \
  'j["accel"] == "tcg" and j["fallback"] == "KVM stalled: the guest reported '"'"'[   22.104181] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:1]'"'"'" and j["matched"].strip() == "ferry-test login:"'
faster_than "...well before the timeout" 25
collect lk-kvm "$lk_kvm" "${lk_kvm_args[@]}"
expect_exit 1 "--accel kvm: the same guest (no fall-back)"
result_is "...times out under KVM, the reason counting the reports of a stuck CPU and quoting the last" \
  'j["accel"] == "kvm" and j["fallback"] is None and re.fullmatch(r"no login prompt on the console within 8 s; the guest reported a stuck CPU [0-9]+ times?, the last: '"'"'\[   (22\.104181\] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! \[swapper/0:1\]|43\.118002\] rcu: INFO: rcu_sched self-detected stall on CPU)'"'"'", j["reason"])'

# --- 7. this host's own accelerators ---------------------------------------
timed_fy fy verify --boot --kvm-stall 8 --timeout 60 --json "$WORK/tcg-only.img"
expect_exit 0 "auto on this host: the tcg-only guest boots"
faster_than "...in well under a minute" 45
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
  result_is "...under TCG, after the real KVM stalled (or did not start)" \
    'j["accel"] == "tcg" and j["fallback"].startswith(("KVM stalled after '"'"'Starting init...'"'"'", "KVM did not start"))'
  fy verify --boot --accel kvm --timeout 60 --json "$WORK/panic.img"
  expect_exit 1 "--accel kvm: a kernel panic under the real KVM"
  result_is "...is seen under KVM" 'j["matched"] == PANIC and j["accel"] == "kvm"'
else
  result_is "...no /dev/kvm: straight to TCG, saying why" \
    'j["accel"] == "tcg" and j["fallback"].startswith("KVM is not available: /dev/kvm: ")'
fi

# --- 8. the root waits started after section 1 ---------------------------------
collect rw-auto "$rw_auto" "${rw_auto_args[@]}"
expect_exit 1 "auto: an initramfs waiting for its root device under KVM"
result_is "...is a stall under KVM, and TCG finds the root device is not coming" \
  'j["accel"] == "tcg" and j["fallback"] == "KVM stalled after '"'"'Begin: Waiting for root file system ...'"'"' for 10 s" and j["reason"].startswith("the initramfs has been waiting for the root device for 45 s")'
collect rw-kvm "$rw_kvm" "${rw_kvm_args[@]}"
expect_exit 1 "--accel kvm: an initramfs waiting for its root device"
result_is "...is judged under KVM" \
  'j["accel"] == "kvm" and j["fallback"] is None and j["reason"].startswith("the initramfs has been waiting for the root device for 45 s")'

done_testing
