#!/usr/bin/env bash
# convert-options: what ferry writes with qcow2 creation options.  compat,
# cluster_size, refcount_bits and compression_type show in qemu-img info;
# preallocation shows in the allocation; -c output is read back by qemu-img
# and is smaller than the uncompressed output; backing_file/backing_fmt
# make an overlay that holds only the clusters that differ from the backing
# file (qemu-img map shows which clusters the top layer allocates).
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"

size=$((8 << 20))
mkimg raw src.raw $size
fill_pattern raw src.raw 65536 $size
# Compressible text over 2 MiB, so that -c has something to gain.
seq -f "%g: a line of text that compresses well" 1 100000 | head -c $((2 << 20)) >text.bin
qio raw src.raw "write -s text.bin $((5 << 20)) 2m"

# expect_info WHAT IMG KEY VALUE: qemu-img info reports KEY = VALUE.
expect_info () {
  local got
  got=$(qinfo "$2" qcow2 "$3")
  if [ "$got" = "$4" ]; then ok "$1"; else not_ok "$1: qemu-img info $3 is '$got', expected '$4'"; fi
}

# --- compat ----------------------------------------------------------------
convert_and_judge "compat=0.10" src.raw raw out.qcow2 qcow2 -o compat=0.10 &&
  expect_info "compat=0.10 makes a version 2 image" out.qcow2 format-specific.data.compat 0.10
convert_and_judge "compat=1.1" src.raw raw out.qcow2 qcow2 -o compat=1.1 &&
  expect_info "compat=1.1 makes a version 3 image" out.qcow2 format-specific.data.compat 1.1
convert_and_judge "default compat" src.raw raw out.qcow2 qcow2 &&
  expect_info "version 3 by default" out.qcow2 format-specific.data.compat 1.1

# --- cluster_size, refcount_bits ------------------------------------------------
for cs in 512 4096 65536 2M; do
  convert_and_judge "cluster_size=$cs" src.raw raw out.qcow2 qcow2 -o cluster_size=$cs &&
    expect_info "cluster_size=$cs is recorded" out.qcow2 cluster-size "$(numfmt --from=iec "$cs")"
done
for bits in 1 8 16 64; do
  convert_and_judge "refcount_bits=$bits" src.raw raw out.qcow2 qcow2 -o refcount_bits=$bits &&
    expect_info "refcount_bits=$bits is recorded" out.qcow2 format-specific.data.refcount-bits "$bits"
done
convert_and_judge "several options at once" src.raw raw out.qcow2 qcow2 \
  -o compat=0.10,cluster_size=16384,refcount_bits=16 &&
  expect_info "several options: cluster size" out.qcow2 cluster-size 16384

# compressed_clusters IMG: how many clusters qemu-img check counts as
# compressed.
compressed_clusters () {
  qemu-img check -f qcow2 --output=json "$1" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get("compressed-clusters", 0))'
}

# --- compression -------------------------------------------------------------------
convert_and_judge "uncompressed reference" src.raw raw plain.qcow2 qcow2
for ctype in zlib zstd; do
  convert_and_judge "-c, compression_type=$ctype" src.raw raw c-$ctype.qcow2 qcow2 \
    -c -o compression_type=$ctype || continue
  expect_info "-c: compression type $ctype is recorded" c-$ctype.qcow2 \
    format-specific.data.compression-type $ctype
  plain=$(stat -c %s plain.qcow2)
  packed=$(stat -c %s c-$ctype.qcow2)
  check_true "-c $ctype output ($packed bytes) smaller than uncompressed ($plain)" \
    test "$packed" -lt $((plain - (1 << 20)))
  # The 2 MiB of text is 32 clusters that compress; the random data and
  # the patterns of fill_pattern add a few more.
  n=$(compressed_clusters c-$ctype.qcow2)
  check_true "-c $ctype: qemu-img check counts $n compressed clusters (32 or more)" \
    test "${n:-0}" -ge 32
done
n=$(compressed_clusters plain.qcow2)
check_true "without -c: no compressed clusters (qemu-img check counts ${n:-?})" test "$n" = 0
convert_and_judge "-c with 2 MiB clusters" src.raw raw c-2m.qcow2 qcow2 -c -o cluster_size=2M
convert_and_judge "-c with 512 B clusters" src.raw raw c-512.qcow2 qcow2 -c -o cluster_size=512
convert_and_judge "-c with compat=0.10" src.raw raw c-v2.qcow2 qcow2 -c -o compat=0.10
convert_and_judge "-c from a qcow2 source" c-zlib.qcow2 qcow2 c-again.qcow2 qcow2 -c

