#!/usr/bin/env bash
# nbd-client: ferry reads and writes NBD exports served by peers that did
# not come from us.  ferry convert from qemu-nbd (qcow2 with holes) and
# from nbdkit's memory, sparse-random and file plugins, judged by
# qemu-img compare and by nbdcopy's copy of the same export; ferry info
# agrees with nbdinfo (size, flags, limits, contexts), ferry map with
# nbdinfo --map; compare and check take URIs; convert writes into a
# qemu-nbd export (then qemu-img check and compare), refuses one smaller
# than the source, and a format or options for it; several connections
# with multi-conn; a server's block size limits are obeyed; bad URIs get
# clear messages.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nbd-lib.sh"
require qemu-img qemu-io qemu-nbd nbdkit nbdinfo nbdcopy python3

cd "$WORK" || die "cd $WORK"
mb=$((1 << 20))

# --- qemu-nbd serving a qcow2 image with holes -----------------------------
mkimg qcow2 src.qcow2 $((8 * mb + 1536))
fill_pattern qcow2 src.qcow2 65536 $((8 * mb + 1536)) compress
start_qemu_nbd qsrc -r -f qcow2 src.qcow2
QURI=$URI

convert_and_judge "from qemu-nbd to raw" "$QURI" raw out.raw raw
convert_and_judge "from qemu-nbd to qcow2" "$QURI" raw out.qcow2 qcow2
nbdcopy "$QURI" nbdcopy.raw || die "nbdcopy $QURI"
check_true "from qemu-nbd: the same bytes as nbdcopy's copy" cmp -s out.raw nbdcopy.raw
# The holes stay holes: the output from the export takes no more disk
# than ferry's output from the file itself.
fy convert -O raw src.qcow2 local.raw
check_true "from qemu-nbd: holes kept ($(allocated_bytes out.raw) bytes on disk, from the file $(allocated_bytes local.raw))" \
  test "$(allocated_bytes out.raw)" -le "$(allocated_bytes local.raw)"

# info: what nbdinfo says, with nbdinfo's names.
nbdinfo --json "$QURI" >nbdinfo.json || die "nbdinfo $QURI"
fy info --json "$QURI"
if expect_exit 0 "info of a qemu-nbd export"; then
  diff=$(python3 - "$OUT" nbdinfo.json <<'EOF'
import json, sys
f = json.load(open(sys.argv[1]))
e = json.load(open(sys.argv[2]))["exports"][0]
spec = f.get("format-specific", {})
bad = []
if f.get("format") != "nbd": bad.append("format %r" % f.get("format"))
if f.get("virtual-size") != e["export-size"]:
    bad.append("size %r, nbdinfo %r" % (f.get("virtual-size"), e["export-size"]))
if "actual-size" in f: bad.append("actual-size given for an export")
for k in ("is_rotational", "is_read_only", "can_cache", "can_df", "can_fast_zero",
          "can_flush", "can_fua", "can_multi_conn", "can_trim", "can_zero",
          "block_size_minimum", "block_size_preferred", "block_size_maximum"):
    if spec.get(k) != e.get(k):
        bad.append("%s: ferry %r, nbdinfo %r" % (k, spec.get(k), e.get(k)))
if spec.get("contexts", "").split(", ") != e["contexts"]:
    bad.append("contexts: ferry %r, nbdinfo %r" % (spec.get("contexts"), e["contexts"]))
print("; ".join(bad))
EOF
)
  if [ -z "$diff" ]; then ok "info agrees with nbdinfo"; else not_ok "info: $diff" "$(cat "$OUT")"; fi
fi
fy info "$QURI"
expect_exit 0 "human info of a qemu-nbd export" &&
  check_true "human info: disk size unavailable, contexts listed" \
    grep -q -x 'disk size: unavailable' "$OUT"

# map: nbdinfo --map's lines, text and JSON.
nbdinfo --map "$QURI" >nbdinfo.map
fy map "$QURI"
expect_exit 0 "map of a qemu-nbd export" && same_output "map agrees with nbdinfo --map" "$OUT" nbdinfo.map
nbdinfo --map --json "$QURI" >nbdinfo.mapjson
fy map --json "$QURI"
expect_exit 0 "map --json" && same_output "map --json agrees with nbdinfo --map --json" "$OUT" nbdinfo.mapjson
nbdinfo --map --totals "$QURI" >nbdinfo.totals
fy map --totals "$QURI"
expect_exit 0 "map --totals" && same_output "map --totals agrees with nbdinfo" "$OUT" nbdinfo.totals

