#!/usr/bin/env bash
# v2v-ova: OVAs in.  The broken OVAs of ../shared/corpus are refused with
# clear messages and the good one is migrated; OVAs made by GNU tar (ustar
# with a subfolder, GNU long names, pax headers, GNU incremental headers)
# with manifests made by sha1sum and sha256sum are migrated, their disks
# read in place and judged by qemu-img compare against the originals, the
# domain by
# virt-xml-validate; a manifest that does not match is refused; and
# hostile OVAs made by Python's tarfile (path traversal, absolute names,
# links, devices, FIFOs, a header claiming 2^40 bytes, a million entries,
# duplicates, a cut archive) are refused quickly and in little memory,
# with nothing written anywhere; an OVF in a folder whose references or
# manifest lines leave the folder (absolute, "..") is refused too.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/v2v-lib.sh"
require qemu-img qemu-io python3 tar sha1sum sha256sum virt-xml-validate

[ -d "$CORPUS/broken" ] || { echo "1..0 # SKIP no corpus at $CORPUS (set FERRY_CORPUS)"; exit 77; }
TAR_PY=("$PYTHON" "$TESTS_DIR/v2v-tar.py")
cd "$WORK" || die "cd $WORK"

# listing: every path under WORK except the test's own scratch files.
listing () {
  (cd "$WORK" && find . -path ./.stdout -prune -o -path ./.stderr -prune -o \
     -path ./.peak -prune -o -print | sort)
}


# --- the corpus's broken OVAs --------------------------------------------
b=$CORPUS/broken
fy v2v "$b/testserver-bad-ovf.ova" --to libvirt --out bad
expect_failure "testserver-bad-ovf.ova refused" testserver-bad-ovf.ova
expect_stderr_re "illegal-xml.ovf: line [0-9]+: not valid XML" "bad OVF: the message names the descriptor and the line"
fy v2v "$b/testserver-no-disk.ova" --to libvirt --out nodisk
expect_failure "testserver-no-disk.ova refused" testserver-no-disk.ova
check_true "no disk: the plan says which file is missing from the archive" \
  grep -q "error: disk vmdisk2: file testserver-disk1.vmdk is missing from the archive" "$OUT"
fy v2v "$b/testserver-no-ovf.ova" --to libvirt --out noovf
expect_failure "testserver-no-ovf.ova refused" testserver-no-ovf.ova
expect_stderr "the archive holds no OVF descriptor (.ovf)" "no OVF: the message says so"
fy v2v "$b/testserver-not-tar.ova" --to libvirt --out nottar
expect_failure "testserver-not-tar.ova refused" testserver-not-tar.ova
expect_stderr "not a tar archive (the first header's checksum does not match)" "not a tar: the message says so"
for d in bad nodisk noovf nottar; do
  check_true "refused OVA: no output folder $d" test ! -e "$d"
done

# The good one: its disk (4 bytes, not the VMDK the OVF says) is migrated
# as what it holds.
fy v2v "$b/testserver.ova" --to libvirt --out good
expect_exit 0 "testserver.ova migrated"
check_true "testserver.ova: the plan warns the disk is not a VMDK" \
  grep -q "the description says vmdk, the file holds raw" "$OUT"
if [ -f good/testserver.xml ]; then
  validate "testserver.ova" good/testserver.xml
  mkdir -p extract && tar -C extract -xf "$b/testserver.ova" || die "tar xf"
  same_content "testserver.ova: the disk equals the archive's" \
    extract/testserver-disk1.vmdk raw good/testserver-disk1.qcow2 qcow2
  qemu_clean "testserver.ova: the qcow2 is clean" good/testserver-disk1.qcow2
fi

# --- OVAs made by GNU tar --------------------------------------------------
# make_package DIR NAME DISK ALG: DIR/NAME.ovf naming DISK (raw, 4 MiB of a
# pattern with holes), and DIR/NAME.mf with ALG (sha1 or sha256) digests.
make_package () {
  local dir=$1 name=$2 disk=$3 alg=$4 up
  up=$(echo "$alg" | tr a-z A-Z)
  mkdir -p "$dir"
  qemu-img create -q -f raw "$dir/$disk" 4M || die "qemu-img create"
  qio raw "$dir/$disk" "write -s $RAND 0 65536" "write -P 0x5a 1M 512" \
    "write -s $RAND $((4 * 1024 * 1024 - 4096)) 4096"
  "${TAR_PY[@]}" ovf "$name" "$disk" raw $((4 << 20)) >"$dir/$name.ovf"
  (cd "$dir" && "${alg}sum" "$name.ovf" "$disk") |
    awk -v a="$up" '{ print a "(" $2 ")= " $1 }' >"$dir/$name.mf"
}

