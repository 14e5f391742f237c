#!/usr/bin/env bash
# vhdx-differencing: differencing VHDX.  qemu-img cannot write them (nor
# read them: it answers "Operation not supported"), so vhdx-tool.py builds
# children from the published layout over parents that qemu-img made and
# qemu-io filled: one payload block in each state (fully present,
# partially present with a sector bitmap, zero, not present, unmapped,
# undefined), a parent locator with parent_linkage set to the parent's
# DataWriteGuid and a relative path.  The tool also writes what the child
# must read as, from the parent's contents as qemu-img reads them; ferry's
# reading is compared with that by qemu-img compare, through raw, qcow2,
# VHDX and a qcow2 overlay on the VHDX parent (which qemu-img reads).
# A missing parent is an error naming the path the child expects (ferry
# info shows the child and says so; tests/shell/info-orphans.sh more); a
# parent whose DataWriteGuid changed is refused; writing into a child is
# refused.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
TOOL=("$PYTHON" "$TESTS_DIR/vhdx-tool.py")
MiB=$((1 << 20))
size=$((9 * MiB))


# make_parent NAME: a qemu-img VHDX of 1 MiB blocks, filled, and its
# contents in NAME.raw.
make_parent () {
  mkimg vhdx "$1" $size block_size=1M
  qio vhdx "$1" "write -s $RAND 0 $size" "write -P 0x22 $((3 * MiB)) $MiB" \
    "write -z $((6 * MiB)) $MiB"
  qemu-img convert -f vhdx -O raw "$1" "$1.raw" || die "qemu-img convert $1"
}
# make_child PARENT CHILD [vhdx-tool options]: the child and CHILD.want.
make_child () {
  local p=$1 c=$2
  shift 2
  "${TOOL[@]}" make-child "$p" "$p.raw" "$c" "$c.want" "$@" || die "make-child $c"
}
# reads_as WHAT IMG WANT_RAW: ferry converts IMG to raw, qcow2 and VHDX,
# and qemu-img finds each equal to WANT_RAW.
reads_as () {
  local what=$1 img=$2 want=$3 f
  for f in raw qcow2 vhdx; do
    rm -f flat.$f
    fy convert -O $f "$img" flat.$f
    if expect_exit 0 "$what: ferry convert -O $f"; then
      same_content "$what -> $f: qemu-img compare with what it must read as" "$want" raw flat.$f $f
    fi
  done
  [ -f flat.vhdx ] && qemu_clean "$what -> vhdx: qemu-img check" flat.vhdx vhdx
  rm -f flat.raw flat.qcow2 flat.vhdx
}

make_parent parent.vhdx
make_child parent.vhdx child.vhdx
if qemu-img info child.vhdx >"$WORK/q.out" 2>&1; then
  note="qemu-img opens it too"
else
  note="qemu-img refuses it: $(tail -n 1 "$WORK/q.out")"
fi
echo "# differencing VHDX: $note"
reads_as "child of a qemu-img parent" child.vhdx child.vhdx.want

