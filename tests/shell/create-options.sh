#!/usr/bin/env bash
# create-options: the size options of every format that has them are
# range-checked (issue 12, G: "-o block_size=0 is accepted for VHDX").
# Zero, values that are not a power of 2, values past either end and
# absurd ones (past 2^64, negative, empty, fractions) are refused with exit
# 1, a message naming the target, the option as it was given and what it
# takes, and nothing left behind; the values at either end are accepted,
# and qemu-img info finds them in what ferry wrote.  qemu-img itself takes
# VHDX block_size=0 for "choose from the size"; ferry refuses it (leaving
# the option out chooses).
. "$(dirname "$0")/lib.sh"
require qemu-img

cd "$WORK" || die "cd $WORK"
mkimg raw src.raw 4M
mkdir -p t

# refused FMT OPTION EXPECT: ferry convert -O FMT -o OPTION is refused,
# the message naming t/out.FMT, OPTION as given and EXPECT.
refused () {
  local fmt=$1 opt=$2 expect=$3
  rm -rf t/*
  fy convert -O "$fmt" -o "$opt" src.raw "t/out.$fmt"
  expect_failure "$fmt -o $opt: refused" "t/out.$fmt"
  expect_stderr "t/out.$fmt: $opt: $expect" "$fmt -o $opt: the message says what the option takes"
  only_files "$fmt -o $opt: nothing left" t
}
# accepted FMT OPTION QFMT WANT: the option is taken, and qemu-img info
# -f QFMT gives the cluster size WANT.
accepted () {
  local fmt=$1 opt=$2 qfmt=$3 want=$4 got
  rm -rf t/*
  fy convert -O "$fmt" -o "$opt" src.raw "t/out.$fmt"
  expect_exit 0 "$fmt -o $opt: accepted" || return
  got=$(qinfo "t/out.$fmt" "$qfmt" cluster-size)
  if [ "$got" = "$want" ]; then
    ok "$fmt -o $opt: qemu-img info finds cluster size $want"
  else
    not_ok "$fmt -o $opt: qemu-img info finds cluster size '$got', expected $want"
  fi
}

vhdx_bs="expected a power of 2 from 1M to 256M"
for v in 0 3M 512k 512M 99E 18446744073709551615 -1M 1.5M ""; do
  refused vhdx "block_size=$v" "$vhdx_bs"
done
for v in 0 1536k 2G; do
  refused vhdx "log_size=$v" "expected a multiple of 1M from 1M to 1G"
done
accepted vhdx block_size=1M vhdx $((1 << 20))
accepted vhdx block_size=256M vhdx $((256 << 20))

vhd_bs="expected a power of 2 from 4k to 32M"
for v in 0 3k 2k 64M 99E -4k ""; do
  refused vhd "block_size=$v" "$vhd_bs"
done
accepted vhd block_size=4k vpc 4096
accepted vhd block_size=32M vpc $((32 << 20))

qcow2_cs="expected a power of 2 from 512 to 2M"
for v in 0 256 3k 4M 99E 1.5M -64k ""; do
  refused qcow2 "cluster_size=$v" "$qcow2_cs"
done
for v in 0 3 128 "" x; do
  refused qcow2 "refcount_bits=$v" "expected 1, 2, 4, 8, 16, 32 or 64"
done
accepted qcow2 cluster_size=512 qcow2 512
accepted qcow2 cluster_size=2M qcow2 $((2 << 20))

# VMDK takes no grain or cluster size (nor does qemu-img's): refused by name.
for opt in grain=0 grain_size=64k cluster_size=0; do
  rm -rf t/*
  fy convert -O vmdk -o "$opt" src.raw t/out.vmdk
  expect_failure "vmdk -o $opt: refused" t/out.vmdk
  expect_stderr "does not take the option '${opt%%=*}'" "vmdk -o $opt: the message names the option"
  only_files "vmdk -o $opt: nothing left" t
done

# On/off options say so.
rm -rf t/*
fy convert -O vhdx -o block_state_zero=maybe src.raw t/out.vhdx
expect_failure "vhdx -o block_state_zero=maybe: refused" t/out.vhdx
expect_stderr "t/out.vhdx: block_state_zero=maybe: expected on or off" "block_state_zero=maybe: the message"
fy convert -O qcow2 -o lazy_refcounts=2 src.raw t/out.qcow2
expect_failure "qcow2 -o lazy_refcounts=2: refused" t/out.qcow2
expect_stderr "t/out.qcow2: lazy_refcounts=2: expected on or off" "lazy_refcounts=2: the message names the target"

done_testing
