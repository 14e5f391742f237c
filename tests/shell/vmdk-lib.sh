# vmdk-lib.sh: what the vmdk-*.sh tests share.  Source it after lib.sh.

# vmdk-make.py: COWD, seSparse and stream files from the published
# layouts, field patches, and an inspector (see its header).
MK=("$PYTHON" "$TESTS_DIR/vmdk-make.py")
mk () { "${MK[@]}" "$@" || die "vmdk-make.py $*"; }

# read_and_judge WHAT IMG [REF REF_FMT]: ferry converts the VMDK IMG to raw
# and to qcow2; qemu-img compare judges both against REF (default: IMG as
# qemu-img reads it), and qemu-img check the qcow2.
read_and_judge () {
  local what=$1 img=$2 ref=${3:-$2} rf=${4:-vmdk}
  rm -f out.raw out.qcow2
  fy convert -O raw "$img" out.raw
  if expect_exit 0 "$what: ferry convert -> raw"; then
    same_content "$what: -> raw: qemu-img compare" "$ref" "$rf" out.raw raw
  fi
  fy convert -O qcow2 "$img" out.qcow2
  if expect_exit 0 "$what: ferry convert -> qcow2"; then
    same_content "$what: -> qcow2: qemu-img compare" "$ref" "$rf" out.qcow2 qcow2
    qemu_clean "$what: -> qcow2: qemu-img check" out.qcow2
  fi
  rm -f out.raw out.qcow2
}

# vmdk_clean WHAT IMG: qemu-img check finds no errors in the VMDK IMG.
vmdk_clean () {
  local out rc=0
  out=$(qemu-img check -f vmdk "$2" 2>&1) || rc=$?
  if [ "$rc" = 0 ]; then ok "$1"; else not_ok "$1: qemu-img check exit $rc" "$out"; fi
}
