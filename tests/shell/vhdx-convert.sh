#!/usr/bin/env bash
# vhdx-convert: VHDX images made by qemu-img (fixed and dynamic, blocks of
# 1 to 256 MiB, sizes that are not a multiple of the block size, a disk
# large enough that the BAT interleaves sector bitmap entries), filled
# with qemu-io, converted by ferry to raw, qcow2 and VHDX and back, judged
# by qemu-img compare, qemu-img check and qemu-img info.  4096-byte
# logical sectors (which qemu-img can neither make nor read) are made by
# vhdx-tool.py from a qemu-img image, and ferry must read them as qemu-img
# reads the 512-byte original.  Wrong options are refused.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
TOOL=("$PYTHON" "$TESTS_DIR/vhdx-tool.py")
MiB=$((1 << 20))

# same_info WHAT IMG KEY...: ferry info --json and qemu-img info agree on
# each KEY.
same_info () {
  local what=$1 img=$2 k want got
  shift 2
  fy info --json "$img"
  [ "$RC" = 0 ] || { expect_exit 0 "$what: ferry info"; return; }
  for k in "$@"; do
    want=$(qinfo "$img" vhdx "$k")
    got=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$OUT" "$k")
    check_true "$what: $k $got = $want" test "$got" = "$want"
  done
}
# judge_vhdx_out WHAT SRC SRC_FMT DST [FERRY OPTIONS]: ferry converts SRC
# to VHDX, which qemu-img must find sound and equal to SRC.
judge_vhdx_out () {
  local what=$1 src=$2 sf=$3 dst=$4
  shift 4
  convert_and_judge "$what" "$src" "$sf" "$dst" vhdx "$@" &&
    qemu_clean "$what: qemu-img check" "$dst" vhdx
}

