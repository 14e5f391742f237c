#!/usr/bin/env bash
# vhdx-crash: the writer dies, or its writes start failing, at every
# point of a small conversion, and the file it leaves must be sound
# (vhdx-write.c note 1).  FERRY_FAULT=write:N:kill kills ferry instead of
# its Nth write (lib/common/fault.h); write:N:eio makes the Nth and every
# later write fail with EIO (a dead device).  For every N until a run
# completes:
#
# - a new image (ferry convert, killed): before its headers are written
#   the temporary file is no VHDX at all (ferry and qemu-img say so);
#   after, qemu-img check finds it sound and every 4 KiB of the disk reads
#   as the source or as zeroes;
# - an existing image qemu-img made (ferry convert -n, killed or failing):
#   qemu-img check finds it sound and every 4 KiB reads as before or as
#   the new contents;
# - a log replayed to disk by a read-write open (killed): the file still
#   reads, through ferry and through qemu-img's own replay, as the fully
#   replayed image.
#
# Kills leave the page cache intact, so they test the order of writes as
# the program issues them; ordering against a power cut (the syncs) is
# argued in vhdx-write.c, not tested here.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
TOOL=("$PYTHON" "$TESTS_DIR/vhdx-tool.py")
MiB=$((1 << 20))
size=$((10 * MiB))

# each_chunk_is WHAT GOT_RAW A_RAW B_RAW: every 4 KiB of GOT equals the
# same 4 KiB of A or of B.
each_chunk_is () {
  local what=$1 out
  if out=$(python3 - "$2" "$3" "$4" <<'PYEOF' 2>&1
import sys
g, a, b = (open(p, "rb").read() for p in sys.argv[1:4])
if len(g) != len(a):
    sys.exit("size %d, expected %d" % (len(g), len(a)))
for i in range(0, len(g), 4096):
    c = g[i:i + 4096]
    if c != a[i:i + 4096] and c != b[i:i + 4096]:
        sys.exit("4 KiB at offset %d is neither" % i)
PYEOF
  ); then
    ok "$what"
  else
    not_ok "$what" "$out"
  fi
}

# The source: qemu-img's qcow2 with the standard mix, and its contents.
mkimg qcow2 src.qcow2 $size cluster_size=65536
fill_pattern qcow2 src.qcow2 $MiB $size
qemu-img convert -O raw src.qcow2 src.raw || die "qemu-img convert src"
truncate -s $size zero.raw

# --- a new image, killed at every write ------------------------------------------
n=0
while [ $n -lt 200 ]; do
  n=$((n + 1))
  rm -rf out && mkdir out
  FERRY_FAULT=write:$n:kill fy convert -m 1 -O vhdx -o block_size=1M src.qcow2 out/dst.vhdx
  if [ "$RC" = 0 ]; then
    same_content "new image: with no fault at write $n the conversion completes" \
      src.raw raw out/dst.vhdx vhdx
    break
  fi
  if [ "$RC" != 137 ]; then
    not_ok "new image, killed at write $n: exit status $RC, expected 137 (SIGKILL)" "$(last_run)"
    continue
  fi
  tmp=$(ls -A out/.dst.vhdx.ferry-* 2>/dev/null | head -1)
  if [ -z "$tmp" ]; then
    not_ok "new image, killed at write $n: no temporary file left to look at"
    continue
  fi
  fy info -f vhdx "$tmp"
  if [ "$RC" != 0 ]; then
    if grep -q -E "no valid header|shorter than its 1 MiB header|no 'vhdxfile' signature" "$ERR" && ! qemu-img info -f vhdx "$tmp" >/dev/null 2>&1; then
      ok "new image, killed at write $n: no header yet, so no VHDX (ferry and qemu-img agree)"
    else
      not_ok "new image, killed at write $n: ferry refuses the file, and not for want of a header" "$(last_run)"
    fi
    continue
  fi
  qemu_clean "new image, killed at write $n: qemu-img check" "$tmp" vhdx
  qemu-img convert -f vhdx -O raw "$tmp" got.raw 2>/dev/null || { not_ok "new image, killed at write $n: qemu-img cannot read it"; continue; }
  each_chunk_is "new image, killed at write $n: each 4 KiB reads as the source or zeroes" got.raw src.raw zero.raw
done
writes=$n
check_true "new image: the conversion takes several writes ($writes)" test "$writes" -gt 8

# --- an existing image, killed or failing at every write ----------------------------
mkimg vhdx old.vhdx $size block_size=1M
qio vhdx old.vhdx "write -P 0x5e 0 3M" "write -P 0x5f 7M 1M"
qemu-img convert -f vhdx -O raw old.vhdx old.raw || die "qemu-img convert old"
for mode in kill eio; do
  n=0
  while [ $n -lt 200 ]; do
    n=$((n + 1))
    cp old.vhdx t.vhdx
    FERRY_FAULT=write:$n:$mode fy convert -n -m 1 -O vhdx src.qcow2 t.vhdx
    if [ "$RC" = 0 ]; then
      same_content "existing image ($mode): with no fault at write $n, convert -n completes" \
        src.raw raw t.vhdx vhdx
      break
    fi
    if [ "$mode" = kill ] && [ "$RC" != 137 ]; then
      not_ok "existing image, killed at write $n: exit status $RC" "$(last_run)"
      continue
    fi
    if [ "$mode" = eio ]; then
      expect_failure "existing image, writes failing from write $n: ferry says so" t.vhdx
      expect_stderr "Input/output error" "existing image, writes failing from write $n: the message is the write's"
    fi
    qemu_clean "existing image, $mode at write $n: qemu-img check" t.vhdx vhdx
    qemu-img convert -f vhdx -O raw t.vhdx got.raw 2>/dev/null || { not_ok "existing image, $mode at write $n: qemu-img cannot read it"; continue; }
    each_chunk_is "existing image, $mode at write $n: each 4 KiB reads as before or as new" got.raw old.raw src.raw
  done
done

# --- a log replayed to disk, killed at every write -----------------------------------
mkimg vhdx lg.vhdx $((8 * MiB)) block_size=1M
qio vhdx lg.vhdx "write -P 0x44 0 1M" "write -P 0x45 3M 512"
"${TOOL[@]}" plant-log lg.vhdx wrap || die "plant-log"
cp lg.vhdx ref.vhdx
qemu-img check -q -r all ref.vhdx >/dev/null 2>&1
: >empty.raw
n=0
while [ $n -lt 50 ]; do
  n=$((n + 1))
  cp lg.vhdx t.vhdx
  FERRY_FAULT=write:$n:kill fy convert -n -m 1 -f raw -O vhdx empty.raw t.vhdx
  if [ "$RC" = 0 ]; then
    same_content "log replay: with no fault at write $n the replay completes" ref.vhdx vhdx t.vhdx vhdx
    break
  fi
  rm -f got.raw
  fy convert -O raw t.vhdx got.raw
  if expect_exit 0 "log replay killed at write $n: ferry still reads the file"; then
    same_content "log replay killed at write $n: ferry reads the replayed image" ref.vhdx vhdx got.raw raw
  fi
  cp t.vhdx t2.vhdx
  qemu-img check -q -r all t2.vhdx >/dev/null 2>&1
  same_content "log replay killed at write $n: qemu-img's own replay gives the same image" \
    ref.vhdx vhdx t2.vhdx vhdx
done
check_true "log replay: it took writes to replay ($n)" test "$n" -gt 3

done_testing
