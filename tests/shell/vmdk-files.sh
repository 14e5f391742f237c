#!/usr/bin/env bash
# vmdk-files: the files of multi-file VMDKs (monolithicFlat,
# twoGbMaxExtentSparse, twoGbMaxExtentFlat).  ferry convert writes them
# under temporary names and moves them into place when complete: the
# descriptor names its final extents, and a convert that fails (an extent
# name taken already, a full disk, a source that breaks half way, Ctrl-C)
# leaves nothing behind but what was there.  Names with spaces, several
# dots, no extension, and targets in another folder get extents named the
# way qemu-img and VMware name them.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/vmdk-lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
mb=$((1 << 20))
size=$((8 * mb))
mkimg raw src.raw $size
fill_pattern raw src.raw 65536 $size

# --- names --------------------------------------------------------------------------------------
names () {
  local what=$1 sub=$2 dst=$3
  shift 3
  rm -rf t && mkdir -p t/sub
  fy convert -O vmdk -o subformat=$sub src.raw "t/$dst"
  if expect_exit 0 "$what"; then
    same_content "$what: qemu-img compare" src.raw raw "t/$dst" vmdk
    only_files "$what: files" "$(dirname "t/$dst")" "$@"
    check_true "$what: the descriptor names no temporary file" \
      not grep -q ferry- "t/$dst"
  fi
}
names "twoGbMaxExtentSparse d.vmdk" twoGbMaxExtentSparse d.vmdk d.vmdk d-s001.vmdk sub
names "twoGbMaxExtentFlat 'my disk.vmdk'" twoGbMaxExtentFlat "my disk.vmdk" \
  "my disk.vmdk" "my disk-f001.vmdk" sub
names "monolithicFlat my.disk.vmdk" monolithicFlat my.disk.vmdk my.disk.vmdk my.disk-flat.vmdk sub
names "monolithicFlat without an extension" monolithicFlat disk disk disk-flat sub
names "twoGbMaxExtentSparse in another folder" twoGbMaxExtentSparse sub/d.vmdk d.vmdk d-s001.vmdk
rm -rf t && mkdir t
(cd t && fy convert -O vmdk -o subformat=monolithicFlat ../src.raw d.vmdk)
expect_exit 0 "monolithicFlat with a bare target name" &&
  only_files "bare target name: files" t d.vmdk d-flat.vmdk

# --- an extent name that is taken ---------------------------------------------------------------
for sub in twoGbMaxExtentSparse monolithicFlat twoGbMaxExtentFlat; do
  case $sub in
    twoGbMaxExtentSparse) taken=d-s001.vmdk ;;
    monolithicFlat) taken=d-flat.vmdk ;;
    *) taken=d-f001.vmdk ;;
  esac
  rm -rf t && mkdir t
  echo "precious data" >t/$taken
  fy convert -O vmdk -o subformat=$sub src.raw t/d.vmdk
  expect_failure "$sub: $taken exists already" $taken
  check_true "$sub: $taken untouched" grep -q -x "precious data" t/$taken
  only_files "$sub: nothing else left" t $taken
done

# --- a full disk ----------------------------------------------------------------------------------
# A 2 MiB tmpfs where one can be mounted (root); elsewhere a 2 MiB limit
# on file size stands in for it, as in convert-safety.
mkdir -p full
if mount -t tmpfs -o size=2m ferry-vmdk-full full 2>/dev/null; then
  at_exit umount "$WORK/full"
  fsize_kb=""
else
  fsize_kb=2048
fi
head -c $((6 * mb)) "$RAND" >rnd.raw
for sub in monolithicSparse streamOptimized monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat; do
  rm -rf full/*
  FY_FSIZE_KB=$fsize_kb fy convert -O vmdk -o subformat=$sub rnd.raw full/d.vmdk
  expect_failure "full disk, $sub" d.vmdk
  expect_stderr_re 'space|full|too large' "full disk, $sub: says the disk is full"
  only_files "full disk, $sub: nothing left" full
done
mountpoint -q full && umount "$WORK/full"

# --- a source that breaks half way ---------------------------------------------------------------------
mkimg vmdk broken.vmdk $size
qio vmdk broken.vmdk "write -s $RAND 0 8m"
"${MK[@]}" gt-entry broken.vmdk 0 100 0x7ffffff0 || die "vmdk-make.py gt-entry"
for sub in twoGbMaxExtentSparse monolithicFlat streamOptimized; do
  rm -rf t && mkdir t
  fy convert -O vmdk -o subformat=$sub broken.vmdk t/d.vmdk
  expect_failure "a source that breaks half way -> $sub" broken.vmdk
  only_files "a source that breaks half way -> $sub: nothing left" t
done

# --- Ctrl-C ----------------------------------------------------------------------------------------------
for i in $(seq 24); do cat "$RAND"; done >big.raw
interrupt () {
  local sub=$1 pid waited=0
  rm -rf t && mkdir t
  : >"$OUT"
  set -m
  "$FERRY" convert -O vmdk -o subformat=$sub --progress=json big.raw t/d.vmdk \
    >"$OUT" 2>"$ERR" </dev/null &
  pid=$!
  set +m
  # Freeze ferry as soon as its temporary files appear (its signal
  # handlers are in place by then) or it reports progress.
  while kill -0 $pid 2>/dev/null && [ ! -s "$OUT" ] && [ -z "$(ls -A t)" ] &&
        [ $waited -lt 3000 ]; do
    sleep 0.005
    waited=$((waited + 1))
  done
  kill -STOP $pid 2>/dev/null
  if ! kill -INT $pid 2>/dev/null; then
    wait $pid
    not_ok "Ctrl-C, $sub: ferry ended before the signal (exit $?)"
    return
  fi
  kill -CONT $pid
  RC=0
  wait $pid || RC=$?
  LAST_CMD="ferry convert -o subformat=$sub big.raw t/d.vmdk, then SIGINT"
  # ferry cleans up, then dies of the signal as qemu-img does (130).
  if [ "$RC" = 130 ] && ! grep -q -E 'Sanitizer|runtime error:' "$ERR" &&
     grep -q interrupted "$ERR"; then
    ok "Ctrl-C, $sub: stopped, died of SIGINT (exit $RC)"
  else
    not_ok "Ctrl-C, $sub: exit $RC" "$(last_run)"
  fi
  only_files "Ctrl-C, $sub: nothing left" t
}
interrupt streamOptimized
interrupt twoGbMaxExtentSparse
interrupt twoGbMaxExtentFlat

done_testing
