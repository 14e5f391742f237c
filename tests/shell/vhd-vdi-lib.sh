# vhd-vdi-lib.sh: what the VHD and VDI tests share.  Source it after
# lib.sh.
#
# The judges: qemu-img compare for contents (-f vpc / -f vdi), qemu-img
# info for the virtual size, qemu-img check for VDI output, and, because
# qemu-img check does not check vpc images ("This image format does not
# support checks"), vhd-vdi-tool.py vhd-check for VHD output: the
# structure the specification asks for, read by code written from the
# specification, not by ferry.

VV_TOOL=("$PYTHON" "$TESTS_DIR/vhd-vdi-tool.py")
vvtool () { "${VV_TOOL[@]}" "$@" || die "vhd-vdi-tool.py $*"; }

# qemu_size IMG FMT: qemu-img's virtual size of IMG read as FMT.
qemu_size () {
  qinfo "$1" "$2" virtual-size
}

# ferry_fact IMG KEY: a member of ferry info --json (a.b for nested ones).
ferry_fact () {
  "$FERRY" info --json "$1" 2>/dev/null | python3 -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else (json.dumps(v) if not isinstance(v, str) else v))
' "$2"
}

# judge_output WHAT SRC SF DST DF SIZE: DST (written by ferry as DF, vhd
# or vdi) reads like SRC under qemu-img, has virtual size SIZE, and passes
# the structural check of its format.  Returns non-zero on any failure.
judge_output () {
  local what=$1 src=$2 sf=$3 dst=$4 df=$5 size=$6 qf=$5 qsf=$3 got out rc=0
  [ "$df" = vhd ] && qf=vpc
  [ "$sf" = vhd ] && qsf=vpc
  same_content "$what: qemu-img compare" "$src" "$qsf" "$dst" "$qf" || return 1
  got=$(qemu_size "$dst" "$qf")
  if [ "$got" != "$size" ]; then
    not_ok "$what: qemu-img sees $got bytes, expected $size"
    return 1
  fi
  if [ "$df" = vdi ]; then
    out=$(qemu-img check -f vdi "$dst" 2>&1) || rc=$?
    if [ "$rc" = 0 ]; then
      ok "$what: qemu-img check"
    else
      not_ok "$what: qemu-img check exit $rc" "$out"
      return 1
    fi
  else
    out=$("${VV_TOOL[@]}" vhd-check "$dst" 2>&1) || rc=$?
    if [ "$rc" = 0 ]; then
      ok "$what: structure as the specification wants it ($out)"
    else
      not_ok "$what: vhd-check" "$out"
      return 1
    fi
  fi
  fy check "$dst"
  expect_exit 0 "$what: ferry check finds it clean"
}

# convert_to WHAT SRC SF DST DF SIZE [FERRY OPTIONS...]: ferry converts
# SRC into a new DF image DST, then judge_output.
convert_to () {
  local what=$1 src=$2 sf=$3 dst=$4 df=$5 size=$6
  shift 6
  rm -f "$dst"
  fy convert -f "$sf" -O "$df" "$@" "$src" "$dst"
  if [ -n "$CRASH" ] || [ "$RC" != 0 ] || [ ! -f "$dst" ]; then
    expect_exit 0 "$what: ferry convert"
    return 1
  fi
  judge_output "$what" "$src" "$sf" "$dst" "$df" "$size"
}

# convert_from WHAT SRC SF DST DF: ferry reads SRC (SF: vhd or vdi) into a
# new DF image; qemu-img must find the same contents as its own reading of
# SRC, and the same size.
convert_from () {
  local what=$1 src=$2 sf=$3 dst=$4 df=$5 qf=$3 ssize dsize
  shift 5
  [ "$sf" = vhd ] && qf=vpc
  rm -f "$dst"
  fy convert -f "$sf" -O "$df" "$@" "$src" "$dst"
  if [ -n "$CRASH" ] || [ "$RC" != 0 ] || [ ! -f "$dst" ]; then
    expect_exit 0 "$what: ferry convert"
    return 1
  fi
  same_content "$what: qemu-img compare" "$src" "$qf" "$dst" "$df" || return 1
  ssize=$(qemu_size "$src" "$qf")
  dsize=$(qemu_size "$dst" "$df")
  if [ "$df" = qcow2 ]; then
    qemu_clean "$what: qemu-img check" "$dst" || return 1
  fi
  check_true "$what: same virtual size ($dsize, qemu-img reads $ssize)" \
    test "$ssize" = "$dsize"
}

# round_up N M: N rounded up to a multiple of M.
round_up () {
  echo $((($1 + $2 - 1) / $2 * $2))
}
