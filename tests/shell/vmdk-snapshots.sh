#!/usr/bin/env bash
# vmdk-snapshots: ESX snapshot chains.  A monolithicSparse base (made by
# qemu-img), a vmfsSparse (COWD) snapshot of it and a seSparse snapshot of
# that, with zeroed and unmapped grains that hide the data below, found
# through parentFileNameHint (relative, in another folder, and ESX's
# absolute datastore path); each layer is read by ferry and judged against
# qemu-img's reading of the same chain, its map against qemu-img map.  ferry info shows the chain.  A
# parentCID that does not match the parent's CID is a warning naming both
# files (qemu-img refuses to read such a chain); a missing parent (ferry
# info still shows the snapshot and says so) and a chain that loops are
# refused.  The COWD and seSparse files are self-made by vmdk-make.py from
# the published layouts (no VMware-written ones are in the corpus).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/vmdk-lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
mb=$((1 << 20))
size=$((64 * mb))
sectors=$((size / 512))

cid_of () { printf '%08x' "$(qinfo "$1" vmdk format-specific.data.cid)"; }
# snapshot_descriptor FILE CREATE_TYPE PARENT_CID HINT TYPE EXTENT [CID]
snapshot_descriptor () {
  cat >"$1" <<EOF
# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=${7:-fffffffe}
parentCID=$3
isNativeSnapshot="no"
createType="$2"
parentFileNameHint="$4"
# Extent description
RW $sectors $5 "$6"

# The Disk Data Base 
#DDB

ddb.longContentID = "0123456789abcdef0123456789abcdef"
EOF
}

# --- the base and a COWD snapshot -----------------------------------------------------
mkimg vmdk base.vmdk $size
qio vmdk base.vmdk "write -s $RAND 0 4m" "write -P 0x22 30m 1m" "write -P 0x23 63m 1m"
mkimg raw delta1.raw $size
qio raw delta1.raw "write -P 0x33 1m 100k" "write -s $RAND 40m 3m" "write -P 0x34 $((64 * mb - 512)) 512" \
  "write -P 0x35 $((30 * mb + 512)) 512"
"${MK[@]}" cowd base-000001-delta.vmdk delta1.raw 1 || die "vmdk-make.py cowd"
snapshot_descriptor base-000001.vmdk vmfsSparse "$(cid_of base.vmdk)" base.vmdk VMFSSPARSE \
  base-000001-delta.vmdk 5a5a0001
read_and_judge "COWD snapshot over monolithicSparse" base-000001.vmdk
map_agrees "COWD snapshot over monolithicSparse" base-000001.vmdk vmdk

fy info base-000001.vmdk
if expect_exit 0 "ferry info of the COWD snapshot"; then
  check_true "ferry info: parent base.vmdk" grep -q '^backing file: base.vmdk$' "$OUT"
  check_true "ferry info: the chain goes down to base.vmdk" grep -q '^image: .*base.vmdk$' "$OUT"
  check_true "ferry info: create type vmfsSparse" grep -q 'create-type: vmfsSparse' "$OUT"
  check_true "ferry info: a COWD extent" grep -q 'extent\[0\].format: COWD' "$OUT"
  check_true "ferry info: no warning for matching CIDs" test ! -s "$ERR"
fi

# --- a seSparse snapshot of the COWD snapshot ---------------------------------------------
mkimg raw delta2.raw $size
qio raw delta2.raw "write -P 0x44 0 64k" "write -s $RAND 20m 17m" "write -P 0x45 $((41 * mb)) 4k"
# A zeroed grain over the base's data, an unmapped one over the COWD's.
"${MK[@]}" sesparse base-000002-sesparse.vmdk delta2.raw zero=$((30 * mb + 8192)) \
  unmapped=$((41 * mb + 4096)) || die "vmdk-make.py sesparse"
snapshot_descriptor base-000002.vmdk seSparse 5a5a0001 base-000001.vmdk SESPARSE \
  base-000002-sesparse.vmdk
