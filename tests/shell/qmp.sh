#!/usr/bin/env bash
# qmp: the QMP client (lib/hv) against a real QEMU (TCG, -S: the guest
# never runs), through `ferry qmp`.  The disks it lists agree with
# qemu-img info (node name, size, format, file); a CD-ROM with a medium is
# flagged removable and an empty drive is left out; a dirty bitmap added
# through it is then listed, recording; a warm round's steps (a
# transaction that starts one bitmap and freezes another, an NBD export of
# the frozen one, its deletion's event) split two writes between the
# bitmaps as nbdinfo reads them; an unknown command's error names
# its class; a socket that is not QMP, one that says nothing and a missing
# one are refused clearly and in time; while another client holds the
# monitor ferry waits for the greeting until its timeout and says so, and
# answers Ctrl-C at once; QEMU killed in the middle of a session gives the
# "closed the connection" message, not a hang.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/interrupt-lib.sh"
require qemu-system-x86_64 qemu-img python3 nbdinfo

cd "$WORK" || die "cd $WORK"
SOCK=$WORK/qmp.sock

# start_qemu: a paused q35 VM with a qcow2 disk on virtio-blk, a CD-ROM
# with a medium and an empty one, its QMP on $SOCK; QEMU_PID is its pid.
# The disk is shared for writes (share-rw) so that HMP's qemu-io can
# write to it as the guest would.
start_qemu () {
  rm -f "$SOCK" qemu.pid
  qemu-system-x86_64 -machine q35 -accel tcg -nodefaults -display none -S \
    -blockdev driver=qcow2,node-name=disk0,file.driver=file,file.filename="$WORK/disk.qcow2" \
    -device virtio-blk-pci,drive=disk0,id=vd0,share-rw=on \
    -blockdev driver=raw,node-name=cd0,read-only=on,file.driver=file,file.filename="$WORK/cd.iso",file.read-only=on \
    -device ide-cd,drive=cd0,bus=ide.0,id=cd0dev \
    -device ide-cd,bus=ide.1,id=emptycd \
    -qmp unix:"$SOCK",server=on,wait=off \
    -daemonize -pidfile "$WORK/qemu.pid" >qemu.log 2>&1 ||
    die "qemu-system-x86_64 did not start: $(cat qemu.log)"
  QEMU_PID=$(cat qemu.pid)
  at_exit "kill -KILL $QEMU_PID"
  [ -S "$SOCK" ] || die "no QMP socket at $SOCK"
}

# json_get EXPR: evaluate the Python expression EXPR on the JSON of $OUT
# (as j).
json_get () {
  python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$OUT" "$1"
}

qemu-img create -q -f qcow2 disk.qcow2 96M || die "qemu-img create"
truncate -s 2M cd.iso
start_qemu

# --- the disks, judged by qemu-img info --------------------------------------------------
fy qmp --disks "$SOCK"
expect_exit 0 "ferry qmp --disks"
qemu-img info -U --output=json disk.qcow2 >info.json || die "qemu-img info"
want_size=$(python3 -c 'import json; print(json.load(open("info.json"))["virtual-size"])')
want_format=$(python3 -c 'import json; print(json.load(open("info.json"))["format"])')
got=$(json_get 'len(j)')
check_true "two disks with a medium (the empty CD-ROM drive left out): $got" test "$got" = 2
got=$(json_get '[d["node"], d["virtual-size"], d["format"], d["file"], d["device"], d["removable"], d["read-only"]] if (d := j[0]) else 0')
check_true "the virtio disk: node disk0, size $want_size, format $want_format, its file ($got)" \
  test "$got" = "['disk0', $want_size, '$want_format', '$WORK/disk.qcow2', '', False, False]"
got=$(json_get 'j[0]["qdev"]')
check_true "the virtio disk's guest device is vd0 ($got)" test "$got" = /machine/peripheral/vd0/virtio-backend
got=$(json_get '[j[1]["node"], j[1]["removable"], j[1]["read-only"], j[1]["virtual-size"]]')
check_true "the CD-ROM is flagged removable and read-only ($got)" test "$got" = "['cd0', True, True, 2097152]"
check_true "no bitmap yet" test "$(json_get 'j[0]["bitmaps"]')" = "[]"

# --- a dirty bitmap added, then listed as recording --------------------------------------
fy qmp "$SOCK" block-dirty-bitmap-add '{"node": "disk0", "name": "ferry-round-1"}'
expect_exit 0 "block-dirty-bitmap-add"
fy qmp --disks "$SOCK"
got=$(json_get 'j[0]["bitmaps"]')
check_true "the bitmap is listed, recording ($got)" \
  test "$got" = "[{'name': 'ferry-round-1', 'recording': True}]"