fy info --json child.vhdx
if expect_exit 0 "ferry info on the child"; then
  check_true "ferry info: the backing file is the parent" grep -q '"backing-filename": *"parent.vhdx"' "$OUT"
  check_true "ferry info: subformat differencing" grep -q '"subformat": *"differencing"' "$OUT"
  link=$("${TOOL[@]}" dump parent.vhdx | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_write_guid"])')
  check_true "ferry info: parent-linkage is the parent's DataWriteGuid $link" grep -q -F "\"$link\"" "$OUT"
fi

# A qcow2 overlay on the VHDX parent: ferry writes only what differs, and
# qemu-img reads it through the parent.
rm -f over.qcow2
fy convert -O qcow2 -B parent.vhdx -F vhdx child.vhdx over.qcow2
if expect_exit 0 "child -> qcow2 overlay on the VHDX parent"; then
  same_content "qcow2 overlay on the VHDX parent: qemu-img compare" child.vhdx.want raw over.qcow2 qcow2
  qemu_clean "qcow2 overlay on the VHDX parent: qemu-img check" over.qcow2
fi

# A chain of three: a child of the child.
"${TOOL[@]}" make-child child.vhdx child.vhdx.want grandchild.vhdx grandchild.vhdx.want ||
  die "make-child grandchild"
reads_as "grandchild (a chain of three)" grandchild.vhdx grandchild.vhdx.want

# Only absolute Windows paths: the parent is found by its file name
# beside the child.
make_child parent.vhdx abs.vhdx --no-relative
reads_as "child with only absolute_win32_path" abs.vhdx abs.vhdx.want

# A relative path into another folder, with Windows separators.
mkdir -p vms/kids vms/parents
cp parent.vhdx parent.vhdx.raw vms/parents/
make_child vms/parents/parent.vhdx vms/kids/kid.vhdx --relative '..\parents\parent.vhdx'
reads_as "child in another folder (relative_path ..\\parents\\parent.vhdx)" \
  vms/kids/kid.vhdx vms/kids/kid.vhdx.want

# 4096-byte logical sectors, parent and child.
make_parent p4k.vhdx
"${TOOL[@]}" set-lss p4k.vhdx 4096 || die "set-lss"
make_child p4k.vhdx c4k.vhdx
reads_as "child with 4096-byte sectors" c4k.vhdx c4k.vhdx.want

# --- refusals ---------------------------------------------------------------------
mv vms/parents/parent.vhdx vms/parents/moved.vhdx
fy info vms/kids/kid.vhdx
expect_exit 0 "missing parent: ferry info shows the child"
check_true "missing parent: ferry info names the path the child expects" \
  grep -q "^backing file missing: .*vms/kids/../parents/parent.vhdx" "$OUT"
rm -rf out && mkdir out
fy convert -O raw vms/kids/kid.vhdx out/x.raw
expect_failure "missing parent: ferry convert refused" kid.vhdx
expect_stderr "vms/kids/../parents/parent.vhdx" "missing parent: the message names the path the child expects"
check_true "missing parent: no target left" test -z "$(ls -A out)"

make_child parent.vhdx stale.vhdx --linkage '{0badf00d-0000-4000-8000-000000000000}'
fy info stale.vhdx
expect_failure "parent_linkage that is not the parent's DataWriteGuid: refused" stale.vhdx
expect_stderr "{0badf00d-0000-4000-8000-000000000000}" "stale linkage: the message gives the linkage"
expect_stderr "DataWriteGuid" "stale linkage: the message says what differs"

make_child p4k.vhdx mixed.vhdx
"${TOOL[@]}" set-lss p4k.vhdx 512 || die "set-lss 512"   # same DataWriteGuid
fy info mixed.vhdx
expect_failure "parent with 512-byte sectors under a 4096-byte child: refused" mixed.vhdx
expect_stderr "512-byte sectors" "sector size mismatch: the message says so"

cp child.vhdx child-copy.vhdx
sum=$(md5sum <child-copy.vhdx)
fy convert -n -f raw -O vhdx parent.vhdx.raw child-copy.vhdx
expect_failure "writing into a differencing VHDX: refused" child-copy.vhdx
expect_stderr "differencing" "writing into a differencing VHDX: the message says why"
check_true "writing into a differencing VHDX: the file is unchanged" test "$(md5sum <child-copy.vhdx)" = "$sum"

fy check child.vhdx
expect_exit 0 "ferry check on the child"

# Opening the parent for writing without changing what it reads keeps its
# DataWriteGuid (the child still matches it); a write changes it, and the
# child, whose parent has changed under it, is refused.
guid () { "${TOOL[@]}" dump "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_write_guid"])'; }
before=$(guid parent.vhdx)
: >empty.raw
fy convert -n -f raw -O vhdx empty.raw parent.vhdx
expect_exit 0 "parent opened for writing, nothing written"
check_true "nothing written: the parent keeps its DataWriteGuid" test "$(guid parent.vhdx)" = "$before"
fy info child.vhdx
expect_exit 0 "nothing written: the child still opens"
truncate -s 4096 one.raw
printf 'x' | dd of=one.raw conv=notrunc 2>/dev/null
fy convert -n -f raw -O vhdx one.raw parent.vhdx
expect_exit 0 "parent written into"
check_true "written: the parent has a new DataWriteGuid" test "$(guid parent.vhdx)" != "$before"
fy info child.vhdx
expect_failure "written: the child of the changed parent is refused" child.vhdx
expect_stderr "DataWriteGuid" "written: the message says the parent changed"

done_testing
