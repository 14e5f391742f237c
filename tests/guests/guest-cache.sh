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
#
# A build takes minutes, so its stages are shown on stderr as it goes,
# with the time since it started (debootstrap and its packages, the tree,
# the disk, GRUB, the first boot, the VMDK), and a line a minute while a
# stage lasts; FERRY_DEBUG=1 shows every line of the build's log too.
# The progress is read from the log here, not printed by the build
# script, so the build script (the cache key) is untouched by it.
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

# The end marker follow_build waits for (appended to the log by us).
end_marker="=== guest-cache.sh: the build ended"

# follow_build LOG START: until the end marker, read LOG as the build
# writes it and say on stderr what stage the build is in, with the time
# since START (seconds since the epoch).  Runs in the background.
follow_build () {
  set +e
  local log=$1 start=$2 line partial="" stage="starting" last now pkgs=0
  exec 3<"$log" || return
  last=$(date +%s)
  # say MESSAGE: one progress line.
  say () {
    now=$(date +%s)
    printf 'guest-cache.sh: [%d:%02d] %s\n' $(((now - start) / 60)) \
      $(((now - start) % 60)) "$*" >&2
    last=$now
  }
  while :; do
    if ! IFS= read -r line <&3; then
      # At the end of what is written so far; LINE holds a line's start.
      partial=$partial$line
      now=$(date +%s)
      if [ $((now - last)) -ge 60 ]; then
        case $stage in
          "debootstrap: downloading"*) say "still $stage ($pkgs so far)" ;;
          *) say "still $stage" ;;
        esac
      fi
      sleep 1
      continue
    fi
    line=$partial$line
    partial=""
    [ "$line" = "$end_marker" ] && break
    [ -n "${FERRY_DEBUG:-}" ] && printf '  | %s\n' "$line" >&2
    case $line in
      "=== build-debian.sh: done"*) stage="done" ;;
      "=== build-debian.sh: "*)
        stage=${line#=== build-debian.sh: }
        stage=${stage% (*}
        case $stage in
          "booting once"*) stage="the first boot, on SATA, making its initramfs (minutes under TCG)" ;;
        esac
        say "$stage" ;;
      "I: Retrieving Packages"*|"I: Retrieving InRelease"*|"I: Retrieving Release"*)
        [ "$stage" = "debootstrap: the package lists" ] || {
          stage="debootstrap: the package lists"; say "$stage"; } ;;
      "I: Retrieving "*)
        pkgs=$((pkgs + 1))
        [ $pkgs = 1 ] && { stage="debootstrap: downloading packages"; say "$stage"; } ;;
      "I: Installing core packages"*)
        stage="debootstrap: installing the core packages ($pkgs downloaded)"; say "$stage" ;;
      "I: Unpacking required packages"*)
        stage="debootstrap: unpacking the required packages"; say "$stage" ;;
      "I: Configuring required packages"*)
        stage="debootstrap: configuring the required packages"; say "$stage" ;;
      "I: Unpacking the base system"*)
        stage="debootstrap: unpacking the base system"; say "$stage" ;;
      "I: Configuring the base system"*)
        stage="debootstrap: configuring the base system"; say "$stage" ;;
      "I: Base system installed successfully"*)
        say "debootstrap: done" ;;
      "--- grub-install by the appliance"*)
        stage="installing GRUB in the disk's MBR (libguestfs appliance)"; say "$stage" ;;
    esac
  done
}

exec 9>"$cache/.lock-$name"
flock 9
if [ ! -f "$dir/guest.env" ]; then
  rm -rf "$dir.tmp"
  log=$cache/$name-$hash.log
  echo "guest-cache.sh: building the $name test guest into $dir (once per version of $script; 5 to 15 minutes; the log is $log)" >&2
  start=$(date +%s)
  : >"$log"
  follow_build "$log" "$start" &
  follower=$!
  trap 'kill "$follower" 2>/dev/null' EXIT
  build_rc=0
  STAGE_DIR=$cache "$script" "$dir.tmp" >>"$log" 2>&1 || build_rc=$?
  echo "$end_marker" >>"$log"
  wait "$follower" || true
  trap - EXIT
  if [ "$build_rc" != 0 ]; then
    echo "guest-cache.sh: the build failed (exit $build_rc) after $(($(date +%s) - start)) s; the end of $log:" >&2
    grep -v -x -F "$end_marker" "$log" | tail -n 40 >&2
    rm -rf "$dir.tmp"
    exit 1
  fi
  echo "guest-cache.sh: built in $(($(date +%s) - start)) s" >&2
  mv "$log" "$dir.tmp/build.log"
  mv "$dir.tmp" "$dir"
  for old in "$cache/$name"-*; do
    [ "$old" = "$dir" ] || rm -rf "$old"
  done
fi
if [ "$want_ova" = ova ]; then
  ova_hash=$(sha256sum <"$HERE/make-ova.sh" | cut -c1-16)
  if [ ! -f "$dir/guest-$ova_hash.ova" ]; then
    rm -f "$dir"/guest-*.ova "$dir/guest.ova"
    echo "guest-cache.sh: packing the $name test guest as an OVA (streamOptimized VMDK, a minute)" >&2
    "$HERE/make-ova.sh" "$dir" "$dir/guest-$ova_hash.ova" >&2
  fi
  ln -sfn "guest-$ova_hash.ova" "$dir/guest.ova"
fi
echo "$dir"
