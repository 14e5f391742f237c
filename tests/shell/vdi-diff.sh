#!/usr/bin/env bash
# vdi-diff: differencing (and undo) VDI images.  qemu-img cannot make them
# (no backing files for vdi) and refuses to open them ("non-NULL link
# UUID"), so vhd-vdi-tool.py builds them from VirtualBox's header layout on
# top of parents that qemu-img made and qemu-io filled; the expected disk
# is qemu-img's reading of the parent with the same writes (and discards)
# made by qemu-io on a raw copy.  qemu-img compare judges.
#
# Covered: the parent found by its UUID among the *.vdi files of the
# child's folder (whatever its name, beside decoys), FREE blocks read from
# the parent, ZERO (discarded) blocks as zeroes, a chain of two, a missing
# parent (the message names its UUID), a parent modified since (a warning,
# refused under --strict), and qemu-img's refusal.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/vhd-vdi-lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
MiB=$((1 << 20))

mkdir -p vm
mkimg vdi vm/base-disk.vdi $((6 * MiB))
qio vdi vm/base-disk.vdi "write -P 0x11 0 3M" "write -P 0x22 $((4 * MiB + 512)) 100k"
# Decoys: another image, and a file that is no VDI at all.
mkimg vdi vm/other.vdi $((6 * MiB))
echo "not an image" >vm/notes.vdi

vvtool vdi-diff vm/snap.vdi vm/base-disk.vdi --write 1000000:100000:0x77 \
  --write $((3 * MiB + 5)):10:0x88 --write $((6 * MiB - 512)):512:0x99 --discard 2
qemu-img convert -f vdi -O raw vm/base-disk.vdi exp.raw || die "qemu-img convert"
qio raw exp.raw "write -P 0x77 1000000 100000" "write -P 0x88 $((3 * MiB + 5)) 10" \
  "write -P 0x99 $((6 * MiB - 512)) 512" "write -z $((2 * MiB)) 1M"

fy convert -O raw vm/snap.vdi snap.raw
expect_exit 0 "differencing vdi: ferry convert"
same_content "differencing vdi: qemu-img compare with the expected disk" snap.raw raw exp.raw raw
check_true "differencing vdi: ferry info names the parent it found by UUID" \
  test "$(ferry_fact vm/snap.vdi backing-filename)" = base-disk.vdi
fy convert -O qcow2 vm/snap.vdi snap.qcow2
expect_exit 0 "differencing vdi -> qcow2"
same_content "differencing vdi -> qcow2: qemu-img compare" snap.qcow2 qcow2 exp.raw raw
qemu_clean "differencing vdi -> qcow2: qemu-img check" snap.qcow2
fy convert -O vdi vm/snap.vdi flat.vdi
expect_exit 0 "differencing vdi -> a flat vdi"
same_content "differencing vdi -> a flat vdi: qemu-img compare" flat.vdi vdi exp.raw raw
rm -f snap.* flat.vdi

# An undo image reads like a differencing one.
vvtool vdi-diff vm/undo.vdi vm/base-disk.vdi --undo --write 0:4096:0x5a
qemu-img convert -f vdi -O raw vm/base-disk.vdi undo-exp.raw
qio raw undo-exp.raw "write -P 0x5a 0 4096"
fy convert -O raw vm/undo.vdi undo.raw
expect_exit 0 "undo vdi: ferry convert"
same_content "undo vdi: qemu-img compare with the expected disk" undo.raw raw undo-exp.raw raw
rm -f vm/undo.vdi undo*

# A chain of two.
vvtool vdi-diff vm/top.vdi vm/snap.vdi --write $((5 * MiB)):4096:0x21
cp exp.raw top-exp.raw
qio raw top-exp.raw "write -P 0x21 $((5 * MiB)) 4096"
fy convert -O raw vm/top.vdi top.raw
expect_exit 0 "a chain of two differencing vdi: ferry convert"
same_content "a chain of two differencing vdi: qemu-img compare" top.raw raw top-exp.raw raw
fy info vm/top.vdi
check_true "a chain: ferry info shows three layers" test "$(grep -c '^image:' "$OUT")" = 3
rm -f vm/top.vdi top*

# qemu-img 7.2 refuses differencing VDI images; ferry reads them (above).
if qemu-img info vm/snap.vdi >/dev/null 2>&1; then
  not_ok "qemu-img was expected to refuse a differencing vdi (update this test)"
else
  ok "qemu-img 7.2 refuses differencing vdi images; ferry reads them"
fi

# A parent modified after the child was made: a warning; --strict refuses.
vvtool vdi-diff vm/stale.vdi vm/base-disk.vdi --stale-parent --write 0:512:0x01
fy info vm/stale.vdi
expect_exit 0 "a modified parent: ferry info reads it"
expect_stderr "warning" "a modified parent: ferry warns"
expect_stderr "modified after" "a modified parent: the warning says why"
fy info --strict vm/stale.vdi
expect_failure "a modified parent: refused under --strict" stale.vdi
rm -f vm/stale.vdi

# A missing parent: the message names its UUID.
want=$(ferry_fact vm/base-disk.vdi format-specific.uuid)
mkdir -p away
mv vm/base-disk.vdi away/
fy convert -O raw vm/snap.vdi lost.raw
expect_failure "missing parent: refused" snap.vdi
expect_stderr "$want" "missing parent: the message names its UUID {$want}"
check_true "missing parent: no target left" test ! -e lost.raw
# Renamed, it is found by UUID all the same.
mv away/base-disk.vdi vm/renamed.VDI
fy convert -O raw vm/snap.vdi renamed.raw
expect_exit 0 "a renamed parent is found by its UUID"
same_content "a renamed parent: qemu-img compare" renamed.raw raw exp.raw raw

# Writing into a differencing image is refused with a clear message.
head -c $((6 * MiB)) /dev/zero >zero.raw
fy convert -n -O vdi zero.raw vm/snap.vdi
expect_exit 1 "-n into a differencing vdi is refused"
expect_stderr "differencing" "-n into a differencing vdi: the message says why"

done_testing
