#!/usr/bin/env bash
# v2v-gzip: disks an OVA holds gzip-compressed (ovf:compression="gzip")
# are read to the end of their stream, where gzip(1) made each member's
# trailer (CRC-32 and ISIZE), and the trailers are checked.  A raw disk
# whose OVF declares less than its stream holds is migrated whole, at the
# stream's size, with a warning (before, it was cut at the declared size,
# silently); a trailer whose CRC-32 or ISIZE does not match, bytes after
# the last member that are no member, are refused naming the OVA member,
# for a raw disk and a streamOptimized VMDK alike, leaving nothing behind;
# zero padding after the last member is taken, as gzip(1) takes it; a
# stream that inflates far past the declared size (a decompression bomb)
# is refused before the copy; a raw disk named by ovf:/file/ with no size
# declared anywhere gets its stream's, bounded by FERRY_INFLATE_MAX; SIGINT
# while the plan measures a stream ends it at once.  qemu-img compare judges every
# disk migrated against the data gzip(1) compressed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/interrupt-lib.sh"
require qemu-img qemu-io python3 tar gzip

cd "$WORK" || die "cd $WORK"
TAR_PY=("$PYTHON" "$TESTS_DIR/v2v-tar.py")
mkdir -p pkg

# The data: 16 MiB, random at both ends and in the middle.
mkimg raw pkg/disk.img 16M
qio raw pkg/disk.img "write -s $RAND 0 1M" "write -P 0x66 7M 4096" \
  "write -s $RAND $((12 * 1024 * 1024)) 1M" "write -s $RAND $((16 * 1024 * 1024 - 8192)) 8192"
gzip -c pkg/disk.img >pkg/good.gz || die "gzip"

# ova NAME GZ CAPACITY [FORMAT]: NAME.ova holding NAME.ovf and GZ as
# disk.gz, the OVF declaring CAPACITY bytes of FORMAT (raw).
ova () {
  local name=$1 gz=$2 cap=$3 fmt=${4:-raw} d
  d=$(mktemp -d "$WORK/ova.XXXXXX") || die "mktemp"
  cp "$gz" "$d/disk.gz" || die "cp"
  "${TAR_PY[@]}" ovf "$name" disk.gz "$fmt" "$cap" gzip >"$d/$name.ovf" || die "v2v-tar.py"
  tar -C "$d" -cf "$name.ova" "$name.ovf" disk.gz || die "tar cf"
  rm -rf "$d"
}

# damaged OUT OFFSET-FROM-END: a copy of good.gz with one byte of its last
# 8 (CRC-32 at -8..-5, ISIZE at -4..-1) flipped.
damaged () {
  "$PYTHON" - "$1" "$2" <<'EOF' || die "damaging the gzip trailer"
import sys
b = bytearray(open("pkg/good.gz", "rb").read())
b[len(b) - int(sys.argv[2])] ^= 0x01
open(sys.argv[1], "wb").write(b)
EOF
}

# refused_stream WHAT OVA TEXT: the migration of OVA failed, naming the
# member disk.gz and saying TEXT, and left no output.
refused_stream () {
  local what=$1 src=$2 text=$3
  fy v2v "$src" --to libvirt --out out
  expect_failure "$what: refused" "$src"
  expect_stderr "disk.gz" "$what: the message names the OVA member"
  expect_stderr "$text" "$what: the message says what is wrong"
  check_true "$what: no output folder" test ! -e out
  job_left "$what" out
}

# --- C: the declared size is less than the stream's --------------------------
ova short pkg/good.gz $((8 << 20))
fy v2v short.ova --to libvirt --out out-short --dry-run
expect_exit 0 "declared 8 MiB, holds 16 MiB: planned"
check_true "declared 8 MiB, holds 16 MiB: the plan warns and keeps the stream's size" \
  grep -q "warning: disk vmdisk1: the description says 8388608 bytes, the image has 16777216; the image's size is kept" "$OUT"
fy v2v short.ova --to libvirt --out out-short
expect_exit 0 "declared 8 MiB, holds 16 MiB: migrated"
if [ -f out-short/short-disk1.qcow2 ]; then
  same_content "declared 8 MiB, holds 16 MiB: the disk is all 16 MiB of the stream" \
    pkg/disk.img raw out-short/short-disk1.qcow2 qcow2
  check_true "declared 8 MiB, holds 16 MiB: the disk's virtual size is 16 MiB" \
    test "$(qinfo out-short/short-disk1.qcow2 qcow2 virtual-size)" = $((16 << 20))