size=$((9 * MiB + 512))
i=0
for spec in dynamic:1M dynamic:default fixed:1M dynamic:32M fixed:8M dynamic:256M; do
  sub=${spec%:*}
  bs=${spec#*:}
  opts=subformat=$sub
  [ "$bs" = default ] || opts=$opts,block_size=$bs
  i=$((i + 1))
  src=q$i.vhdx
  mkimg vhdx "$src" "$size" "$opts"
  fill_pattern vhdx "$src" $MiB "$size"
  same_info "qemu-img $opts" "$src" virtual-size cluster-size format
  convert_and_judge "qemu-img $opts -> raw" "$src" vhdx q$i.raw raw
  convert_and_judge "qemu-img $opts -> qcow2" "$src" vhdx q$i.qcow2 qcow2
  judge_vhdx_out "qemu-img $opts -> vhdx $opts" "$src" vhdx f$i.vhdx -o "$opts"
  judge_vhdx_out "raw -> vhdx $opts" q$i.raw raw r$i.vhdx -o "$opts"
  if [ -f r$i.vhdx ]; then
    want=$(qinfo "$src" vhdx cluster-size)
    got=$(qinfo r$i.vhdx vhdx cluster-size)
    check_true "raw -> vhdx $opts: block size $got = qemu-img's $want" test "$got" = "$want"
    # A fixed image is as large as its disk, a dynamic one holds the data.
    fsize=$(stat -c %s r$i.vhdx)
    if [ "$sub" = fixed ]; then
      check_true "raw -> vhdx $opts: the file ($fsize) holds every block" test "$fsize" -ge "$size"
    elif [ "$bs" = 1M ]; then
      check_true "raw -> vhdx $opts: the file ($fsize) is smaller than the disk" test "$fsize" -lt $((size + 4 * MiB))
    fi
  fi
  judge_vhdx_out "qcow2 -> vhdx $opts" q$i.qcow2 qcow2 c$i.vhdx -o "$opts"
  rm -f q$i.* f$i.vhdx r$i.vhdx c$i.vhdx
done

# raw_holds WHAT FILE OFFSET:LENGTH:BYTE...: the raw FILE holds BYTE over
# each range and zeroes everywhere else (its holes are skipped, so a
# sparse 40 GiB file is checked in a moment).
raw_holds () {
  local what=$1 file=$2 out
  shift 2
  if out=$(python3 - "$file" "$@" <<'PYEOF' 2>&1
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
want = []
for spec in sys.argv[2:]:
    o, n, b = spec.split(":")
    want.append((int(o), int(n), int(b, 0)))
for o, n, b in want:
    if os.pread(fd, n, o) != bytes([b]) * n:
        sys.exit("range %d+%d does not hold 0x%02x" % (o, n, b))
end, off = os.fstat(fd).st_size, 0
while off < end:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    p = d
    while p < h:
        chunk = os.pread(fd, min(1 << 20, h - p), p)
        for i in range(0, len(chunk), 512):
            q = p + i
            if chunk[i:i + 512].strip(b"\0") and \
                    not any(o <= q < o + n for o, n, _ in want):
                sys.exit("unexpected data at offset %d" % q)
        p += len(chunk)
    off = h
PYEOF
  ); then
    ok "$what"
  else
    not_ok "$what" "$out"
  fi
}
# qemu_reads WHAT IMG OFFSET:LENGTH:BYTE...: qemu-io reads IMG (vhdx) with
# BYTE over each range.
qemu_reads () {
  local what=$1 img=$2 spec o n b args=() out rc=0
  shift 2
  for spec in "$@"; do
    IFS=: read -r o n b <<<"$spec"
    args+=(-c "read -P $b $o $n")
  done
  out=$(qemu-io -f vhdx "${args[@]}" "$img" 2>&1) || rc=$?
  if [ "$rc" = 0 ] && ! grep -q -i -E "fail|mismatch|error" <<<"$out"; then
    ok "$what"
  else
    not_ok "$what" "$out"
  fi
}

# A disk past one chunk (4 GiB of 512-byte sectors, whatever the block
# size), so the BAT interleaves a sector bitmap entry after block 4095.
# qemu-img reads a 5 GiB VHDX slowly (it reads every zero block), so the
# judges are qemu-io's reads of each range written and of ranges around
# them, and the raw output holding zeroes everywhere else.
big=("$((4096 * MiB - 512)):1024:0x61" "$((4500 * MiB)):65536:0x62" "$((5120 * MiB - 4096)):4096:0x63")
big_zero=("$((4096 * MiB + 4096)):4096:0" "$((4500 * MiB + 65536)):4096:0" "0:4096:0")
mkimg vhdx big.vhdx 5G block_size=1M
qio vhdx big.vhdx "write -P 0x61 $((4096 * MiB - 512)) 1024" "write -P 0x62 $((4500 * MiB)) 64k" \
  "write -P 0x63 $((5120 * MiB - 4096)) 4096"
rm -f big.raw
fy convert -O raw big.vhdx big.raw
expect_exit 0 "5 GiB dynamic, data past the first chunk -> raw"
raw_holds "5 GiB dynamic -> raw: the data where qemu-io wrote it, zeroes elsewhere" big.raw "${big[@]}"
for o in block_size=1M subformat=fixed,block_size=1M; do
  rm -f big2.vhdx
  fy convert -O vhdx -o $o big.raw big2.vhdx
  expect_exit 0 "raw 5 GiB -> vhdx $o"
  qemu_clean "raw 5 GiB -> vhdx $o: qemu-img check" big2.vhdx vhdx
  qemu_reads "raw 5 GiB -> vhdx $o: qemu-io reads the data and the zeroes" big2.vhdx \
    "${big[@]}" "${big_zero[@]}"
done
rm -f big.raw big2.vhdx big.vhdx

# 4096-byte logical sectors: the same BAT laid out for a chunk ratio 8
# times larger (the 40 GiB disk spans two 32 GiB chunks).  qemu-img can
# neither make nor read them; ferry must read the disk that qemu-io wrote
# into the 512-byte original.
l4=("0:$MiB:0x71" "$((33 << 30)):$MiB:0x72" "$((39 << 30)):65536:0x73")
mkimg vhdx l512.vhdx 40G block_size=1M
qio vhdx l512.vhdx "write -P 0x71 0 1M" "write -P 0x72 $((33 << 30)) 1M" "write -P 0x73 $((39 << 30)) 64k"
cp l512.vhdx l4k.vhdx
"${TOOL[@]}" set-lss l4k.vhdx 4096 || die "vhdx-tool.py set-lss"
if qemu-img info l4k.vhdx >/dev/null 2>&1; then
  note="qemu-img reads it too"
else
  note="qemu-img refuses it"
fi
rm -f l4k.raw
fy convert -O raw l4k.vhdx l4k.raw
expect_exit 0 "4096-byte sectors ($note): ferry convert -> raw"
raw_holds "4096-byte sectors: ferry reads what qemu-io wrote into the 512-byte original" \
  l4k.raw "${l4[@]}"
fy info --json l4k.vhdx
check_true "4096-byte sectors: ferry info says so" grep -q -E '"logical-sector-size": *4096' "$OUT"
rm -f l4k.raw l4k.vhdx l512.vhdx

# Writing into an existing image qemu-img made (-n opens it read-write).
mkimg vhdx n.vhdx $((8 * MiB)) block_size=1M
qio vhdx n.vhdx "write -P 0x81 0 3M" "write -P 0x82 6M 512"
mkimg raw n.raw $((8 * MiB))
qio raw n.raw "write -P 0x91 1M 2M" "write -P 0x92 7M 64k"
fy convert -n -O vhdx n.raw n.vhdx
expect_exit 0 "ferry convert -n into a qemu-img VHDX"
same_content "ferry convert -n into a qemu-img VHDX: qemu-img compare" n.raw raw n.vhdx vhdx
qemu_clean "ferry convert -n into a qemu-img VHDX: qemu-img check" n.vhdx vhdx

# A file that ends inside its last block (only the part of the block
# inside the disk is there): a new block must go after the whole of it,
# not over its tail.
mkimg vhdx tail.vhdx $((9 * MiB)) block_size=8M
qio vhdx tail.vhdx "write -P 0x33 8M 1M"
truncate -s $(($(stat -c %s tail.vhdx) - 7 * MiB)) tail.vhdx
mkimg raw tail.raw $((9 * MiB))
qio raw tail.raw "write -P 0x34 0 4096" "write -P 0x33 8M 1M"
fy convert -n -O vhdx tail.raw tail.vhdx
expect_exit 0 "writing into a file that ends inside its last block"
same_content "file that ends inside its last block: qemu-img compare" tail.raw raw tail.vhdx vhdx
fy check tail.vhdx
expect_exit 0 "file that ends inside its last block: ferry check finds no blocks over each other"

# Default block sizes follow qemu-img's, by disk size.
for s in 1G 2G 200G 10T; do
  truncate -s "$s" e.raw
  mkimg vhdx e-qemu.vhdx "$s"
  rm -f e.vhdx
  fy convert -O vhdx e.raw e.vhdx
  if expect_exit 0 "empty $s -> vhdx"; then
    got=$(qinfo e.vhdx vhdx cluster-size)
    want=$(qinfo e-qemu.vhdx vhdx cluster-size)
    check_true "empty $s: default block size $got = qemu-img's $want" test "$got" = "$want"
    qemu_clean "empty $s: qemu-img check" e.vhdx vhdx
  fi
  rm -f e.raw e.vhdx e-qemu.vhdx
done

# Wrong options and sizes: refused, nothing left behind.
truncate -s 10M opt.raw
for bad in "block_size=3M:block_size=3M" "block_size=0:block_size=0" \
           "block_size=512M:block_size" \
           "block_size=512k:block_size" "subformat=sparse:subformat=sparse" \
           "log_size=1000:log_size" "block_state_zero=maybe:block_state_zero" \
           "cluster_size=64k:cluster_size"; do
  o=${bad%%:*}
  rm -rf outdir && mkdir outdir
  fy convert -O vhdx -o "$o" opt.raw outdir/x.vhdx
  expect_failure "-o $o refused" x.vhdx
  expect_stderr "${bad#*:}" "-o $o: the message names the option"
  check_true "-o $o: no file left" test -z "$(ls -A outdir)"
done
qemu-img create -q -f qcow2 huge.qcow2 65T || die "qemu-img create 65T"
rm -rf outdir && mkdir outdir
fy convert -O vhdx huge.qcow2 outdir/x.vhdx
expect_failure "a 65 TiB disk refused" x.vhdx
expect_stderr "64 TiB" "a 65 TiB disk: the message gives the limit"
check_true "a 65 TiB disk: no file left" test -z "$(ls -A outdir)"

done_testing
