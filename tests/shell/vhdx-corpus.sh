#!/usr/bin/env bash
# vhdx-corpus: every VHDX of ../shared/corpus/hyperv (Hyper-V, Windows 10,
# Disk2VHD, qemu-img), read by ferry and compared with qemu-img's reading,
# converted to qcow2 and VHDX and judged; ferry info agrees with qemu-img
# info.  Where qemu-img refuses a file, the test states what ferry does:
#
# - iotest-dirtylog-10G-4M.vhdx has a log that must be replayed; qemu-img
#   refuses to open it read-only.  ferry replays the log in memory and
#   reads, byte for byte, what qemu-img reads from a copy repaired with
#   `qemu-img check -r all`, and the file is left as it was (checksums
#   before and after).  Without the log (LogGuid cleared) the disk reads
#   differently, so the replay is what makes the difference.  Opened for
#   writing (ferry convert -n), ferry replays the log to disk: the file
#   then reads as qemu-img's repaired copy, qemu-img opens it read-only,
#   and qemu-img check finds it sound.
# - Logs planted by vhdx-tool.py (a BAT update, and one that wraps round
#   the end of the ring after a stale entry) read the same way; a log
#   whose FlushedFileOffset lies past the end of the file is refused as
#   a truncated file, which the specification requires.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3 bzip2 gzip md5sum

[ -d "$CORPUS/hyperv" ] || { echo "1..0 # SKIP no corpus at $CORPUS"; exit 77; }
cd "$WORK" || die "cd $WORK"
TOOL=("$PYTHON" "$TESTS_DIR/vhdx-tool.py")

# ferry_json KEY: a member of the last ferry info --json ("a.b" nests).
ferry_json () {
  python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)' "$OUT" "$1"
}

unpack () {
  case $1 in
    *.bz2) bzip2 -dc "$CORPUS/hyperv/$1" >"$2" ;;
    *.gz) gzip -dc "$CORPUS/hyperv/$1" >"$2" ;;
  esac || die "unpacking $1"
}

# --- the files qemu-img reads ------------------------------------------------
for f in iotest-dynamic-1G.vhdx.bz2 test-disk2vhd.vhdx.bz2 win10-fixed.vhdx.gz \
         win10-dynamic.vhdx.gz; do
  name=${f%.*}
  unpack "$f" "$name"
  sum=$(md5sum <"$name")
  # qemu-img reads the VHDX once; ferry's outputs are compared with that.
  qemu-img convert -f vhdx -O raw "$name" "$name.ref" || die "qemu-img convert $name"
  for fmt in raw qcow2 vhdx; do
    rm -f "out.$fmt"
    fy convert -O $fmt "$name" "out.$fmt"
    if expect_exit 0 "corpus $name -> $fmt"; then
      same_content "corpus $name -> $fmt: qemu-img compare with qemu-img's reading" \
        "$name.ref" raw "out.$fmt" $fmt
      check_true "corpus $name -> $fmt: virtual size" \
        test "$(qinfo "out.$fmt" $fmt virtual-size)" = "$(qinfo "$name" vhdx virtual-size)"
    fi
  done
  qemu_clean "corpus $name -> qcow2: qemu-img check" out.qcow2
  qemu_clean "corpus $name -> vhdx: qemu-img check" out.vhdx vhdx
  # The format probed, not given.
  rm -f probed.raw
  fy convert -O raw "$name" probed.raw
  expect_exit 0 "corpus $name: probed as vhdx"
  fy info --json "$name"
  if expect_exit 0 "ferry info --json corpus $name"; then
    for k in format virtual-size cluster-size; do
      want=$(qinfo "$name" vhdx "$k")
      got=$(ferry_json "$k")
      check_true "ferry info corpus $name: $k $got = $want" test "$got" = "$want"
    done
  fi
  check_true "corpus $name: the file is unchanged" test "$(md5sum <"$name")" = "$sum"
  rm -f "$name" "$name.ref" out.raw out.qcow2 out.vhdx probed.raw
done

# test-disk2vhd: both headers hold the same sequence number (1); taken as
# one header, as the specification allows when they are identical.
unpack test-disk2vhd.vhdx.bz2 d2v.vhdx
seqs=$("${TOOL[@]}" dump d2v.vhdx | python3 -c 'import json,sys; print(json.load(sys.stdin)["sequence"])')
check_true "test-disk2vhd: its headers have sequence number 1 ($seqs)" test "$seqs" = 1
fy info --json d2v.vhdx
check_true "test-disk2vhd: ferry reads its creator" grep -q '"creator": *"d2v"' "$OUT"
rm -f d2v.vhdx

# --- the dirty log ---------------------------------------------------------------
unpack iotest-dirtylog-10G-4M.vhdx.bz2 dirty.vhdx
sum=$(md5sum <dirty.vhdx)
if qemu-img info dirty.vhdx >"$WORK/q.out" 2>&1; then
  not_ok "qemu-img refuses the dirty-log file read-only (it opened it: the premise is gone)" "$(cat "$WORK/q.out")"
else
  check_true "qemu-img refuses the dirty-log file read-only, asking for a log replay" \
    grep -q -i "log" "$WORK/q.out"