make_package pkg/vm sub disk.img sha256
tar -C pkg -cf sub.ova vm/sub.ovf vm/sub.mf vm/disk.img || die "tar cf"
fy v2v sub.ova --to libvirt --out out-sub
expect_exit 0 "ustar OVA with a subfolder and a SHA256 manifest migrated"

# --json: one document, the plan with the run's result in it.
fy v2v sub.ova --to qemu --out out-json --json
expect_exit 0 "v2v --json migrated"
if python3 - "$OUT" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
r = j["result"]
assert j["target"] == "qemu" and r["ok"] is True, (j["target"], r["ok"])
assert [d["target"] for d in r["disks"]] == [j["disks"][0]["target"]], r["disks"]
assert r["disks"][0]["data-bytes"] > 0 and r["disks"][0]["disk-bytes"] > 0
assert "guest-conversion" in r or "guest-conversion-skipped" in r, r
assert r["seconds"]["total"] >= r["seconds"]["copy"] >= 0, r["seconds"]
assert "verified" not in r
PY
then ok "v2v --json: the plan and the result (disks, guest conversion, times)"
else not_ok "v2v --json result" "$(cat "$OUT")"; fi
if [ -f out-sub/sub.xml ]; then
  validate "subfolder OVA" out-sub/sub.xml
  same_content "subfolder OVA: the disk equals the original" pkg/vm/disk.img raw \
    out-sub/sub-disk1.qcow2 qcow2
  check_true "subfolder OVA: the domain names the disk by its absolute path" \
    grep -q "<source file=\"$WORK/out-sub/sub-disk1.qcow2\"/>" out-sub/sub.xml
fi

long=$(printf 'x%.0s' $(seq 120)).img
make_package pkg-long long "$long" sha1
for format in gnu pax; do
  tar -C pkg-long --format=$format -cf "long-$format.ova" long.ovf long.mf "$long" ||
    die "tar --format=$format"
  fy v2v "long-$format.ova" --to local --out "out-long-$format"
  expect_exit 0 "$format tar OVA with a 124-byte name and a SHA1 manifest migrated"
  [ -f "out-long-$format/long-disk1.qcow2" ] &&
    same_content "$format tar OVA: the disk equals the original" "pkg-long/$long" raw \
      "out-long-$format/long-disk1.qcow2" qcow2
done

# GNU tar's incremental mode (-G) keeps each file's atime and ctime where
# POSIX ustar has its name prefix: the names must not take them for one.
make_package pkg-g g disk.img sha256
touch -a -d 2020-01-01 pkg-g/disk.img
touch -a -d 2021-06-01 pkg-g/g.ovf
tar -C pkg-g --format=gnu -G -cf g.ova g.ovf g.mf disk.img 2>/dev/null || die "tar -G"
fy v2v g.ova --to local --out out-g
expect_exit 0 "GNU incremental tar OVA (atimes in the headers) migrated"
[ -f out-g/g-disk1.qcow2 ] &&
  same_content "GNU incremental tar OVA: the disk equals the original" pkg-g/disk.img raw \
    out-g/g-disk1.qcow2 qcow2

# A qcow2 disk inside the OVA (oVirt exports them so): read in place.
mkdir -p pkg-q
qemu-img create -q -f qcow2 pkg-q/disk.qcow2 16M || die "qemu-img create"
qio qcow2 pkg-q/disk.qcow2 "write -s $RAND 0 1M" "write -c -P 0x77 8M 64k" \
  "write -z 9M 64k"
"${TAR_PY[@]}" ovf q disk.qcow2 qcow2 $((16 << 20)) >pkg-q/q.ovf
tar -C pkg-q -cf q.ova q.ovf disk.qcow2 || die "tar cf"
fy v2v q.ova --to local --out out-q -O raw
expect_exit 0 "OVA with a qcow2 disk migrated"
[ -f out-q/q-disk1.img ] &&
  same_content "qcow2 OVA: the disk equals the original" pkg-q/disk.qcow2 qcow2 \
    out-q/q-disk1.img raw

