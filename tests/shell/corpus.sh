#!/usr/bin/env bash
# corpus: the real-world images of ../shared/corpus.  The qcow2 files that
# qemu-img made (zlib and zstd compressed clusters) convert to raw and qcow2
# and back, judged by qemu-img compare; ferry info agrees with qemu-img
# info on them.  The qcow v1 image is read correctly or refused with a
# message that says what it is; the fuzzer-made afl5 image (a VHD) is
# refused, never crashes.
. "$(dirname "$0")/lib.sh"
require qemu-img python3 gzip bzip2

[ -d "$CORPUS/qemu" ] || { echo "1..0 # SKIP no corpus at $CORPUS (set FERRY_CORPUS)"; exit 77; }
cd "$WORK" || die "cd $WORK"

for name in basic basic-zstd; do
  gzip -dc "$CORPUS/qemu/$name.qcow2.gz" >"$name.qcow2" || die "gunzip $name"
  convert_and_judge "corpus $name.qcow2 -> raw" "$name.qcow2" qcow2 "$name.raw" raw
  convert_and_judge "corpus $name.qcow2 -> qcow2" "$name.qcow2" qcow2 "$name-2.qcow2" qcow2
  convert_and_judge "corpus $name.qcow2 -> qcow2 -c" "$name.qcow2" qcow2 "$name-c.qcow2" qcow2 -c
  # Format probed, not given.
  rm -f probed.raw
  fy convert -O raw "$name.qcow2" probed.raw
  expect_exit 0 "corpus $name.qcow2 -> raw with the format probed"
  [ -f probed.raw ] && same_content "corpus $name.qcow2 probed: qemu-img compare" \
    "$name.qcow2" qcow2 probed.raw raw
  fy info --json "$name.qcow2"
  if expect_exit 0 "ferry info --json corpus $name.qcow2"; then
    want=$(qemu-img info --output=json "$name.qcow2" | python3 -c '
import json, sys
j = json.load(sys.stdin)
print(j["format"], j["virtual-size"], j["cluster-size"], j["format-specific"]["data"]["compression-type"])')
    got=$(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
fs = j.get("format-specific", {})
fs = fs.get("data", fs)
print(j.get("format"), j.get("virtual-size"), j.get("cluster-size"), fs.get("compression-type"))' "$OUT" 2>&1)
    check_true "ferry info corpus $name.qcow2: '$got' = '$want'" test "$got" = "$want"
  fi
  rm -f "$name"*.raw "$name"-*.qcow2 probed.raw
done

# qcow version 1: read it right, or refuse it saying what it is.
qcow1=$CORPUS/qemu/qcow1-image.qcow
rm -f q1.raw
fy convert -O raw "$qcow1" q1.raw
if [ -z "$CRASH" ] && [ "$RC" = 0 ]; then
  same_content "qcow v1 read: qemu-img compare" "$qcow1" qcow q1.raw raw
else
  expect_failure "qcow v1 refused" "$qcow1"
  expect_stderr_re 'version|qcow ?1|v1' "qcow v1 refusal says why"
  check_true "qcow v1 refused: no target left" test ! -e q1.raw
fi
fy info "$qcow1"
if [ "$RC" = 0 ]; then
  expect_exit 0 "ferry info on qcow v1"
  check_true "ferry info on qcow v1 does not call it qcow2" not grep -q 'format: qcow2' "$OUT"
else
  expect_failure "ferry info on qcow v1 refused" "$qcow1"
fi

# afl5: a fuzzer-made VHD whose block table claims 2^30 entries.  The vhd
# driver claims it, so it must be refused (tests/shell/vhd-vdi-bad.sh
# checks the messages); never a crash, never gigabytes allocated.
bzip2 -dc "$CORPUS/broken/afl5.img.bz2" >afl5.img || die "bunzip2 afl5"
for cmd in "info" "info --json" "convert -O raw" "convert -O qcow2" "check" "compare"; do
  rm -f afl5.out
  case $cmd in
    convert*) fy $cmd afl5.img afl5.out ;;
    compare) fy compare afl5.img afl5.img ;;
    *) fy $cmd afl5.img ;;
  esac
  fmt=$(grep -o -E '"format": *"[a-z0-9]+"|^format: [a-z0-9]+' "$OUT" | head -1 | grep -o -E '[a-z0-9]+$')
  if [ -n "$CRASH" ]; then
    not_ok "afl5.img: ferry $cmd crashed" "$(last_run)"
  elif [ "$RC" = 0 ]; then
    not_ok "afl5.img: ferry $cmd accepted it (as ${fmt:-?})" "$(last_run)"
  elif [ "$cmd" = compare ] && [ "$RC" = 2 ]; then
    ok "afl5.img: ferry compare refuses it"
  elif [ "$cmd" = check ] && [ "$RC" != 0 ]; then
    ok "afl5.img: ferry check refuses it (exit $RC)"
  else
    expect_failure "afl5.img: ferry $cmd refuses it" afl5.img
  fi
done

done_testing
