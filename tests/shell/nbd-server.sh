#!/usr/bin/env bash
# nbd-server: ferry serve, judged by NBD clients that did not come from
# us.  nbdinfo --map of a served qcow2 and VMDK agrees with ferry map of
# the file, itself judged by qemu-img map; nbdcopy from the server equals
# the source; qemu-img convert reads an nbd+unix:// URI served by ferry;
# writes into a served qcow2 (qemu-io, nbdcopy, qemu-img convert -n)
# leave an image qemu-img check finds clean and qemu-img compare finds
# right; --readonly refuses writes; --export serves one name only;
# SIGINT and SIGTERM stop it cleanly; a TCP port on 127.0.0.1 works; bad
# images and options are refused before any server starts.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nbd-lib.sh"
require qemu-img qemu-io nbdkit nbdinfo nbdcopy python3

cd "$WORK" || die "cd $WORK"
mb=$((1 << 20))
size=$((8 * mb + 1536))

# --- a served qcow2 image, read-only ---------------------------------------------
mkimg qcow2 src.qcow2 $size
fill_pattern qcow2 src.qcow2 65536 $size compress
qemu-img convert -f qcow2 -O raw src.qcow2 src.raw || die "qemu-img convert"
cp src.qcow2 src.orig
start_serve ro --readonly --socket "$WORK/ro.sock" src.qcow2 ||
  die "ferry serve --readonly: $(cat ro.log)"
check_true "ferry serve prints the URI" test "$URI" = "nbd+unix:///?socket=$WORK/ro.sock"

nbdinfo --map "$URI" >nbdinfo.map 2>&1 || die "nbdinfo --map: $(cat nbdinfo.map)"
# ferry map of the file is itself judged by qemu-img map, so the server's
# map is not only ferry agreeing with ferry.
map_agrees "the qcow2 file" src.qcow2 qcow2
fy map src.qcow2
expect_exit 0 "ferry map of the qcow2 file" &&
  same_output "nbdinfo --map of ferry serve agrees with ferry map of the file" "$OUT" nbdinfo.map
nbdinfo --map --json "$URI" >nbdinfo.json
fy map --json src.qcow2
same_output "the same with --json" "$OUT" nbdinfo.json

nbdcopy "$URI" copy.raw || die "nbdcopy from ferry serve"
check_true "nbdcopy from ferry serve equals the source" cmp -s copy.raw src.raw
qemu-img convert -f raw -O qcow2 "$URI" qemu.qcow2 >qemu.log 2>&1 ||
  die "qemu-img convert from ferry serve: $(cat qemu.log)"
same_content "qemu-img convert from an nbd+unix:// URI served by ferry" qemu.qcow2 qcow2 src.qcow2 qcow2

nbdinfo --json "$URI" >info.json
check_true "read-only: nbdinfo sees a read-only export" \
  grep -q '"is_read_only": true' info.json
check_true "multi-conn advertised (one image handle for all connections)" \
  grep -q '"can_multi_conn": true' info.json
check_true "the export is described" grep -q '"description": "qcow2 image' info.json
nbdcopy src.raw "$URI" 2>nbdcopy.err && not_ok "nbdcopy into a --readonly server succeeded"
check_true "writes refused by --readonly" test -s nbdcopy.err
stop_serve "read-only server"
check_true "--readonly left the image as it was" cmp -s src.qcow2 src.orig

# --- VMDK ---------------------------------------------------------------------------------
qemu-img convert -f qcow2 -O vmdk src.qcow2 src.vmdk || die "qemu-img convert -O vmdk"
start_serve vmdk --readonly --socket "$WORK/vmdk.sock" src.vmdk ||
  die "ferry serve of a vmdk: $(cat vmdk.log)"
nbdinfo --map "$URI" >vmdk.map
map_agrees "the VMDK file" src.vmdk vmdk
fy map src.vmdk
same_output "nbdinfo --map of a served VMDK agrees with ferry map of the file" "$OUT" vmdk.map
stop_serve "vmdk server"

# --- writes into a served qcow2 image --------------------------------------------
mkimg qcow2 dst.qcow2 $size
start_serve rw --socket "$WORK/rw.sock" dst.qcow2 || die "ferry serve: $(cat rw.log)"
nbdinfo --json "$URI" >rw.json
check_true "read-write: trim and zero offered for qcow2" \
  python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["exports"][0]; sys.exit(not (e["can_trim"] and e["can_zero"] and not e["is_read_only"]))' rw.json
nbdcopy src.raw "$URI" || not_ok "nbdcopy into ferry serve"
qemu-io -f raw -c "write -P 0x42 1m 4k" -c "write -z 2m 64k" -c "discard 3m 64k" \
  -c "write -P 0x43 $((5 * mb + 512)) 1024" -c "flush" "$URI" >qio.log 2>&1 ||
  not_ok "qemu-io writes into ferry serve" "$(cat qio.log)"
# The same writes on the raw copy, for the judge.
qio raw src.raw "write -P 0x42 1m 4k" "write -z 2m 64k" "write -z 3m 64k" \
  "write -P 0x43 $((5 * mb + 512)) 1024"
# Sixteen writes in flight at once into one fresh 64 KiB cluster, and
# into two that straddle: the plugin's range lock keeps them apart.
aio=()
for i in $(seq 0 15); do
  aio+=(-c "aio_write -P $((0x60 + i)) $((7 * mb + i * 4096)) 4096")
  aio+=(-c "aio_write -P $((0x70 + i)) $((7 * mb + 65536 - 2048 + i * 8192)) 4096")