# VMDKs inside the OVA, as VMware and VirtualBox ship them: a
# streamOptimized one read in place; the same gzip-compressed, read as a
# stream; a gzip'd monolithicSparse one, which a stream cannot hold its
# grain tables for, refused; a descriptor naming extent files refused.
if "$FERRY" --help | grep -q '^formats:.* vmdk'; then
  mkdir -p pkg-v
  qemu-img create -q -f raw pkg-v/src.raw 24M || die "qemu-img create"
  qio raw pkg-v/src.raw "write -s $RAND 0 2M" "write -P 0x44 10M 64k" \
    "write -s $RAND $((24 * 1024 * 1024 - 65536)) 65536"
  qemu-img convert -f raw -O vmdk -o subformat=streamOptimized pkg-v/src.raw pkg-v/disk.vmdk ||
    die "qemu-img convert"
  gzip -c pkg-v/disk.vmdk >pkg-v/disk.vmdk.gz
  qemu-img convert -f raw -O vmdk pkg-v/src.raw pkg-v/sparse.vmdk || die "qemu-img convert"
  gzip -c pkg-v/sparse.vmdk >pkg-v/sparse.vmdk.gz
  qemu-img convert -f raw -O vmdk -o subformat=twoGbMaxExtentSparse pkg-v/src.raw pkg-v/split.vmdk ||
    die "qemu-img convert"
  "${TAR_PY[@]}" ovf v disk.vmdk vmdk $((24 << 20)) >pkg-v/v.ovf
  "${TAR_PY[@]}" ovf vg disk.vmdk.gz vmdk $((24 << 20)) gzip >pkg-v/vg.ovf
  "${TAR_PY[@]}" ovf vs sparse.vmdk.gz vmdk $((24 << 20)) gzip >pkg-v/vs.ovf
  "${TAR_PY[@]}" ovf vd split.vmdk vmdk $((24 << 20)) >pkg-v/vd.ovf
  tar -C pkg-v -cf v.ova v.ovf disk.vmdk && tar -C pkg-v -cf vg.ova vg.ovf disk.vmdk.gz &&
    tar -C pkg-v -cf vs.ova vs.ovf sparse.vmdk.gz &&
    tar -C pkg-v -cf vd.ova vd.ovf split.vmdk split-s001.vmdk || die "tar cf"
  fy v2v v.ova --to libvirt --out out-v
  expect_exit 0 "OVA with a streamOptimized VMDK migrated (read in place)"
  [ -f out-v/v-disk1.qcow2 ] &&
    same_content "streamOptimized OVA: the disk equals the source" pkg-v/src.raw raw out-v/v-disk1.qcow2 qcow2
  fy v2v vg.ova --to libvirt --out out-vg
  expect_exit 0 "OVA with a gzip'd streamOptimized VMDK migrated (read as a stream)"
  [ -f out-vg/vg-disk1.qcow2 ] &&
    same_content "gzip'd streamOptimized OVA: the disk equals the source" pkg-v/src.raw raw \
      out-vg/vg-disk1.qcow2 qcow2
  fy v2v vs.ova --to libvirt --out out-vs
  expect_failure "OVA with a gzip'd monolithicSparse VMDK refused" vs.ova
  expect_stderr "is not streamOptimized (no grain markers), and its grain tables cannot be read from a stream" \
    "gzip'd monolithicSparse: the message says why"
  expect_stderr "unpack the package (tar xf, gunzip)" "gzip'd monolithicSparse: the remedy"
  fy v2v vd.ova --to libvirt --out out-vd
  expect_failure "OVA with a VMDK descriptor naming extent files refused" vd.ova
  expect_stderr "is a descriptor naming its extents as files of their own" \
    "VMDK descriptor in an OVA: the message says why"
fi

# A disk gzip-compressed inside the OVA (ovf:compression="gzip"): inflated
# as it is copied.  Two gzip members back to back, as pigz or cat make.
mkdir -p pkg-gz
qemu-img create -q -f raw pkg-gz/disk.img 8M || die "qemu-img create"
qio raw pkg-gz/disk.img "write -s $RAND 0 1M" "write -P 0x66 5M 4096" \
  "write -s $RAND $((8 * 1024 * 1024 - 8192)) 8192"
{ head -c 3M pkg-gz/disk.img | gzip -c; tail -c +$((3 * 1024 * 1024 + 1)) pkg-gz/disk.img | gzip -c; } \
  >pkg-gz/disk.img.gz
