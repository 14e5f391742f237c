# warm-lib.sh: the tiny test guest for the warm migration tests.  Source it
# after lib.sh.
#
# The tiny guest (tests/guests/tiny/init.c, built by tests/guests/make-tiny.sh
# and cached like the Debian test guest) is the host's Debian kernel and an
# initramfs whose /init is one static program: it boots under TCG in a few
# seconds and, on its one virtio disk, writes numbered records (each made
# durable before it is announced on the serial console as "FERRY-REC n")
# and random 64 KiB rewrites, at a pace the kernel command line sets
# (ferry.rate=KiB per second of all writes, 1024 by default; ferry.region=MiB
# the length of the records region [0, R) and of the rewrite region
# [R, 2R), 64 by default: the disk must hold 2R).  In check mode it prints
# "FERRY-LAST n", the last record such that 0..n are all whole, and powers
# off.  A record announced is one the disk promised to keep; the disk holds
# at most one record more than the log announced (written and flushed, or
# in flight, when the VM stopped): init.c's notes say why.
#
# Each VM NAME has in $WORK: NAME.log (its serial console), NAME.qmp (its
# QMP socket, for ferry), NAME.ctl.qmp (a second one, the test's: QEMU
# serves one client per monitor, and ferry may hold the first for the whole
# migration), NAME.pid; its disk nodes are NAME-file and NAME-disk, its
# virtio-blk device NAME-vda.  Every VM a test starts is killed when the
# test ends.  Guests boot under TCG only (KVM hangs nested guests here).

# Pace and boot limits; a test may change them before the calls.
TINY_BOOT_TIMEOUT=${TINY_BOOT_TIMEOUT:-120}
TINY_CHECK_TIMEOUT=${TINY_CHECK_TIMEOUT:-180}
TINY_NAMES=()
TINY_CHECKS=0

# tiny_build: TINY_DIR, the folder of the tiny guest's vmlinuz and
# initrd.img (built once, cached); skips without the tools to build it.
tiny_build () {
  require qemu-system-x86_64 gcc cpio modinfo
  TINY_DIR=$("$SRCDIR/tests/guests/make-tiny.sh" 2>"$WORK/.make-tiny") ||
    die "the tiny guest could not be built: $(cat "$WORK/.make-tiny")"
  if [ ! -f "$TINY_DIR/initrd.img" ] || [ ! -f "$TINY_DIR/vmlinuz" ]; then
    die "make-tiny.sh printed $TINY_DIR, which has no vmlinuz and initrd.img"
  fi
}

# tiny_qemu NAME DISK FMT MODE [ARGS...]: the QEMU command line (in the
# array TINY_QEMU) that boots the tiny guest in MODE on DISK of format FMT
# with the kernel arguments ARGS, its console in $WORK/NAME.log.
tiny_qemu () {
  local name=$1 disk=$2 fmt=$3 mode=$4 ro=""
  shift 4
  [ "$mode" = check ] && ro=,read-only=on
  TINY_QEMU=(qemu-system-x86_64 -name "$name" -accel tcg -m 256 -nodefaults
    -display none -no-user-config -no-reboot
    -kernel "$TINY_DIR/vmlinuz" -initrd "$TINY_DIR/initrd.img"
    -append "console=ttyS0 quiet panic=-1 ferry.mode=$mode $*"
    -blockdev "driver=file,filename=$disk,node-name=$name-file$ro"
    -blockdev "driver=$fmt,file=$name-file,node-name=$name-disk$ro"
    -device "virtio-blk-pci,drive=$name-disk,id=$name-vda"
    -serial "file:$WORK/$name.log")
}

