#!/usr/bin/env bash
# info: ferry info --json against qemu-img info --output=json on images of
# every kind: format (probed from the content, never the name), virtual
# size, allocation, cluster size, the backing chain with each layer's
# format, and the qcow2 facts (compat, compression type, refcount bits,
# extended L2, dirty, corrupt, lazy refcounts, data file, snapshots).  The
# human output carries the same facts in the documented lines.
# --backing-chain --json is a list of layers, as qemu-img info
# --backing-chain --output=json gives it, full-backing-filename included.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"

# compare_info WHAT IMG [FMT]: ferry info --json IMG agrees with qemu-img.
compare_info () {
  local what=$1 img=$2 fmt=${3:-} diff
  fy info --json ${fmt:+-f "$fmt"} "$img"
  expect_exit 0 "$what: ferry info --json" || return 1
  qemu-img info --backing-chain --output=json ${fmt:+-f "$fmt"} "$img" >qemu.json 2>&1 ||
    die "qemu-img info $img: $(cat qemu.json)"
  diff=$(python3 - "$OUT" qemu.json <<'EOF'
import json, sys

try:
    ferry = json.load(open(sys.argv[1]))
except ValueError as e:
    print("ferry's output is not one JSON object: %s" % e)
    sys.exit(0)
chain = json.load(open(sys.argv[2]))
if isinstance(chain, dict):
    chain = [chain]
problems = []

def same(path, got, want):
    # A field qemu-img leaves out may be absent, null or 0 in ferry's.
    if want is None and got in (None, 0, "", False):
        return
    if got != want:
        problems.append("%s: ferry says %r, qemu-img says %r" % (path, got, want))

def layer(f, q, path):
    if not isinstance(f, dict):
        problems.append("%s: missing in ferry's output" % path)
        return
    for key in ("format", "virtual-size", "cluster-size", "backing-filename",
                "backing-filename-format"):
        same(path + key, f.get(key), q.get(key))
    qfs = q.get("format-specific", {}).get("data", {})
    ffs = f.get("format-specific") or {}
    ffs = ffs.get("data", ffs)          # flat, or nested like qemu-img's
    if q["format"] == "qcow2":
        for key in ("compat", "compression-type", "refcount-bits",
                    "extended-l2", "corrupt", "lazy-refcounts"):
            same(path + "format-specific." + key, ffs.get(key), qfs.get(key))
        # qemu-img shows the dirty bit as "dirty-flag", only when set.
        same(path + "format-specific.dirty", ffs.get("dirty"), q.get("dirty-flag"))
        same(path + "data-file", f.get("data-file", ffs.get("data-file")),
             qfs.get("data-file"))
        if "data-file" not in qfs:
            same(path + "actual-size", f.get("actual-size"), q.get("actual-size"))
        fsn = [(s.get("id"), s.get("name")) for s in f.get("snapshots") or []]
        qsn = [(s.get("id"), s.get("name")) for s in q.get("snapshots") or []]
        same(path + "snapshots", fsn, qsn)
    else:
        same(path + "actual-size", f.get("actual-size"), q.get("actual-size"))

f = ferry
for depth, q in enumerate(chain):
    layer(f, q, "backing-image." * depth)
    f = f.get("backing-image") if isinstance(f, dict) else None
if isinstance(f, dict):
    problems.append("ferry shows a layer below the bottom of the chain: %r" % f)
print("\n".join(problems))
EOF
)
  if [ -z "$diff" ]; then
    ok "$what: ferry info --json agrees with qemu-img info"
  else
    not_ok "$what: ferry info --json disagrees with qemu-img info" "$diff" \
      "ferry: $(head -c 3000 "$OUT")"
  fi
}

mkimg raw plain.raw 5M
qio raw plain.raw "write -P 0x1 0 1m"
compare_info "raw" plain.raw
compare_info "raw, -f raw" plain.raw raw