fy qmp "$SOCK" block-dirty-bitmap-disable '{"node": "disk0", "name": "ferry-round-1"}'
fy qmp --disks "$SOCK"
got=$(json_get 'j[0]["bitmaps"][0]["recording"]')
check_true "a disabled bitmap is listed as not recording ($got)" test "$got" = False
fy qmp "$SOCK" query-status
got=$(json_get 'j["status"]')
check_true "query-status: prelaunch ($got)" test "$got" = prelaunch

# --- the steps of a warm migration's round, judged by nbdinfo -----------------------------
# A write, then a transaction that starts bitmap round-2 and freezes
# ferry-round-1 atomically, then another write: each bitmap holds exactly
# its own write.  QEMU exports a frozen bitmap only (a recording one is
# refused on a read-only export), and says when an export is gone with an
# event.
# hmp_write OFFSET LENGTH PATTERN: write to the disk as the guest would.
hmp_write () {
  fy qmp "$SOCK" human-monitor-command "{\"command-line\": \"qemu-io disk0 \\\"write -P $3 $1 $2\\\"\"}"
  [ "$RC" = 0 ] && [ "$(cat "$OUT")" = '""' ] || die "qemu-io through HMP: $(cat "$OUT" "$ERR")"
}
# dirty_map BITMAP: the dirty extents nbdinfo reads from the export.
dirty_map () {
  nbdinfo --map="qemu:dirty-bitmap:$1" "nbd+unix:///disk0?socket=$WORK/nbd.sock" |
    awk '$4 == "dirty" { printf "%s+%s ", $1, $2 }'
}
fy qmp "$SOCK" block-dirty-bitmap-enable '{"node": "disk0", "name": "ferry-round-1"}'
expect_exit 0 "block-dirty-bitmap-enable"
hmp_write 1M 64k 0x55
fy qmp "$SOCK" transaction '{"actions": [
  {"type": "block-dirty-bitmap-add", "data": {"node": "disk0", "name": "round-2"}},
  {"type": "block-dirty-bitmap-disable", "data": {"node": "disk0", "name": "ferry-round-1"}}]}'
expect_exit 0 "a transaction: start round-2, freeze ferry-round-1"
hmp_write 4M 128k 0x66
fy qmp "$SOCK" nbd-server-start "{\"addr\": {\"type\": \"unix\", \"data\": {\"path\": \"$WORK/nbd.sock\"}}}"
expect_exit 0 "nbd-server-start on a Unix socket"
fy qmp "$SOCK" block-export-add '{"type": "nbd", "id": "e1", "node-name": "disk0", "name": "disk0", "writable": false, "bitmaps": ["round-2"]}'
expect_exit 1 "a recording bitmap cannot be exported"
expect_stderr "(GenericError)" "a recording bitmap: QEMU's refusal and its class"
fy qmp "$SOCK" block-export-add '{"type": "nbd", "id": "e1", "node-name": "disk0", "name": "disk0", "writable": false, "bitmaps": ["ferry-round-1"]}'
expect_exit 0 "block-export-add with the frozen bitmap"
got=$(dirty_map ferry-round-1)
check_true "the frozen bitmap holds the first write only ($got)" test "$got" = "1048576+65536 "
fy qmp --event BLOCK_EXPORT_DELETED "$SOCK" block-export-del '{"id": "e1"}'
expect_exit 0 "block-export-del, then its BLOCK_EXPORT_DELETED event"
check_true "the event names the export" grep -q '"id":"e1"' "$OUT"
fy qmp "$SOCK" block-dirty-bitmap-disable '{"node": "disk0", "name": "round-2"}'
fy qmp "$SOCK" block-export-add '{"type": "nbd", "id": "e2", "node-name": "disk0", "name": "disk0", "writable": false, "bitmaps": ["round-2"]}'
expect_exit 0 "the next round's bitmap, frozen, exported"
got=$(dirty_map round-2)
check_true "the next bitmap holds the second write only ($got)" test "$got" = "4194304+131072 "
fy qmp "$SOCK" block-export-del '{"id": "e2"}'

# --- errors of QEMU ------------------------------------------------------------------------
fy qmp "$SOCK" no-such-command
expect_exit 1 "an unknown command fails"
expect_stderr "qmp:$SOCK: no-such-command: The command no-such-command has not been found (CommandNotFound)" \
  "an unknown command: QEMU's message and its class"
fy qmp "$SOCK" block-dirty-bitmap-add '{"node": "nosuchnode", "name": "b"}'
expect_exit 1 "a bitmap on a missing node fails"
expect_stderr_re "qmp:.*block-dirty-bitmap-add: .*nosuchnode.*\((GenericError|DeviceNotFound)\)" \
  "a missing node: the message names it, and the class"
fy qmp "$SOCK" query-status '[1]'
expect_exit 1 "arguments that are not an object"
expect_stderr "is not a JSON object" "arguments that are not an object are named"

