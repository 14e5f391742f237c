#!/usr/bin/env bash
# make-boot-sector.sh GUEST OUT: OUT, a 1 MiB raw disk that boots the test
# guest GUEST of boot-sector.S (tcg-only, hang, panic, slow, root-wait or
# lockup: see there), assembled now with GNU as and ld from binutils.  The same
# source and tools give the same bytes, so the guest is deterministic.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
guest=${1:?usage: make-boot-sector.sh tcg-only|hang|panic|slow|root-wait|lockup OUT}
out=${2:?usage: make-boot-sector.sh tcg-only|hang|panic|slow|root-wait|lockup OUT}
case $guest in
  tcg-only) n=1 ;;
  hang) n=2 ;;
  panic) n=3 ;;
  slow) n=4 ;;
  root-wait) n=5 ;;
  lockup) n=6 ;;
  *) echo "make-boot-sector.sh: no test guest '$guest' (tcg-only, hang, panic, slow, root-wait, lockup)" >&2
     exit 1 ;;
esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/boot-sector.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
as --32 --defsym GUEST="$n" -o "$tmp/guest.o" "$HERE/boot-sector.S"
ld -m elf_i386 --oformat binary -Ttext 0x7c00 -o "$tmp/guest.bin" "$tmp/guest.o"
size=$(stat -c %s "$tmp/guest.bin")
if [ "$size" != 512 ]; then
  echo "make-boot-sector.sh: $guest assembles to $size bytes, not one 512-byte sector" >&2
  exit 1
fi
cp "$tmp/guest.bin" "$out"
truncate -s 1M "$out"