done
qemu-io -f raw "${aio[@]}" -c "aio_flush" "$URI" >aio.log 2>&1 ||
  not_ok "concurrent qemu-io writes into ferry serve" "$(cat aio.log)"
raw=()
for i in $(seq 0 15); do
  raw+=("write -P $((0x60 + i)) $((7 * mb + i * 4096)) 4096")
  raw+=("write -P $((0x70 + i)) $((7 * mb + 65536 - 2048 + i * 8192)) 4096")
done
qio raw src.raw "${raw[@]}"
same_content "the served image reads back what was written" "$URI" raw src.raw raw
stop_serve "read-write server" INT
qemu_clean "after writes through ferry serve: qemu-img check" dst.qcow2
same_content "after writes through ferry serve: qemu-img compare" dst.qcow2 qcow2 src.raw raw

# A raw file, served read-write: trim punches holes.
cp src.raw served.raw
start_serve rawsrv --socket "$WORK/rawsrv.sock" served.raw || die "ferry serve of raw: $(cat rawsrv.log)"
qemu-io -f raw -c "write -P 0x61 0 64k" -c "write -P 0x62 1m 1m" -c "discard 1m 1m" \
  -c "flush" "$URI" >rawqio.log 2>&1 ||
  not_ok "qemu-io writes into a served raw file" "$(cat rawqio.log)"
stop_serve "raw server"
qio raw src.raw "write -P 0x61 0 64k" "write -z 1m 1m"
check_true "a served raw file: written and trimmed as asked" cmp -s served.raw src.raw
next_data=$(python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); print(os.lseek(fd, 1 << 20, os.SEEK_DATA))' served.raw)
check_true "a served raw file: the trimmed range is a hole (data again at $next_data)" \
  test "$next_data" -ge $((2 * mb))

# qemu-img convert -n into a served image, over TCP on 127.0.0.1.
mkimg qcow2 tcp.qcow2 $size
port=$(free_port)
start_serve tcp --port "$port" --bind 127.0.0.1 tcp.qcow2 ||
  die "ferry serve --port $port: $(cat tcp.log)"
check_true "TCP: the URI names 127.0.0.1:$port" test "$URI" = "nbd://127.0.0.1:$port/"
qemu-img convert -n -f qcow2 -O raw src.qcow2 "$URI" >qemu-n.log 2>&1 ||
  not_ok "qemu-img convert -n into ferry serve" "$(cat qemu-n.log)"
stop_serve "TCP server"
same_content "qemu-img convert -n into ferry serve: qemu-img compare" tcp.qcow2 qcow2 src.qcow2 qcow2
qemu_clean "qemu-img convert -n into ferry serve: qemu-img check" tcp.qcow2

# --- one export name ------------------------------------------------------------------
start_serve named --readonly --export "disk 1" --socket "$WORK/named.sock" src.qcow2 ||
  die "ferry serve --export: $(cat named.log)"
check_true "--export: the URI names the export" \
  test "$URI" = "nbd+unix:///disk%201?socket=$WORK/named.sock"
nbdinfo --size "$URI" >named.size 2>&1
check_true "--export: the named export answers" grep -q -x "$size" named.size
nbdinfo --size "nbd+unix:///other?socket=$WORK/named.sock" >other.out 2>&1 &&
  not_ok "--export: another name was served"
check_true "--export: another name is refused" test -s other.out
nbdinfo --list --json "$URI" >list.json 2>&1
check_true "--export: the name is listed" grep -q '"export-name": "disk 1"' list.json
stop_serve "named server"

# --- refusals before any server starts -----------------------------------------------
printf 'QFI\373\0\0\0\3garbage' >broken.qcow2
truncate -s 4096 broken.qcow2
FY_TIMEOUT=60 fy serve --socket "$WORK/broken.sock" broken.qcow2
expect_failure "serve a broken qcow2" broken.qcow2
check_true "no socket left for a broken image" test ! -e "$WORK/broken.sock"
FY_TIMEOUT=60 fy serve --socket "$WORK/x.sock" nosuch.qcow2
expect_failure "serve a file that does not exist" nosuch.qcow2
FY_TIMEOUT=60 fy serve --socket "$WORK/x.sock" --port 10809 src.qcow2
expect_exit 1 "--socket with --port"
expect_stderr "give one of them" "--socket with --port: the message says so"
FY_TIMEOUT=60 fy serve --port 0 src.qcow2
expect_exit 1 "--port 0"
expect_stderr "expected a port" "--port 0: the message says so"
FY_TIMEOUT=60 fy serve --socket "$WORK/x.sock" --tls-psk nosuch.psk src.qcow2
expect_exit 1 "--tls-psk with a missing file"
expect_stderr "nosuch.psk" "--tls-psk: the message names the file"
# A port that is taken: nbdkit's message, ferry's exit status.
"$PYTHON" -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)' >taken.port &
at_exit "kill $! 2>/dev/null"
wait_until 10 test -s taken.port || die "no port holder"
FY_TIMEOUT=60 fy serve --port "$(cat taken.port)" --bind 127.0.0.1 src.qcow2
expect_exit 1 "serve on a port that is taken"
expect_stderr "nbdkit exited" "a taken port: ferry says nbdkit failed"

done_testing
