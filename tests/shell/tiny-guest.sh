#!/usr/bin/env bash
# tiny-guest: the tiny test guest of the warm migration tests (warm-lib.sh,
# tests/guests/tiny/init.c) does what those tests rely on, judged by QEMU
# (its block statistics, QMP stop and cont), qemu-img and a Python reader
# of the records written apart from the guest's own check:
#   - it boots to FERRY-READY in seconds under TCG;
#   - in write mode it writes at the pace asked (ferry.rate), and unpaced
#     far faster;
#   - stopped by QMP, a copy of its disk (qemu-img convert) holds every
#     record the console announced, and at most one more: the rule the
#     warm tests hold a target to is "FERRY-LAST >= the last announced"
#     (an announced record was fdatasync'd first, so it must survive);
#     the upper bound L+1 is checked here too, because the guest writes
#     record n+1 only after announcing n, so a check finding more would
#     be counting records that were never written;
#   - the guest's check mode finds what the Python reader finds, and a
#     record spoiled by hand ends it there (the check can fail);
#   - after cont it goes on, appending records and rewriting the rewrite
#     region: a second copy keeps the first's records and differs from it
#     in that region;
#   - killed (SIGKILL to QEMU, no stop) its disk still holds every
#     announced record;
#   - the power button (QMP system_powerdown) shuts it down cleanly,
#     its disk holding what it announced;
#   - a full records region stops the records, not the rewrites; a disk
#     too small for its regions is refused with a clear message.
# Prints the boot time and the write rates measured, as "# " lines.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/warm-lib.sh"
require qemu-img python3
tiny_build
cd "$WORK" || die "cd $WORK"

# rate_kib NAME SECONDS: KiB per second NAME writes over SECONDS, as
# QEMU's block statistics count them.
rate_kib () {
  local w0 w1 t0 t1
  w0=$(tiny_written "$1") || return 1
  t0=$(date +%s.%N)
  sleep "$2"
  w1=$(tiny_written "$1") || return 1
  t1=$(date +%s.%N)
  awk -v a="$w0" -v b="$w1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%d", (b - a) / 1024 / (e - s) }'
}
# between WHAT VALUE LOW HIGH: LOW <= VALUE <= HIGH.
between () {
  local what=$1 v=$2 lo=$3 hi=$4
  if [ -n "$v" ] && [ "$v" -ge "$lo" ] && [ "$v" -le "$hi" ]; then
    ok "$what: $v, in [$lo, $hi]"
  else
    not_ok "$what: '$v', not in [$lo, $hi]"
  fi
}
# changed_blocks A B: how many 64 KiB blocks of the rewrite region
# [64 MiB, 128 MiB) differ between the raw images A and B (B "zero": a
# disk of zeroes).
changed_blocks () {
  "$PYTHON" -c '
import sys
a = open(sys.argv[1], "rb")
b = None if sys.argv[2] == "zero" else open(sys.argv[2], "rb")
a.seek(64 << 20)
b and b.seek(64 << 20)
print(sum(a.read(65536) != (b.read(65536) if b else bytes(65536)) for _ in range(1024)))' "$1" "$2"
}

# stop_copy_check COPY WHAT: QMP stop of src, then COPY, a raw copy of its
# disk by qemu-img convert, which the guest's check must find holding the
# records announced (ANNOUNCED, the last) and at most one more (LAST: what
# it found).
stop_copy_check () {
  local copy=$1 what=$2
  tiny_qmp src stop >/dev/null || die "QMP stop of src"
  ANNOUNCED=$(tiny_last_record src)
  qemu-img convert -U -f qcow2 -O raw src.qcow2 "$copy" 2>"$WORK/.conv" ||
    die "qemu-img convert of the stopped source: $(cat "$WORK/.conv")"
  tiny_holds "$what holds the records announced, at most one more" "$copy" raw src
  LAST=$TINY_LAST
}

# --- paced (the default, 1 MiB/s): boot, rate, stop, copy, check ---------
mkimg qcow2 src.qcow2 128M
tiny_start src src.qcow2 qcow2 write
boot_s=$TINY_BOOT_S
echo "# boot to FERRY-READY: $boot_s s"
check_true "the tiny guest boots to FERRY-READY within 60 s ($boot_s s)" \
  awk -v s="$boot_s" 'BEGIN { exit !(s < 60) }'
check_true "it announces records" tiny_wait_records src 20 30
paced=$(rate_kib src 4)
echo "# ferry.rate default (1024 KiB/s): $paced KiB/s measured"
between "the write rate at the default pace (KiB/s, QEMU's blockstats)" "$paced" 700 1300
stop_copy_check a.raw "the copy of the stopped guest"
announced=$ANNOUNCED last_a=$LAST
scan_a=$(tiny_scan a.raw)
check_true "the Python reader agrees with the guest's check (guest $last_a, Python $scan_a)" \
  test "$scan_a" = "$last_a"