# tiny_start NAME DISK FMT MODE [ARGS...]: start the tiny guest NAME in MODE
# (write or idle) on DISK, a daemon with its QMP sockets $WORK/NAME.qmp and
# $WORK/NAME.ctl.qmp, and wait for FERRY-READY (TINY_BOOT_TIMEOUT seconds);
# TINY_BOOT_S is how long that took, from QEMU's start.  A guest that does
# not come up stops the test.
tiny_start () {
  local name=$1 t0 pid
  tiny_qemu "$@"
  rm -f "$WORK/$name.log" "$WORK/$name.pid"
  t0=$(date +%s.%N)
  "${TINY_QEMU[@]}" -qmp "unix:$WORK/$name.qmp,server=on,wait=off" \
    -qmp "unix:$WORK/$name.ctl.qmp,server=on,wait=off" \
    -daemonize -pidfile "$WORK/$name.pid" >"$WORK/$name.qemu-err" 2>&1 ||
    die "the tiny guest $name did not start: $(cat "$WORK/$name.qemu-err")"
  pid=$(tiny_pid "$name") || die "the tiny guest $name is not running: $(cat "$WORK/$name.qemu-err")"
  [ ${#TINY_NAMES[@]} = 0 ] && at_exit tiny_stop_all
  TINY_NAMES+=("$name")
  until grep -q -a -x 'FERRY-READY' "$WORK/$name.log" 2>/dev/null; do
    if grep -q -a '^FERRY-ERROR' "$WORK/$name.log" 2>/dev/null ||
       ! kill -0 "$pid" 2>/dev/null; then
      die "the tiny guest $name stopped before FERRY-READY: $(tail -n 20 "$WORK/$name.log" 2>/dev/null)"
    fi
    if [ "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print (b - a > '"$TINY_BOOT_TIMEOUT"') }')" = 1 ]; then
      die "the tiny guest $name was not ready in $TINY_BOOT_TIMEOUT s: $(tail -n 20 "$WORK/$name.log" 2>/dev/null)"
    fi
    sleep 0.2
  done
  TINY_BOOT_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
}

# tiny_last_record NAME: the highest n of the whole "FERRY-REC n" lines of
# NAME's console (a line still being written does not count); -1 for none.
tiny_last_record () {
  local log snap n
  log=$WORK/$1.log
  snap=$(cat "$log" 2>/dev/null; echo .)
  snap=${snap%.}
  [[ $snap == *$'\n' ]] || snap=${snap%$'\n'*}
  n=$(printf '%s\n' "$snap" | grep -a -E -x 'FERRY-REC [0-9]+' | tail -n 1)
  echo "${n:-FERRY-REC -1}" | cut -d ' ' -f 2
}

# tiny_wait_records NAME N [TIMEOUT]: wait until NAME announced record N
# (60 s by default); fails (status 1) when it does not in time or the guest
# reported an error.
tiny_wait_records () {
  local name=$1 want=$2 timeout=${3:-60} waited=0
  while [ "$(tiny_last_record "$name")" -lt "$want" ]; do
    if grep -q -a '^FERRY-ERROR' "$WORK/$name.log" || [ "$waited" -ge $((timeout * 5)) ]; then
      echo "tiny_wait_records: $name did not announce record $want in $timeout s (last $(tiny_last_record "$name"))" >&2
      tail -n 5 "$WORK/$name.log" >&2
      return 1
    fi
    sleep 0.2
    waited=$((waited + 1))
  done
}

# tiny_qmp NAME COMMAND [ARGUMENTS-JSON]: run a QMP command on NAME through
# its test socket NAME.ctl.qmp; prints its return as JSON
# (tests/shell/qmp-call.py).
tiny_qmp () {
  "$PYTHON" "$TESTS_DIR/qmp-call.py" "$WORK/$1.ctl.qmp" "${@:2}"
}

# tiny_written NAME: the bytes the guest NAME wrote to its disk so far, as
# QEMU counts them (query-blockstats of its device).
tiny_written () {
  tiny_qmp "$1" query-blockstats | "$PYTHON" -c '
import json, sys
for d in json.load(sys.stdin):
    if "/" + sys.argv[1] + "/" in d.get("qdev", "") + "/":
        print(d["stats"]["wr_bytes"])
        break
else:
    sys.exit("tiny_written: no blockstats of " + sys.argv[1])' "$1-vda"
}

# tiny_check DISK FMT [ARGS...]: boot DISK (read-only) in check mode in a
# fresh QEMU, at most TINY_CHECK_TIMEOUT seconds, and print n of its
# FERRY-LAST n; fails (status 1, its console on stderr) without that line.
# ARGS are kernel arguments, as the writer had them (ferry.region=...).
tiny_check () {
  local disk=$1 fmt=$2 name last
  shift 2
  TINY_CHECKS=$((TINY_CHECKS + 1))
  name=check$TINY_CHECKS
  tiny_qemu "$name" "$disk" "$fmt" check "$@"
  rm -f "$WORK/$name.log"
  timeout "$TINY_CHECK_TIMEOUT" "${TINY_QEMU[@]}" >"$WORK/$name.qemu-err" 2>&1 </dev/null
  last=$(grep -a -E -o '^FERRY-LAST -?[0-9]+' "$WORK/$name.log" 2>/dev/null | tail -n 1)
  if [ -z "$last" ]; then
    echo "tiny_check: $disk: the check boot printed no FERRY-LAST:" >&2
    tail -n 20 "$WORK/$name.log" "$WORK/$name.qemu-err" >&2 2>/dev/null
    return 1
  fi
  echo "${last#FERRY-LAST }"
}

# tiny_pid NAME: the pid of the guest NAME while it runs (the process is
# checked to be that QEMU, not another that took its pid); fails when gone.
tiny_pid () {
  local pid
  pid=$(cat "$WORK/$1.pid" 2>/dev/null) || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -F -- "-name $1 " || return 1
  echo "$pid"
}

# tiny_scan RAW [RECORDS-MIB]: what tiny_check finds, read by Python from
# RAW, a raw image (its records region RECORDS-MIB long, 64 by default):
# prints n of the last record such that records 0..n are all whole, -1 for
# none.  The judge of the guest's check mode, written apart from it: every
# byte of a record is compared with what init.c's record_make writes, and
# the checksum (FNV-1a, slow in Python) of the first and the last.
tiny_scan () {
  "$PYTHON" -c '
import struct, sys
MAGIC = int.from_bytes(b"FERRYREC", "little")
BASE = bytes(i & 255 for i in range(8192))
def fnv(rec):
    h = 0xcbf29ce484222325
    for c in rec[:24] + bytes(8) + rec[32:]:
        h = ((h ^ c) * 0x100000001b3) & 0xffffffffffffffff
    return h
n, boot, last = -1, None, None
with open(sys.argv[1], "rb") as f:
    for seq in range(int(sys.argv[2]) * 256):
        rec = f.read(4096)
        if len(rec) < 4096:
            break
        magic, num, bid, csum = struct.unpack_from("<4Q", rec)
        boot = bid if seq == 0 else boot
        k = seq * 131 % 256
        if (magic, num, bid) != (MAGIC, seq, boot) or rec[32:] != BASE[k + 32:k + 4096]:
            break
        if seq == 0 and csum != fnv(rec):
            break
        n, last = seq, rec
if last is not None and struct.unpack_from("<4Q", last)[3] != fnv(last):
    n -= 1
print(n)' "$1" "${2:-64}"
}

# tiny_holds WHAT DISK FMT NAME [ARGS...]: a check, ok when DISK (a copy
# or a migration's target of NAME's disk, NAME stopped or killed) holds
# every record NAME announced and at most one more (see the top), as the
# guest's check mode finds them (ARGS: the writer's ferry.records= or
# ferry.region=, if any).  TINY_LAST is what the check found.
tiny_holds () {
  local what=$1 disk=$2 fmt=$3 name=$4 announced
  shift 4
  announced=$(tiny_last_record "$name")
  if ! TINY_LAST=$(tiny_check "$disk" "$fmt" "$@" 2>"$WORK/.tiny-check"); then
    not_ok "$what: the check boot of $disk printed no FERRY-LAST" "$(cat "$WORK/.tiny-check")"
  elif [ "$TINY_LAST" -lt "$announced" ]; then
    not_ok "$what: $disk holds records up to $TINY_LAST, $name had announced $announced"
  elif [ "$TINY_LAST" -gt $((announced + 1)) ]; then
    not_ok "$what: $disk holds records up to $TINY_LAST, more than one past the $announced $name announced"
  else
    ok "$what: records 0..$TINY_LAST ($name announced $announced)"
  fi
}

# tiny_stop NAME [SIGNAL]: kill the guest NAME (SIGTERM, or SIGNAL; SIGKILL
# after 10 s) and wait until it is gone.
tiny_stop () {
  local name=$1 pid
  pid=$(tiny_pid "$name") || return 0
  kill -s "${2:-TERM}" "$pid" 2>/dev/null
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$WORK/$name.pid"
}

# tiny_powerdown NAME [TIMEOUT]: press NAME's power button (QMP
# system_powerdown) and wait until the guest powered off and QEMU is gone
# (30 s by default); fails (status 1) when it is still there.  The guest
# says "FERRY-SHUTDOWN n" first (n: its last announced record).
tiny_powerdown () {
  local name=$1 timeout=${2:-30} waited=0
  tiny_qmp "$name" system_powerdown >/dev/null || return 1
  while tiny_pid "$name" >/dev/null; do
    if [ "$waited" -ge $((timeout * 5)) ]; then
      echo "tiny_powerdown: $name still runs $timeout s after system_powerdown" >&2
      return 1
    fi
    sleep 0.2
    waited=$((waited + 1))
  done
}

# tiny_stop_all: stop every guest the test started (at its end).
tiny_stop_all () {
  local name
  for name in "${TINY_NAMES[@]+"${TINY_NAMES[@]}"}"; do
    tiny_stop "$name"
  done
}
