#!/usr/bin/env bash
# info-orphans: images whose backing file or parent is missing (issue 12,
# item 2): a Hyper-V checkpoint (.avhdx) copied without its parent, a
# differencing VHD and VDI, a VMDK snapshot (monolithicSparse with a
# parentFileNameHint) and qcow2 overlays whose backing file is gone, at the
# top of the chain and below it.
#
# ferry info (text, --json, --backing-chain --json) shows each image's own
# facts, the parent as the image records it (relative, absolute and
# Windows paths, UUIDs, parent_linkage, parentCID) and that it is missing,
# and exits 0; the chain stops at the layer whose parent is missing.
# Judged by qemu-img info where qemu-img opens the image (qcow2, VMDK, VHD;
# it refuses differencing VHDX and VDI), else by what the test's own tools
# wrote from the formats' published layouts.  convert, compare, map and
# check refuse, naming the missing parent ("backing file" for qcow2,
# "parent" for the formats whose documentation says so).
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/vhd-vdi-lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
MiB=$((1 << 20))
VHDX_TOOL=("$PYTHON" "$TESTS_DIR/vhdx-tool.py")

# jq_py FILE EXPR: evaluate the Python expression EXPR with j the JSON of
# FILE; prints the result (strings bare), or "<bad json>".
jq_py () {
  python3 - "$1" "$2" <<'EOF'
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except ValueError:
    print("<bad json>")
    sys.exit(0)
try:
    v = eval(sys.argv[2])
except Exception as e:
    v = "<%s>" % e.__class__.__name__
print(v if isinstance(v, str) else json.dumps(v))
EOF
}

# same_as WHAT GOT WANT
same_as () {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1: got '$2', expected '$3'" "$(last_run)"; fi
}

# orphan WHAT IMG WORD NAME [QFMT]: the checks every orphan gets.  WORD is
# "parent" or "backing file", NAME what the messages must name; with QFMT,
# qemu-img info -f QFMT opens IMG and judges ferry's facts of it.
orphan () {
  local what=$1 img=$2 word=$3 name=$4 qfmt=${5:-} key got want

  fy info "$img"
  if expect_exit 0 "$what: ferry info"; then
    check_true "$what: ferry info (text) says the $word is missing, naming it" \
      grep -q -F -e "backing file missing: the $word" "$OUT"
    check_true "$what: ferry info (text) names '$name'" grep -q -F -e "$name" "$OUT"
    check_true "$what: ferry info (text) shows one layer" test "$(grep -c '^image:' "$OUT")" = 1
  fi

  fy info --json "$img"
  if expect_exit 0 "$what: ferry info --json"; then
    cp "$OUT" f.json
    same_as "$what: backing-missing" "$(jq_py f.json 'j.get("backing-missing")')" true
    check_true "$what: backing-missing-reason names the $word and '$name'" \
      python3 -c 'import json,sys; r = json.load(open("f.json"))["backing-missing-reason"]; sys.exit(not (sys.argv[1] in r and sys.argv[2] in r))' "the $word" "$name"
    same_as "$what: no layer below" "$(jq_py f.json '"backing-image" in j')" false
    if [ -n "$qfmt" ]; then
      qemu-img info -f "$qfmt" --output=json "$img" >q.json 2>q.err ||
        die "qemu-img info $img: $(cat q.err)"
      for key in virtual-size backing-filename full-backing-filename backing-filename-format; do
        want=$(jq_py q.json "j.get('$key')")
        got=$(jq_py f.json "j.get('$key')")
        [ "$qfmt" != qcow2 ] && [ "$want" = null ] && continue   # qemu-img has no backing for vpc
        same_as "$what: $key as qemu-img info says" "$got" "$want"
      done
    fi
  fi

  fy info --backing-chain --json "$img"
  if expect_exit 0 "$what: ferry info --backing-chain --json"; then
    cp "$OUT" c.json
    same_as "$what: --backing-chain: a list of one layer, the image" \
      "$(jq_py c.json '[l["filename"] for l in j]')" "[\"$img\"]"
    same_as "$what: --backing-chain: the same note" \
      "$(jq_py c.json 'j[0]["backing-missing-reason"]')" "$(jq_py f.json 'j["backing-missing-reason"]')"
  fi

  refuses "$what" "$img" "$word" "$name"
}

# refuses WHAT IMG WORD NAME: convert, compare, map and check refuse IMG,
# naming the missing WORD NAME, and leave no target.
refuses () {
  local what=$1 img=$2 word=$3 name=$4
  rm -rf out && mkdir out
  fy convert -O qcow2 "$img" out/x.qcow2
  expect_failure "$what: ferry convert refuses" "$img"
  expect_stderr "the $word" "$what: ferry convert says the $word"
  expect_stderr "$name" "$what: ferry convert names '$name'"
  check_true "$what: ferry convert leaves no target" test -z "$(ls -A out)"
  fy compare "$img" "$img"
  expect_exit 2 "$what: ferry compare refuses (exit 2)" && expect_stderr "$name" "$what: ferry compare names '$name'"
  fy map "$img"
  expect_failure "$what: ferry map refuses" "$img"
  expect_stderr "$name" "$what: ferry map names '$name'"
  fy check "$img"
  expect_failure "$what: ferry check refuses (exit 1)" "$img"
  expect_stderr "the $word" "$what: ferry check says the $word"
  expect_stderr "$name" "$what: ferry check names '$name'"
}

