#!/usr/bin/env bash
# vmdk-write: ferry writes every VMDK subformat that ESXi, Workstation and
# VirtualBox import, and qemu-img judges it.
#
# raw and qcow2 sources (the standard pattern, compressed clusters in the
# qcow2) convert to monolithicSparse (the default), streamOptimized,
# monolithicFlat, twoGbMaxExtentSparse and twoGbMaxExtentFlat (also over
# three extents); qemu-img compare and qemu-img check judge each, and the
# files made are exactly the descriptor and its extents under their final
# names.  The options (adapter_type, hwversion, toolsversion, compat6,
# zeroed_grain) land in the descriptor and header; wrong ones are refused
# before anything is made.  The streamOptimized output is checked field by
# field against the VMware and VirtualBox samples of the corpus.  -B makes
# a snapshot of a VMDK parent; -n writes into existing VMDKs.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/vmdk-lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"

mb=$((1 << 20))
size=$((8 * mb))
mkimg raw src.raw $size
fill_pattern raw src.raw 65536 $size
mkimg qcow2 src.qcow2 $size
fill_pattern qcow2 src.qcow2 65536 $size compress

# ddb IMG KEY: the value of KEY in IMG's descriptor (embedded or a file).
ddb () {
  local text
  if [ "$(head -c 4 "$1")" = KDMV ]; then
    text=$("${MK[@]}" inspect "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["descriptor"])')
  else
    text=$(cat "$1")
  fi
  printf '%s\n' "$text" | sed -n "s/^$2 *= *\"\(.*\)\"\$/\1/p" | tail -1
}
# header IMG FIELD: a field of the sparse header of IMG (vmdk-make.py inspect).
header () {
  "${MK[@]}" inspect "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"][sys.argv[1]])' "$2"
}

declare -A files=(
  [monolithicSparse]="d.vmdk"
  [streamOptimized]="d.vmdk"
  [monolithicFlat]="d.vmdk d-flat.vmdk"
  [twoGbMaxExtentSparse]="d.vmdk d-s001.vmdk"
  [twoGbMaxExtentFlat]="d.vmdk d-f001.vmdk"
)