for compat in 0.10 1.1; do
  for cs in 512 65536 2M; do
    mkimg qcow2 q.qcow2 $((7 << 20)) "compat=$compat,cluster_size=$cs"
    qio qcow2 q.qcow2 "write -P 0x2 0 1m"
    compare_info "qcow2 compat=$compat cluster_size=$cs" q.qcow2
    compare_info "qcow2 compat=$compat cluster_size=$cs, -f qcow2" q.qcow2 qcow2
    rm -f q.qcow2
  done
done
for opts in compression_type=zstd extended_l2=on refcount_bits=1 refcount_bits=64 \
    lazy_refcounts=on "data_file=d.data" "data_file=d.data,data_file_raw=on"; do
  mkimg qcow2 q.qcow2 3M "$opts"
  qio qcow2 q.qcow2 "write -P 0x3 64k 64k"
  compare_info "qcow2 $opts" q.qcow2
  rm -f q.qcow2 d.data
done

# The dirty and corrupt bits (set by hand: qemu-img sets them only when it
# crashes or finds damage), read as qemu-img reads them.
mkimg qcow2 bits.qcow2 3M lazy_refcounts=on
qio qcow2 bits.qcow2 "write -P 0x3 64k 64k"
for bit in 1 2; do
  cp bits.qcow2 bit$bit.qcow2
  "${QCOW2_EDIT[@]}" bit$bit.qcow2 set incompatible_features $bit || die "qcow2-edit"
done
compare_info "qcow2 with the dirty bit" bit1.qcow2
check_true "ferry info says dirty: true" grep -q '"dirty": *true' "$OUT"
compare_info "qcow2 with the corrupt bit" bit2.qcow2
check_true "ferry info says corrupt: true" grep -q '"corrupt": *true' "$OUT"

# A huge virtual size with nothing allocated.
mkimg qcow2 huge.qcow2 64T
compare_info "qcow2 of 64 TiB" huge.qcow2

# Snapshots.
mkimg qcow2 snap.qcow2 4M
qio qcow2 snap.qcow2 "write -P 0x4 0 1m"
qemu-img snapshot -c one snap.qcow2 && qemu-img snapshot -c two snap.qcow2 ||
  die "qemu-img snapshot"
compare_info "qcow2 with 2 internal snapshots" snap.qcow2

# A backing chain of depth 3 with a raw base.
mkimg raw base.raw 4M
mkimg qcow2 l1.qcow2 4M "backing_file=base.raw,backing_fmt=raw,compat=0.10"
mkimg qcow2 l2.qcow2 4M "backing_file=l1.qcow2,backing_fmt=qcow2,cluster_size=4096"
mkimg qcow2 top.qcow2 4M "backing_file=l2.qcow2,backing_fmt=qcow2,compression_type=zstd"
compare_info "backing chain of depth 3" top.qcow2
mkdir -p sub
qemu-img create -q -f qcow2 -b ../l1.qcow2 -F qcow2 sub/rel.qcow2 || die "create"
compare_info "relative backing name in another directory" sub/rel.qcow2