# --- qcow2: a relative name from a subfolder, an absolute name --------------------
mkimg qcow2 base.qcow2 4M
mkdir -p vm
qemu-img create -q -f qcow2 -b ../base.qcow2 -F qcow2 vm/top.qcow2 || die "create"
qio qcow2 vm/top.qcow2 "write -P 0x11 0 64k"
mv base.qcow2 moved.qcow2
orphan "qcow2, relative backing file" vm/top.qcow2 "backing file" "../base.qcow2" qcow2
check_true "qcow2: the note gives the path looked at" \
  grep -q -F "there is no file at 'vm/../base.qcow2'" f.json

mkimg qcow2 "$WORK/abs-base.qcow2" 4M
qemu-img create -q -f qcow2 -b "$WORK/abs-base.qcow2" -F qcow2 vm/abs.qcow2 || die "create"
rm "$WORK/abs-base.qcow2"
orphan "qcow2, absolute backing file" vm/abs.qcow2 "backing file" "$WORK/abs-base.qcow2" qcow2

# A chain whose middle layer lost its backing file: two layers shown, the
# second with the note; qemu-img info --backing-chain gives up on it.
mkimg qcow2 low.qcow2 4M
mkimg qcow2 mid.qcow2 4M "backing_file=low.qcow2,backing_fmt=qcow2"
mkimg qcow2 high.qcow2 4M "backing_file=mid.qcow2,backing_fmt=qcow2"
rm low.qcow2
if qemu-img info --backing-chain high.qcow2 >/dev/null 2>&1; then
  echo "# qemu-img info --backing-chain shows the broken chain"
else
  echo "# qemu-img info --backing-chain refuses the broken chain"
fi
fy info --backing-chain --json high.qcow2
if expect_exit 0 "broken chain: ferry info --backing-chain --json"; then
  cp "$OUT" c.json
  same_as "broken chain: two layers, then the end" \
    "$(jq_py c.json '[l["filename"] for l in j]')" '["high.qcow2", "mid.qcow2"]'
  same_as "broken chain: the top layer has no note" "$(jq_py c.json '"backing-missing" in j[0]')" false
  same_as "broken chain: the second layer's note" "$(jq_py c.json 'j[1]["backing-missing"]')" true
  for i in 0 1; do
    img=$(jq_py c.json "j[$i]['filename']")
    qemu-img info --output=json "$img" >q.json || die "qemu-img info $img"
    for key in virtual-size backing-filename full-backing-filename backing-filename-format actual-size; do
      same_as "broken chain: layer $i $key as qemu-img info $img says" \
        "$(jq_py c.json "j[$i].get('$key')")" "$(jq_py q.json "j.get('$key')")"
    done
  done
fi
fy info high.qcow2
if expect_exit 0 "broken chain: ferry info"; then
  same_as "broken chain: ferry info (text) shows two layers" "$(grep -c '^image:' "$OUT")" 2
  check_true "broken chain: the note under the second layer" \
    grep -q -x "backing file missing: the backing file 'low.qcow2' is missing: there is no file at 'low.qcow2'" "$OUT"
fi
fy convert -O raw high.qcow2 out/high.raw
expect_failure "broken chain: ferry convert refuses" high.qcow2
expect_stderr "high.qcow2: backing file 'mid.qcow2': mid.qcow2: the backing file 'low.qcow2' is missing" \
  "broken chain: the message names the top, the layer and the missing file"
fy check high.qcow2
expect_failure "broken chain: ferry check refuses" high.qcow2
expect_stderr "low.qcow2" "broken chain: ferry check names the missing file"

# --- VHDX: a Hyper-V checkpoint (.avhdx) without its parent -----------------------
mkdir -p hv/vm
mkimg vhdx hv/Disk.vhdx $((9 * MiB)) block_size=1M
qio vhdx hv/Disk.vhdx "write -P 0x21 0 9M"
qemu-img convert -f vhdx -O raw hv/Disk.vhdx hv/Disk.vhdx.raw || die "convert"
"${VHDX_TOOL[@]}" dump hv/Disk.vhdx >parent.json || die "dump"
guid=$(jq_py parent.json 'j["data_write_guid"]')
psize=$(qinfo hv/Disk.vhdx vhdx virtual-size)
"${VHDX_TOOL[@]}" make-child hv/Disk.vhdx hv/Disk.vhdx.raw hv/vm/Disk_1A2B.avhdx \
  kid.want --relative "../Disk.vhdx" || die "make-child"
rm hv/Disk.vhdx
if qemu-img info hv/vm/Disk_1A2B.avhdx >/dev/null 2>&1; then
  echo "# qemu-img info opens the orphaned avhdx"
else
  echo "# qemu-img info refuses the avhdx (it reads no differencing VHDX)"
