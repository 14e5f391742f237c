#!/usr/bin/env bash
# vmdk-read: every VMDK variant qemu-img writes, and the descriptor kinds
# VMware writes that qemu-img cannot, read by ferry.
#
# Each subformat qemu-img creates (monolithicSparse, monolithicFlat,
# twoGbMaxExtentSparse and twoGbMaxExtentFlat over several extents,
# streamOptimized made by qemu-img convert, zeroed_grain) is filled with
# qemu-io, converted by ferry to raw and to qcow2, and judged by qemu-img
# compare; ferry info must agree with qemu-img info, and ferry map with
# qemu-img map for the sparse kinds (qemu-img calls every byte of a flat
# extent data, holes or not).  Descriptors written
# by hand: vmfs with a VMFS extent line with offset 0 and without an
# offset (qemu-img reads those too), vmfsThin and vmfsPreallocated, and a
# custom descriptor mixing FLAT at an offset, SPARSE, ZERO, VMFS and
# VMFSSPARSE extents named by relative, absolute and quoted names with
# spaces, judged against a raw file assembled from the same pieces.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/vmdk-lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"

# info_agrees WHAT IMG: ferry info --json and qemu-img info agree on the
# virtual size, the create type, the CIDs and the extents' sizes.
info_agrees () {
  local what=$1 img=$2 want got
  fy info --json "$img"
  expect_exit 0 "$what: ferry info --json" || return
  want=$(qemu-img info --output=json "$img" | python3 -c '
import json, sys
j = json.load(sys.stdin); d = j["format-specific"]["data"]
print(j["format"], j["virtual-size"], d["create-type"], d["cid"], d["parent-cid"],
      [e["virtual-size"] for e in d["extents"]])')
  got=$(python3 -c '
import json, sys
j = json.load(open(sys.argv[1])); d = j["format-specific"]
n = d.get("extents", 0)
print(j["format"], j["virtual-size"], d.get("create-type"), d.get("cid"), d.get("parent-cid"),
      [d.get("extent[%d].virtual-size" % i) for i in range(n)])' "$OUT" 2>&1)
  check_true "$what: ferry info '$got' = qemu-img info '$want'" test "$got" = "$want"
}

# json_get FILE KEY: the member KEY of "format-specific" in FILE.
json_get () {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["format-specific"].get(sys.argv[2], ""))' "$1" "$2"
}

mb=$((1 << 20))
size=$((8 * mb))

# --- the subformats qemu-img writes ------------------------------------------------
for sub in monolithicSparse monolithicFlat; do
  mkimg vmdk $sub.vmdk $size "subformat=$sub"
  fill_pattern vmdk $sub.vmdk 65536 $size
  read_and_judge "qemu-img $sub" $sub.vmdk
  info_agrees "qemu-img $sub" $sub.vmdk
done
map_agrees "qemu-img monolithicSparse" monolithicSparse.vmdk vmdk

mkimg vmdk zg.vmdk $size "zeroed_grain=on"
qio vmdk zg.vmdk "write -P 0x61 0 1m" "write -z 64k 128k" "write -P 0x62 2m 4k" "write -z 2m 64k"
read_and_judge "qemu-img monolithicSparse zeroed_grain=on" zg.vmdk
map_agrees "qemu-img monolithicSparse zeroed_grain=on" zg.vmdk vmdk

# Several extents, with data across the 2 GiB extent boundaries.
big=$((4 * 1024 * mb + 3 * mb))
for sub in twoGbMaxExtentSparse twoGbMaxExtentFlat; do
  mkimg vmdk $sub.vmdk $big "subformat=$sub"
  qio vmdk $sub.vmdk "write -P 0x71 0 64k" "write -s $RAND $((2048 * mb - 96 * 1024)) 192k" \
    "write -P 0x72 $((4096 * mb - 512)) 1k" "write -s $RAND $((big - 3 * mb)) 1m" \
    "write -P 0x73 $((big - 512)) 512"
  read_and_judge "qemu-img $sub over 3 extents" $sub.vmdk
  info_agrees "qemu-img $sub" $sub.vmdk
  [ $sub = twoGbMaxExtentSparse ] && map_agrees "qemu-img $sub over 3 extents" $sub.vmdk vmdk
  rm -f $sub*.vmdk
done

# streamOptimized, as qemu-img convert writes it (its grains go in whole).
mkimg raw pattern.raw $size
fill_pattern raw pattern.raw 65536 $size
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized pattern.raw qstream.vmdk ||
  die "qemu-img convert to streamOptimized"
read_and_judge "qemu-img streamOptimized" qstream.vmdk
info_agrees "qemu-img streamOptimized" qstream.vmdk
map_agrees "qemu-img streamOptimized" qstream.vmdk vmdk

# streamOptimized in VMware's layout (tables after their grains, the
# directory in the footer), deflated by another zlib, and the same with
# header version 1, as older VMware products wrote it.
mk stream vstream.vmdk pattern.raw
read_and_judge "streamOptimized in VMware's layout" vstream.vmdk pattern.raw raw
map_agrees "streamOptimized in VMware's layout" vstream.vmdk vmdk
cp vstream.vmdk v1stream.vmdk
fsize=$(stat -c %s v1stream.vmdk)
mk patch v1stream.vmdk 4 '<I' 1 $((fsize - 1024 + 4)) '<I' 1
read_and_judge "streamOptimized, header version 1" v1stream.vmdk pattern.raw raw
fy info v1stream.vmdk
check_true "version 1 stream: ferry info says version 1" grep -q 'extent\[0\].version: 1' "$OUT"

# The format is probed from the content, never the name.
cp monolithicSparse.vmdk disk.img
rm -f probed.raw
fy convert -O raw disk.img probed.raw
expect_exit 0 "a VMDK named disk.img is probed as vmdk" &&
  same_content "probed: qemu-img compare" monolithicSparse.vmdk vmdk probed.raw raw
fy info monolithicFlat.vmdk
check_true "a descriptor file is probed as vmdk" grep -q '^file format: vmdk' "$OUT"
rm -f disk.img probed.raw

# --- vmfs descriptors ----------------------------------------------------------------------
mkimg raw vmfs-flat.vmdk $((4 * mb))
qio raw vmfs-flat.vmdk "write -s $RAND 0 1m" "write -P 0x81 3m 4k"
# qemu-img reads a VMFS line without an offset; with "0" only ferry does,
# and the flat file is the reference.
for offset in "" " 0"; do
  cat >vmfs.vmdk <<EOF
# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=0badcafe
parentCID=ffffffff
isNativeSnapshot="no"
createType="vmfs"

# Extent description
RW 8192 VMFS "vmfs-flat.vmdk"$offset

# The Disk Data Base
#DDB

ddb.adapterType = "lsilogic"
ddb.geometry.cylinders = "0"
ddb.geometry.heads = "255"
ddb.geometry.sectors = "63"
ddb.virtualHWVersion = "13"
ddb.thinProvisioned = "1"
EOF
  if [ -z "$offset" ]; then
    read_and_judge "vmfs, VMFS extent without an offset" vmfs.vmdk
    info_agrees "vmfs, VMFS extent without an offset" vmfs.vmdk
  else
    read_and_judge "vmfs, VMFS extent with offset 0" vmfs.vmdk vmfs-flat.vmdk raw
  fi
done
# vmfsThin and vmfsPreallocated: qemu-img refuses the create types, so the
# flat file itself is the reference.
for ct in vmfsThin vmfsPreallocated vmfsEagerZeroedThick; do
  sed "s/createType=\"vmfs\"/createType=\"$ct\"/" vmfs.vmdk >$ct.vmdk
  read_and_judge "$ct" $ct.vmdk vmfs-flat.vmdk raw
  fy info --json $ct.vmdk
  check_true "$ct: ferry info shows the create type" \
    test "$(json_get "$OUT" create-type)" = "$ct"
done

# --- a custom descriptor with every extent type ----------------------------------------------
# disk: [FLAT at offset 2048 sectors of "flat part.bin" (1 MiB)]
#       [SPARSE monolithicSparse made by qemu-img (2 MiB)]
#       [ZERO (1 MiB)]
#       [VMFS whole file by absolute name (1 MiB)]
#       [VMFSSPARSE: a COWD extent (1 MiB)]
mkdir -p "sub dir"
mkimg raw "flat part.bin" $((2 * mb))
qio raw "flat part.bin" "write -P 0x91 0 2m" "write -s $RAND 1m 1m"
mkimg vmdk "sub dir/sparse part.vmdk" $((2 * mb))
qio vmdk "sub dir/sparse part.vmdk" "write -P 0x92 64k 64k" "write -s $RAND 1m 512k"
mkimg raw vmfs.bin $mb
qio raw vmfs.bin "write -s $RAND 0 1m"
mkimg raw cowd.raw $mb
qio raw cowd.raw "write -P 0x93 4k 8k" "write -s $RAND 512k 100k"
"${MK[@]}" cowd cowd.vmdk cowd.raw 8 || die "vmdk-make.py cowd"
cat >custom.vmdk <<EOF
# Disk DescriptorFile
version=1
CID=12345678
parentCID=ffffffff
createType="custom"

# Extent description
RW 2048 FLAT "flat part.bin" 2048
RW 4096 SPARSE "sub dir/sparse part.vmdk"
RDONLY 2048 ZERO
RW 2048 VMFS "$WORK/vmfs.bin"
RW 2048 VMFSSPARSE "cowd.vmdk"

#DDB
ddb.adapterType = "buslogic"
EOF
qemu-img convert -f vmdk -O raw "sub dir/sparse part.vmdk" sparse.raw ||
  die "qemu-img convert sparse part.vmdk"
{
  dd if="flat part.bin" bs=1M skip=1 count=1 status=none
  cat sparse.raw
  head -c $mb /dev/zero
  cat vmfs.bin cowd.raw
} >custom.ref || die "assembling custom.ref"
read_and_judge "custom: FLAT+offset, SPARSE, ZERO, VMFS, VMFSSPARSE" custom.vmdk custom.ref raw
fy info --json custom.vmdk
if expect_exit 0 "custom: ferry info"; then
  got=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))["format-specific"]
