#!/usr/bin/env bash
# lib-flags: the library speaks no command line.  No message of lib/ or
# plugins/ names an option of the ferry CLI (--out, --network-map, -O,
# ...): a daemon has no flags.  The library says what is wrong in its own
# terms and names the input concerned (ferry_get_error_input, a check's
# input); the CLI adds the flag.  lib-flags.py reads the sources; first it
# must find the flags planted in a file written here (and leave alone a
# command line ferry runs in a guest, and rpm's -e), so that the test can
# fail; then the library must give it nothing to report.  Then the CLI is
# seen adding the hints the library no longer gives.
. "$(dirname "$0")/lib.sh"
require python3 qemu-img

SCAN=("$PYTHON" "$TESTS_DIR/lib-flags.py" "$SRCDIR/cli")
cd "$WORK" || die "cd $WORK"

# --- the scanner finds what it must --------------------------------------
cat >planted.c <<'EOF'
/* --out in a comment is no message */
static int f (const char *dir, const char *fmt)
{
  run ("dracut -f --add-drivers 'virtio_blk'");
  guest_step (r, "remove-tools", 0, "removed with %s", "rpm -e");
  ferry_warn ("%s: bad" " (give one with --name)", dir);
  if (x)
    return ferry_error (EINVAL, "-O %s: cannot write that", fmt);
  reason = "not asked for (--no-guest-agent)";
  return add_check (plan, 1, "choose another format with -O",
                    "%s: %" PRIu64 " bytes (--net"
                    "work-map SRC=DST)", dir, n);
}
EOF
found=$("${SCAN[@]}" planted.c) && rc=0 || rc=$?
check_true "lib-flags.py exits 1 on flags planted in messages" test "$rc" = 1
for line in 6 8 9 10 11; do
  check_true "lib-flags.py reports the flag planted at line $line" \
    grep -q "^planted.c:$line:" <<<"$found"
done
check_true "lib-flags.py leaves comments, the guest's commands and rpm -e alone" \
  not grep -q -E "^planted.c:(1|4|5):" <<<"$found"

# --- the library gives it nothing ------------------------------------------
mapfile -t sources < <(find "$SRCDIR/lib" "$SRCDIR/plugins" -name '*.[ch]' | sort)
[ "${#sources[@]}" -gt 50 ] || die "found only ${#sources[@]} sources under $SRCDIR/lib"
if found=$("${SCAN[@]}" "${sources[@]}"); then
  ok "no message of lib/ or plugins/ names a flag of the ferry CLI"
else
  not_ok "no message of lib/ or plugins/ names a flag of the ferry CLI" "$found"
fi

# --- the CLI adds the flags --------------------------------------------------
qemu-img create -q -f qcow2 disk.qcow2 1M || die "qemu-img create"
cat >vm.vmx <<'EOF'
guestOS = "other-64"
scsi0.present = "TRUE"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "disk.qcow2"
EOF
fy v2v vm.vmx --to libvirt --out out --network-map =x
expect_exit 1 "a bad network map rule: refused"
expect_stderr "network map rule '=x': expected SRC=DST with both names (--network-map SRC=DST)" \
  "a bad network map rule: the library's words, the CLI's flag"
fy v2v vm.vmx --to ova --out out -O qcow2
expect_exit 1 "an OVA of qcow2 disks: refused"
expect_stderr "disk format qcow2: an OVA holds streamOptimized VMDK disks (-O FMT)" \
  "an OVA of qcow2 disks: the library's words, the CLI's flag"
fy v2v vm.vmx --to libvirt --out out --dry-run
expect_exit 1 "a VM without a name: refused"
check_true "a VM without a name: the remedy, with the CLI's flag" \
  grep -q -F "remedy: give it a name (--name NAME)" "$OUT"
mkdir -p taken
fy v2v vm.vmx --to libvirt --out taken --name n --dry-run --json
check_true "--json: the remedy with the flag, for an output folder that exists" \
  "$PYTHON" -c '
import json, sys
c = [x["remedy"] for x in json.load(open(sys.argv[1]))["checks"]]
assert "choose a new output folder, or remove this one (--out DIR)" in c, c
' "$OUT"

done_testing
