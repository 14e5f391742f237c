# guest-lib.sh: what the guest-*.sh tests share.  Source it after lib.sh.
#
# The test guest (tests/guests/build-debian.sh: Debian 12 as a VMware VM
# has it) is built once per machine and version of its script, into a
# cache outside the checkout (tests/guests/guest-cache.sh); the first test
# that needs it builds it while the others wait on the cache's lock.
# Tests never write to the cached disk: they work on qcow2 overlays over it.
#
# Boots are slow under TCG (a minute or two each), so each configuration
# boots once per `make check`: in the plain build.  The sanitizer build
# runs the same inspection and conversion (ferry's code, under ASan and
# UBSan) but not the boots, which exercise QEMU and the guest more than
# ferry; GUEST_BOOTS=1 forces them there too.

# libguestfs (ferry's, and guestfish's as a judge): no libvirt, and TCG.
export LIBGUESTFS_BACKEND=direct
export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
# The appliance is a QEMU process with a gigabyte or more of guest memory
# and TCG's code buffer: far past lib.sh's 4 GiB address-space limit,
# which is there to catch ferry's own allocations, not its children's.
FERRY_VMEM_LIMIT_KB=unlimited

# guest_setup [ova]: GUEST_DIR, GUEST_VMDK (and with "ova", GUEST_OVA) and
# the facts of guest.env, or skip.
guest_setup () {
  require qemu-img guestfish qemu-system-x86_64
  local cache=${FERRY_GUEST_CACHE:-${XDG_CACHE_HOME:-/var/tmp}/ferry-guests}
  if [ "$(id -u)" != 0 ] && ! ls "$cache"/debian-*/guest.env >/dev/null 2>&1; then
    echo "1..0 # SKIP $TEST_NAME: building the test guest needs root (debootstrap)"
    exit 77
  fi
  if ! command -v debootstrap >/dev/null && ! ls "$cache"/debian-*/guest.env >/dev/null 2>&1; then
    echo "1..0 # SKIP $TEST_NAME needs debootstrap to build the test guest"
    exit 77
  fi
  GUEST_DIR=$("$SRCDIR/tests/guests/guest-cache.sh" debian ${1:-}) ||
    die "the test guest could not be built (see above)"
  # shellcheck disable=SC1091
  . "$GUEST_DIR/guest.env"
  GUEST_VMDK=$GUEST_DIR/disk.vmdk
  [ -f "$GUEST_VMDK" ] || die "no $GUEST_VMDK"
  GUEST_OVA=$GUEST_DIR/guest.ova
}

# guest_overlay NAME: $WORK/NAME.qcow2, a qcow2 overlay over the guest.
guest_overlay () {
  qemu-img create -q -f qcow2 -b "$GUEST_VMDK" -F vmdk "$WORK/$1.qcow2" \
    >"$WORK/.ovl" 2>&1 || die "qemu-img create overlay: $(cat "$WORK/.ovl")"
}

# boots_here: true when this run does the heavy work, boots and the
# guestfish judges (see the top).
boots_here () {
  [ "$FERRY_SANITIZED" = 0 ] || [ -n "${GUEST_BOOTS:-}" ]
}

# gfish IMG FMT CMDS...: guestfish, the peer, read-only on IMG with the
# guest's file systems mounted; its output in $WORK/.gfish.
gfish () {
  local img=$1 fmt=$2
  shift 2
  guestfish --ro --format="$fmt" -a "$img" -i "$@" >"$WORK/.gfish" 2>&1
}

# json_get FILE EXPR: evaluate the Python expression EXPR over the JSON in
# FILE (bound to j); prints the result.
json_get () {
  python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
r = eval(sys.argv[2])
print(r if not isinstance(r, (dict, list)) else json.dumps(r))
' "$1" "$2"
}

# check_json WHAT FILE EXPR WANT: EXPR over FILE prints WANT.
check_json () {
  local what=$1 file=$2 expr=$3 want=$4 got
  got=$(json_get "$file" "$expr" 2>&1)
  if [ "$got" = "$want" ]; then ok "$what"; else not_ok "$what: got '$got', expected '$want'" "$expr"; fi
}

# guest_failure WHAT FILE: expect_failure, without its peak-memory check
# (the appliance's QEMU counts as ferry's child there).
guest_failure () {
  PEAK_KB=""
  expect_failure "$@"
}
