#!/usr/bin/env bash
# vhd: dynamic and fixed VHD disks made by qemu-img (vpc), filled with
# qemu-io's standard mix, converted by ferry both ways: to raw, qcow2 and
# vhd, and back into every kind of VHD ferry writes (dynamic, fixed,
# other block sizes, force_size=off, azure=on), on sizes that are and are
# not a multiple of the 2 MiB block.  qemu-img compare judges the
# contents and qemu-img info the size; qemu-img check does not check vpc
# images, so vhd-vdi-tool.py vhd-check checks the structure ferry writes
# against the specification.  Also: writing into existing disks (-n), an
# empty disk, the 2040 GiB limit, and what ferry info says.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/vhd-vdi-lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
MiB=$((1 << 20))
BS=$((2 * MiB))

for sub in dynamic fixed; do
  for size in $((16 * MiB)) $((19 * MiB + 1536)); do
    tag="$sub, $size bytes"
    src=src.vhd
    rm -f "$src"
    mkimg vpc "$src" "$size" "subformat=$sub,force_size=on"
    fill_pattern vpc "$src" "$BS" "$size"

    # Reading what qemu-img wrote.
    convert_from "$tag: vhd -> raw" "$src" vhd out.raw raw
    convert_from "$tag: vhd -> qcow2" "$src" vhd out.qcow2 qcow2
    convert_to "$tag: vhd -> vhd" "$src" vhd out.vhd vhd "$size" -m 4

    # Writing every kind of VHD from the raw copy.
    [ -f out.raw ] || continue
    convert_to "$tag: raw -> vhd (dynamic)" out.raw raw d.vhd vhd "$size"
    convert_to "$tag: raw -> vhd (fixed)" out.raw raw f.vhd vhd "$size" \
      -o subformat=fixed -m 4
    convert_to "$tag: raw -> vhd (block_size=512k)" out.raw raw b.vhd vhd \
      "$size" -o block_size=512k
    convert_to "$tag: raw -> vhd (block_size=4k, one thread)" out.raw raw \
      b4.vhd vhd "$size" -o block_size=4k -m 1
    convert_to "$tag: qcow2 -> vhd" out.qcow2 qcow2 q.vhd vhd "$size"
    # force_size=off rounds up to a CHS geometry as qemu-img does: the
    # peer's own rounding of the same size is the expected size.
    mkimg vpc chs.vhd "$size"
    convert_to "$tag: raw -> vhd (force_size=off)" out.raw raw c.vhd vhd \
      "$(qemu_size chs.vhd vpc)" -o force_size=off
    # azure=on: fixed, whole MiB, the file N MiB + 512 bytes.
    if convert_to "$tag: raw -> vhd (azure=on)" out.raw raw a.vhd vhd \
         "$(round_up "$size" $MiB)" -o azure=on; then
      check_true "$tag: azure=on file is a whole number of MiB + 512 bytes" \
        test $(( $(stat -c %s a.vhd) % MiB )) = 512
      check_true "$tag: azure=on writes a fixed disk" \
        test "$(ferry_fact a.vhd format-specific.subformat)" = fixed
    fi
    rm -f out.* ./*.vhd
  done
done

# Data past 4 GiB and more than 32 bits of byte offsets, sparse.
mkimg vpc big.vhd 6G force_size=on
qio vpc big.vhd "write -P 0x61 0 64k" "write -s $RAND $(((4 << 30) - 4096)) 8192" \
  "write -P 0x63 $(((6 << 30) - 512)) 512"
convert_from "6 GiB: vhd -> raw" big.vhd vhd big.raw raw
convert_to "6 GiB: raw -> vhd" big.raw raw big2.vhd vhd $((6 << 30))
[ -f big2.vhd ] && check_true "6 GiB: ferry's VHD stays sparse (< 16 MiB on disk)" \
  test "$(allocated_bytes big2.vhd)" -lt $((16 << 20))
rm -f big*

# An odd-sized raw file: the disk is rounded up to whole sectors.
head -c 1000001 "$RAND" >odd.raw
convert_to "odd-sized raw -> vhd" odd.raw raw odd.vhd vhd 1000448
convert_to "odd-sized raw -> fixed vhd" odd.raw raw oddf.vhd vhd 1000448 \
  -o subformat=fixed

# An empty disk.
: >empty.raw
convert_to "empty raw -> vhd" empty.raw raw empty.vhd vhd 0

# Writing into existing disks (-n): a dynamic one qemu-img made, with
# blocks of its own already, and a fixed one.
head -c $((5 * MiB)) "$RAND" >five.raw
for sub in dynamic fixed; do
  mkimg vpc n.vhd $((5 * MiB)) "subformat=$sub,force_size=on"
  qio vpc n.vhd "write -P 0x77 $((3 * MiB)) 4096"
  fy convert -n -O vpc five.raw n.vhd
  expect_exit 0 "-n into an existing $sub vhd"
  same_content "-n into an existing $sub vhd: qemu-img compare" five.raw raw n.vhd vpc
  if [ "$sub" = dynamic ]; then
    out=$("${VV_TOOL[@]}" vhd-check n.vhd 2>&1) &&
      ok "-n into an existing dynamic vhd: structure ($out)" ||
      not_ok "-n into an existing dynamic vhd: vhd-check" "$out"
  fi
  rm -f n.vhd
done

# The 2040 GiB limit: at it, a dynamic disk; past it, a clear refusal.
truncate -s 2040G limit.raw
convert_to "2040 GiB raw -> vhd" limit.raw raw limit.vhd vhd $((2040 << 30))
rm -f limit.vhd
truncate -s 2041G over.raw
fy convert -O vhd over.raw over.vhd
expect_exit 1 "2041 GiB -> vhd is refused"
expect_stderr "at most 2040 GiB" "2041 GiB -> vhd: the message gives the limit"
check_true "2041 GiB -> vhd: no target left" test ! -e over.vhd
fy convert -O vhd -o azure=on over.raw over.vhd
expect_exit 1 "2041 GiB -> vhd azure=on is refused"
rm -f limit.raw over.raw

# Bad options get a message naming the option.
fy convert -O vhd -o subformat=sparse five.raw x.vhd
expect_exit 1 "subformat=sparse is refused"
expect_stderr "subformat=sparse" "subformat=sparse: the message names it"
fy convert -O vhd -o block_size=3M five.raw x.vhd
expect_exit 1 "block_size=3M is refused"
expect_stderr "block_size" "block_size=3M: the message names the option"
fy convert -O vhd -o subformat=fixed,block_size=1M five.raw x.vhd
expect_exit 1 "block_size with subformat=fixed is refused"
fy convert -O vhd -o azure=on,subformat=dynamic five.raw x.vhd
expect_exit 1 "azure=on with subformat=dynamic is refused"
expect_stderr "fixed" "azure=on,subformat=dynamic: the message says Azure wants fixed"
fy convert -O vhd -o cluster_size=64k five.raw x.vhd
expect_exit 1 "an option vhd does not take is refused"
check_true "refused options leave no target" test ! -e x.vhd

# What ferry info says about a disk ferry wrote, and qemu-img's name.
fy convert -O vpc five.raw w.vhd
expect_exit 0 "-O vpc (qemu-img's name) writes a vhd"
fy info --json w.vhd
expect_exit 0 "ferry info --json on ferry's vhd"
got=$(python3 -c '
import json, sys
j = json.load(open(sys.argv[1])); f = j["format-specific"]
print(j["format"], j["virtual-size"], f["subformat"], f["creator-app"], f["size-from"])' "$OUT")
check_true "ferry info on ferry's vhd: '$got'" \
  test "$got" = "vhd $((5 * MiB)) dynamic frry current-size"
fy info -f vpc w.vhd
expect_exit 0 "ferry info -f vpc (the alias)"

done_testing
