#!/usr/bin/env bash
# vhd-vdi-bad: damaged and hostile VHD and VDI files.  Each is given to
# ferry info and ferry convert: exit status 1, a message naming the file
# and the structure at fault, no crash, no sanitizer report, no allocation
# the file does not justify (an address-space limit and a peak-memory
# bound in plain builds, ASan's allocation limit in sanitized ones), and
# no target left behind.  The corpus's afl5.img (a fuzzer-made VHD whose
# BAT claims 2^30 entries) and variants of it; damage planted with
# vhd-vdi-tool.py into images qemu-img made; random byte flips.  Bad
# checksums in an otherwise sound VHD are read with a warning, and refused
# under --strict.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/vhd-vdi-lib.sh"
require qemu-img qemu-io python3 bzip2

cd "$WORK" || die "cd $WORK"
MiB=$((1 << 20))

# refuse WHAT IMG FMT REGEX: ferry info and ferry convert (with -f FMT,
# and probing) refuse IMG with a message matching REGEX.
refuse () {
  local what=$1 img=$2 fmt=$3 re=$4
  mkdir -p out && rm -rf out/*
  fy info -f "$fmt" "$img"
  expect_failure "$what: ferry info -f $fmt" "$img"
  expect_stderr_re "$re" "$what: the message says what is wrong"
  fy convert -f "$fmt" -O raw "$img" out/x.raw
  expect_failure "$what: ferry convert -f $fmt" "$img"
  fy convert -O qcow2 "$img" out/x.qcow2
  if [ -z "$CRASH" ] && [ "$RC" = 0 ]; then
    # Probed: a file that is no longer recognisably FMT is raw data.
    check_true "$what: probed, it is no longer $fmt (read as raw)" \
      test "$(ferry_fact "$img" format)" != "$fmt"
  else
    expect_failure "$what: ferry convert, format probed" "$img"
  fi
  rm -f out/x.qcow2
  fy check -f "$fmt" "$img"
  if [ -z "$CRASH" ] && [ "$RC" = 2 ] && grep -q -E -- "$re" "$OUT"; then
    ok "$what: ferry check -f $fmt reports it as an error"
  else
    not_ok "$what: ferry check -f $fmt: exit $RC, expected 2 and a line matching /$re/" "$(last_run)"
  fi
  if [ -z "$(ls -A out)" ]; then
    ok "$what: no target and no temporary file left"
  else
    not_ok "$what: left behind: $(ls -A out | tr '\n' ' ')"
  fi
}
# damage NAME FROM TOOL-ARGS...: copy FROM to NAME, apply one tool command
# to it.
damage () {
  local name=$1 from=$2 cmd=$3
  shift 3
  cp "$from" "$name"
  vvtool "$cmd" "$name" "$@"
}

# --- afl5.img and its variants ------------------------------------------------
bzip2 -dc "$CORPUS/broken/afl5.img.bz2" >afl5.img || die "bunzip2 afl5"
refuse "afl5.img (the header runs past the end)" afl5.img vhd "dynamic disk header.*does not lie in the file"
qemu-img info -f vpc afl5.img >/dev/null 2>&1 &&
  not_ok "qemu-img was expected to refuse afl5.img" ||
  ok "qemu-img refuses afl5.img too"
# Padded so that the header fits: the BAT of 2^30 entries does not.
cp afl5.img afl5-padded.img
truncate -s 4096 afl5-padded.img
refuse "afl5 padded (a BAT of 2^30 entries)" afl5-padded.img vhd "BAT of 1073741825 entries.*past the end"
# The padded file with other huge or absurd fields.
damage afl5-bs.img afl5-padded.img vhd-set header block_size 0x80000000
refuse "afl5 padded, block size 2 GiB" afl5-bs.img vhd "block size"
damage afl5-toff.img afl5-padded.img vhd-set header table_offset 0xffffffffffff0000
refuse "afl5 padded, BAT offset near 2^64" afl5-toff.img vhd "BAT"
damage afl5-size.img afl5-padded.img vhd-set footer current_size 0xfffffffffffffe00
refuse "afl5 padded, a disk of 2^64 bytes" afl5-size.img vhd "BAT|entries"

# --- VHD damage -------------------------------------------------------------
mkimg vpc good.vhd $((8 * MiB)) force_size=on
qio vpc good.vhd "write -P 0x11 0 1M" "write -P 0x22 $((5 * MiB)) 64k"
qemu-img convert -f vpc -O raw good.vhd good.raw || die "qemu-img convert"

damage bad-cookie.vhd good.vhd vhd-set header cookie xxsparse
refuse "header cookie" bad-cookie.vhd vhd "cxsparse"
damage bad-type.vhd good.vhd vhd-set footer disk_type 5
refuse "disk type 5" bad-type.vhd vhd "disk type 5"
damage bad-version.vhd good.vhd vhd-set footer version 0x20000
refuse "format version 2.0" bad-version.vhd vhd "version 2\.0"
damage bad-doff.vhd good.vhd vhd-set footer data_offset 0x7fffffffffffffff
refuse "data offset past the end" bad-doff.vhd vhd "header at offset 0x7fffffffffffffff does not lie"
damage bad-bs.vhd good.vhd vhd-set header block_size 3000
refuse "block size 3000" bad-bs.vhd vhd "block size 3000"
damage bad-few.vhd good.vhd vhd-set header max_entries 1
refuse "a BAT too short for the disk" bad-few.vhd vhd "too few"
damage bad-many.vhd good.vhd vhd-set header max_entries 0x40000000
refuse "a BAT of 2^30 entries" bad-many.vhd vhd "past the end of the file"
damage bad-toff.vhd good.vhd vhd-set header table_offset 0
refuse "the BAT over the footer copy" bad-toff.vhd vhd "overlaps"
damage bad-bat-end.vhd good.vhd vhd-set bat 0 0x7fffffff
refuse "a block past the end" bad-bat-end.vhd vhd "entry 0 points to a block.*past the end"
damage bad-bat-meta.vhd good.vhd vhd-set bat 0 2
refuse "a block over the header" bad-bat-meta.vhd vhd "overlaps the header"
first=$(python3 -c '
import struct, sys
d = open(sys.argv[1], "rb").read()
print(struct.unpack(">I", d[1536:1540])[0])' good.vhd)
damage bad-bat-twice.vhd good.vhd vhd-set bat 3 "$first"
refuse "two BAT entries, one block" bad-bat-twice.vhd vhd "overlap"
damage bad-gone.vhd good.vhd vhd-set footer cookie xxxxxxxx
refuse "both footers gone" bad-gone.vhd vhd "no VHD footer"
head -c $((2 * MiB)) good.vhd >bad-trunc.vhd
refuse "file cut in the blocks" bad-trunc.vhd vhd "past the end"
mkimg vpc fixed.vhd $((4 * MiB)) subformat=fixed,force_size=on
damage bad-fixed.vhd fixed.vhd vhd-set footer current_size $((8 * MiB))
refuse "a fixed disk larger than its file" bad-fixed.vhd vhd "holds only"
for n in 100 600 1500; do
  head -c $n good.vhd >trunc$n.vhd
  refuse "file cut to $n bytes" trunc$n.vhd vhd "VHD footer|small|does not lie"
done

# Bad checksums, the rest sound: a warning; --strict refuses.
damage sum-footer.vhd good.vhd vhd-set footer checksum 0x12345678
damage sum-header.vhd good.vhd vhd-set header checksum 0x12345678
for f in sum-footer.vhd sum-header.vhd; do
  rm -f sum.raw
  fy convert -O raw "$f" sum.raw
  expect_exit 0 "$f: read despite the bad checksum"
  expect_stderr_re "warning: .*$f.*checksum 0x12345678 does not match" \
    "$f: ferry warns, naming the structure and the checksum"
  [ -f sum.raw ] && same_content "$f: the contents are intact" sum.raw raw good.raw raw
  fy info --strict "$f"
  expect_failure "$f: ferry info --strict refuses it" "$f"
  expect_stderr "refused in strict mode (--strict)" "$f: --strict says why"
  fy convert --strict -O raw "$f" strict.raw
  expect_failure "$f: ferry convert --strict refuses it" "$f"
  fy compare --strict "$f" good.raw
  expect_exit 2 "$f: ferry compare --strict refuses it"
done
# qemu-img refuses a bad footer checksum outright (and ignores the
# header's): ferry reads what Windows and libvhdi read.
qemu-img info sum-footer.vhd >/dev/null 2>&1 &&
  not_ok "qemu-img was expected to refuse a bad footer checksum" ||
  ok "qemu-img 7.2 refuses a bad footer checksum; ferry reads it with a warning"
# A bad head copy with a good footer at the end: the good one is used
# with no warning at all.
cp good.vhd head-only-bad.vhd
printf '\x99' | dd of=head-only-bad.vhd bs=1 seek=100 conv=notrunc 2>/dev/null
fy convert -O raw head-only-bad.vhd hob.raw
expect_exit 0 "a damaged footer copy at the start, a good footer at the end"
check_true "a damaged footer copy: no warning (the footer at the end is sound)" \
  not grep -q warning "$ERR"
same_content "a damaged footer copy: the contents are intact" hob.raw raw good.raw raw

# What ferry check finds beyond what open refuses: checksums (errors),
# space no block uses (leaks), and a writer that did not finish.
fy check sum-footer.vhd
expect_exit 2 "ferry check: a bad footer checksum is an error"
check_true "ferry check: the line names the checksum" grep -q "checksum 0x12345678" "$OUT"
damage leak.vhd good.vhd vhd-set bat 0 0xffffffff
fy check leak.vhd
expect_exit 3 "ferry check: a block no BAT entry uses is a leak"
check_true "ferry check: the leak line gives the offset" grep -q "are in no block" "$OUT"
head -c $(($(stat -c %s good.vhd) - 512)) good.vhd >unfinished.vhd
fy check unfinished.vhd
expect_exit 2 "ferry check: a dynamic disk with no footer at the end is an error"
check_true "ferry check: it says the writer did not finish" grep -q "did not finish" "$OUT"
fy convert -O raw unfinished.vhd unfinished.raw
expect_exit 0 "a dynamic disk with no footer at the end is still read (by its copy at the start)"
same_content "a dynamic disk with no footer at the end: the contents are intact" \
  unfinished.raw raw good.raw raw
mkimg vdi leak.vdi $((4 * MiB)) static=on
vvtool vdi-set leak.vdi map:2 0xffffffff
fy check leak.vdi
expect_exit 3 "ferry check: a counted VDI block no entry uses is a leak (qemu-img calls it an error)"
mkimg vdi count.vdi $((4 * MiB))
qio vdi count.vdi "write -P 1 0 1M"
vvtool vdi-set count.vdi blocks_allocated 0
fy check count.vdi
expect_exit 2 "ferry check: a VDI entry past the allocated count is an error"
check_true "ferry check: it says VirtualBox would give the block out again" \
  grep -q "give it out again" "$OUT"

# A differencing disk whose locator points past the end of the file.
vvtool vhd-diff diff.vhd good.vhd --write 0:512:0x44
python3 - diff.vhd <<'EOF' || die "locator damage"
import struct, sys
p = sys.argv[1]
d = bytearray(open(p, "rb").read())
struct.pack_into(">Q", d, 512 + 576 + 16, 1 << 40)
s = sum(d[512:512 + 36]) + sum(d[512 + 40:512 + 1024])
struct.pack_into(">I", d, 512 + 36, (~s) & 0xffffffff)
open(p, "wb").write(d)
EOF
refuse "a parent locator past the end" diff.vhd vhd "parent locator 0 .*does not lie in the file"

# --- VDI damage -------------------------------------------------------------
mkimg vdi good.vdi $((4 * MiB))
qio vdi good.vdi "write -P 0x11 0 1M" "write -P 0x22 $((3 * MiB)) 64k"

damage v-sig.vdi good.vdi vdi-set signature 0x12345678
refuse "no VDI signature" v-sig.vdi vdi "signature"
damage v-version.vdi good.vdi vdi-set version 0x00020000
refuse "version 2.0" v-version.vdi vdi "version 2\.0"
damage v-hsize.vdi good.vdi vdi-set header_size 16
refuse "header size 16" v-hsize.vdi vdi "header size 16"
damage v-type.vdi good.vdi vdi-set type 9
refuse "image type 9" v-type.vdi vdi "image type 9"
damage v-bs.vdi good.vdi vdi-set block_size 3000
refuse "block size 3000" v-bs.vdi vdi "block size 3000"
damage v-size.vdi good.vdi vdi-set disk_size $((64 * MiB))
refuse "a disk larger than its blocks" v-size.vdi vdi "do not cover"
damage v-blocks.vdi good.vdi vdi-set blocks 0x40000000
refuse "a block map of 2^30 entries" v-blocks.vdi vdi "block map of 1073741824 entries"
damage v-data.vdi good.vdi vdi-set off_data 520
refuse "data over the block map" v-data.vdi vdi "overlaps the block map"
damage v-entry.vdi good.vdi vdi-set map:0 0x00ffffff
refuse "a block past the end" v-entry.vdi vdi "past the end of the file"
damage v-twice.vdi good.vdi vdi-set map:3 0
refuse "two entries, one block" v-twice.vdi vdi "uses too"
head -c 700 good.vdi >v-trunc.vdi
refuse "file cut in the block map" v-trunc.vdi vdi "block map|past the end"

# --- random byte flips --------------------------------------------------------
# Not every flip is fatal; none may crash, hang or allocate wildly.
python3 - good.vhd good.vdi afl5-padded.img <<'EOF' || die "making variants"
import random
import sys
rng = random.Random(20240605)
for src in sys.argv[1:]:
    data = open(src, "rb").read()
    for i in range(40):
        d = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            # Mostly in the metadata at the start (and the footer at the end).
            zone = rng.choice([2048, 2048, len(d)])
            pos = rng.randrange(min(zone, len(d)))
            if zone == len(d) and rng.random() < 0.5:
                pos = len(d) - 1 - rng.randrange(512)
            d[pos] = rng.randrange(256)
        open("flip-%s-%02d" % (src.replace(".", "_"), i), "wb").write(d)
EOF
crashes=0
for f in flip-*; do
  fmt=vhd
  case $f in *vdi*) fmt=vdi ;; esac
  FY_TIMEOUT=20 fy convert -f "$fmt" -O raw "$f" flip.raw
  if [ -n "$CRASH" ] || [ "$RC" -gt 1 ] ||
     { [ "$RC" = 1 ] && ! grep -q -F "$f" "$ERR"; } ||
     { [ -n "$PEAK_KB" ] && [ "$PEAK_KB" -gt 204800 ]; }; then
    crashes=$((crashes + 1))
    not_ok "random flips: $f" "$(last_run)"
  fi
  rm -f flip.raw
done
[ "$crashes" = 0 ] && ok "random flips: $(ls flip-* | wc -l) damaged files, each read or refused with its name, no crash"

done_testing
