#!/usr/bin/env bash
# make-tiny.sh: print the directory holding the tiny test guest, building
# it first when the cache has none for this kernel and this init: vmlinuz
# (a copy of the host's Debian kernel, /boot/vmlinuz-VERSION, the newest
# when there are several) and initrd.img, a gzip'd newc cpio holding
# /init (tests/guests/tiny/init.c, built static) and the modules of that
# kernel it loads (virtio's, the power button's), numbered in the order
# they load (each after what modinfo says it depends on; .ko.xz and .ko.zst
# are unpacked here, so the guest needs no decompressor).  What the guest
# does is said in init.c.
#
# The cache is guest-cache.sh's: $FERRY_GUEST_CACHE, else
# $XDG_CACHE_HOME/ferry-guests, else /var/tmp/ferry-guests, in
# tiny-VERSION-HASH (HASH: SHA-256 of init.c and this script).  A lock
# serialises concurrent callers; the build goes to a temporary name renamed
# into place once whole; older tiny builds are removed after a new one.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# The modules to load, each after those it depends on (checked below).
# evdev and button: the ACPI power button, QMP's system_powerdown.
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk
  evdev button)

kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$kernel" ] || { echo "make-tiny.sh: no /boot/vmlinuz-* (linux-image-amd64 is in scripts/install-deps)" >&2; exit 1; }
[ -r "$kernel" ] || { echo "make-tiny.sh: $kernel is not readable" >&2; exit 1; }
version=${kernel#/boot/vmlinuz-}
[ -d "/lib/modules/$version" ] || { echo "make-tiny.sh: no /lib/modules/$version for $kernel" >&2; exit 1; }

cache=${FERRY_GUEST_CACHE:-${XDG_CACHE_HOME:-/var/tmp}/ferry-guests}
mkdir -p "$cache"
hash=$(cat "$HERE/tiny/init.c" "$HERE/make-tiny.sh" | sha256sum | cut -c1-16)
dir=$cache/tiny-$version-$hash

exec 9>"$cache/.lock-tiny"
flock 9
if [ ! -f "$dir/initrd.img" ]; then
  tmp=$dir.tmp
  rm -rf "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/root/modules"
  gcc -static -O2 -std=gnu11 -Wall -Wextra -Werror -o "$tmp/root/init" "$HERE/tiny/init.c"
  n=0 loaded=" "
  for m in "${modules[@]}"; do
    file=$(modinfo -k "$version" -n "$m") ||
      { echo "make-tiny.sh: modinfo finds no $m for $version" >&2; exit 1; }
    n=$((n + 1))
    # A module built into the kernel (modinfo's "(builtin)") needs no load.
    if [ "${file#/}" = "$file" ]; then loaded="$loaded$m "; continue; fi
    for dep in $(modinfo -k "$version" -F depends "$m" | tr , ' '); do
      case $loaded in
        *" $dep "*) ;;
        *) echo "make-tiny.sh: $m depends on $dep, which does not load before it" >&2; exit 1 ;;
      esac
    done
    out=$tmp/root/modules/$(printf %02d "$n")-$m.ko
    case $file in
      *.ko) cp "$file" "$out" ;;
      *.ko.xz) xz -dc "$file" >"$out" ;;
      *.ko.zst) zstd -q -dc "$file" >"$out" ;;
      *.ko.gz) gzip -dc "$file" >"$out" ;;
      *) echo "make-tiny.sh: $file: a module packed in a way this script does not know" >&2; exit 1 ;;
    esac
    loaded="$loaded$m "
  done
  (cd "$tmp/root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) |
    gzip -9 >"$tmp/initrd.img"
  cp "$kernel" "$tmp/vmlinuz"
  echo "$version" >"$tmp/version"
  rm -rf "$tmp/root"
  mv "$tmp" "$dir"
  trap - EXIT
  for old in "$cache"/tiny-*; do
    [ "$old" = "$dir" ] || rm -rf "$old"
  done
fi
echo "$dir"