print(" ".join("%s:%s:%s" % (d["extent[%d].type" % i], d.get("extent[%d].filename" % i, "-").split("/")[-1],
      d["extent[%d].virtual-size" % i]) for i in range(d["extents"])))' "$OUT")
  want="FLAT:flat part.bin:1048576 SPARSE:sparse part.vmdk:2097152 ZERO:-:1048576 VMFS:vmfs.bin:1048576 VMFSSPARSE:cowd.vmdk:1048576"
  check_true "custom: ferry info lists each extent ($got)" test "$got" = "$want"
  check_true "custom: ferry info shows RDONLY" \
    test "$(json_get "$OUT" 'extent[2].access')" = RDONLY
  check_true "custom: ferry info shows the flat offset" \
    test "$(json_get "$OUT" 'extent[0].offset')" = 1048576
fi
# A flat extent shorter than its line reads as zeroes past its end.
sed 's/RW 2048 VMFS .*/RW 4096 VMFS "vmfs.bin"/; s/^RW 2048 VMFSSPARSE.*//' custom.vmdk >short.vmdk
{ head -c $((4 * mb)) custom.ref; cat vmfs.bin; head -c $mb /dev/zero; } >short.ref
read_and_judge "a flat extent shorter than its line" short.vmdk short.ref raw

# Windows line ends, a byte order mark, and no leading comment.
{ printf '\xef\xbb\xbf'; sed 's/$/\r/' vmfs.vmdk | grep -v '^# Disk'; } >crlf.vmdk
read_and_judge "a descriptor with CRLF line ends and a BOM" crlf.vmdk vmfs-flat.vmdk raw

done_testing