# --- every subformat from raw and from qcow2 -------------------------------------------
mkdir -p t
for sub in monolithicSparse streamOptimized monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat; do
  for sf in raw qcow2; do
    rm -rf t/*
    opts=()
    [ $sub != monolithicSparse ] && opts=(-o subformat=$sub)
    if convert_and_judge "$sf -> $sub" src.$sf $sf t/d.vmdk vmdk "${opts[@]}"; then
      vmdk_clean "$sf -> $sub: qemu-img check" t/d.vmdk
      # shellcheck disable=SC2086
      only_files "$sf -> $sub: the files are ${files[$sub]}" t ${files[$sub]}
      check_true "$sf -> $sub: qemu-img sees create type $sub" \
        test "$(qinfo t/d.vmdk vmdk format-specific.data.create-type)" = $sub
      rm -f back.raw
      fy convert -O raw t/d.vmdk back.raw
      expect_exit 0 "$sf -> $sub: ferry reads it back" &&
        same_content "$sf -> $sub -> raw: qemu-img compare" src.$sf $sf back.raw raw
    fi
  done
done

# --- three extents, data across their boundaries -----------------------------------------
ext=$((4192256 * 512))
big=$((2 * ext + 5 * mb))
mkimg raw big.raw $big
qio raw big.raw "write -P 0x11 0 64k" "write -s $RAND $((ext - 100 * 1024)) 200k" \
  "write -P 0x12 $((2 * ext - 512)) 1k" "write -s $RAND $((big - 2 * mb)) 2m"
for sub in twoGbMaxExtentSparse twoGbMaxExtentFlat; do
  rm -rf t/*
  c=s; [ $sub = twoGbMaxExtentFlat ] && c=f
  if convert_and_judge "3 extents: raw -> $sub" big.raw raw t/d.vmdk vmdk -o subformat=$sub; then
    vmdk_clean "3 extents: $sub: qemu-img check" t/d.vmdk
    only_files "3 extents: $sub: descriptor and three extents" t d.vmdk d-${c}001.vmdk \
      d-${c}002.vmdk d-${c}003.vmdk
    sizes=$(qemu-img info --output=json t/d.vmdk | python3 -c '
import json, sys
print(" ".join(str(e["virtual-size"]) for e in json.load(sys.stdin)["format-specific"]["data"]["extents"]))')
    check_true "3 extents: $sub: extents of 2047 MiB, 2047 MiB, 5 MiB ($sizes)" \
      test "$sizes" = "$ext $ext $((5 * mb))"
  fi
done
rm -f big.raw

# --- a size that is not a multiple of 512 ----------------------------------------------------
head -c 1000000 "$RAND" >odd.raw
rm -rf t/*
fy convert -O vmdk odd.raw t/odd.vmdk
if expect_exit 0 "odd size: raw -> vmdk"; then
  check_true "odd size: rounded up to a sector" \
    test "$(qinfo t/odd.vmdk vmdk virtual-size)" = 1000448
  same_content "odd size: qemu-img compare" odd.raw raw t/odd.vmdk vmdk
  vmdk_clean "odd size: qemu-img check" t/odd.vmdk
fi
fy convert -O vmdk -o subformat=streamOptimized odd.raw t/odd-s.vmdk
expect_exit 0 "odd size: raw -> streamOptimized" &&
  same_content "odd size streamOptimized: qemu-img compare" odd.raw raw t/odd-s.vmdk vmdk

# --- options -------------------------------------------------------------------------------
for a in ide buslogic lsilogic legacyESX; do
  rm -rf t/*
  fy convert -O vmdk -o adapter_type=$a src.raw t/a.vmdk
  if expect_exit 0 "adapter_type=$a"; then
    heads=255; [ $a = ide ] && heads=16
    check_true "adapter_type=$a: ddb.adapterType" test "$(ddb t/a.vmdk ddb.adapterType)" = $a
    check_true "adapter_type=$a: $heads heads" test "$(ddb t/a.vmdk ddb.geometry.heads)" = $heads
    check_true "adapter_type=$a: cylinders" \
      test "$(ddb t/a.vmdk ddb.geometry.cylinders)" = $((size / (heads * 63 * 512)))
  fi
done
rm -rf t/*
truncate -s 20G huge.raw
fy convert -O vmdk -o subformat=monolithicFlat huge.raw t/h.vmdk
expect_exit 0 "20 GiB ide disk" &&
  check_true "20 GiB ide disk: cylinders capped at 16383" test "$(ddb t/h.vmdk ddb.geometry.cylinders)" = 16383
rm -f huge.raw
rm -rf t/*
fy convert -O vmdk -o hwversion=14,toolsversion=12345 src.raw t/o.vmdk
if expect_exit 0 "hwversion=14,toolsversion=12345"; then
  check_true "ddb.virtualHWVersion = 14" test "$(ddb t/o.vmdk ddb.virtualHWVersion)" = 14
  check_true "ddb.toolsVersion = 12345" test "$(ddb t/o.vmdk ddb.toolsVersion)" = 12345
fi
fy convert -O vmdk -o compat6=on src.raw t/c6.vmdk
expect_exit 0 "compat6=on" &&
  check_true "compat6: ddb.virtualHWVersion = 6" test "$(ddb t/c6.vmdk ddb.virtualHWVersion)" = 6
for sub in monolithicSparse streamOptimized twoGbMaxExtentFlat; do
  rm -rf t/*
  fy convert -O vmdk -o subformat=$sub src.raw t/d.vmdk
  expect_exit 0 "ddb of $sub" || continue
  check_true "$sub: ddb.uuid in VMware's form" \
    sh -c "echo '$(ddb t/d.vmdk ddb.uuid)' | grep -q -E '^60 00 C2( [0-9a-f]{2}){5}-[0-9a-f]{2}( [0-9a-f]{2}){7}\$'"
  check_true "$sub: ddb.longContentID of 32 hex digits" \
    sh -c "echo '$(ddb t/d.vmdk ddb.longContentID)' | grep -q -E '^[0-9a-f]{32}\$'"
  thin=1; [ $sub = twoGbMaxExtentFlat ] && thin=""
  check_true "$sub: ddb.thinProvisioned '$thin'" test "$(ddb t/d.vmdk ddb.thinProvisioned)" = "$thin"
  check_true "$sub: defaults ide, hwversion 4, tools 2147483647" \
    test "$(ddb t/d.vmdk ddb.adapterType) $(ddb t/d.vmdk ddb.virtualHWVersion) $(ddb t/d.vmdk ddb.toolsVersion)" = "ide 4 2147483647"
done
for sub in monolithicSparse twoGbMaxExtentSparse; do
  rm -rf t/*
  fy convert -O vmdk -o subformat=$sub,zeroed_grain=on src.raw t/z.vmdk
  if expect_exit 0 "$sub zeroed_grain=on"; then
    x=t/z.vmdk; [ $sub = twoGbMaxExtentSparse ] && x=t/z-s001.vmdk
    check_true "zeroed_grain: header version 2 with flag 0x4" \
      test "$(header $x version) $(( $(header $x flags) & 4 ))" = "2 4"
    same_content "$sub zeroed_grain: qemu-img compare" src.raw raw t/z.vmdk vmdk
    vmdk_clean "$sub zeroed_grain: qemu-img check" t/z.vmdk
  fi
done

# Wrong options: refused, nothing made.
bad_option () {
  local what=$1
  shift
  rm -rf t/*
  fy convert "$@" src.raw t/out.vmdk
  if [ -z "$CRASH" ] && [ "$RC" = 1 ] && [ -s "$ERR" ]; then ok "$what refused"
  else not_ok "$what: expected exit 1 with a message" "$(last_run)"; fi
  only_files "$what: nothing made" t
}
bad_option "subformat=vmfs" -O vmdk -o subformat=vmfs
bad_option "adapter_type=pvscsi" -O vmdk -o adapter_type=pvscsi
bad_option "hwversion=x" -O vmdk -o hwversion=x
bad_option "toolsversion=1.2" -O vmdk -o toolsversion=1.2
bad_option "zeroed_grain=maybe" -O vmdk -o zeroed_grain=maybe
bad_option "compat6 with hwversion" -O vmdk -o compat6=on,hwversion=8
bad_option "monolithicFlat with zeroed_grain" -O vmdk -o subformat=monolithicFlat,zeroed_grain=on
bad_option "twoGbMaxExtentFlat with a backing file" -O vmdk -o subformat=twoGbMaxExtentFlat -B src.vmdk
bad_option "streamOptimized with zeroed_grain" -O vmdk -o subformat=streamOptimized,zeroed_grain=on
bad_option "backing_fmt=qcow2" -O vmdk -B src.qcow2 -F qcow2
bad_option "an option vmdk does not take" -O vmdk -o cluster_size=65536
bad_option "an option vmdk does not take, multi-file" -O vmdk -o subformat=twoGbMaxExtentSparse,bogus=1
bad_option "-c into monolithicSparse" -c -O vmdk
# A descriptor has no way to quote a '"' in a file name: refused before
# anything is made, rather than written and then unreadable.
for sub in monolithicSparse twoGbMaxExtentFlat; do
  rm -rf t/*
  fy convert -O vmdk -o subformat=$sub src.raw 't/say "hi".vmdk'
  expect_exit 1 "$sub named with a double quote: refused"
  expect_stderr "a VMDK descriptor cannot name a file with a double quote or a control character" \
    "$sub named with a double quote: the message says why"
  only_files "$sub named with a double quote: nothing made" t
done
rm -rf t/*
convert_and_judge "-c into streamOptimized (compressed anyway)" src.raw raw t/c.vmdk vmdk \
  -c -o subformat=streamOptimized

# --- streamOptimized, field by field against VMware's and VirtualBox's ------------------
bzip2 -dc "$CORPUS/vmware/iotest-version3.vmdk.bz2" >vmware.vmdk || die "bunzip2 vmware sample"
cp "$CORPUS/virtualbox/ubuntu.2.0-disk1.vmdk" vbox.vmdk || die "copy vbox sample"
rm -rf t/*
fy convert -O vmdk -o subformat=streamOptimized,adapter_type=lsilogic,hwversion=8 src.qcow2 t/stream.vmdk
if expect_exit 0 "streamOptimized for the field checks"; then
  for f in vmware.vmdk vbox.vmdk t/stream.vmdk; do "${MK[@]}" inspect $f >$f.json; done
  out=$(python3 - vmware.vmdk.json vbox.vmdk.json t/stream.vmdk.json $((size / 512)) <<'EOF'
import json, re, sys
vmw, vbox, ours = (json.load(open(p)) for p in sys.argv[1:4])
sectors = int(sys.argv[4])
bad = []
# Fields that must be what both samples carry.
for k in ("version", "flags", "grain", "gtes_per_gt", "rgd_offset", "gd_offset",
          "overhead", "desc_offset", "compress", "nl_chars", "unclean"):
    want = {vmw["header"][k], vbox["header"][k]}
    if len(want) != 1 or ours["header"][k] not in want:
        bad.append("header %s: ours %s, samples %s" % (k, ours["header"][k], want))
if ours["header"]["capacity"] != sectors:
    bad.append("header capacity %s" % ours["header"]["capacity"])
# The footer repeats the header with the directory's place.
f = ours["footer"]
if f is None:
    bad.append("no footer")
else:
    for k, v in ours["header"].items():
        if k != "gd_offset" and f[k] != v:
            bad.append("footer %s: %s, header %s" % (k, f[k], v))
    if f["gd_offset"] == 0xffffffffffffffff or f["gd_offset"] * 512 >= ours["footer_at"]:
        bad.append("footer gd_offset %s" % f["gd_offset"])
for s in (vmw, vbox):
    if s["footer"]["gd_offset"] == 0xffffffffffffffff:
        bad.append("sample footer?")
st = ours["stream"]
for k in ("lba_ascending", "tables_after_grains", "ends_with_eos"):
    if not st[k]:
        bad.append("stream: not %s" % k)
if st["gd"] != 1 or st["footer"] != 1 or st["eos"] != 1 or st["grains"] == 0 or st["gt"] == 0:
    bad.append("stream markers %s" % st)
# Descriptor: the lines both samples have.
d = ours["descriptor"]
for pat in (r'^version=1$', r'^CID=[0-9a-f]{8}$', r'^parentCID=ffffffff$',
            r'^createType="streamOptimized"$',
            r'^RDONLY %d SPARSE "stream.vmdk"$' % sectors,
            r'^ddb.adapterType = "lsilogic"$', r'^ddb.geometry.cylinders = "\d+"$',
            r'^ddb.geometry.heads = "255"$', r'^ddb.geometry.sectors = "63"$',
            r'^ddb.virtualHWVersion = "8"$', r'^ddb.longContentID = "[0-9a-f]{32}"$'):
    if not re.search(pat, d, re.M):
        bad.append("descriptor lacks /%s/" % pat)
    sample = re.sub(r'"[^"]+\.vmdk"', '"stream.vmdk"', vmw["descriptor"]).replace(" \n", "\n")
    sample = re.sub(r'RDONLY \d+', 'RDONLY %d' % sectors, sample)
    sample = re.sub(r'ddb.virtualHWVersion = "\d+"', 'ddb.virtualHWVersion = "8"', sample)
    if not pat.startswith(r'^CID') and not pat.startswith(r'^ddb.geometry.cylinders') \
            and not pat.startswith(r'^ddb.longContentID') and not re.search(pat, sample, re.M):
        bad.append("the VMware sample lacks /%s/ (the check is wrong)" % pat)
print("\n".join(bad) if bad else "ok")
EOF
)
  check_true "streamOptimized header, footer, markers, descriptor as VMware and VirtualBox write them" \
    test "$out" = ok || echo "$out" | sed 's/^/#   /'
  same_content "streamOptimized: read back by qemu-img" src.qcow2 qcow2 t/stream.vmdk vmdk
  vmdk_clean "streamOptimized: qemu-img check" t/stream.vmdk
  size_ferry=$(stat -c %s t/stream.vmdk)
  qemu-img convert -f qcow2 -O vmdk -o subformat=streamOptimized src.qcow2 qs.vmdk
  size_qemu=$(stat -c %s qs.vmdk)
  check_true "streamOptimized: $size_ferry bytes, within 5% of qemu-img's $size_qemu" \
    test $((size_ferry * 100)) -le $((size_qemu * 105))
fi

# --- -B: a snapshot of a VMDK parent ------------------------------------------------------
rm -rf t/*
mkimg vmdk t/base.vmdk $size
qio vmdk t/base.vmdk "write -s $RAND 0 4m" "write -P 0x21 6m 1m"
fy convert -O vmdk -B base.vmdk src.raw t/over.vmdk
if expect_exit 0 "-B base.vmdk"; then
  same_content "-B: qemu-img compare (through the parent)" src.raw raw t/over.vmdk vmdk
  vmdk_clean "-B: qemu-img check" t/over.vmdk
  check_true "-B: parentFileNameHint" \
    test "$(qinfo t/over.vmdk vmdk backing-filename)" = base.vmdk
  check_true "-B: parentCID is the parent's CID" \
    test "$(qinfo t/over.vmdk vmdk format-specific.data.parent-cid)" = \
         "$(qinfo t/base.vmdk vmdk format-specific.data.cid)"
fi

# --- -n: into existing VMDKs -----------------------------------------------------------------
for sub in monolithicSparse twoGbMaxExtentSparse twoGbMaxExtentFlat monolithicFlat; do
  rm -rf t/*
  mkimg vmdk t/n.vmdk $size "subformat=$sub"
  qio vmdk t/n.vmdk "write -P 0x31 0 8m"
  # qemu-img writes CIDs without leading zeroes; a short one must change too.
  [ $sub = monolithicFlat ] && sed -i 's/^CID=.*/CID=abc/' t/n.vmdk
  cid=$(qinfo t/n.vmdk vmdk format-specific.data.cid)
  fy convert -n -O vmdk src.raw t/n.vmdk
  if expect_exit 0 "-n into a $sub made by qemu-img"; then
    same_content "-n $sub: qemu-img compare" src.raw raw t/n.vmdk vmdk
    vmdk_clean "-n $sub: qemu-img check" t/n.vmdk
    check_true "-n $sub: the CID changed" test "$(qinfo t/n.vmdk vmdk format-specific.data.cid)" != "$cid"
  fi
done
rm -rf t/*
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized src.raw t/s.vmdk
fy convert -n -O vmdk src.qcow2 t/s.vmdk
expect_failure "-n into a streamOptimized image" t/s.vmdk
expect_stderr "streamOptimized" "-n into a streamOptimized image: says why"

done_testing
