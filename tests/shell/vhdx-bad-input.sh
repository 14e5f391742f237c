#!/usr/bin/env bash
# vhdx-bad-input: damaged and hostile VHDX files.  Each kind of damage
# that vhdx-tool.py plants into an image qemu-img made (bad checksums,
# versions, regions and metadata items outside the file or unknown but
# required, BAT entries past the end, over other structures or in
# reserved states, absurd sizes), truncated files and fuzzed variants
# (random bytes in one structure, its checksum put right) must get from
# ferry info and ferry convert an exit status of 1 and a message naming
# the file and the structure, with no crash, no huge allocation and no
# target left behind.  Damage that the format's redundancy covers (one
# header or one region table copy broken) must instead read as the
# undamaged image does.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
TOOL=("$PYTHON" "$TESTS_DIR/vhdx-tool.py")
MiB=$((1 << 20))

mkimg vhdx good.vhdx $((8 * MiB)) block_size=1M
qio vhdx good.vhdx "write -P 0x11 0 1536k" "write -P 0x22 5M 64k"

# refuse WHAT IMG TEXT: ferry info, info -f vhdx and convert refuse IMG
# with a message holding TEXT; nothing is left behind.
refuse () {
  local what=$1 img=$2 text=$3
  rm -rf out && mkdir out
  fy info "$img"
  expect_failure "$what: ferry info" "$img"
  expect_stderr "$text" "$what: the message says '$text'"
  fy info -f vhdx --json "$img"
  expect_failure "$what: ferry info -f vhdx --json" "$img"
  fy convert -f vhdx -O raw "$img" out/x.raw
  expect_failure "$what: ferry convert" "$img"
  check_true "$what: no target left" test -z "$(ls -A out)"
  fy check -f vhdx "$img"
  if [ -z "$CRASH" ] && [ "$RC" != 0 ]; then
    ok "$what: ferry check does not pass it (exit $RC)"
  else
    not_ok "$what: ferry check" "$(last_run)"
  fi
}

# --- damage the redundancy covers ---------------------------------------------
for d in header1-crc region1-crc; do
  cp good.vhdx $d.vhdx
  "${TOOL[@]}" corrupt $d.vhdx $d || die "corrupt $d"
  rm -f $d.raw
  fy convert -O raw $d.vhdx $d.raw
  expect_exit 0 "$d: read through the other copy"
  [ -f $d.raw ] && same_content "$d: reads as the undamaged image" good.vhdx vhdx $d.raw raw
  rm -f $d.vhdx $d.raw
done

# --- damage that must be refused ------------------------------------------------
while IFS='|' read -r d text; do
  [ -n "$d" ] || continue
  cp good.vhdx $d.vhdx
  "${TOOL[@]}" corrupt $d.vhdx $d || die "corrupt $d"
  refuse "$d" $d.vhdx "$text"
  rm -f $d.vhdx
done <<'LIST'
headers-crc|no valid header
header-version|version 2
same-sequence|both have sequence number
regions-crc|no valid region table
region-unknown-required|marked required
region-past-eof|not inside the file
bat-past-eof|past the end of the file
bat-huge-offset|past the end of the file
bat-reserved-state|reserved state 4
bat-over-metadata|overlaps the metadata region
bat-no-offset|has no file offset
bat-partial|partially present
size-huge|larger than 64 TiB
size-64t|needs
size-unaligned|not a multiple
block-size|block size of 3145728
lss|logical sector size of 1024
meta-signature|'metadata' signature
meta-item-outside|outside the metadata region
meta-unknown-required|required but ferry does not know it
meta-missing-size|virtual disk size
log-outside|not inside the file
LIST

# Two blocks on the same place in the file: each reads, but ferry check
# reports the overlap as a corruption (exit 2).
cp good.vhdx dup.vhdx
"${TOOL[@]}" corrupt dup.vhdx bat-duplicate || die "corrupt bat-duplicate"
fy info dup.vhdx
expect_exit 0 "bat-duplicate: ferry info reads it"
fy check dup.vhdx
expect_exit 2 "bat-duplicate: ferry check finds a corruption"
check_true "bat-duplicate: ferry check names the two BAT entries" \
  grep -q "BAT entries 0 and 1 place blocks over each other" "$OUT" "$ERR"
fy check good.vhdx
expect_exit 0 "ferry check passes the undamaged image"

# --- truncated files -----------------------------------------------------------------
for n in 8 520 $((64 * 1024 + 100)) $((200 * 1024)) $((1024 * 1024 - 1)) $((3 * MiB + 4096)) \
         $((4 * MiB + 65536)); do
  head -c $n good.vhdx >trunc$n.vhdx
  refuse "file cut at $n bytes" trunc$n.vhdx "trunc$n.vhdx"
done

# --- fuzzed variants -------------------------------------------------------------------
refused=0
read_ok=0
for seed in $(seq 1 60); do
  cp good.vhdx fz.vhdx
  where=$("${TOOL[@]}" fuzz fz.vhdx $seed) || die "fuzz $seed"
  rm -f fz.raw
  fy convert -f vhdx -O raw fz.vhdx fz.raw
  if [ -n "$CRASH" ]; then
    not_ok "fuzz seed $seed ($where): ferry convert crashed" "$(last_run)"
    cp fz.vhdx "$WORK/crash-$seed.vhdx"
  elif [ "$RC" = 0 ]; then
    read_ok=$((read_ok + 1))
  else
    refused=$((refused + 1))
    expect_failure "fuzz seed $seed ($where): refused cleanly" fz.vhdx
  fi
  fy info -f vhdx fz.vhdx
  [ -z "$CRASH" ] || not_ok "fuzz seed $seed ($where): ferry info crashed" "$(last_run)"
done
ok "fuzzed variants: $refused refused cleanly, $read_ok read, none crashed"

done_testing