fy compare "$QURI" src.qcow2
expect_exit 0 "compare a URI with the file it serves"
fy compare -f raw "$QURI" out.qcow2
expect_exit 0 "compare -f raw URI"
fy check "$QURI"
expect_exit 0 "check a URI (an export has no metadata to check)"

# --- nbdkit's plugins as sources -------------------------------------------------
start_nbdkit mem memory 3M
fy convert "$URI" mem.raw
head -c $((3 * mb)) /dev/zero >zero.bin
expect_exit 0 "from nbdkit memory" &&
  check_true "from nbdkit memory: all zeroes" cmp -s mem.raw zero.bin

start_nbdkit sparse sparse-random 64M seed=4242 percent=20 runlength=65536
fy convert "$URI" sparse.qcow2 -O qcow2
if expect_exit 0 "from nbdkit sparse-random to qcow2"; then
  nbdcopy "$URI" sparse-nbdcopy.raw || die "nbdcopy sparse-random"
  same_content "sparse-random: the same as nbdcopy's copy" sparse.qcow2 qcow2 sparse-nbdcopy.raw raw
  qemu_clean "sparse-random: qemu-img check" sparse.qcow2
fi

head -c $((3 * mb + 4096)) /dev/urandom >file.bin
truncate -s $((5 * mb)) file.bin
start_nbdkit file file file.bin
fy convert "$URI" file.raw
expect_exit 0 "from nbdkit file" && check_true "from nbdkit file: the same bytes" cmp -s file.bin file.raw

# --- several connections when the server offers multi-conn --------------------
fy info --json "$URI"
check_true "nbdkit file (multi-conn): ferry opens 4 connections" \
  grep -q '"connections":4' "$OUT"
fy info --json "$QURI"
check_true "qemu-nbd (no multi-conn): one connection" \
  grep -q '"connections":1' "$OUT"

# --- what goes over the wire: nbdkit's log filter tells ---------------------------
mkimg qcow2 sparse-src.qcow2 $((32 * mb))
qio qcow2 sparse-src.qcow2 "write -s $RAND 0 8m" "write -s $RAND 12m 8m" "write -z 24m 2m"
# (Each write held 100 ms, so that the log sees how many are in flight even
# when a loaded machine reads the source slowly.)
start_nbdkit logged --filter=log --filter=delay memory $((32 * mb)) \
  logfile="$WORK/wire.log" delay-write=100ms
fy convert sparse-src.qcow2 "$URI"
expect_exit 0 "into nbdkit memory, logged" &&
  same_content "logged: qemu-img compare" sparse-src.qcow2 qcow2 "$URI" raw
stop_server
wire=$(python3 - "$WORK/wire.log" <<'EOF'
import re, sys
inflight = peak = 0
conns, zeroes, fast, writes = set(), 0, 0, 0
for line in open(sys.argv[1]):
    m = re.search(r"connection=(\d+) (\.\.\.)?(Read|Write|Zero|Trim|Flush|Extents|Cache) id=", line)
    if not m:
        continue
    if m.group(2):
        inflight -= 1
        continue
    inflight += 1
    peak = max(peak, inflight)
    if m.group(3) == "Write":
        writes += 1
        conns.add(m.group(1))
    if m.group(3) == "Zero":
        zeroes += 1
        fast += "fast=1" in line
print(len(conns), zeroes, fast, writes, peak)
EOF
)
read -r nconns nzero nfast nwrites peak <<<"$wire"
check_true "writes spread over the 4 multi-conn connections ($nconns)" test "$nconns" = 4
check_true "holes go as WRITE_ZEROES ($nzero requests), not as writes" test "$nzero" -ge 2
check_true "fast zero where the server offers it ($nfast of $nzero)" test "$nfast" -ge 1
check_true "64 data writes of 256 KiB for 16 MiB of data ($nwrites)" test "$nwrites" = 64
check_true "many requests in flight at once (peak $peak)" test "$peak" -ge 8

# A server without WRITE_ZEROES: zeroes are written as data.
start_nbdkit nozero --filter=nozero --filter=log memory $((32 * mb)) logfile="$WORK/nozero.log"
qemu-io -f raw -c "write -P 0x33 20m 4m" "$URI" >/dev/null 2>&1 || die "qemu-io into nozero"
fy convert sparse-src.qcow2 "$URI"
expect_exit 0 "into a server without WRITE_ZEROES" &&
  same_content "no WRITE_ZEROES: the old data under the holes is gone" sparse-src.qcow2 qcow2 "$URI" raw
