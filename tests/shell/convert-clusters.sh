#!/usr/bin/env bash
# convert-clusters: qcow2 <-> raw for every cluster size from 512 B to 2 MiB,
# qcow2 versions 2 and 3, virtual sizes that are not a multiple of the
# cluster, a disk smaller than one cluster, an odd-sized raw file, and data
# past 4 GiB.  Each source holds the standard mix of fill_pattern (data,
# zeroes, discards, compressed clusters); qemu-img compare and qemu-img
# check judge every output.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"

for compat in 1.1 0.10; do
  for shift_ in 9 10 11 12 13 14 15 16 17 18 19 20 21; do
    cs=$((1 << shift_))
    size=$((8 * cs))
    [ $size -lt $((4 << 20)) ] && size=$((4 << 20))
    size=$((size + 1536))
    tag="v$compat cluster $cs size $size"
    src=src-$compat-$cs.qcow2
    mkimg qcow2 "$src" "$size" "compat=$compat,cluster_size=$cs"
    fill_pattern qcow2 "$src" "$cs" "$size" compress

    # qcow2 -> raw, and the raw file back to qcow2 of the same shape.
    convert_and_judge "$tag: qcow2 -> raw" "$src" qcow2 out.raw raw
    if [ -f out.raw ]; then
      convert_and_judge "$tag: raw -> qcow2" out.raw raw out.qcow2 qcow2 \
        -o "compat=$compat,cluster_size=$cs" &&
        check_true "$tag: raw -> qcow2 has cluster size $cs" \
          test "$(qinfo out.qcow2 qcow2 cluster-size)" = "$cs"
    fi
    # qcow2 -> qcow2 with ferry's defaults.
    convert_and_judge "$tag: qcow2 -> qcow2" "$src" qcow2 out2.qcow2 qcow2
    rm -f "$src" out.raw out.qcow2 out2.qcow2
  done
done

# A disk smaller than one cluster.
mkimg qcow2 tiny.qcow2 3584 cluster_size=65536
qio qcow2 tiny.qcow2 "write -P 0x33 512 1024" "write -P 0x44 3072 512"
convert_and_judge "disk smaller than a cluster: qcow2 -> raw" tiny.qcow2 qcow2 tiny.raw raw
convert_and_judge "disk smaller than a cluster: qcow2 -> qcow2" tiny.qcow2 qcow2 tiny2.qcow2 qcow2

# A raw file whose size is not a multiple of 512.
head -c 1000001 "$RAND" >odd.raw
convert_and_judge "odd-sized raw: raw -> raw" odd.raw raw odd2.raw raw
convert_and_judge "odd-sized raw: raw -> qcow2" odd.raw raw odd.qcow2 qcow2

# A zero-length disk.
: >empty.raw
convert_and_judge "empty raw -> qcow2" empty.raw raw empty.qcow2 qcow2
convert_and_judge "empty raw -> raw" empty.raw raw empty2.raw raw

# Data past 4 GiB and in several L1 entries (offsets that need 64 bits).
mkimg qcow2 big.qcow2 6G cluster_size=65536
qio qcow2 big.qcow2 "write -P 0x61 0 64k" "write -s $RAND $(((4 << 30) - 4096)) 8192" \
  "write -P 0x62 $(((5 << 30) + 12345 * 512)) 1m" "write -P 0x63 $(((6 << 30) - 512)) 512"
convert_and_judge "6 GiB sparse: qcow2 -> raw" big.qcow2 qcow2 big.raw raw
if [ -f big.raw ]; then
  check_true "6 GiB sparse: raw output stays sparse (< 64 MiB on disk)" \
    test "$(allocated_bytes big.raw)" -lt $((64 << 20))
  convert_and_judge "6 GiB sparse: raw -> qcow2" big.raw raw big2.qcow2 qcow2
fi
convert_and_judge "6 GiB sparse: qcow2 -> qcow2" big.qcow2 qcow2 big3.qcow2 qcow2
rm -f big*.raw big*.qcow2

# Thread counts must not change the result.
mkimg raw threads.raw 16M
qio raw threads.raw "write -s $RAND 0 3m" "write -s $RAND 5m 7m" "write -P 0x71 15m 1m"
for m in 1 2 5; do
  convert_and_judge "-m $m: raw -> qcow2" threads.raw raw threads.qcow2 qcow2 -m "$m"
  convert_and_judge "-m $m: raw -> raw" threads.raw raw threads2.raw raw -m "$m"
done

done_testing
