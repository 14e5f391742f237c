#!/usr/bin/env bash
# vhd-vdi-corpus: every VHD and VDI of ../shared/corpus (Hyper-V, Virtual
# PC, Disk2vhd, Windows 10, qemu-img, VirtualBox), read by ferry and
# compared with qemu-img's reading (-f vpc / -f vdi): the format probed,
# the virtual size, the contents, and which size rule ferry info says it
# used.  Where qemu-img differs, the check says what ferry does and why:
#
#   - win10-fixed.vhd has its footer only at the end (a fixed disk): qemu-img
#     probes it as raw and shows the footer as a 512-byte tail of the disk;
#     ferry probes it as vhd and reads the 10 MiB disk inside, MBR first.
#   - Azure ("wa\0\0") and Disk2vhd ("d2v\0") disks, and creators qemu-img
#     does not know, mean the footer's current size; qemu-img 7.2 sizes them
#     by their CHS geometry and cuts them short.  The corpus has none with a
#     geometry short of the size, so the test makes them from the Windows
#     10 fixed disk by changing the creator field.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/vhd-vdi-lib.sh"
require qemu-img python3 gzip bzip2

[ -d "$CORPUS/hyperv" ] || { echo "1..0 # SKIP no corpus at $CORPUS"; exit 77; }
cd "$WORK" || die "cd $WORK"

# unpack FILE: the corpus file, unpacked sparse into the work directory;
# prints the path.
unpack () {
  local f=$1 b
  b=$(basename "$f")
  case $f in
    *.bz2) b=${b%.bz2}; bzip2 -dc "$f" | cp --sparse=always /dev/stdin "$b" ;;
    *.gz) b=${b%.gz}; gzip -dc "$f" | cp --sparse=always /dev/stdin "$b" ;;
    *) cp --sparse=always "$f" "$b" ;;
  esac || die "unpacking $f"
  echo "$b"
}

# read_like_qemu WHAT FILE FMT SIZE_FROM: ferry probes FILE as FMT, sees
# qemu-img's virtual size, reads the same bytes, and says it took the size
# from SIZE_FROM (vhd only).
read_like_qemu () {
  local what=$1 f=$2 fmt=$3 from=$4 qf=$3 got want
  [ "$fmt" = vhd ] && qf=vpc
  fy info --json "$f"
  expect_exit 0 "$what: ferry info" || return 1
  got=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["format"], j["virtual-size"])' "$OUT")
  want="$fmt $(qemu_size "$f" "$qf")"
  check_true "$what: ferry probes '$got', qemu-img -f $qf reads '$want'" test "$got" = "$want"
  if [ -n "$from" ]; then
    got=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["format-specific"]["size-from"])' "$OUT")
    check_true "$what: size taken from the $from ($(ferry_fact "$f" format-specific.size-reason))" \
      test "$got" = "$from"
  fi
  rm -f out.raw
  fy convert -O raw "$f" out.raw
  expect_exit 0 "$what: ferry convert -O raw" || return 1
  same_content "$what: qemu-img compare" "$f" "$qf" out.raw raw
  rm -f out.raw
}

for spec in \
    "hyperv/hyperv2012r2-dynamic.vhd.bz2 current-size" \
    "hyperv/virtualpc-dynamic.vhd.bz2 geometry" \
    "hyperv/d2v-zerofilled.vhd.bz2 current-size" \
    "hyperv/win10-dynamic.vhd.gz current-size" \
    "qemu/sleuthkit-image.vhd geometry"; do
  read -r path from <<<"$spec"
  f=$(unpack "$CORPUS/$path")
  read_like_qemu "$path" "$f" vhd "$from"
  # And back: ferry's own VHD of it reads the same under qemu-img.
  convert_to "$path: vhd -> vhd" "$f" vhd again.vhd vhd "$(qemu_size "$f" vpc)"
  rm -f "$f" again.vhd
done

for path in virtualbox/sun-vbox-2009-dynamic-4M.vdi virtualbox/vbox-4.0.8-dynamic-8G.vdi; do
  f=$(unpack "$CORPUS/$path")
  read_like_qemu "$path" "$f" vdi ""
  convert_to "$path: vdi -> vdi" "$f" vdi again.vdi vdi "$(qemu_size "$f" vdi)"
  rm -f "$f" again.vdi
done

# The three sleuthkit images hold the same 100 KiB: a cross-format check.
qemu-img convert -f vmdk -O raw "$CORPUS/qemu/sleuthkit-image.vmdk" sk.raw ||
  die "qemu-img convert sleuthkit vmdk"
fy compare "$CORPUS/qemu/sleuthkit-image.vhd" sk.raw
expect_exit 0 "sleuthkit-image.vhd holds what sleuthkit-image.vmdk holds (qemu-img's reading)"

# The Windows 10 fixed disk: qemu-img probes raw; ferry finds the footer at
# the end and reads the 10 MiB disk inside.
f=$(unpack "$CORPUS/hyperv/win10-fixed.vhd.gz")
check_true "win10-fixed.vhd: qemu-img probes it as raw (the footer is only at the end)" \
  test "$(qinfo "$f" "" format)" = raw
read_like_qemu "hyperv/win10-fixed.vhd.gz (as -f vpc)" "$f" vhd current-size
fy convert -O raw "$f" inside.raw
expect_exit 0 "win10-fixed.vhd: ferry convert, format probed"
check_true "win10-fixed.vhd: ferry reads the 10 MiB disk inside (not 10 MiB + 512)" \
  test "$(stat -c %s inside.raw)" = $((10 << 20))
check_true "win10-fixed.vhd: the disk starts with an MBR (55 aa at byte 510)" \
  test "$(od -A n -t x1 -j 510 -N 2 inside.raw | tr -d ' ')" = 55aa
head -c $((10 << 20)) "$f" >data.raw
same_content "win10-fixed.vhd: ferry's disk is the file's first 10 MiB" inside.raw raw data.raw raw

# Creators sized by the current size where qemu-img uses the geometry:
# the Windows 10 disk's geometry (301/4/17) expresses 10,479,616 bytes,
# 6 KiB short of its 10 MiB.
for creator in 'wa\0\0' 'd2v\0' 'abcd'; do
  cp "$f" c.vhd
  vvtool vhd-footer c.vhd --creator "$creator"
  fy info --json c.vhd
  got=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["virtual-size"], j["format-specific"]["size-from"])' "$OUT")
  check_true "creator '$creator': ferry reads the current size, 10 MiB ($(ferry_fact c.vhd format-specific.size-reason))" \
    test "$got" = "$((10 << 20)) current-size"
  check_true "creator '$creator': qemu-img 7.2 reads the geometry's 10479616 bytes and loses the last 6 KiB" \
    test "$(qemu_size c.vhd vpc)" = 10479616
  rm -f c.raw
  fy convert -O raw c.vhd c.raw
  same_content "creator '$creator': ferry reads the whole disk the file holds" c.raw raw data.raw raw
done
# Virtual PC means the geometry; so does ferry, and qemu-img.
cp "$f" c.vhd
vvtool vhd-footer c.vhd --creator 'vpc '
check_true "creator 'vpc ': ferry and qemu-img both read the geometry's 10479616 bytes" \
  test "$(ferry_fact c.vhd virtual-size) $(qemu_size c.vhd vpc)" = "10479616 10479616"

done_testing