"${TAR_PY[@]}" ovf gz disk.img.gz raw $((8 << 20)) gzip >pkg-gz/gz.ovf
tar -C pkg-gz -cf gz.ova gz.ovf disk.img.gz || die "tar cf"
fy v2v gz.ova --to libvirt --out out-gz
expect_exit 0 "OVA with a gzip-compressed raw disk migrated"
[ -f out-gz/gz-disk1.qcow2 ] &&
  same_content "gzip OVA: the disk equals the original" pkg-gz/disk.img raw \
    out-gz/gz-disk1.qcow2 qcow2
# The same from the folder, not packed.
fy v2v pkg-gz/gz.ovf --to local --out out-gz-dir
expect_exit 0 "OVF folder with a gzip-compressed raw disk migrated"
[ -f out-gz-dir/gz-disk1.qcow2 ] &&
  same_content "gzip folder: the disk equals the original" pkg-gz/disk.img raw \
    out-gz-dir/gz-disk1.qcow2 qcow2
# A damaged gzip stream is refused (by the plan, which reads a raw disk's
# stream through for its size and trailers), naming it; nothing is left.
cp pkg-gz/disk.img.gz pkg-gz/good.gz
"$PYTHON" -c '
import sys
b = bytearray(open(sys.argv[1], "rb").read())
for i in range(2000, 2100):
    b[i] ^= 0x55
open(sys.argv[1], "wb").write(b)' pkg-gz/disk.img.gz
fy v2v pkg-gz/gz.ovf --to local --out out-gz-bad
expect_failure "damaged gzip stream refused" disk.img.gz
expect_stderr_re "disk.img.gz: the gzip stream at offset 0( is damaged after [0-9]+ bytes of data|: member 1's trailer gives a CRC-32)" \
  "damaged gzip stream: the message says where"
check_true "damaged gzip stream: no output folder" test ! -e out-gz-bad
mv pkg-gz/good.gz pkg-gz/disk.img.gz

# A manifest that does not match: one byte of the disk changed inside the
# archive after the manifest was made.
cp sub.ova damaged.ova
"$PYTHON" - damaged.ova <<'EOF' || die "damaging the OVA"
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    off = t.getmember('vm/disk.img').offset_data + 100
with open(sys.argv[1], 'r+b') as f:
    f.seek(off)
    b = f.read(1)
    f.seek(off)
    f.write(bytes([b[0] ^ 0xff]))
EOF
want=$(sha256sum pkg/vm/disk.img | cut -d' ' -f1)
fy v2v damaged.ova --to libvirt --out out-damaged
expect_failure "manifest mismatch refused" damaged.ova
check_true "manifest mismatch: the plan names the file and both digests" \
  grep -q "error: disk.img: SHA256 digest [0-9a-f]\{64\} does not match the manifest's $want" "$OUT"
check_true "manifest mismatch: nothing written" test ! -e out-damaged

# --- hostile OVAs ----------------------------------------------------------
before=$(listing)
for kind in traversal absolute symlink hardlink device fifo huge million duplicate truncated; do
  "${TAR_PY[@]}" hostile "$kind" "h-$kind.ova" || die "making $kind"
done
before=$(listing)
declare -A want=(
  [traversal]="member '../evil.img' climbs out of the archive with '..'"
  [absolute]="member '/tmp/ferry-evil.img' has an absolute path"
  [symlink]="member 'disk.img' is a symbolic link, which an OVA does not hold"
  [hardlink]="member 'disk.img' is a hard link, which an OVA does not hold"
  [device]="member 'disk.img' is a character device, which an OVA does not hold"
  [fifo]="member 'disk.img' is a FIFO, which an OVA does not hold"
  [huge]="the member claims 1099511627776 bytes, past the end of the archive"
  [million]="more than 10000 entries in the archive"
  [duplicate]="member 'disk.img' appears twice"
  [truncated]="the member claims 4096 bytes, past the end of the archive"
)
for kind in traversal absolute symlink hardlink device fifo huge million duplicate truncated; do
  FY_TIMEOUT=60 fy v2v "h-$kind.ova" --to libvirt --out "out-$kind"
  expect_failure "hostile OVA ($kind) refused" "h-$kind.ova"
  expect_stderr "${want[$kind]}" "hostile OVA ($kind): the message says what is wrong"
