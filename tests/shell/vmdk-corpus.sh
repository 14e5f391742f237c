#!/usr/bin/env bash
# vmdk-corpus: every VMDK of ../shared/corpus.  The streamOptimized disks
# VMware (header version 3, grain directory in the footer, 16 GiB) and
# VirtualBox exported, the one of the OVF sample, and the monolithicSparse
# disk of the sleuthkit cross-format set, each converted by ferry to raw,
# to qcow2 and to streamOptimized and monolithicSparse VMDK, and judged by
# qemu-img compare against qemu-img's reading of the original; ferry info
# agrees with qemu-img info, ferry map with qemu-img map; ferry check
# passes them.  The sleuthkit VMDK
# holds the same 100 KiB as the corpus's qcow v1 and VHD images.  The
# "VMDK" files inside the test OVAs are four bytes of text: not VMDK.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/vmdk-lib.sh"
require qemu-img python3 gzip bzip2 tar

[ -d "$CORPUS/vmware" ] || { echo "1..0 # SKIP no corpus at $CORPUS"; exit 77; }
cd "$WORK" || die "cd $WORK"

bzip2 -dc "$CORPUS/vmware/iotest-version3.vmdk.bz2" >vmware-v3.vmdk || die "bunzip2"
gzip -dc "$CORPUS/ovf/input.vmdk.gz" >ovf-input.vmdk || die "gunzip"
cp "$CORPUS/virtualbox/ubuntu.2.0-disk1.vmdk" vbox.vmdk || die "cp"
cp "$CORPUS/qemu/sleuthkit-image.vmdk" sleuthkit.vmdk || die "cp"

for img in vmware-v3.vmdk vbox.vmdk ovf-input.vmdk sleuthkit.vmdk; do
  what="corpus $img"
  convert_and_judge "$what -> raw" $img vmdk out.raw raw
  convert_and_judge "$what -> qcow2" $img vmdk out.qcow2 qcow2
  for sub in streamOptimized monolithicSparse; do
    if convert_and_judge "$what -> $sub" $img vmdk out.vmdk vmdk -o subformat=$sub; then
      out=$(qemu-img check -f vmdk out.vmdk 2>&1) &&
        ok "$what -> $sub: qemu-img check" || not_ok "$what -> $sub: qemu-img check" "$out"
    fi
    rm -f out.vmdk
  done
  rm -f out.raw out.qcow2

  fy info --json $img
  if expect_exit 0 "ferry info --json $what"; then
    want=$(qemu-img info --output=json $img | python3 -c '
import json, sys
j = json.load(sys.stdin); d = j["format-specific"]["data"]
print(j["format"], j["virtual-size"], j["cluster-size"], d["create-type"], d["cid"],
      d["parent-cid"], [(e["virtual-size"], e.get("compressed", False)) for e in d["extents"]])')
    got=$(python3 -c '
import json, sys
j = json.load(open(sys.argv[1])); d = j["format-specific"]
print(j["format"], j["virtual-size"], j.get("cluster-size"), d.get("create-type"), d.get("cid"),
      d.get("parent-cid"), [(d["extent[%d].virtual-size" % i], d.get("extent[%d].compressed" % i, False))
                            for i in range(d["extents"])])' "$OUT" 2>&1)
    check_true "ferry info $what: '$got' = '$want'" test "$got" = "$want"
  fi
  fy check $img
  expect_exit 0 "ferry check $what"
  map_agrees "$what" $img vmdk
done

# The VMware sample's facts, as its descriptor gives them.
fy info vmware-v3.vmdk
if expect_exit 0 "ferry info vmware-v3.vmdk"; then
  for fact in "create-type: streamOptimized" "adapter-type: lsilogic" "hwversion: 8" \
              "geometry: 2088/255/63" "long-content-id: f56c691c480fc22c0f8b7effd5dbb1b1" \
              "extent\[0\].version: 3" "extent\[0\].compressed: true"; do
    check_true "ferry info vmware-v3.vmdk: $fact" grep -q "^    $fact\$" "$OUT"
  done
fi

# The sleuthkit set: three formats, one disk.
rm -f sk.raw
fy convert -O raw sleuthkit.vmdk sk.raw
if expect_exit 0 "sleuthkit.vmdk -> raw"; then
  same_content "sleuthkit.vmdk holds what the qcow v1 image holds" \
    "$CORPUS/qemu/qcow1-image.qcow" qcow sk.raw raw
  same_content "sleuthkit.vmdk holds what the VHD holds" \
    "$CORPUS/qemu/sleuthkit-image.vhd" vpc sk.raw raw
fi

# The four-byte "VMDK" files of the test OVAs.
tar xf "$CORPUS/broken/testserver.ova" testserver-disk1.vmdk || die "tar"
fy info -f vmdk testserver-disk1.vmdk
expect_failure "testserver-disk1.vmdk (4 bytes) as vmdk" testserver-disk1.vmdk
fy info testserver-disk1.vmdk
check_true "testserver-disk1.vmdk is not probed as vmdk" grep -q '^file format: raw' "$OUT"

done_testing