fi
cp dirty.vhdx repaired.vhdx
qemu-img check -q -r all repaired.vhdx >/dev/null 2>&1
qemu_clean "qemu-img check -r all replays the log of a copy" repaired.vhdx vhdx
# qemu-img's reading of the repaired copy, every byte of the 10 GiB, kept
# as a sparse raw file: raw files compare in a moment where a 10 GiB VHDX
# takes qemu-img half a minute.
qemu-img convert -f vhdx -O raw repaired.vhdx repaired.raw || die "qemu-img convert repaired"

rm -f dirty.raw
fy convert -O raw dirty.vhdx dirty.raw
expect_exit 0 "dirty log: ferry convert reads it (log replayed in memory)"
[ -f dirty.raw ] && same_content "dirty log: ferry reads what qemu-img reads after check -r all" \
  repaired.raw raw dirty.raw raw
check_true "dirty log: the source file is unchanged (md5 before and after)" \
  test "$(md5sum <dirty.vhdx)" = "$sum"
fy info --json dirty.vhdx
check_true "dirty log: ferry info says the log was replayed" \
  grep -q -E '"log-replayed": *true' "$OUT"
check_true "dirty log: ferry info leaves the file unchanged" test "$(md5sum <dirty.vhdx)" = "$sum"
rm -f dirty.qcow2
fy convert -O qcow2 dirty.vhdx dirty.qcow2
expect_exit 0 "dirty log -> qcow2"
[ -f dirty.qcow2 ] && same_content "dirty log -> qcow2: qemu-img compare with the raw output" \
  dirty.raw raw dirty.qcow2 qcow2

# The log matters: without it the disk reads differently.
cp dirty.vhdx nolog.vhdx
"${TOOL[@]}" clear-log nolog.vhdx || die "clear-log"
if qemu-img compare -q -f vhdx -F raw nolog.vhdx dirty.raw >/dev/null 2>&1; then
  not_ok "dirty log: with the log ignored, the disk would read the same (the test proves nothing)"
else
  ok "dirty log: with the log ignored, the disk reads differently (the replay matters)"
fi

# Opened for writing, the log is replayed to disk.
: >empty.raw
cp dirty.vhdx rw.vhdx
fy convert -n -f raw -O vhdx empty.raw rw.vhdx
expect_exit 0 "dirty log: ferry opens it read-write (convert -n)"
qemu_clean "dirty log replayed to disk: qemu-img check" rw.vhdx vhdx
if qemu-img info rw.vhdx >/dev/null 2>&1; then
  ok "dirty log replayed to disk: qemu-img opens it read-only now"
else
  not_ok "dirty log replayed to disk: qemu-img still refuses it read-only"
fi
qemu-img convert -f vhdx -O raw rw.vhdx rw.raw || die "qemu-img convert rw"
same_content "dirty log replayed to disk: qemu-img reads it as its own repaired copy" \
  repaired.raw raw rw.raw raw
fy info --json rw.vhdx
check_true "dirty log replayed to disk: no log left to replay" \
  grep -q -E '"log-replayed": *false' "$OUT"
rm -f dirty.vhdx dirty.raw dirty.qcow2 nolog.vhdx rw.vhdx rw.raw repaired.vhdx repaired.raw

# --- logs planted from the specification ----------------------------------------------
for mode in bat wrap; do
  mkimg vhdx p-$mode.vhdx 8M block_size=1M
  qio vhdx p-$mode.vhdx "write -P 0x44 0 1M" "write -P 0x45 3M 512"
  "${TOOL[@]}" plant-log p-$mode.vhdx $mode || die "plant-log $mode"
  cp p-$mode.vhdx q-$mode.vhdx
  qemu-img check -q -r all q-$mode.vhdx >/dev/null 2>&1
  sum=$(md5sum <p-$mode.vhdx)
  rm -f p-$mode.raw
  fy convert -O raw p-$mode.vhdx p-$mode.raw
  expect_exit 0 "planted log ($mode): ferry reads it"
  [ -f p-$mode.raw ] && same_content "planted log ($mode): as qemu-img reads after check -r all" \
    q-$mode.vhdx vhdx p-$mode.raw raw
  check_true "planted log ($mode): the file is unchanged" test "$(md5sum <p-$mode.vhdx)" = "$sum"
  cp p-$mode.vhdx n-$mode.vhdx
  "${TOOL[@]}" clear-log n-$mode.vhdx
  if qemu-img compare -q -f vhdx -F raw n-$mode.vhdx p-$mode.raw >/dev/null 2>&1; then
    not_ok "planted log ($mode): the log changes nothing (the test proves nothing)"
  else
    ok "planted log ($mode): the log changes the disk"
  fi
  fy convert -n -f raw -O vhdx empty.raw p-$mode.vhdx
  expect_exit 0 "planted log ($mode): replayed to disk"
  same_content "planted log ($mode) replayed to disk: qemu-img compare" \
    q-$mode.vhdx vhdx p-$mode.vhdx vhdx
  qemu_clean "planted log ($mode) replayed to disk: qemu-img check" p-$mode.vhdx vhdx
  rm -f ?-$mode.vhdx p-$mode.raw
done

mkimg vhdx t.vhdx 8M block_size=1M
qio vhdx t.vhdx "write -P 0x44 0 1M"
"${TOOL[@]}" plant-log t.vhdx truncated || die "plant-log truncated"
fy info t.vhdx
expect_failure "a log entry whose FlushedFileOffset is past the end: refused" t.vhdx
expect_stderr "truncated" "the log that outgrows the file: the message says the file was truncated"

done_testing
