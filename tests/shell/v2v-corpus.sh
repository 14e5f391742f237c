#!/usr/bin/env bash
# v2v-corpus: every OVF and VMX of ../shared/corpus read by `ferry v2v
# --dry-run`, with the disks each one names made by qemu-img beside it (the
# corpus has the descriptions only).  What ferry shows (name, CPUs, memory,
# firmware, disks and their capacities, NICs with their networks and MACs)
# must be what the file declares, as v2v-expect.py reads it with Python's
# own XML parser; each migrated with --keep-devices gives a domain
# virt-xml-validate accepts; invalid.ovf must be refused naming what is
# wrong.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/v2v-lib.sh"
require qemu-img python3 gzip virt-xml-validate

[ -d "$CORPUS/ovf" ] || { echo "1..0 # SKIP no corpus at $CORPUS (set FERRY_CORPUS)"; exit 77; }
EXPECT=("$PYTHON" "$TESTS_DIR/v2v-expect.py")

# stage NAME SRC: WORK/NAME holds a link to the description SRC and the
# disks it names (made with qemu-img; gzip'd where the OVF says so).
# Prints the link's path.
stage () {
  local name=$1 src=$2 dir=$WORK/$1 file cap fmt gz
  mkdir -p "$dir"
  ln -s "$src" "$dir/$(basename "$src")"
  [ -f "${src%.*}.mf" ] && ln -s "${src%.*}.mf" "$dir/"
  "${EXPECT[@]}" disks "$src" | while read -r file cap fmt gz; do
    mkdir -p "$dir/$(dirname "$file")"
    [ -e "$dir/$file" ] && continue
    if [ "$gz" = gzip ]; then
      qemu-img create -q -f vmdk -o subformat=streamOptimized "$dir/$file.raw" "$cap" ||
        die "qemu-img create $file"
      gzip -c "$dir/$file.raw" >"$dir/$file"
      rm -f "$dir/$file.raw"
    elif [ "$fmt" = raw ]; then
      qemu-img create -q -f raw "$dir/$file" "$cap" || die "qemu-img create $file"
    else
      qemu-img create -q -f vmdk -o subformat="$fmt" "$dir/$file" "$cap" ||
        die "qemu-img create $file"
    fi
  done
  echo "$dir/$(basename "$src")"
}

for src in "$CORPUS"/ovf/*.ovf "$CORPUS"/vmx/*.vmx; do
  base=$(basename "$src")
  [ "$base" = invalid.ovf ] && continue
  desc=$(stage "${base%.*}" "$src") || die "staging $base"
  fy v2v "$desc" --to local --out "$WORK/${base%.*}/out" --dry-run --json
  cp "$OUT" "$WORK/$base.json"
  case $base in
    input.ovf)
      # Its manifest lists the original disk, an ISO and a text file: the
      # disk made here differs, the other two are not there.
      expect_exit 1 "$base: dry run refuses (manifest)"
      check_true "$base: the made disk's SHA1 differs from the manifest's" \
        grep -q 'input.vmdk: SHA1 digest [0-9a-f]* does not match the manifest' "$OUT"
      check_true "$base: input.iso, listed in the manifest, is missing" \
        grep -q 'manifest .*input.mf lists input.iso, which is missing' "$OUT"
      check_true "$base: the descriptor itself matches its manifest line" \
        not grep -q 'input.ovf: SHA1' "$OUT"
      ;;
    *)
      expect_exit 0 "$base: dry run passes"
      ;;
  esac
  if out=$("${EXPECT[@]}" compare "$src" "$WORK/$base.json" 2>&1); then
    ok "$base: ferry shows what the file declares"
  else
    not_ok "$base: ferry shows what the file declares" "$out" "$(head -c 3000 "$WORK/$base.json")"
  fi
  check_true "$base: --dry-run writes nothing" test ! -e "$WORK/${base%.*}/out"
  # Migrated for real (the disks are empty), to the source's devices: the
  # domain must validate whatever the source holds.
  if [ "$base" != input.ovf ]; then
    fy v2v "$desc" --to libvirt --keep-devices --out "$WORK/${base%.*}/lv"
    expect_exit 0 "$base: migrated to libvirt with --keep-devices"
    x=$(ls "$WORK/${base%.*}/lv/"*.xml 2>/dev/null | head -n 1)
    [ -n "$x" ] && validate "$base, --keep-devices" "$x"
    rm -rf "$WORK/${base%.*}/lv"
  fi
done

# The plan for people names the same things.
desc=$WORK/esxi-workstation-7/esxi-workstation-7.vmx
fy v2v "$desc" --to libvirt --out "$WORK/o7" --dry-run
expect_exit 0 "esxi-workstation-7.vmx: human plan"
for want in "VM: win2019" "CPUs: 2" "memory: 4 GiB" "firmware: UEFI, secure boot" \
            "win2019.vmdk" "on scsi 0:0 (lsisas1068)" "win2019_1.vmdk" "on sata 0:3" \
            "MAC 00:0c:29:46:9b:0b" "warning: the VM boots with UEFI secure boot"; do
  check_true "esxi-workstation-7.vmx: plan shows '$want'" grep -q -F -- "$want" "$OUT"
done
desc=$WORK/esxi-workstation-6/esxi-workstation-6.vmx
fy v2v "$desc" --to libvirt --out "$WORK/o6" --dry-run
check_true "esxi-workstation-6.vmx: the NVMe disk" grep -q "nvme-disk.vmdk .* on nvme 0:0" "$OUT"

# invalid.ovf: a disk item whose HostResource names no disk.
fy v2v "$CORPUS/ovf/invalid.ovf" --to libvirt --out "$WORK/oi" --dry-run
expect_failure "invalid.ovf refused" invalid.ovf
expect_stderr "item 2 (Hard Disk Drive referencing nonexistent disk): HostResource 'nonexistent.vmdk' names no disk of DiskSection" \
  "invalid.ovf: the message names the item and what is wrong"

done_testing
