#!/usr/bin/env bash
# guest-cache.sh NAME [ova]: print the directory holding the built test
# guest NAME (tests/guests/build-NAME.sh), building it first when the
# cache has no copy made by the current script.  With "ova", the directory
# also holds guest.ova, the guest packed as VMware exports it
# (make-ova.sh; remade when that script changes).
#
# The cache lives outside the checkout: $FERRY_GUEST_CACHE, else
# $XDG_CACHE_HOME/ferry-guests, else /var/tmp/ferry-guests.  Each build is
# kept under NAME-HASH, HASH being the SHA-256 of the build script and the
# helpers it runs, so editing them makes a new build and an old one is never
# taken for it.  A lock serialises concurrent callers (tests run in
# parallel); the build goes to a temporary name and is renamed into place
# only once it succeeded, so a failed or killed build is never used.
# Older builds of NAME are removed after a successful one.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
name=${1:?usage: guest-cache.sh NAME [ova]}
want_ova=${2:-}
script=$HERE/build-$name.sh
[ -f "$script" ] || { echo "guest-cache.sh: no $script" >&2; exit 1; }
cache=${FERRY_GUEST_CACHE:-${XDG_CACHE_HOME:-/var/tmp}/ferry-guests}
mkdir -p "$cache"
hash=$(cat "$script" "$HERE/apt-mirror.sh" | sha256sum | cut -c1-16)
dir=$cache/$name-$hash

exec 9>"$cache/.lock-$name"
flock 9
if [ ! -f "$dir/guest.env" ]; then
  rm -rf "$dir.tmp"
  echo "guest-cache.sh: building the $name test guest into $dir (once per version of $script)" >&2
  if ! STAGE_DIR=$cache "$script" "$dir.tmp" >"$cache/$name-$hash.log" 2>&1; then
    echo "guest-cache.sh: the build failed; the end of $cache/$name-$hash.log:" >&2
    tail -n 40 "$cache/$name-$hash.log" >&2
    rm -rf "$dir.tmp"
    exit 1
  fi
  mv "$cache/$name-$hash.log" "$dir.tmp/build.log"
  mv "$dir.tmp" "$dir"
  for old in "$cache/$name"-*; do
    [ "$old" = "$dir" ] || rm -rf "$old"
  done
fi
if [ "$want_ova" = ova ]; then
  ova_hash=$(sha256sum <"$HERE/make-ova.sh" | cut -c1-16)
  if [ ! -f "$dir/guest-$ova_hash.ova" ]; then
    rm -f "$dir"/guest-*.ova "$dir/guest.ova"
    "$HERE/make-ova.sh" "$dir" "$dir/guest-$ova_hash.ova" >&2
  fi
  ln -sfn "guest-$ova_hash.ova" "$dir/guest.ova"
fi
echo "$dir"