else
  not_ok "declared 8 MiB, holds 16 MiB: no disk written" "$(last_run)"
fi
# Declared larger than the stream: the stream's size wins too.
ova long pkg/good.gz $((32 << 20))
fy v2v long.ova --to local --out out-long
expect_exit 0 "declared 32 MiB, holds 16 MiB: migrated"
[ -f out-long/long-disk1.qcow2 ] &&
  same_content "declared 32 MiB, holds 16 MiB: the disk is the stream's 16 MiB" \
    pkg/disk.img raw out-long/long-disk1.qcow2 qcow2

# --- trailers -------------------------------------------------------------------
damaged pkg/crc.gz 8
ova crc pkg/crc.gz $((16 << 20))
refused_stream "a CRC-32 that does not match" crc.ova "member 1's trailer gives a CRC-32 that its 16777216 bytes of data do not have"
damaged pkg/isize.gz 2
ova isize pkg/isize.gz $((16 << 20))
refused_stream "an ISIZE that does not match" isize.ova "member 1's trailer gives a length (ISIZE) other than its 16777216 bytes of data"
{ cat pkg/good.gz; printf 'trailing garbage'; } >pkg/garbage.gz
ova garbage pkg/garbage.gz $((16 << 20))
refused_stream "bytes after the last member" garbage.ova "after its member 1, that are no gzip member"
# Two members, both checked: the second one's CRC-32 damaged.
{ head -c 5M pkg/disk.img | gzip -c; tail -c +$((5 * 1024 * 1024 + 1)) pkg/disk.img | gzip -c; } >pkg/two.gz
"$PYTHON" -c '
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[-8] ^= 0x01
open(sys.argv[2], "wb").write(b)' pkg/two.gz pkg/two-bad.gz || die "damaging"
ova two pkg/two.gz $((16 << 20))
fy v2v two.ova --to libvirt --out out-two
expect_exit 0 "two members: migrated"
[ -f out-two/two-disk1.qcow2 ] &&
  same_content "two members: the disk equals the data" pkg/disk.img raw out-two/two-disk1.qcow2 qcow2
ova twobad pkg/two-bad.gz $((16 << 20))
refused_stream "the second member's CRC-32" twobad.ova "member 2's trailer gives a CRC-32"
# Zero padding after the last member, which gzip(1) takes too.
{ cat pkg/good.gz; head -c 3000 /dev/zero; } >pkg/padded.gz
gzip -t pkg/padded.gz 2>/dev/null; [ $? -le 2 ] || die "gzip -t refuses the padded stream"
ova padded pkg/padded.gz $((16 << 20))
fy v2v padded.ova --to libvirt --out out-padded
expect_exit 0 "zero padding after the last member: migrated"
[ -f out-padded/padded-disk1.qcow2 ] &&
  same_content "zero padding: the disk equals the data" pkg/disk.img raw out-padded/padded-disk1.qcow2 qcow2

# A streamOptimized VMDK in a gzip stream, its CRC-32 damaged: the copy
# reads the stream to its end and refuses it there; nothing is left.
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized pkg/disk.img pkg/s.vmdk ||
  die "qemu-img convert"
gzip -c pkg/s.vmdk >pkg/s.gz
cp pkg/s.gz pkg/good-s.gz
"$PYTHON" -c '
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[-6] ^= 0x01
open(sys.argv[1], "wb").write(b)' pkg/s.gz || die "damaging"
ova vs pkg/good-s.gz $((16 << 20)) vmdk
fy v2v vs.ova --to libvirt --out out-vs
expect_exit 0 "gzip'd streamOptimized VMDK: migrated"
[ -f out-vs/vs-disk1.qcow2 ] &&
  same_content "gzip'd streamOptimized VMDK: the disk equals the data" pkg/disk.img raw out-vs/vs-disk1.qcow2 qcow2
ova vsbad pkg/s.gz $((16 << 20)) vmdk
refused_stream "gzip'd streamOptimized VMDK with a damaged CRC-32" vsbad.ova "trailer gives a CRC-32"

