#!/usr/bin/env bash
# vdi: dynamic and static VDI images made by qemu-img, filled with
# qemu-io's standard mix (data across block boundaries, zeroes, discards),
# converted by ferry both ways: to raw, qcow2 and vdi, and back into
# dynamic and static VDI, on sizes that are and are not a multiple of the
# 1 MiB block.  qemu-img compare judges the contents, qemu-img info the
# size and qemu-img check what ferry writes.  Also: discarded (ZERO)
# blocks, a version 0 header (VirtualBox 1.x), writing into existing
# images (-n), an empty disk, options, and what ferry info says.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/vhd-vdi-lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
MiB=$((1 << 20))

for static in off on; do
  for size in $((8 * MiB)) $((9 * MiB + 1536)); do
    tag="static=$static, $size bytes"
    src=src.vdi
    rm -f "$src"
    mkimg vdi "$src" "$size" "static=$static"
    fill_pattern vdi "$src" "$MiB" "$size"

    convert_from "$tag: vdi -> raw" "$src" vdi out.raw raw
    convert_from "$tag: vdi -> qcow2" "$src" vdi out.qcow2 qcow2
    convert_to "$tag: vdi -> vdi" "$src" vdi out.vdi vdi "$size" -m 4

    [ -f out.raw ] || continue
    convert_to "$tag: raw -> vdi (dynamic)" out.raw raw d.vdi vdi "$size"
    convert_to "$tag: raw -> vdi (static=on)" out.raw raw s.vdi vdi "$size" \
      -o static=on -m 4
    convert_to "$tag: raw -> vdi (subformat=static, one thread)" out.raw raw \
      s2.vdi vdi "$size" -o subformat=static -m 1
    convert_to "$tag: qcow2 -> vdi" out.qcow2 qcow2 q.vdi vdi "$size"
    if [ -f d.vdi ]; then
      # Only the blocks with data are in the dynamic image.
      want=$(qemu-img map -f raw --output=json out.raw | python3 -c '
import json, sys
blocks = set()
for e in json.load(sys.stdin):
    if e["data"]:
        blocks.update(range(e["start"] >> 20, (e["start"] + e["length"] - 1 >> 20) + 1))
print(len(blocks))')
      got=$(ferry_fact d.vdi format-specific.blocks-allocated)
      check_true "$tag: dynamic vdi holds $got blocks, at most the $want the data touches" \
        test "$got" -le "$want"
      check_true "$tag: static=on writes a static image" \
        test "$(ferry_fact s.vdi format-specific.subformat)" = static
    fi
    rm -f out.* ./*.vdi
  done
done

# Discarded blocks: VirtualBox marks them ZERO (0xfffffffe); they read as
# zeroes whatever the data area holds.
mkimg vdi z.vdi $((4 * MiB))
qio vdi z.vdi "write -P 0x31 0 4M"
head -c $((4 * MiB)) /dev/zero >z.raw
qio raw z.raw "write -P 0x31 0 4M" "write -z 1M 1M"
vvtool vdi-set z.vdi map:1 0xfffffffe
fy convert -O raw z.vdi zz.raw
expect_exit 0 "a discarded block: ferry convert"
same_content "a discarded block reads as zeroes (qemu-img compare with the expected raw)" \
  zz.raw raw z.raw raw
same_content "a discarded block: ferry reads what qemu-img reads" z.vdi vdi zz.raw raw
rm -f z*

# A version 0 header (VirtualBox 1.x), which qemu-img does not read: the
# expected disk is the same writes made by qemu-io on a raw file.
vvtool vdi-v0 v0.vdi $((3 * MiB)) --write 4096:8192:0x41 --write $((2 * MiB + 100)):1000:0x42
head -c $((3 * MiB)) /dev/zero >v0.raw
qio raw v0.raw "write -P 0x41 4096 8192" "write -P 0x42 $((2 * MiB + 100)) 1000"
fy convert -O raw v0.vdi v0-out.raw
expect_exit 0 "version 0 header: ferry convert"
same_content "version 0 header: qemu-img compare with the expected raw" v0-out.raw raw v0.raw raw
fy info v0.vdi
expect_exit 0 "version 0 header: ferry info"
check_true "version 0 header: ferry info says version 0.1" grep -q "version: 0.1" "$OUT"
qemu-img info v0.vdi >/dev/null 2>&1 &&
  not_ok "qemu-img 7.2 was expected to refuse a version 0 VDI (update this test)" ||
  ok "qemu-img 7.2 refuses version 0 VDI headers; ferry reads them (above)"
rm -f v0*

# An odd-sized raw file: rounded up to whole sectors.
head -c 1000001 "$RAND" >odd.raw
convert_to "odd-sized raw -> vdi" odd.raw raw odd.vdi vdi 1000448
: >empty.raw
convert_to "empty raw -> vdi" empty.raw raw empty.vdi vdi 0

# Writing into existing images (-n).
head -c $((5 * MiB)) "$RAND" >five.raw
for static in off on; do
  mkimg vdi n.vdi $((5 * MiB)) "static=$static"
  qio vdi n.vdi "write -P 0x77 $((3 * MiB)) 4096"
  fy convert -n -O vdi five.raw n.vdi
  expect_exit 0 "-n into an existing vdi (static=$static)"
  same_content "-n into an existing vdi (static=$static): qemu-img compare" \
    five.raw raw n.vdi vdi
  out=$(qemu-img check -f vdi n.vdi 2>&1) &&
    ok "-n into an existing vdi (static=$static): qemu-img check" ||
    not_ok "-n into an existing vdi (static=$static): qemu-img check" "$out"
  rm -f n.vdi
done

# Options.
fy convert -O vdi -o static=maybe five.raw x.vdi
expect_exit 1 "static=maybe is refused"
expect_stderr "static=maybe" "static=maybe: the message names it"
fy convert -O vdi -o subformat=static,static=off five.raw x.vdi
expect_exit 1 "subformat=static with static=off is refused"
fy convert -O vdi -o cluster_size=2M five.raw x.vdi
expect_exit 1 "an option vdi does not take is refused"
check_true "refused options leave no target" test ! -e x.vdi

# ferry info on ferry's own image.
fy convert -O vdi five.raw w.vdi
fy info --json w.vdi
expect_exit 0 "ferry info --json on ferry's vdi"
got=$(python3 -c '
import json, sys
j = json.load(open(sys.argv[1])); f = j["format-specific"]
print(j["format"], j["virtual-size"], j["cluster-size"], f["subformat"], f["version"])' "$OUT")
check_true "ferry info on ferry's vdi: '$got'" \
  test "$got" = "vdi $((5 * MiB)) $MiB dynamic 1.1"

done_testing