read_and_judge "seSparse over COWD over monolithicSparse" base-000002.vmdk
map_agrees "seSparse over COWD over monolithicSparse" base-000002.vmdk vmdk
fy info --json base-000002.vmdk
if expect_exit 0 "ferry info --json of the three-layer chain"; then
  chain=$(python3 -c '
import json, sys
j = json.load(open(sys.argv[1])); out = []
while j:
    out.append("%s:%s" % (j["filename"].split("/")[-1], j["format-specific"]["create-type"]))
    j = j.get("backing-image")
print(" ".join(out))' "$OUT")
  check_true "chain: $chain" test "$chain" = \
    "base-000002.vmdk:seSparse base-000001.vmdk:vmfsSparse base.vmdk:monolithicSparse"
fi

# --- where the parent is found ------------------------------------------------------------
mkdir -p snaps vmfs
sed 's|parentFileNameHint="base.vmdk"|parentFileNameHint="../base.vmdk"|' base-000001.vmdk >snaps/s1.vmdk
cp base-000001-delta.vmdk snaps/
read_and_judge "parent in the folder above" snaps/s1.vmdk base-000001.vmdk vmdk
# ESX writes absolute datastore paths; off the host the parent is beside.
sed 's|parentFileNameHint="base.vmdk"|parentFileNameHint="/vmfs/volumes/5d3f2b1a-datastore1/vm one/base.vmdk"|' \
  base-000001.vmdk >esx.vmdk
read_and_judge "absolute ESX parent path, parent beside the snapshot" esx.vmdk base-000001.vmdk vmdk
sed 's|parentFileNameHint="base.vmdk"|parentFileNameHint="/nonexistent/base-missing.vmdk"|' \
  base-000001.vmdk >missing.vmdk
fy convert -O raw missing.vmdk missing.raw
expect_failure "a parent that is nowhere" missing.vmdk
expect_stderr "base-missing.vmdk" "a parent that is nowhere: the message names it"
check_true "a parent that is nowhere: no target left" test ! -e missing.raw
fy info missing.vmdk
expect_exit 0 "a parent that is nowhere: ferry info shows the snapshot"
check_true "a parent that is nowhere: ferry info says so" \
  grep -q "^backing file missing: .*base-missing.vmdk" "$OUT"

# --- CID / parentCID ------------------------------------------------------------------------
sed 's/^parentCID=.*/parentCID=12345678/' base-000001.vmdk >stale.vmdk
fy info stale.vmdk
if expect_exit 0 "a stale parentCID: ferry info still works"; then
  expect_stderr_re 'warning.*stale\.vmdk.*parentCID 12345678.*base\.vmdk' \
    "a stale parentCID: the warning names both files"
fi
rm -f out.raw
fy convert -O raw stale.vmdk out.raw
if expect_exit 0 "a stale parentCID: ferry reads on"; then
  expect_stderr "parentCID" "a stale parentCID: convert warns"
  same_content "a stale parentCID: the data of the chain" base-000001.vmdk vmdk out.raw raw
fi

# --- loops ---------------------------------------------------------------------------------------
snapshot_descriptor self.vmdk vmfsSparse 5a5a0001 self.vmdk VMFSSPARSE base-000001-delta.vmdk
fy info self.vmdk
expect_failure "a snapshot whose parent is itself" self.vmdk
expect_stderr_re 'loop' "a snapshot whose parent is itself: says it loops"
snapshot_descriptor loop-a.vmdk vmfsSparse 5a5a0001 loop-b.vmdk VMFSSPARSE base-000001-delta.vmdk 0000000a
snapshot_descriptor loop-b.vmdk vmfsSparse 0000000a loop-a.vmdk VMFSSPARSE base-000001-delta.vmdk 5a5a0001
FY_TIMEOUT=20 fy convert -O raw loop-a.vmdk loop.raw
expect_failure "two snapshots that are each other's parent" loop-a.vmdk

# --- COWD with 4 KiB grains over several grain tables ----------------------------------------
mkimg raw d3.raw $size
qio raw d3.raw "write -s $RAND 0 20m" "write -P 0x55 50m 4k"
"${MK[@]}" cowd d3.vmdk d3.raw 8 || die "vmdk-make.py cowd"
snapshot_descriptor s3.vmdk vmfsSparse "$(cid_of base.vmdk)" base.vmdk VMFSSPARSE d3.vmdk
read_and_judge "COWD with 4 KiB grains" s3.vmdk
# A COWD file opened alone (no descriptor): its own grains over zeroes.
read_and_judge "a COWD extent opened alone" d3.vmdk d3.raw raw

done_testing
