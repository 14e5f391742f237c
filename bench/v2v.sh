#!/usr/bin/env bash
# bench/v2v.sh [BUILD]: `ferry v2v` of an OVA against the manual route
# users take today, `tar xf` then `qemu-img convert -O qcow2`, on the same
# input in the same run, as a ratio of wall time (median of RUNS runs,
# interleaved).
#
# Input, made once in BENCH_DIR: v2v.ova, an OVF (tests/shell/v2v-tar.py
# writes it), its SHA256 manifest and tar.vmdk, the streamOptimized VMDK
# (made by qemu-img) of tar.raw (1 GiB whose first 512 MiB are a tar of
# /usr, bench/lib.sh), packed by GNU tar.
#
# Case:
#   ova -> qcow2   ferry v2v v2v.ova --to libvirt --out DIR: checks the
#                  manifest (reads the whole OVA), converts the disk read
#                  in place inside the archive, flushes every file, writes
#                  the domain and renames the folder into place;
#                  vs  tar xf v2v.ova -C DIR && qemu-img convert -O qcow2
#                  DIR/tar.vmdk DIR/tar.qcow2, which neither checks the
#                  manifest nor flushes.  A timed sync of the peer's output
#                  gives the like-for-like column, as in bench/convert.sh;
#                  and ferry with -t unsafe, which flushes nothing either.
#
# The OVA is read once first, so every run finds it in the page cache;
# outputs are removed between runs.
#
# Environment: BENCH_DIR, RUNS (3), OUTDIR (out-v2v), THREADS (ferry -m).
set -euo pipefail

OUTDIR=${OUTDIR:-out-v2v}
. "$(dirname "$0")/lib.sh"
bench_setup qemu-img tar sha256sum
make_tar_input

V2V_VERSION=$INPUT_VERSION.2     # bump when the recipe below changes
if [ "$(cat v2v.ok 2>/dev/null)" != "$V2V_VERSION" ]; then
  echo "bench: making v2v.ova (tar.raw as a streamOptimized VMDK, with qemu-img)..."
  rm -rf v2v.d v2v.ova v2v.ok
  mkdir v2v.d
  qemu-img convert -f raw -O vmdk -o subformat=streamOptimized tar.raw v2v.d/tar.vmdk
  "$PYTHON" "$SRCDIR/tests/shell/v2v-tar.py" ovf bench tar.vmdk vmdk $((1 << 30)) \
    >v2v.d/bench.ovf
  (cd v2v.d && sha256sum bench.ovf tar.vmdk | awk '{ print "SHA256(" $2 ")= " $1 }' >bench.mf)
  tar -C v2v.d -cf v2v.ova bench.ovf bench.mf tar.vmdk
  rm -rf v2v.d
  echo "$V2V_VERSION" >v2v.ok
fi

O=$BENCH_DIR/$OUTDIR
warm v2v.ova
fts=() uts=() pts=() pss=() fmax=0
echo "bench: ova -> qcow2 ($RUNS runs each, interleaved)..."
for i in $(seq "$RUNS"); do
  rm -rf "$O/ferry" "$O/unsafe" "$O/peer"
  # shellcheck disable=SC2086
  r=$(timed "$O/.none" "$FERRY" v2v v2v.ova --to libvirt --out "$O/ferry" \
        --progress=none ${THREADS:+-m $THREADS})
  fts+=("${r% *}")
  [ "${r#* }" -gt "$fmax" ] && fmax=${r#* }
  # shellcheck disable=SC2086
  r=$(timed "$O/.none" "$FERRY" v2v v2v.ova --to libvirt --out "$O/unsafe" \
        --progress=none -t unsafe ${THREADS:+-m $THREADS})
  uts+=("${r% *}")
  rm -rf "$O/unsafe"
  mkdir -p "$O/peer"
  r=$(timed "$O/.none" sh -c "tar -xf v2v.ova -C '$O/peer' && qemu-img convert -O qcow2 '$O/peer/tar.vmdk' '$O/peer/tar.qcow2'")
  pts+=("${r% *}")
  r=$(PRESYNC=no timed "$O/.none" sync "$O/peer/tar.qcow2" "$O/peer/tar.vmdk")
  pss+=("$(awk -v a="${pts[-1]}" -v b="${r% *}" 'BEGIN {print a + b}')")
done
same=yes
qemu-img compare "$O/ferry/bench-disk1.qcow2" "$O/peer/tar.qcow2" >/dev/null 2>&1 || same=NO
fsize=$(stat -c %s "$O/ferry/bench-disk1.qcow2")
psize=$(stat -c %s "$O/peer/tar.qcow2")
rm -rf "$O/ferry" "$O/peer"
ft=$(median "${fts[@]}")
ut=$(median "${uts[@]}")
pt=$(median "${pts[@]}")
ps=$(median "${pss[@]}")
ratio () { awk -v a="$1" -v b="$2" 'BEGIN {print (b > 0) ? a / b : 0}'; }

echo
echo "$("$FERRY" --version 2>/dev/null | head -1), $(qemu-img --version | head -1), $(tar --version | head -1), $(nproc) cores, median of $RUNS runs"
printf '%-22s %8s %8s %6s %9s %6s %11s %11s %7s %5s\n' case ferry_s peer_s ratio peer+sync ratio \
  ferry_bytes peer_bytes rss_MiB same
printf '%-22s %8.2f %8.2f %6.2f %9.2f %6.2f %11s %11s %7d %5s\n' "ova -> qcow2" "$ft" "$pt" \
  "$(ratio "$ft" "$pt")" "$ps" "$(ratio "$ft" "$ps")" "$fsize" "$psize" "$((fmax / 1024))" "$same"
printf '%-22s %8.2f %8.2f %6.2f\n' "ova -> qcow2, -t unsafe" "$ut" "$pt" "$(ratio "$ut" "$pt")"
echo "(ratio = ferry / peer, below 0.5 ferry is more than twice as fast; peer = tar xf +"
echo " qemu-img convert -O qcow2; peer+sync adds a sync of its outputs, as durable as"
echo " ferry's flushed folder; -t unsafe: ferry flushes nothing either, like the peer;"
echo " bytes = the qcow2's size; rss = ferry's peak memory; same = qemu-img compare of"
echo " the two qcow2 files)"