done
after=$(listing)
check_true "hostile OVAs: nothing written in the work folder" test "$before" = "$after"
check_true "hostile OVAs: nothing written at the absolute name" test ! -e /tmp/ferry-evil.img
check_true "hostile OVAs: nothing written beside the work folder" test ! -e "$WORK/../evil.img"

# --- hostile OVF folders ------------------------------------------------------
# An OVF names its files relative to itself, as an OVA's members are: a
# reference or a manifest line that leaves the package is refused, so a
# package cannot make ferry copy /etc/passwd, or a file beside the
# package, into the output (or hash it for the manifest check).
echo secret >outside.img
mkdir -p hf
declare -A href=([habs]=/etc/passwd [hdots]=../outside.img [hmid]=sub/../../outside.img)
for kind in habs hdots hmid; do
  "${TAR_PY[@]}" ovf "$kind" "${href[$kind]}" raw 4096 >"hf/$kind.ovf"
  fy v2v "hf/$kind.ovf" --to local --out "out-$kind" -O raw
  expect_failure "hostile OVF ($kind) refused" "hf/$kind.ovf"
  expect_stderr "References: file file1 is named '${href[$kind]}', which leaves the package's folder" \
    "hostile OVF ($kind): the message says what is wrong"
  check_true "hostile OVF ($kind): nothing written" test ! -e "out-$kind"
done
# Nor through what a disk of the package names in turn: a qcow2 backing
# file, a qcow2 external data file, a VMDK descriptor's extent, or a disk
# that is a symbolic link (qemu-img follows all of them; an unpacked OVA
# is what ferry tells users to migrate when it cannot read a disk in
# place, and tar xf makes a symlink member a symlink).
mkdir -p hf/bk hf/df hf/ext hf/sym
ln -s /etc/passwd hf/sym/disk.img     # what tar xf makes of a symlink member
qemu-img create -q -f qcow2 -b /etc/passwd -F raw hf/bk/disk.qcow2 1M || die "qemu-img create -b"
qemu-img create -q -f qcow2 -o data_file="$WORK/outside.img",data_file_raw=on hf/df/disk.qcow2 4096 ||
  die "qemu-img create data_file"
printf '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW 8 FLAT "../../outside.img" 0\n' \
  >hf/ext/disk.vmdk
declare -A dfile=([bk]=disk.qcow2 [df]=disk.qcow2 [ext]=disk.vmdk [sym]=disk.img)
declare -A dfmt=([bk]=qcow2 [df]=qcow2 [ext]=vmdk [sym]=raw)
declare -A dwhat=([bk]=/etc/passwd [df]="$WORK/outside.img" [ext]="$WORK/outside.img" [sym]=/etc/passwd)
for kind in bk df ext sym; do
  "${TAR_PY[@]}" ovf "$kind" "${dfile[$kind]}" "${dfmt[$kind]}" 4096 >"hf/$kind/$kind.ovf"
  fy v2v "hf/$kind/$kind.ovf" --to local --out "out-$kind" -O raw
  expect_failure "hostile OVF, a disk reading ${dwhat[$kind]} ($kind): refused" "hf/$kind/$kind.ovf"
  check_true "hostile OVF ($kind): the plan names the file outside the package" \
    grep -q "error: disk vmdisk1: .*reads .*${dwhat[$kind]##*/}, which lies outside the package.s folder" "$OUT"
  check_true "hostile OVF ($kind): nothing written" test ! -e "out-$kind"
done
"${TAR_PY[@]}" ovf hmf disk.img raw 4096 >hf/hmf.ovf
head -c 4096 /dev/zero >hf/disk.img
printf 'SHA256(../outside.img)= %s\n' "$(sha256sum outside.img | cut -d' ' -f1)" >hf/hmf.mf
fy v2v hf/hmf.ovf --to local --out out-hmf -O raw
expect_failure "a manifest naming a file outside the package refused" hf/hmf.mf
expect_stderr "hmf.mf: line 1: file '../outside.img' leaves the package's folder" \
  "a manifest naming a file outside the package: the message says so"
check_true "a manifest naming a file outside the package: nothing written" test ! -e out-hmf

done_testing
