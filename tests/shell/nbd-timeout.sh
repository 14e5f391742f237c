#!/usr/bin/env bash
# nbd-timeout: a stalled NBD server never hangs ferry.  nbdkit's delay
# filter makes a server that holds its replies for 100 s: to reads (from
# an export: convert, compare), to block status (map), to writes (into an
# export: convert), to opening the export (the handshake: info); and a
# server that accepts the connection and never says a word.  Each time
# ferry gives up after --timeout (1 s here) with a message naming the
# export and the request, exits 1 (compare: 2) and leaves nothing behind;
# and each time SIGINT ends it within 2 s, leaving nothing behind, dead of
# the signal as qemu-img would be.  A server that is slow but answers
# each request within the timeout is not cut off, however long it takes
# in all.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nbd-lib.sh"
. "$(dirname "$0")/interrupt-lib.sh"
require nbdkit qemu-img python3

cd "$WORK" || die "cd $WORK"
mkdir -p out
T=1                     # the --timeout given
STALL=100               # seconds the servers hold a reply
qemu-img create -q -f raw src.raw 64M || die "qemu-img create"
qio raw src.raw "write -s $RAND 0 8M" "write -P 0x33 40M 1M"

# timed_fy ARGS...: fy with a 60 s limit; ELAPSED_MS is how long it took.
timed_fy () {
  local t0
  t0=$(now_ms)
  FY_TIMEOUT=60 fy "$@"
  ELAPSED_MS=$(($(now_ms) - t0))
}

# expect_timed_out WHAT WANT_EXIT REGEX: the last timed_fy gave up by
# itself: exit WANT_EXIT, after at least the timeout and well before the
# server's stall would have ended, with a message matching REGEX.
expect_timed_out () {
  local what=$1 want=$2 re=$3
  expect_exit "$want" "$what: fails"
  if [ "$ELAPSED_MS" -lt $((T * 1000)) ] || [ "$ELAPSED_MS" -gt 20000 ]; then
    not_ok "$what: took $ELAPSED_MS ms; expected the --timeout of $T s and not much more" "$(last_run)"
  else
    ok "$what: gave up after $ELAPSED_MS ms"
  fi
  expect_stderr_re "$re" "$what: the message names the export and the request"
}

# interrupt_stalled WHAT SIG TEXT ARGS...: ferry ARGS against a stalled
# server, SIG once it has been connected for half a second; it must die
# of SIG within 2 s and say TEXT.
interrupt_stalled () {
  local what=$1 sig=$2 text=$3
  shift 3
  bg_ferry "$@"
  bg_wait_for 30 bg_connected
  sleep 0.5
  signal_ferry "$sig" "$what" || return
  expect_interrupted "$what" "$sig" 2 "$text"
}

# stalled KIND: a fresh nbdkit that holds its replies to KIND (read,
# extents, open, write) for STALL seconds; its URI in $URI.  A fresh one
# for every case: nbdkit 1.32 may fail an assertion (raw_send_socket:
# sock >= 0) when a client closes a connection with requests still in
# the delay, as ferry does when it gives up.
NR_SERVERS=0
stalled () {
  NR_SERVERS=$((NR_SERVERS + 1))
  case $1 in
    read) start_nbdkit "s$NR_SERVERS" --filter=delay pattern 1G delay-read=$STALL ;;
    extents) start_nbdkit "s$NR_SERVERS" --filter=delay memory 1G delay-extents=$STALL ;;
    open) start_nbdkit "s$NR_SERVERS" --filter=delay memory 1G delay-open=$STALL ;;
    write) start_nbdkit "s$NR_SERVERS" --filter=delay memory 1G \
             delay-write=$STALL delay-zero=$STALL ;;
  esac
}

# esc_uri URI: URI as an extended regular expression that matches it.
esc_uri () {
  printf '%s' "$1" | sed 's/[][\\.*^$?+(){}|]/\\&/g'
}

# --- a source that never answers reads ---------------------------------------------
stalled read
timed_fy convert --timeout $T -O raw "$URI" out/dst.raw
expect_timed_out "convert from a stalled export" 1 \
  "^ferry convert: $(esc_uri "$URI"): read of [0-9]+ bytes at offset 0x[0-9a-f]+ got no reply in $T s$"
only_files "convert from a stalled export, timed out: no target, no temporary file" out
stalled read
interrupt_stalled "convert from a stalled export, SIGINT" INT \
  "ferry convert: interrupted; out/dst.raw was not written" convert -O raw "$URI" out/dst.raw
