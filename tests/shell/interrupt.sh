#!/usr/bin/env bash
# interrupt: SIGINT ends the commands that run QEMU (verify --boot, v2v
# --verify) or the libguestfs appliance (inspect, convert-guest, v2v's
# guest conversion) within a few seconds, leaving nothing behind: no
# QEMU, no appliance, no temporary files (the test's own TMPDIR and
# XDG_RUNTIME_DIR, where libguestfs keeps its files, end up empty), no
# output folder, an image to convert unchanged.  ferry dies of the signal
# (exit status 130), as qemu-img does.
#
# Small on purpose: a blank 16 MiB disk that never prints a login prompt
# for the boots, and a 32 MiB disk with nothing but an MBR signature, which
# is enough for ferry to start the appliance (the signal comes while it
# starts; the big test guest is not needed for that).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/interrupt-lib.sh"
require qemu-img qemu-system-x86_64 guestfish

cd "$WORK" || die "cd $WORK"
# libguestfs's per-run files go to TMPDIR (its work folder, ferry's
# overlays) and XDG_RUNTIME_DIR (its sockets); the appliance it builds
# once stays in the usual cache.
mkdir -p tmp run
export LIBGUESTFS_CACHEDIR=${LIBGUESTFS_CACHEDIR:-/var/tmp}
export TMPDIR=$WORK/tmp XDG_RUNTIME_DIR=$WORK/run
export LIBGUESTFS_BACKEND=direct
export FERRY_ACCEL=tcg          # v2v --verify: no KVM surprises here

export FERRY_DEBUG=1
truncate -s 16M blank.raw
truncate -s 32M mbr.raw
printf '\125\252' | dd of=mbr.raw bs=1 seek=510 conv=notrunc status=none
cp mbr.raw mbr.orig

# nothing_left WHAT: no process of this test's files, nothing in TMPDIR,
# and none of the socket folders libguestfs made (as root they are in
# /tmp whatever XDG_RUNTIME_DIR says; FERRY_DEBUG=1 makes ferry's stderr
# show libguestfs's command line, which names them).
nothing_left () {
  local what=$1 procs i d left=""
  # The appliance's processes are reaped by ferry before it exits; give
  # the kernel a moment to take them off the process table.
  for i in $(seq 20); do
    procs=$(processes_of "$WORK")
    [ -z "$procs" ] && break
    sleep 0.1
  done
  if [ -z "$procs" ]; then
    ok "$what: no QEMU or other process left"
  else
    not_ok "$what: processes left" "$procs"
    # shellcheck disable=SC2046
    kill -KILL $(echo "$procs" | awk '{print $1}') 2>/dev/null
  fi
  only_files "$what: no temporary files" tmp
  only_files "$what: no libguestfs sockets in XDG_RUNTIME_DIR" run
  for d in $(grep -o -E '/[^ ,]*/libguestfs[A-Za-z0-9]{6}' "$ERR" | sort -u); do
    [ -e "$d" ] && left="$left $d"
  done
  check_true "$what: no libguestfs folder left${left:+ ($left)}" test -z "$left"
}

# qemu_started: a QEMU of this test runs.
qemu_started () {
  processes_of "$WORK" | grep -q qemu-system
}

# --- verify --boot: QEMU runs, the console never shows a login prompt ----------------
bg_ferry verify --boot --accel tcg --timeout 120 "$WORK/blank.raw"
bg_wait_for 60 qemu_started || not_ok "verify --boot: no QEMU started" "$(tail -n 5 "$ERR")"
sleep 1
if signal_ferry INT "verify --boot"; then
  expect_interrupted "verify --boot" INT 5 "ferry verify: interrupted"
  nothing_left "verify --boot"
fi

# --- inspect: SIGINT while the appliance starts ------------------------------------
bg_ferry inspect "$WORK/mbr.raw"
bg_wait_for 60 qemu_started || not_ok "inspect: no appliance started" "$(tail -n 5 "$ERR")"
sleep 1
if signal_ferry INT "inspect, appliance starting"; then
  expect_interrupted "inspect, appliance starting" INT 5 "ferry inspect: interrupted"
  nothing_left "inspect"
fi

# --- convert-guest: the image stays as it was --------------------------------------
bg_ferry convert-guest "$WORK/mbr.raw"
bg_wait_for 60 qemu_started || not_ok "convert-guest: no appliance started" "$(tail -n 5 "$ERR")"
sleep 1
if signal_ferry INT "convert-guest, appliance starting"; then
  expect_interrupted "convert-guest, appliance starting" INT 5 \
    "ferry convert-guest: interrupted; the images were not changed"
  check_true "convert-guest: the image is unchanged" cmp -s mbr.raw mbr.orig
  nothing_left "convert-guest"
fi

# --- v2v: during the guest conversion, and during --verify ------------------------
mkdir -p src
cp mbr.orig src/disk.raw
cp blank.raw src/blank.raw
vmx () {
  cat <<EOF
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "17"
displayName = "Interrupt Test"
guestOS = "debian11-64"
memSize = "256"
numvcpus = "1"
scsi0.present = "TRUE"
scsi0.virtualDev = "lsilogic"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "$1"
EOF
}
vmx disk.raw >src/vm.vmx
vmx blank.raw >src/blank.vmx

bg_ferry v2v src/vm.vmx --to libvirt --out "$WORK/conv" --progress=json
bg_wait_for 60 qemu_started ||
  not_ok "v2v: no appliance started for the guest conversion" "$(tail -n 5 "$ERR")"
sleep 1
if signal_ferry INT "v2v, guest conversion"; then
  expect_interrupted "v2v, guest conversion" INT 5 \
    "ferry v2v: interrupted; $WORK/conv was not written"
  check_true "v2v, guest conversion: no output folder" test ! -e conv
  expect_stderr_re "job [0-9]+ is paused: ferry job resume [0-9]+" \
    "v2v, guest conversion: says which job resumes it"
  nothing_left "v2v, guest conversion"
  job_left "v2v, guest conversion" conv
fi

# A blank disk is copied without the appliance; --verify then boots it.
bg_ferry v2v src/blank.vmx --to libvirt --out "$WORK/ver" --verify --verify-timeout 120
bg_wait_for 60 qemu_started || not_ok "v2v --verify: no QEMU started" "$(tail -n 5 "$ERR")"
sleep 1
if signal_ferry INT "v2v --verify"; then
  expect_interrupted "v2v --verify" INT 5 \
    "ferry v2v: interrupted; $WORK/ver is complete but was not verified"
  check_true "v2v --verify: the output folder is there, with its domain" \
    compgen -G "ver/*.xml"
  nothing_left "v2v --verify"
fi

done_testing