# --- a decompression bomb ----------------------------------------------------
# 1.2 GiB of zeroes (1.2 MiB of gzip) declared as 1 MiB: refused after
# inflating at most 1 GiB more than declared, before anything is written.
head -c $((1229 << 20)) /dev/zero | gzip -c >pkg/bomb.gz
ova bomb pkg/bomb.gz $((1 << 20))
start=$(date +%s)
fy v2v bomb.ova --to libvirt --out out
expect_failure "a decompression bomb: refused" bomb.ova
expect_stderr "refused as a decompression bomb" "a decompression bomb: says so"
check_true "a decompression bomb: nothing written" test ! -e out
check_true "a decompression bomb: refused in reasonable time" test $(($(date +%s) - start)) -lt 120

# --- a raw disk named by ovf:/file/, its size declared nowhere ----------------
mkdir -p pf
cp pkg/good.gz pf/data.gz
"${TAR_PY[@]}" ovf-file pf small.img raw $((1 << 20)) data.gz >pf/pf.ovf
sed -i 's|<File ovf:href="data.gz" ovf:id="vmfile1"/>|<File ovf:href="data.gz" ovf:id="vmfile1" ovf:compression="gzip"/>|' pf/pf.ovf
mkimg raw pf/small.img 1M
fy v2v pf/pf.ovf --to libvirt --out out-pf
expect_exit 0 "ovf:/file/ gzip raw disk, no size declared: migrated"
[ -f out-pf/pf-disk2.qcow2 ] &&
  same_content "ovf:/file/ gzip raw disk: the disk equals the data" pkg/disk.img raw out-pf/pf-disk2.qcow2 qcow2

# The same bomb behind ovf:/file/, its size declared nowhere: bounded by
# FERRY_INFLATE_MAX (1 TiB unless set), refused before the copy.
mkdir -p pb
cp pkg/bomb.gz pb/data.gz
"${TAR_PY[@]}" ovf-file pb small.img raw $((1 << 20)) data.gz >pb/pb.ovf
sed -i 's|<File ovf:href="data.gz" ovf:id="vmfile1"/>|<File ovf:href="data.gz" ovf:id="vmfile1" ovf:compression="gzip"/>|' pb/pb.ovf
mkimg raw pb/small.img 1M
FERRY_INFLATE_MAX=256M fy v2v pb/pb.ovf --to libvirt --out out
expect_failure "ovf:/file/ bomb, no size declared: refused" data.gz
expect_stderr "its size is declared nowhere: refused as a decompression bomb" \
  "ovf:/file/ bomb: says so"
expect_stderr "FERRY_INFLATE_MAX" "ovf:/file/ bomb: says what bounds it"
check_true "ovf:/file/ bomb: nothing written" test ! -e out
FERRY_INFLATE_MAX=lots fy v2v pb/pb.ovf --to libvirt --out out --dry-run
expect_exit 1 "FERRY_INFLATE_MAX=lots: refused"
expect_stderr "FERRY_INFLATE_MAX=lots: not a size" "FERRY_INFLATE_MAX=lots: says why"

# --- SIGINT while the plan measures a large gzip disk ----------------------
# Eight members of 1.2 GiB of zeroes: seconds of inflating, at plan time
# (a dry run too); the signal ends it within 2 s, nothing written.
mkdir -p pi
for i in 1 2 3 4 5 6 7 8; do cat pkg/bomb.gz; done >pi/data.gz
"${TAR_PY[@]}" ovf-file pi small.img raw $((1 << 20)) data.gz >pi/pi.ovf
sed -i 's|<File ovf:href="data.gz" ovf:id="vmfile1"/>|<File ovf:href="data.gz" ovf:id="vmfile1" ovf:compression="gzip"/>|' pi/pi.ovf
mkimg raw pi/small.img 1M
for mode in --dry-run ""; do
  # shellcheck disable=SC2086
  bg_ferry v2v pi/pi.ovf --to libvirt --out out $mode
  sleep 1
  signal_ferry INT "SIGINT while measuring${mode:+ ($mode)}" &&
    expect_interrupted "SIGINT while measuring a gzip disk${mode:+ ($mode)}" INT 2
  check_true "SIGINT while measuring${mode:+ ($mode)}: nothing written" test ! -e out
done

done_testing