only_files "convert from a stalled export, SIGINT: no target, no temporary file" out
stalled read
interrupt_stalled "convert from a stalled export, SIGTERM" TERM \
  "ferry convert: interrupted; out/dst.qcow2 was not written" convert -O qcow2 "$URI" out/dst.qcow2
only_files "convert from a stalled export, SIGTERM: no target, no temporary file" out

stalled read
timed_fy compare --timeout $T "$URI" src.raw
expect_timed_out "compare with a stalled export" 2 \
  "^ferry compare: $(esc_uri "$URI"): read of [0-9]+ bytes at offset 0x[0-9a-f]+ got no reply in $T s$"
stalled read
interrupt_stalled "compare with a stalled export, SIGINT" INT "interrupted" compare "$URI" src.raw

# --- block status that never comes -----------------------------------------------
stalled extents
timed_fy map --timeout $T "$URI"
expect_timed_out "map of a stalled export" 1 \
  "^ferry map: $(esc_uri "$URI"): block status of [0-9]+ bytes at offset 0x0 got no reply in $T s$"
stalled extents
interrupt_stalled "map of a stalled export, SIGINT" INT "interrupted" map "$URI"

# --- a handshake that stalls: the export is never opened -------------------------------
stalled open
timed_fy info --timeout $T "$URI"
expect_timed_out "info during a stalled handshake" 1 \
  "^ferry info: $(esc_uri "$URI"): opening the export \(NBD_OPT_GO\) got no reply in $T s$"
stalled open
interrupt_stalled "info during a stalled handshake, SIGINT" INT "interrupted" info "$URI"
stalled open
interrupt_stalled "convert during a stalled handshake, SIGINT" INT "interrupted" \
  convert -O raw "$URI" out/hs.raw
only_files "convert during a stalled handshake: nothing made" out

# --- a server that accepts and never says a word --------------------------------------
python3 - "$WORK/mute.sock" <<'EOF' >/dev/null 2>&1 &
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(16)
held = []
deadline = time.time() + 300
while time.time() < deadline:
    s.settimeout(max(deadline - time.time(), 0.1))
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        break
EOF
at_exit "kill $! 2>/dev/null"
wait_until 20 test -S "$WORK/mute.sock" || die "the mute server did not start"
MUTE=$(nbd_unix_uri "$WORK/mute.sock")
timed_fy info --timeout $T "$MUTE"
expect_timed_out "info of a server that never greets" 1 \
  "^ferry info: $(esc_uri "$MUTE"): no answer from the server within $T s"
interrupt_stalled "info of a server that never greets, SIGINT" INT "interrupted" info "$MUTE"

# --- a target that never answers writes ---------------------------------------------
stalled write
timed_fy convert --timeout $T -f raw src.raw "$URI"
expect_timed_out "convert into a stalled export" 1 \
  "^ferry convert: $(esc_uri "$URI"): (write|zero) of [0-9]+ bytes at offset 0x[0-9a-f]+ got no reply in $T s$"
expect_stderr "is only partly written" "convert into a stalled export: says it is only partly written"
stalled write
interrupt_stalled "convert into a stalled export, SIGINT" INT \
  "ferry convert: interrupted; $URI is only partly written" convert -f raw src.raw "$URI"

# --- slow is not stalled: each reply restarts the clock ---------------------------------
# One request at a time, each answered after 0.4 s: the four reads of 1 MiB
# take longer than the timeout together, but none waits that long.
qemu-img create -q -f raw small.raw 8M || die "qemu-img create"
qio raw small.raw "write -s $RAND 0 1M"
start_nbdkit slow --filter=noparallel --filter=delay file small.raw \
  serialize=all-requests delay-read=400ms
timed_fy convert --timeout $T -O raw "$URI" out/slow.raw
if expect_exit 0 "a slow server (one reply each 0.4 s, --timeout $T)"; then
  same_content "a slow server: qemu-img compare" small.raw raw out/slow.raw raw
  check_true "a slow server: the copy took longer than the timeout ($ELAPSED_MS ms)" \
    test "$ELAPSED_MS" -gt $((T * 1000))
fi
rm -f out/slow.raw

# --- bad values ------------------------------------------------------------------------
for bad in x -1 1e9 ""; do
  fy info --timeout "$bad" src.raw
  expect_exit 1 "--timeout '$bad' refused"
  expect_stderr "--timeout" "--timeout '$bad': the message names the option"
done
fy info --timeout 0 src.raw
expect_exit 0 "--timeout 0 (no timeout) accepted"

done_testing