# --- sockets that are not QEMU's ---------------------------------------------------------
# serve_unix SOCKET GREETING: a Unix socket server that writes GREETING
# (Python escapes) to its first client, then holds it for 30 s.
serve_unix () {
  "$PYTHON" - "$1" "$2" <<'PY' &
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(1)
c, _ = s.accept()
c.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
time.sleep(30)
PY
  SERVER_PID=$!
  at_exit "kill $SERVER_PID"
  local i
  for ((i = 0; i < 100; i++)); do [ -S "$1" ] && return 0; sleep 0.05; done
  die "the fake server on $1 did not start"
}
serve_unix "$WORK/ssh.sock" 'SSH-2.0-OpenSSH_9.2p1\r\n'
fy qmp --timeout 5 "$WORK/ssh.sock" query-status
expect_exit 1 "a socket that is not QMP is refused"
expect_stderr "qmp:$WORK/ssh.sock: not a QMP server (greeting: not JSON" "a non-QMP server is called so, with what it sent"
expect_stderr "SSH-2.0-OpenSSH_9.2p1" "the message quotes the greeting"
kill "$SERVER_PID" 2>/dev/null

serve_unix "$WORK/silent.sock" ''
start=$(date +%s.%N)
fy qmp --timeout 1 "$WORK/silent.sock" query-status
took=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
expect_exit 1 "a socket that never greets is refused"
expect_stderr "qmp:$WORK/silent.sock: no greeting within 1 s" "a silent server: the message says no greeting came"
check_true "a silent server: refused after the 1 s timeout ($took s)" \
  python3 -c "import sys; sys.exit(not 0.9 <= $took < 4)"
kill "$SERVER_PID" 2>/dev/null

fy qmp "$WORK/missing.sock" query-status
expect_exit 1 "a missing socket"
expect_stderr "qmp:$WORK/missing.sock: no such socket" "a missing socket is named"
fy qmp "$WORK/disk.qcow2" query-status
expect_exit 1 "a plain file as the socket"
expect_stderr "qmp:$WORK/disk.qcow2: not a socket" "a file that is no socket is named as one"

# --- the monitor held by another client (as libvirt holds its VMs') -----------------------
"$PYTHON" - "$SOCK" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
f.readline()
f.write(b'{"execute": "qmp_capabilities"}\n'); f.flush(); f.readline()
open(sys.argv[1] + ".held", "w").close()
time.sleep(4)
PY
holder=$!
at_exit "kill $holder"
for ((i = 0; i < 100; i++)); do [ -e "$SOCK.held" ] && break; sleep 0.05; done
[ -e "$SOCK.held" ] || die "the other QMP client did not connect"
fy qmp --timeout 1 "$SOCK" query-status
expect_exit 1 "a monitor another client holds: ferry gives up"
expect_stderr "no greeting within 1 s (not a QMP server, or another client holds the monitor)" \
  "a monitor another client holds: the message says so"
bg_ferry qmp --timeout 20 "$SOCK" query-status
bg_wait_for 10 bg_connected || die "ferry qmp did not connect: $(cat "$ERR")"
sleep 0.3
signal_ferry INT "Ctrl-C while waiting for the greeting" &&
  expect_interrupted "Ctrl-C while waiting for the greeting" INT 2
wait "$holder"
fy qmp "$SOCK" query-status
expect_exit 0 "once the other client left, the monitor answers again"

# --- QEMU killed in the middle of a session ----------------------------------------------
# ferry runs a command, then waits for an event that never comes; QEMU is
# killed meanwhile.  $OUT is emptied first: it holds the last run's
# output, "prelaunch" too.
: >"$OUT"
( FY_TIMEOUT=30 fy qmp --timeout 20 --event SHUTDOWN "$SOCK" query-status; echo "$RC" >"$WORK/.rc" ) &
fy_pid=$!
for ((i = 0; i < 200; i++)); do grep -q prelaunch "$OUT" 2>/dev/null && break; sleep 0.05; done
grep -q prelaunch "$OUT" || die "ferry qmp --event did not run its command: $(cat "$ERR")"
sleep 0.3
start=$(date +%s.%N)
kill -KILL "$QEMU_PID"
wait "$fy_pid"
took=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
RC=$(cat "$WORK/.rc")
LAST_CMD="ferry qmp --event SHUTDOWN $SOCK query-status"
crash_reason
expect_exit 1 "QEMU killed mid-session: exit 1"
expect_stderr "qmp:$SOCK: the VM closed the connection (did QEMU exit?)" "QEMU killed mid-session: the message says the VM closed the connection"
check_true "QEMU killed mid-session: ferry ended at once ($took s), not at its timeout" \
  python3 -c "import sys; sys.exit(not $took < 3)"

done_testing