# --backing-chain: with --json a list of the layers, top first, as
# qemu-img info --backing-chain --output=json gives it; in text, each
# layer's "image:" line in qemu-img's order.
compare_chain () {
  local what=$1 img=$2 diff
  fy info --backing-chain --json "$img"
  expect_exit 0 "$what: ferry info --backing-chain --json" || return 1
  qemu-img info --backing-chain --output=json "$img" >qemu.json 2>&1 ||
    die "qemu-img info --backing-chain $img: $(cat qemu.json)"
  diff=$(python3 - "$OUT" qemu.json <<'EOF2'
import json, sys
try:
    ferry = json.load(open(sys.argv[1]))
except ValueError as e:
    print("ferry's output is not JSON: %s" % e)
    sys.exit(0)
qemu = json.load(open(sys.argv[2]))
if not isinstance(ferry, list):
    print("ferry's output is not a list but %s" % type(ferry).__name__)
    sys.exit(0)
if len(ferry) != len(qemu):
    print("ferry shows %d layers, qemu-img %d" % (len(ferry), len(qemu)))
for i, (f, q) in enumerate(zip(ferry, qemu)):
    if "backing-image" in f:
        print("layer %d nests its backing image" % i)
    for key in ("filename", "format", "virtual-size", "cluster-size",
                "backing-filename", "full-backing-filename",
                "backing-filename-format", "actual-size"):
        if f.get(key) != q.get(key):
            print("layer %d %s: ferry says %r, qemu-img says %r" % (i, key, f.get(key), q.get(key)))
EOF2
)
  if [ -z "$diff" ]; then
    ok "$what: ferry info --backing-chain --json agrees with qemu-img"
  else
    not_ok "$what: ferry info --backing-chain --json disagrees with qemu-img" "$diff"
  fi
  fy info --backing-chain "$img"
  expect_exit 0 "$what: ferry info --backing-chain" || return 1
  if [ "$(grep '^image:' "$OUT")" = "$(qemu-img info --backing-chain "$img" | grep '^image:')" ]; then
    ok "$what: ferry info --backing-chain shows the layers in qemu-img's order"
  else
    not_ok "$what: the layers differ from qemu-img's" "$(last_run)" \
      "qemu-img: $(qemu-img info --backing-chain "$img" | grep '^image:')"
  fi
}
compare_chain "backing chain of depth 3" top.qcow2
compare_chain "relative backing name in another directory" sub/rel.qcow2
compare_chain "no backing file" plain.raw

# The format comes from the content, not the name.
cp plain.raw looks-like.qcow2
mkimg qcow2 looks-like.raw 1M
compare_info "raw file named .qcow2" looks-like.qcow2
compare_info "qcow2 file named .raw" looks-like.raw

# The human output: the facts on their lines, in the contract's words
# ("format: qcow2", "cluster size: N", "backing file: NAME (format: FMT)")
# or in qemu-img's ("file format: qcow2", "cluster_size: N", "backing file
# format: FMT" on a line of its own).
expect_line () {
  if grep -q -E -x -- "$1" "$OUT"; then ok "$2"; else not_ok "$2: no line matches /^$1\$/" "$(last_run)"; fi
}
fy info top.qcow2
if expect_exit 0 "ferry info (human) on a chain"; then
  expect_line '(file )?format: qcow2' "ferry info prints the format"
  expect_line 'virtual size: 4 MiB \(4194304 bytes\)' "ferry info prints the virtual size"
  expect_line 'cluster[ _]size: 65536' "ferry info prints the cluster size"
  expect_line 'backing file: l2\.qcow2( \(format: qcow2\))?' "ferry info prints the backing file"
  if grep -q -x 'backing file: l2.qcow2 (format: qcow2)' "$OUT" ||
     grep -q -x 'backing file format: qcow2' "$OUT"; then
    ok "ferry info prints the backing file's format"
  else
    not_ok "ferry info does not print the backing file's format" "$(last_run)"
  fi
  check_true "ferry info (human) shows the compression type" grep -q -i zstd "$OUT"
  expect_line '.*disk size: .*' "ferry info prints the disk size"
fi
fy info plain.raw
if expect_exit 0 "ferry info (human) on raw"; then
  expect_line '(file )?format: raw' "ferry info on raw prints the format"
  expect_line 'virtual size: 5 MiB \(5242880 bytes\)' "ferry info on raw prints the virtual size"
fi

# Errors.
fy info nosuch.qcow2
expect_failure "ferry info on a missing file" nosuch.qcow2
fy info -f nosuch plain.raw
expect_exit 1 "ferry info -f nosuch"
expect_stderr nosuch "ferry info -f nosuch names the format"
fy info
check_true "ferry info with no image fails (exit $RC)" test "$RC" -ne 0 -a -z "$CRASH"

done_testing
