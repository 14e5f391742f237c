#!/usr/bin/env bash
# nbd-killed: a server killed (SIGKILL) in the middle of a copy.  From a
# killed source (nbdkit, and ferry serve): ferry convert says the
# connection was lost, exits 1 without hanging, and leaves no target and
# no temporary file.  Into a killed target: the same error, and a message
# that the export is only partly written.  ferry serve itself reports
# that its nbdkit was killed.  The servers are slowed down with nbdkit's
# delay filter so that the kill always lands mid-copy.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nbd-lib.sh"
require nbdkit qemu-img python3

cd "$WORK" || die "cd $WORK"
mkdir -p out

# kill_mid_copy KILL_COMMAND CONVERT_ARGS...: ferry convert in the
# background; once it reports progress, run KILL_COMMAND, then wait for
# ferry (fy's timeout ends it if it hangs) and take its exit status.
kill_mid_copy () {
  local killcmd=$1 pid
  shift
  rm -f "$WORK/.rc"
  ( FY_TIMEOUT=60 fy convert --progress=json "$@"; echo "$RC" >"$WORK/.rc" ) &
  pid=$!
  wait_until 20 grep -q '"done"' "$OUT" || die "no progress from ferry convert $*"
  sleep 0.3
  eval "$killcmd" || die "$killcmd: nothing to kill"
  wait "$pid"
  LAST_CMD="ferry convert $*"
  RC=$(cat "$WORK/.rc" 2>/dev/null || echo none)
  crash_reason
}

# --- a killed nbdkit as the source ---------------------------------------------------
start_nbdkit src --filter=delay pattern 1G delay-read=100ms
kill_mid_copy 'kill -KILL "$SERVER_PID"' "$URI" out/dst.raw
expect_exit 1 "source killed mid-copy: exit 1"
expect_stderr "the connection to the server was lost" "source killed: the message says the connection was lost"
check_true "source killed: no target and no temporary file" test -z "$(ls -A out)"

# --- a killed ferry serve as the source ----------------------------------------------
qemu-img create -q -f qcow2 big.qcow2 1G || die "qemu-img create"
qemu-io -f qcow2 -c "write -P 0x5a 0 64m" big.qcow2 >/dev/null 2>&1 || die "qemu-io"
# ferry serve's nbdkit, slowed down by the delay filter.
cat >slow-nbdkit <<EOF
#!/bin/sh
exec $NBDKIT_FOR_PLUGIN --filter=delay "\$@" delay-read=200ms
EOF
chmod +x slow-nbdkit
FERRY_NBDKIT=$WORK/slow-nbdkit start_serve served --readonly --socket "$WORK/served.sock" big.qcow2 ||
  die "ferry serve: $(cat served.log)"
serve_pid=$SERVE_PID
kill_mid_copy 'pkill -KILL -f -- "--unix $WORK/served.sock"' "$URI" out/dst2.raw
expect_exit 1 "ferry serve killed mid-copy: exit 1"
expect_stderr "the connection to the server was lost" "ferry serve killed: the message says the connection was lost"
check_true "ferry serve killed: no target and no temporary file" test -z "$(ls -A out)"
rc=0
wait "$serve_pid" || rc=$?
check_true "ferry serve exits 1 when its nbdkit is killed (exit $rc)" test "$rc" = 1
check_true "ferry serve says nbdkit was killed" grep -q "nbdkit was killed by signal 9" served.log

# --- a killed nbdkit as the target ------------------------------------------------------
start_nbdkit dst --filter=delay memory 1G delay-write=200ms delay-zero=200ms
qemu-img create -q -f raw src.raw 256M || die "qemu-img create"
head -c $((128 << 20)) /dev/urandom | dd of=src.raw conv=notrunc status=none
kill_mid_copy 'kill -KILL "$SERVER_PID"' -f raw src.raw "$URI"
expect_exit 1 "target killed mid-copy: exit 1"
expect_stderr "the connection to the server was lost" "target killed: the message says the connection was lost"
expect_stderr "is only partly written" "target killed: the message says the export is only partly written"

done_testing