rewritten=$(changed_blocks a.raw zero)
check_true "the rewrite region holds rewritten blocks ($rewritten of 1024 not zero)" \
  test "$rewritten" -gt 0

# A record spoiled by hand ends what the check finds, in both readers.
cp --sparse=always a.raw spoilt.raw
qio raw spoilt.raw "write -P 0x55 $((5 * 4096 + 100)) 1"
check_true "a spoiled record 5: the guest's check finds 4" \
  test "$(tiny_check spoilt.raw raw)" = 4
check_true "a spoiled record 5: the Python reader finds 4" \
  test "$(tiny_scan spoilt.raw)" = 4

# --- cont: the guest goes on where it was -------------------------------
tiny_qmp src cont >/dev/null || die "QMP cont of src"
check_true "after cont it announces 30 records more" tiny_wait_records src $((announced + 30)) 30
stop_copy_check b.raw "the second copy"
announced_b=$ANNOUNCED
check_true "the second copy keeps the first copy's records 0..$last_a unchanged" \
  cmp -s -n $(((last_a + 1) * 4096)) a.raw b.raw
changed=$(changed_blocks a.raw b.raw)
check_true "the rewrite region changed between the copies ($changed blocks of 64 KiB)" \
  test "$changed" -gt 0

# --- killed while it writes (SIGKILL, no stop): the disk itself ----------
tiny_qmp src cont >/dev/null || die "QMP cont of src"
tiny_wait_records src $((announced_b + 10)) 30 || true
tiny_stop src KILL
tiny_holds "killed (SIGKILL) while it wrote, its qcow2 disk holds the announced records, at most one more" \
  src.qcow2 qcow2 src
# Leaked clusters (exit status 3) are what a killed qcow2 writer may leave.
rc=0
qemu-img check -q src.qcow2 >"$WORK/.check" 2>&1 || rc=$?
check_true "the killed guest's qcow2 disk has no errors (qemu-img check exit $rc)" \
  test "$rc" = 0 -o "$rc" = 3

# --- a full records region: the records stop there, the rewrites go on ----
mkimg qcow2 full.qcow2 128M
tiny_start full full.qcow2 qcow2 write ferry.records=1 ferry.rate=0
waited=0
until grep -q -a -x 'FERRY-FULL 255' full.log || [ $waited -ge 300 ]; do
  sleep 0.2
  waited=$((waited + 1))
done
check_true "a 1 MiB records region is full after record 255 (FERRY-FULL 255)" \
  grep -q -a -x 'FERRY-FULL 255' full.log
w0=$(tiny_written full)
sleep 1
check_true "the rewrites go on once the records region is full" \
  test "$(tiny_written full)" -gt "$w0"
tiny_stop full
check_true "the check of a full records region finds record 255" \
  test "$(tiny_check full.qcow2 qcow2 ferry.records=1)" = 255

# --- pacing: 100 MB a minute, and unpaced ---------------------------------
# 100 MB/minute is 1628 KiB/s: ferry.rate=1628.
mkimg qcow2 fast.qcow2 128M
tiny_start bench fast.qcow2 qcow2 write ferry.rate=1628
bench=$(rate_kib bench 5)
echo "# ferry.rate=1628 (100 MB/minute): $bench KiB/s measured, $((bench * 1024 * 60 / 1000000)) MB/minute"
between "the write rate at ferry.rate=1628 (KiB/s)" "$bench" 1100 2100
check_true "the power button (QMP system_powerdown) shuts the writer down" \
  tiny_powerdown bench
check_true "it says so, naming its last announced record (FERRY-SHUTDOWN $(tiny_last_record bench))" \
  grep -q -a -x "FERRY-SHUTDOWN $(tiny_last_record bench)" bench.log
tiny_holds "the disk of a guest shut down holds its records" fast.qcow2 qcow2 bench
tiny_start fast fast.qcow2 qcow2 write ferry.rate=0
unpaced=$(rate_kib fast 5)
echo "# ferry.rate=0 (unpaced): $unpaced KiB/s measured"
check_true "unpaced, it writes faster than 2 MiB/s ($unpaced KiB/s)" test "$unpaced" -gt 2048
tiny_stop fast

# --- a disk too small for the regions: a clear error, no writes ----------
mkimg qcow2 small.qcow2 64M
if (tiny_start small small.qcow2 qcow2 write) >"$WORK/.small" 2>&1; then
  not_ok "a 64 MiB disk is refused (the regions need 128 MiB)" "$(cat "$WORK/.small")"
else
  check_true "a 64 MiB disk is refused: FERRY-ERROR names /dev/vda and its size" \
    grep -q -a -x 'FERRY-ERROR /dev/vda has 67108864 bytes, the regions need 134217728' "$WORK/small.log"
fi
tiny_stop small

done_testing