# --- preallocation --------------------------------------------------------------------
# Every cluster of the image is allocated: qemu-img map puts each range at a
# host offset.
all_mapped () {
  qemu-img map -f qcow2 --output=json "$1" | python3 -c '
import json, sys
bad = [m for m in json.load(sys.stdin) if "offset" not in m]
sys.exit(1 if bad else 0)'
}
for prealloc in metadata falloc full; do
  convert_and_judge "preallocation=$prealloc" src.raw raw pre.qcow2 qcow2 \
    -o preallocation=$prealloc || continue
  check_true "preallocation=$prealloc: every cluster is mapped" all_mapped pre.qcow2
  check_true "preallocation=$prealloc: file is at least the virtual size" \
    test "$(stat -c %s pre.qcow2)" -ge $size
  if [ $prealloc != metadata ]; then
    check_true "preallocation=$prealloc: disk space allocated" \
      test "$(allocated_bytes pre.qcow2)" -ge $size
  fi
done
convert_and_judge "preallocation=off" src.raw raw pre.qcow2 qcow2 -o preallocation=off
check_true "preallocation=off: a sparse source stays small" \
  test "$(stat -c %s pre.qcow2)" -lt $size

# --- backing_file / backing_fmt: only the differences are written ----------------------
# top_clusters IMG: the guest cluster indices (64 KiB) that IMG's own layer
# holds, whether data or zero clusters.
top_clusters () {
  qemu-img map -f qcow2 --output=json "$1" | python3 -c '
import json, sys
cs = 65536
out = set()
for m in json.load(sys.stdin):
    if m["depth"] == 0 and (m["data"] or m["zero"]) and m["present"]:
        out.update(range(m["start"] // cs, (m["start"] + m["length"] + cs - 1) // cs))
print(" ".join(str(c) for c in sorted(out)))'
}
# Clusters 0-1 (guest 64 KiB units) of the base are written over, cluster
# 20 becomes zeroes, cluster 40 gets new data where the base has none.
mkimg qcow2 base.qcow2 $size
qio qcow2 base.qcow2 "write -s $RAND 0 4m" "write -P 0x77 6m 1m"
qemu-img convert -q -f qcow2 -O raw base.qcow2 modified.raw || die "qemu-img convert"
qio raw modified.raw "write -P 0x01 100 1000" "write -P 0x02 $((65536 + 4096)) 512" \
  "write -z $((20 * 65536)) 65536" "write -P 0x03 $((40 * 65536 + 9)) 7"
for bf in base.qcow2 "$WORK/base.qcow2"; do
  rm -f over.qcow2
  fy convert -O qcow2 -o "backing_file=$bf,backing_fmt=qcow2" modified.raw over.qcow2
  expect_exit 0 "backing_file=$bf: ferry convert" || continue
  same_content "backing_file=$bf: overlay reads as the source" modified.raw raw over.qcow2 qcow2
  qemu_clean "backing_file=$bf: qemu-img check" over.qcow2
  expect_info "backing_file=$bf is recorded" over.qcow2 backing-filename "$bf"
  expect_info "backing_fmt=qcow2 is recorded" over.qcow2 backing-filename-format qcow2
  got=$(top_clusters over.qcow2)
  if [ "$got" = "0 1 20 40" ]; then
    ok "backing_file=$bf: the overlay holds only clusters 0 1 20 40"
  else
    not_ok "backing_file=$bf: the overlay holds clusters [$got], expected [0 1 20 40]" \
      "$(qemu-img map -f qcow2 --output=json over.qcow2)"
  fi
done
# A raw backing file.
qemu-img convert -q -f qcow2 -O raw base.qcow2 base.raw || die "qemu-img convert"
rm -f over.qcow2
fy convert -O qcow2 -o backing_file=base.raw,backing_fmt=raw,compat=0.10 modified.raw over.qcow2
if expect_exit 0 "backing_fmt=raw, compat=0.10: ferry convert"; then
  same_content "backing_fmt=raw: overlay reads as the source" modified.raw raw over.qcow2 qcow2
  qemu_clean "backing_fmt=raw: qemu-img check" over.qcow2
  got=$(top_clusters over.qcow2)
  check_true "backing_fmt=raw: the overlay holds only clusters 0 1 20 40 (got [$got])" \
    test "$got" = "0 1 20 40"
fi
# Converting the chain itself onto the same backing file writes nothing but
# the top layer's differences; here the source is the overlay qemu-img made.
mkimg qcow2 qover.qcow2 $size "backing_file=base.qcow2,backing_fmt=qcow2"
qio qcow2 qover.qcow2 "write -P 0x09 $((3 * 65536)) 512"
rm -f over.qcow2
fy convert -O qcow2 -o backing_file=base.qcow2,backing_fmt=qcow2 qover.qcow2 over.qcow2
if expect_exit 0 "overlay -> overlay on the same backing file"; then
  same_content "overlay -> overlay: qemu-img compare" qover.qcow2 qcow2 over.qcow2 qcow2
  got=$(top_clusters over.qcow2)
  check_true "overlay -> overlay holds only cluster 3 (got [$got])" test "$got" = "3"
fi

done_testing
