#!/usr/bin/env bash
# fault-vhdx: a fault at every write, flush and rename of a conversion to
# VHDX, dynamic and fixed (fault-lib.sh says what each must leave), and
# what VHDX promises beyond that, its file being sound after a kill at any
# write (vhdx-write.c note 1):
#
# - a new image, killed: the temporary file it leaves either has no
#   header yet, so it is no VHDX at all (ferry and qemu-img say so), or
#   qemu-img check finds it sound and every 4 KiB of the disk reads as the
#   source or as zeroes (the jobs that resume start from such a file);
# - an existing image qemu-img made (ferry convert -n, killed or failing
#   at each write): qemu-img check finds it sound and every 4 KiB reads as
#   before or as the new contents;
# - a log replayed to disk by a read-write open (killed at each write):
#   the file still reads, through ferry and through qemu-img's own replay,
#   as the fully replayed image.
#
# FERRY_FAULT=write:N:kill kills ferry instead of its Nth write
# (lib/common/fault.h); write:N:eio makes the Nth and every later write
# fail with EIO.  Kills leave the page cache intact, so they test the
# order of writes as the program issues them; ordering against a power
# cut (the syncs) is argued in vhdx-write.c, not tested here.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/fault-lib.sh"

TOOL=("$PYTHON" "$TESTS_DIR/vhdx-tool.py")
size=$((10 * MiB))

# each_chunk_is WHAT GOT_RAW A_RAW B_RAW: every 4 KiB of GOT equals the
# same 4 KiB of A or of B; prints why not, and fails, when it does not.
each_chunk_is () {
  python3 - "$2" "$3" "$4" <<'PYEOF' 2>&1
import sys
g, a, b = (open(p, "rb").read() for p in sys.argv[1:4])
if len(g) != len(a):
    sys.exit("size %d, expected %d" % (len(g), len(a)))
for i in range(0, len(g), 4096):
    c = g[i:i + 4096]
    if c != a[i:i + 4096] and c != b[i:i + 4096]:
        sys.exit("4 KiB at offset %d is neither" % i)
PYEOF
}

# The source: qemu-img's qcow2 with the standard mix, and its contents.
make_source $size $MiB
qemu-img convert -O raw src.qcow2 src.raw || die "qemu-img convert src"
truncate -s $size zero.raw

# vhdx_temp_sound TMP: prints why the temporary file TMP a killed
# conversion left is neither headerless nor a sound VHDX reading as the
# source or zeroes (nothing when it is one of them).
vhdx_temp_sound () {
  local tmp=$1 out
  [ -z "$tmp" ] && return
  fy info -f vhdx "$tmp"
  if [ "$RC" != 0 ]; then
    if ! grep -q -E "no valid header|shorter than its 1 MiB header|no 'vhdxfile' signature" "$ERR" ||
       qemu-img info -f vhdx "$tmp" >/dev/null 2>&1; then
      echo "ferry refuses $tmp, and not for want of a header: $(last_run)"
    fi
    return
  fi
  out=$(qemu-img check -f vhdx "$tmp" 2>&1) || { echo "qemu-img check $tmp: $out"; return; }
  qemu-img convert -f vhdx -O raw "$tmp" got.raw 2>/dev/null ||
    { echo "qemu-img cannot read $tmp"; return; }
  out=$(each_chunk_is "$tmp" got.raw src.raw zero.raw) || echo "$out"
}

FAULT_AFTER_KILL=vhdx_temp_sound \
  fault_convert "vhdx dynamic" src.qcow2 qcow2 d.vhdx vhdx -O vhdx -o block_size=1M
FAULT_AFTER_KILL=vhdx_temp_sound \
  fault_convert "vhdx fixed" src.qcow2 qcow2 d.vhdx vhdx -O vhdx -o subformat=fixed,block_size=1M

# check_chunks WHAT GOT_RAW A_RAW B_RAW: each_chunk_is as a check.
check_chunks () {
  local out
  if out=$(each_chunk_is "$@"); then ok "$1"; else not_ok "$1" "$out"; fi
}

