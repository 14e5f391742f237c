#!/usr/bin/env bash
# guest-v2v: the whole migration of the test guest, from the OVA VMware
# would export (tests/guests/make-ova.sh: SATA disk, E1000 NIC with a
# VMware MAC, open-vm-tools, /dev/sda1 everywhere), and the boots that
# prove it, all under TCG with timeouts:
#
#   1. control: the source disk boots on its own hardware (SATA, e1000);
#   2. the point: copied without conversion (--no-convert) it does not boot
#      on a virtio disk, and --verify says so with the console's end;
#   3. ferry v2v --to libvirt --verify: converted, and it boots on a
#      virtio disk and NIC to a login prompt; guestfish finds
#      open-vm-tools gone and fstab and GRUB by UUID;
#   4. ferry v2v --to qemu, then ferry verify --boot on its output: it boots,
#      and ens33 (VMware's name) is up on the virtio NIC, pinned by MAC.
#   The OVA is read, never written (its checksum is the same after).
#
# Boots and conversions take minutes under TCG, so this runs in the plain
# build only (see guest-lib.sh).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/guest-lib.sh"
require python3 sha256sum
if ! boots_here; then
  echo "1..0 # SKIP $TEST_NAME boots guests: the plain build runs it (GUEST_BOOTS=1 here)"
  exit 77
fi
guest_setup ova
cd "$WORK" || die "cd $WORK"
export FERRY_ACCEL=tcg          # Linux guests may hang under KVM here
ova_sum=$(sha256sum <"$GUEST_OVA")

# --- 1. control ---------------------------------------------------------------
FY_TIMEOUT=700 fy verify --boot --accel tcg --timeout 600 --disk-bus sata --nic e1000 "$GUEST_VMDK"
expect_exit 0 "control: the source boots on SATA with an e1000 NIC"
if grep -q -E "^booted in [0-9]+ s \(tcg\): \"$GUEST_HOSTNAME login:" "$OUT"; then
  ok "control: ...to its login prompt"
else
  not_ok "control: no login prompt" "$(last_run)"
fi

# --- 2. without conversion ------------------------------------------------------
FY_TIMEOUT=900 fy v2v "$GUEST_OVA" --to libvirt --out "$WORK/raw" --no-convert --verify
expect_exit 1 "copied without conversion, the guest does not boot on a virtio disk"
expect_stderr "verification failed: $WORK/raw did not boot: the initramfs" \
  "...the initramfs finds no root device, and --verify says so"
expect_stderr "Waiting for root file system" "...showing the console's last lines"
check_true "...the output is kept for a look" test -f "$WORK/raw/$GUEST_HOSTNAME.xml"
rm -rf "$WORK/raw"

# --- 3. --to libvirt --verify ------------------------------------------------------
FY_TIMEOUT=1500 fy v2v "$GUEST_OVA" --to libvirt --out "$WORK/lv" --verify --verify-timeout 600
expect_exit 0 "ferry v2v --to libvirt --verify"
for want in "done     remove-tools  removed with dpkg --purge: open-vm-tools" \
            "done     fstab         /etc/fstab: /dev/sda1 -> UUID=$GUEST_ROOT_UUID" \
            "done     initramfs" "matched by MAC address" \
            "Verified: booted to \"$GUEST_HOSTNAME login:"; do
  if grep -q -F -- "$want" "$OUT"; then ok "v2v --to libvirt says '$want'"
  else not_ok "v2v --to libvirt does not say '$want'" "$(last_run)"; fi
done
xml=$WORK/lv/$GUEST_HOSTNAME.xml
check_true "the domain's disk is on virtio" grep -q 'bus="virtio"' "$xml"
check_true "the domain's NIC is virtio with the VMware MAC" \
  python3 -c 'import sys, xml.etree.ElementTree as E; d = E.parse(sys.argv[1]).getroot()
i = d.find("devices/interface"); sys.exit(0 if i.find("model").get("type") == "virtio" and i.find("mac").get("address") == "00:50:56:a1:b2:c3" else 1)' "$xml"
disk=$(ls "$WORK/lv"/*.qcow2)
qemu_clean "the converted disk is a clean qcow2" "$disk"
if gfish "$disk" qcow2 <<'GF'
sh "dpkg-query -W -f '${Status}' open-vm-tools 2>&1 || echo absent"
echo ---
cat /etc/fstab
echo ---
sh "grep -c 'root=UUID=' /boot/grub/grub.cfg; grep -c 'root=/dev/sd' /boot/grub/grub.cfg || true"
GF
then
  j=$(cat "$WORK/.gfish")
  case $j in *"install ok installed"*) not_ok "guestfish: open-vm-tools is still installed" "$j" ;;
             *) ok "guestfish: open-vm-tools is gone" ;; esac
  if grep -q -E "^UUID=$GUEST_ROOT_UUID +/ " "$WORK/.gfish"; then ok "guestfish: fstab mounts / by UUID"
  else not_ok "guestfish: fstab" "$j"; fi
  counts=$(sed -n '/^---$/,$p' "$WORK/.gfish" | sed -n '/^[0-9][0-9]*$/p' | xargs)
  # exactly two numbers: root=UUID= lines (some), root=/dev/sd lines (none)
  if [[ $counts =~ ^([0-9]+)\ ([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -gt 0 ] &&
     [ "${BASH_REMATCH[2]}" = 0 ]; then
    ok "guestfish: grub.cfg boots by UUID ($counts)"
  else
    not_ok "guestfish: grub.cfg root= counts (UUID, /dev/sd): '$counts'" "$j"
  fi
else
  not_ok "guestfish could not read the converted disk" "$(cat "$WORK/.gfish")"
fi

# --- 4. --to qemu, then ferry verify --boot ---------------------------------------
FY_TIMEOUT=1200 fy v2v "$GUEST_OVA" --to qemu --out "$WORK/q"
expect_exit 0 "ferry v2v --to qemu"
FY_TIMEOUT=700 fy verify --boot --accel tcg --timeout 600 --json "$WORK/q"
expect_exit 0 "ferry verify --boot on the qemu output"
cp "$OUT" boot.json
check_json "...boots to its login prompt" boot.json 'j["matched"].split(" login:")[0]' "$GUEST_HOSTNAME"
check_json "...with ens33 up on the virtio NIC (the login banner shows its address)" boot.json \
  '[l for l in j["console"] if l.startswith("ens33:")]' '["ens33: 10.0.2.15"]'
check_json "...under TCG" boot.json 'j["accel"]' tcg

check_true "the OVA was only read" test "$(sha256sum <"$GUEST_OVA")" = "$ova_sum"
done_testing
