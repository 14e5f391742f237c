# nbd-lib.sh: what the NBD tests share.  Source it after lib.sh.
#
# Every server listens on a Unix socket in the test's work directory, or
# on a free port of 127.0.0.1, and is started by the test itself with a
# deadline (timeout, nbdkit --exit-with-parent) and stopped at exit, so
# tests run in parallel with each other and nothing outlives them.
#
# The plugin is built without sanitizers even in a sanitized build (see
# plugins/nbdkit/meson.build), so nbdkit runs it as it is.

# The longest any server of a test may live.
SERVER_LIFETIME=${SERVER_LIFETIME:-300}

# The plugin of this build.
FERRY_PLUGIN=$(cd "$(dirname "$FERRY")/.." && pwd)/plugins/nbdkit/nbdkit-ferry-plugin.so
[ -f "$FERRY_PLUGIN" ] || die "no plugin at $FERRY_PLUGIN"

NBDKIT_FOR_PLUGIN=nbdkit

# wait_until SECONDS COMMAND...: retry COMMAND every 0.05 s until it
# succeeds (0) or SECONDS pass (1).
wait_until () {
  local limit=$1 i
  shift
  for ((i = 0; i < limit * 20; i++)); do
    "$@" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# free_port: a TCP port of 127.0.0.1 that nothing listens on now.
free_port () {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# nbd_unix_uri SOCKET [EXPORT]: the URI of an export on a Unix socket.
nbd_unix_uri () {
  echo "nbd+unix:///${2:-}?socket=$1"
}

# start_qemu_nbd NAME ARGS...: qemu-nbd serving on $WORK/NAME.sock (the
# URI in $URI, the pid to kill in $SERVER_PID); stops at exit.  -t keeps
# it for more than one client (one at a time).
start_qemu_nbd () {
  local name=$1 sock=$WORK/$1.sock
  shift
  rm -f "$sock"
  timeout "$SERVER_LIFETIME" qemu-nbd -t -k "$sock" "$@" \
    >"$WORK/$name.log" 2>&1 &
  SERVER_PID=$!
  at_exit "kill $SERVER_PID 2>/dev/null"
  wait_until 20 test -S "$sock" ||
    die "qemu-nbd $* did not start: $(cat "$WORK/$name.log")"
  URI=$(nbd_unix_uri "$sock")
}

# start_nbdkit NAME ARGS...: nbdkit serving on $WORK/NAME.sock (URI in
# $URI, pid in $SERVER_PID); stops at exit.
start_nbdkit () {
  local name=$1 sock=$WORK/$1.sock
  shift
  rm -f "$sock" "$WORK/$name.pid"
  timeout "$SERVER_LIFETIME" "$NBDKIT_FOR_PLUGIN" -f --exit-with-parent \
    -U "$sock" -P "$WORK/$name.pid" "$@" >"$WORK/$name.log" 2>&1 &
  at_exit "kill $! 2>/dev/null"
  wait_until 20 test -s "$WORK/$name.pid" ||
    die "nbdkit $* did not start: $(cat "$WORK/$name.log")"
  SERVER_PID=$(cat "$WORK/$name.pid")
  URI=$(nbd_unix_uri "$sock")
}

# start_serve NAME ARGS...: ferry serve ARGS (give --socket or --port in
# ARGS); the URI it prints in $URI, its pid in $SERVE_PID, its stderr in
# $WORK/NAME.log.  Stops at exit.  Returns 1 when it exits instead.
start_serve () {
  local name=$1
  shift
  rm -f "$WORK/$name.uri"
  timeout "$SERVER_LIFETIME" "$FERRY" serve "$@" >"$WORK/$name.uri" \
    2>"$WORK/$name.log" &
  SERVE_PID=$!
  at_exit "kill $SERVE_PID 2>/dev/null"
  if ! wait_until 30 grep -q '^nbd' "$WORK/$name.uri"; then
    kill "$SERVE_PID" 2>/dev/null
    wait "$SERVE_PID" 2>/dev/null
    return 1
  fi
  URI=$(head -n 1 "$WORK/$name.uri")
}

# stop_serve WHAT [SIGNAL]: stop the last ferry serve with SIGNAL (TERM);
# it must exit 0 within 30 s and leave no nbdkit behind.
stop_serve () {
  local what=$1 sig=${2:-TERM} rc=0 i
  kill -"$sig" "$SERVE_PID" 2>/dev/null
  for ((i = 0; i < 600; i++)); do
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$SERVE_PID" 2>/dev/null; then
    not_ok "$what: ferry serve still runs 30 s after SIG$sig"
    kill -KILL "$SERVE_PID" 2>/dev/null
    return 1
  fi
  wait "$SERVE_PID" || rc=$?
  if [ "$rc" = 0 ]; then
    ok "$what: ferry serve stopped on SIG$sig, exit 0"
  else
    not_ok "$what: ferry serve exit $rc after SIG$sig" "$(cat "$WORK"/*.log 2>/dev/null | tail -n 20)"
    return 1
  fi
}

# stop_server: stop the server $SERVER_PID and wait for it.
stop_server () {
  kill "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  return 0
}

# same_output WHAT FILE_A FILE_B: two outputs are the same text.
same_output () {
  local what=$1 a=$2 b=$3
  if cmp -s "$a" "$b"; then
    ok "$what"
  else
    not_ok "$what" "$(diff "$a" "$b" | head -n 30)"
  fi
}
