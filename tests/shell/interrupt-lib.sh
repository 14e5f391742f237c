# interrupt-lib.sh: running ferry in the background and ending it with a
# signal, timed.  Source it after lib.sh.
#
# ferry dies of the signal that stopped it once it has cleaned up, as
# qemu-img does, so a shell sees 128 + the signal's number (130 for
# SIGINT, 143 for SIGTERM); expect_interrupted checks that, the time it
# took, and the message.

# bg_ferry ARGS...: start ferry ARGS in the background, stdout in $OUT,
# stderr in $ERR, stdin from /dev/null; its pid in BG_PID.  Job control is
# on while it starts, so it gets SIGINT as from a terminal's Ctrl-C (a
# plain script would start it with SIGINT ignored) in a process group of
# its own.
bg_ferry () {
  LAST_CMD="ferry $*"
  : >"$OUT"
  : >"$ERR"
  set -m
  "$FERRY" "$@" >"$OUT" 2>"$ERR" </dev/null &
  BG_PID=$!
  set +m
}

# bg_running: ferry ($BG_PID) still runs (is not a zombie either).
bg_running () {
  local state
  state=$(cut -d' ' -f3 "/proc/$BG_PID/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# bg_wait_for SECONDS COMMAND...: wait until COMMAND succeeds (every 0.05
# s), at most SECONDS; fails when it does not or ferry ended first.
bg_wait_for () {
  local limit=$1 i
  shift
  for ((i = 0; i < limit * 20; i++)); do
    bg_running || return 1
    "$@" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# bg_connected: ferry has a socket open (it reached its NBD server).
bg_connected () {
  ls -l "/proc/$BG_PID/fd" 2>/dev/null | grep -q 'socket:'
}

# now_ms: a clock in milliseconds.
now_ms () {
  echo $(($(date +%s%N) / 1000000))
}

# signal_ferry SIG: send SIG to ferry and wait for it to end (SIGKILL
# after 60 s).  RC is its exit status, STOP_MS the milliseconds from the
# signal to its end.  Fails, with a failed check WHAT, when ferry had
# already ended before the signal: the case proves nothing then.
signal_ferry () {
  local sig=$1 what=$2 t0 killer
  if ! bg_running; then
    RC=0
    wait "$BG_PID" || RC=$?
    crash_reason
    not_ok "$what: ferry ended (exit $RC) before SIG$sig came; the case needs to be slower" "$(last_run)"
    return 1
  fi
  t0=$(now_ms)
  kill -"$sig" "$BG_PID"
  (sleep 60 && kill -KILL "$BG_PID") >/dev/null 2>&1 &
  killer=$!
  RC=0
  wait "$BG_PID" || RC=$?
  STOP_MS=$(($(now_ms) - t0))
  kill "$killer" 2>/dev/null
  wait "$killer" 2>/dev/null
  LAST_CMD="$LAST_CMD, then SIG$sig"
  return 0
}

# expect_interrupted WHAT SIG MAX_SECONDS [TEXT]: after signal_ferry,
# ferry died of SIG within MAX_SECONDS, with no sanitizer report, and its
# stderr says it was interrupted (TEXT, when given, too).
expect_interrupted () {
  local what=$1 sig=$2 max=$3 text=${4:-} want
  want=$((128 + $(kill -l "$sig")))
  RC=${RC:-none}
  CRASH=""
  if grep -q -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|Sanitizer:DEADLYSIGNAL|SUMMARY: [A-Za-z]*Sanitizer' "$ERR"; then
    not_ok "$what: sanitizer report" "$(last_run)"
  elif [ "$RC" != "$want" ]; then
    not_ok "$what: exit status $RC, expected $want (died of SIG$sig)" "$(last_run)"
  elif [ "$STOP_MS" -gt $((max * 1000)) ]; then
    not_ok "$what: ended $STOP_MS ms after SIG$sig, more than $max s" "$(last_run)"
  elif ! grep -q "interrupted" "$ERR"; then
    not_ok "$what: stderr does not say it was interrupted" "$(last_run)"
  elif [ -n "$text" ] && ! grep -q -F -- "$text" "$ERR"; then
    not_ok "$what: stderr lacks '$text'" "$(last_run)"
  else
    ok "$what: ended ${STOP_MS} ms after SIG$sig, exit $RC"
  fi
}

# processes_of WORD: the processes whose command line holds WORD (a path
# of this test), one "pid args" line each; empty when none.
processes_of () {
  ps -eo pid=,args= | grep -F -- "$1" | grep -v -F -e "grep -F" -e "ps -eo" || true
}