check_true "no WRITE_ZEROES: none were sent" not grep -q ' Zero id=' nozero.log
stop_server

# --- block size limits: nbdkit refuses what breaks them ----------------------------
start_nbdkit limits --filter=blocksize-policy memory $((4 * mb)) \
  blocksize-minimum=4096 blocksize-preferred=65536 blocksize-maximum=65536 \
  blocksize-error-policy=error
fy info --json "$URI"
check_true "info shows the limits" \
  grep -q '"block_size_minimum":4096' "$OUT"
fy convert -f raw file.bin "$URI"
expect_exit 1 "a 5 MiB source into a 4 MiB export: refused"
expect_stderr "is smaller than" "the refusal says the export is smaller"
head -c $((4 * mb)) file.bin >file4.bin
fy convert -f raw file4.bin "$URI"
expect_exit 0 "into an export with 4 KiB..64 KiB blocks" &&
  same_content "limits: qemu-img compare" file4.bin raw "$URI" raw
fy convert "$URI" back.raw
expect_exit 0 "out of an export with 4 KiB..64 KiB blocks" &&
  check_true "limits: read back" cmp -s file4.bin back.raw
# A source that ends inside a 4 KiB block: the last block is read,
# changed and written whole (a fresh export reads as zeroes).
head -c $((4 * mb - 1536)) /dev/urandom >odd.bin
start_nbdkit limits2 --filter=blocksize-policy memory $((4 * mb)) \
  blocksize-minimum=4096 blocksize-maximum=65536 blocksize-error-policy=error
fy convert -f raw odd.bin "$URI"
expect_exit 0 "an odd-sized source into an export with 4 KiB blocks" &&
  same_content "odd size: qemu-img compare (the rest stays zero)" odd.bin raw "$URI" raw

# --- convert into a qemu-nbd export of a qcow2 image ---------------------------
mkimg qcow2 dst.qcow2 $((8 * mb + 1536))
qio qcow2 dst.qcow2 "write -P 0x77 0 8m"      # old data the copy must replace
start_qemu_nbd qdst -f qcow2 dst.qcow2
fy convert src.qcow2 "$URI"
expect_exit 0 "into a qemu-nbd export"
fy convert -O qcow2 src.qcow2 "$URI"
expect_exit 1 "-O qcow2 into an export: refused"
expect_stderr "not supported" "-O qcow2: the message says so"
fy convert -o cluster_size=4096 src.qcow2 "$URI"
expect_exit 1 "-o into an export: refused"
expect_stderr "an NBD export exists already" "-o: the message says why"
fy convert -f raw file.bin "nbd+unix:///nosuch?socket=$WORK/qdst.sock"
expect_exit 1 "into an export that does not exist"
stop_server
same_content "into qemu-nbd: qemu-img compare" src.qcow2 qcow2 dst.qcow2 qcow2
qemu_clean "into qemu-nbd: qemu-img check" dst.qcow2

# --- bad URIs: libnbd parses them, ferry says what is wrong ------------------------
bad_uri () {
  local what=$1 uri=$2 want=$3
  FY_TIMEOUT=60 fy info "$uri"
  expect_exit 1 "bad URI $what"
  expect_stderr "$want" "bad URI $what: the message says '$want'"
}
bad_uri "without a socket" "nbd+unix:///" "socket"
bad_uri "with a port out of range" "nbd://127.0.0.1:99999/" "nbd://127.0.0.1:99999/"
bad_uri "with a socket that does not exist" "nbd+unix:///?socket=$WORK/nosuch.sock" "No such file or directory"
bad_uri "with nobody listening" "nbd://127.0.0.1:$(free_port)/" "Connection refused"
bad_uri "of an export that does not exist" "nbd+unix:///nosuch?socket=$WORK/qsrc.sock" "nosuch"
bad_uri "with an unknown transport" "nbd+carrier-pigeon:///x" "nbd+carrier-pigeon:///x"
fy info -f qcow2 "$QURI"
expect_exit 1 "-f qcow2 on a URI: refused"
expect_stderr "inside it are not supported" "-f qcow2 on a URI: the message says so"
fy convert -O raw src.qcow2 "nbd+unix:///?socket=$WORK/nosuch.sock"
expect_exit 1 "into a URI with no server"
check_true "no file made for a URI target" test ! -e "nbd+unix:"

done_testing