fi
orphan "avhdx" hv/vm/Disk_1A2B.avhdx parent '..\Disk.vhdx'
same_as "avhdx: virtual size that of the parent it was made from" \
  "$(jq_py f.json 'j["virtual-size"]')" "$psize"
same_as "avhdx: format vhdx" "$(jq_py f.json 'j["format"]')" vhdx
same_as "avhdx: backing-filename, the relative_path as a path" \
  "$(jq_py f.json 'j["backing-filename"]')" "../Disk.vhdx"
same_as "avhdx: full-backing-filename" "$(jq_py f.json 'j["full-backing-filename"]')" \
  "hv/vm/../Disk.vhdx"
same_as "avhdx: parent-linkage, the parent's DataWriteGuid" \
  "$(jq_py f.json 'j["format-specific"]["parent-linkage"].lower()')" "${guid,,}"
same_as "avhdx: parent-relative-path as recorded" \
  "$(jq_py f.json 'j["format-specific"]["parent-relative-path"]')" '..\Disk.vhdx'
same_as "avhdx: parent-absolute-win32-path as recorded" \
  "$(jq_py f.json 'j["format-specific"]["parent-absolute-win32-path"]')" '\\?\C:\Hyper-V\elsewhere\Disk.vhdx'
check_true "avhdx: the note names every place looked at" \
  python3 -c 'import json,sys; r = json.load(open("f.json"))["backing-missing-reason"]; sys.exit(not ("hv/vm/../Disk.vhdx" in r and "hv/vm/Disk.vhdx" in r and "absolute_win32_path" in r))'

# --- VHD: a differencing disk without its parent -----------------------------------
mkdir -p vhd/vms
mkimg vpc vhd/parent.vhd $((10 * MiB)) subformat=dynamic,force_size=on
qio vpc vhd/parent.vhd "write -P 0x31 0 1M"
puuid=$(python3 -c 'import sys, uuid; d = open(sys.argv[1], "rb").read(512); print(uuid.UUID(bytes=d[68:84]))' vhd/parent.vhd)
vvtool vhd-diff vhd/vms/child.vhd vhd/parent.vhd --locators W2ru,W2ku --write 0:4096:0x44
rm vhd/parent.vhd
orphan "differencing vhd" vhd/vms/child.vhd parent "../parent.vhd" vpc
same_as "vhd: parent-uuid, the parent's unique id" \
  "$(jq_py f.json 'j["format-specific"]["parent-uuid"].lower()')" "$puuid"
same_as "vhd: the W2ru locator as recorded" \
  "$(jq_py f.json 'j["format-specific"]["parent-locator-W2ru"]')" '.\..\parent.vhd'
same_as "vhd: the W2ku locator as recorded" \
  "$(jq_py f.json 'j["format-specific"]["parent-locator-W2ku"]')" 'C:\vms\parent.vhd'
same_as "vhd: the header's parent name" \
  "$(jq_py f.json 'j["format-specific"]["parent-name"]')" parent.vhd
same_as "vhd: full-backing-filename" "$(jq_py f.json 'j["full-backing-filename"]')" \
  "vhd/vms/../parent.vhd"

# --- VDI: a differencing image without its parent ----------------------------------
mkdir -p vbox
mkimg vdi vbox/base.vdi $((6 * MiB))
qio vdi vbox/base.vdi "write -P 0x51 0 1M"
vvtool vdi-diff vbox/snap.vdi vbox/base.vdi --write 0:4096:0x52
vuuid=$(python3 -c 'import sys, uuid; d = open(sys.argv[1], "rb").read(512); print(uuid.UUID(bytes_le=d[392:408]))' vbox/base.vdi)
mv vbox/base.vdi base-elsewhere.vdi
orphan "differencing vdi" vbox/snap.vdi parent "{$vuuid}"
same_as "vdi: parent-uuid, the parent's creation UUID" \
  "$(jq_py f.json 'j["format-specific"]["parent-uuid"].lower()')" "$vuuid"
same_as "vdi: no backing-filename (a VDI names its parent by UUID only)" \
  "$(jq_py f.json 'j.get("backing-filename")')" null

# --- VMDK: a monolithicSparse snapshot with a parentFileNameHint --------------------
mkdir -p esx
mkimg vmdk esx/base.vmdk 8M
qio vmdk esx/base.vmdk "write -P 0x61 0 1M"
qemu-img create -q -f vmdk -b base.vmdk -F vmdk esx/snap.vmdk || die "create vmdk child"
qio vmdk esx/snap.vmdk "write -P 0x62 0 64k"
mv esx/base.vmdk base-elsewhere.vmdk
orphan "vmdk snapshot" esx/snap.vmdk parent "base.vmdk" vmdk
qemu-img info -f vmdk --output=json esx/snap.vmdk >q.json || die "qemu-img info"
for key in cid parent-cid create-type; do
  same_as "vmdk: $key as qemu-img info says" \
    "$(jq_py f.json "j['format-specific'].get('$key')")" \
    "$(jq_py q.json "j['format-specific']['data'].get('$key')")"
done

done_testing