# --- an existing image, killed or failing at each write ----------------------------
mkimg vhdx old.vhdx $size block_size=1M
qio vhdx old.vhdx "write -P 0x5e 0 3M" "write -P 0x5f 7M 1M"
qemu-img convert -f vhdx -O raw old.vhdx old.raw || die "qemu-img convert old"
cp old.vhdx t.vhdx
rm -f "$WORK/trace"
FERRY_FAULT_TRACE=$WORK/trace fy convert -n -m 1 -O vhdx src.qcow2 t.vhdx
expect_exit 0 "existing image: convert -n without a fault" &&
  same_content "existing image: convert -n without a fault gives the source" \
    src.raw raw t.vhdx vhdx
writes=$(count_ops "$WORK/trace" write)
# Kills at every write (up to the bound); failures, which stop the writes
# as a kill does and then close the file, at fewer.
for mode in kill eio; do
  if [ $mode = kill ]; then
    points=$(fault_points "$writes")
  else
    points=$(FAULT_ALL=$((FAULT_ALL / 4)) FAULT_SPREAD=2 fault_points "$writes")
  fi
  for n in $points; do
    cp old.vhdx t.vhdx
    FERRY_FAULT=write:$n:$mode fy convert -n -m 1 -O vhdx src.qcow2 t.vhdx
    if [ "$mode" = kill ] && [ "$RC" != 137 ]; then
      not_ok "existing image, killed at write $n: exit status $RC" "$(last_run)"
      continue
    fi
    if [ "$mode" = eio ]; then
      expect_failure "existing image, writes failing from write $n: ferry says so" t.vhdx
      expect_stderr "Input/output error" "existing image, writes failing from write $n: the message is the write's"
    fi
    qemu_clean "existing image, $mode at write $n of $writes: qemu-img check" t.vhdx vhdx
    qemu-img convert -f vhdx -O raw t.vhdx got.raw 2>/dev/null || { not_ok "existing image, $mode at write $n: qemu-img cannot read it"; continue; }
    check_chunks "existing image, $mode at write $n of $writes: each 4 KiB reads as before or as new" got.raw old.raw src.raw
  done
done

# --- a log replayed to disk, killed at each write -----------------------------------
mkimg vhdx lg.vhdx $((8 * MiB)) block_size=1M
qio vhdx lg.vhdx "write -P 0x44 0 1M" "write -P 0x45 3M 512"
"${TOOL[@]}" plant-log lg.vhdx wrap || die "plant-log"
cp lg.vhdx ref.vhdx
qemu-img check -q -r all ref.vhdx >/dev/null 2>&1
: >empty.raw
cp lg.vhdx t.vhdx
rm -f "$WORK/trace"
FERRY_FAULT_TRACE=$WORK/trace fy convert -n -m 1 -f raw -O vhdx empty.raw t.vhdx
expect_exit 0 "log replay: without a fault" &&
  same_content "log replay: without a fault the replay completes" ref.vhdx vhdx t.vhdx vhdx
writes=$(count_ops "$WORK/trace" write)
check_true "log replay: it takes writes to replay ($writes)" test "$writes" -gt 3
for n in $(fault_points "$writes"); do
  cp lg.vhdx t.vhdx
  FERRY_FAULT=write:$n:kill fy convert -n -m 1 -f raw -O vhdx empty.raw t.vhdx
  if [ "$RC" != 137 ]; then
    not_ok "log replay, killed at write $n: exit status $RC" "$(last_run)"
    continue
  fi
  rm -f got.raw
  fy convert -O raw t.vhdx got.raw
  if expect_exit 0 "log replay killed at write $n of $writes: ferry still reads the file"; then
    same_content "log replay killed at write $n of $writes: ferry reads the replayed image" ref.vhdx vhdx got.raw raw
  fi
  cp t.vhdx t2.vhdx
  qemu-img check -q -r all t2.vhdx >/dev/null 2>&1
  same_content "log replay killed at write $n of $writes: qemu-img's own replay gives the same image" \
    ref.vhdx vhdx t2.vhdx vhdx
done

done_testing
