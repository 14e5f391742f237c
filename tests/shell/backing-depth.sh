#!/usr/bin/env bash
# backing-depth: the deepest backing chain ferry follows (issue 12, G).
# qemu-img 7.2 has no depth limit of its own: it opens what the process's
# file descriptors allow.  ferry follows 1000 layers below the image it
# opens (lib/image/internal.h says why: the stack); a chain at that limit
# is read, and one layer more is refused with the whole reason, naming the
# top image and the layer, not a message cut off by a prefix per layer.
# Too few file descriptors for a deep chain is an error that says so.
#
# The chain: qcow2 images of 512-byte clusters, the first made by
# qemu-img create, data written by qemu-io into three layers while they
# stood alone, then stacked by qemu-img rebase -u (header only); the
# layers between are copies of one qemu-img overlay header with the
# backing name changed (same length).  Judges: qemu-img info
# --backing-chain (which opens one layer at a time, quickly) for the
# layers, qemu-img compare for the data against a raw disk written by
# qemu-io with the same writes.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"
LIMIT=1000
KiB=1024

name () { printf 'l%04d.qcow2' "$1"; }

# The base, and two layers with data of their own, each made alone first.
for i in 0 500 $LIMIT; do
  qemu-img create -q -f qcow2 -o cluster_size=512 "$(name $i)" 1M || die "create"
done
qio qcow2 "$(name 0)" "write -P 0x10 0 64k"
qio qcow2 "$(name 500)" "write -P 0x50 64k 64k"
qio qcow2 "$(name $LIMIT)" "write -P 0xa0 128k 64k"
for i in 500 $LIMIT; do
  qemu-img rebase -q -u -b "$(name $((i - 1)))" -F qcow2 "$(name $i)" || die "rebase"
done
# Every other layer up to LIMIT + 1: the template with its backing name.
qemu-img create -q -f qcow2 -o cluster_size=512 -u -b "$(name 0)" -F qcow2 \
  template.qcow2 1M || die "create template"
python3 - "$LIMIT" <<'EOF' || die "making the layers"
import sys
limit = int(sys.argv[1])
t = open("template.qcow2", "rb").read()
assert t.count(b"l0000.qcow2") == 1
for i in range(1, limit + 2):
    if i in (500, limit):
        continue
    with open("l%04d.qcow2" % i, "wb") as f:
        f.write(t.replace(b"l0000.qcow2", b"l%04d.qcow2" % (i - 1)))
EOF
mkimg raw want.raw 1M
qio raw want.raw "write -P 0x10 0 64k" "write -P 0x50 64k 64k" "write -P 0xa0 128k 64k"

top=$(name $LIMIT)
over=$(name $((LIMIT + 1)))

# --- at the limit: LIMIT layers below the top -------------------------------------
qemu-img info --backing-chain --output=json "$top" >q.json 2>q.err ||
  die "qemu-img info --backing-chain: $(cat q.err)"
fy info --backing-chain --json "$top"
if expect_exit 0 "a chain of $LIMIT layers below the top: ferry info --backing-chain --json"; then
  if python3 - "$OUT" q.json <<'EOF'
import json, sys
f = [l["filename"] for l in json.load(open(sys.argv[1]))]
q = [l["filename"] for l in json.load(open(sys.argv[2]))]
sys.exit(f != q)
EOF
  then ok "ferry shows the $((LIMIT + 1)) layers qemu-img info --backing-chain shows"
  else not_ok "ferry's layers differ from qemu-img's" "$(head -c 2000 "$OUT")"
  fi
fi
rm -f out.raw
fy convert -O raw "$top" out.raw
if expect_exit 0 "a chain of $LIMIT layers below the top: ferry convert"; then
  same_content "a chain of $LIMIT layers: qemu-img compare with the expected disk" \
    out.raw raw want.raw raw
fi
fy map --json "$top"
if expect_exit 0 "a chain of $LIMIT layers: ferry map"; then
  check_true "ferry map: data in [0, 192 KiB), none after" python3 - "$OUT" <<'EOF'
import json, sys
ext = json.load(open(sys.argv[1]))
# type: 0 data, 2 zero, 3 hole (reads as zeroes), as nbdinfo --map.
data = [(e["offset"], e["offset"] + e["length"]) for e in ext
        if e["type"] & 2 == 0]
sys.exit(data != [(0, 196608)])
EOF
fi
fy compare "$top" want.raw
expect_exit 0 "a chain of $LIMIT layers: ferry compare with the expected disk"

# --- one layer more --------------------------------------------------------------------
if qemu-img info --backing-chain "$over" >/dev/null 2>&1; then
  echo "# qemu-img info --backing-chain shows $((LIMIT + 2)) layers too"
fi
want_msg="$over: layer $((LIMIT + 1)) of its backing chain: $(name 0): the backing chain is deeper than the $LIMIT layers ferry follows below the image opened"
for cmd in info convert map; do
  rm -f out.raw
  case $cmd in
    convert) fy convert -O raw "$over" out.raw ;;
    *) fy $cmd "$over" ;;
  esac
  expect_failure "$((LIMIT + 1)) layers below the top: ferry $cmd refuses" "$over"
  if [ "$(cat "$ERR")" = "ferry $cmd: $want_msg" ]; then
    ok "ferry $cmd: the whole reason, naming the top image and the layer"
  else
    not_ok "ferry $cmd: the message is not the whole reason" "$(last_run)" "expected: ferry $cmd: $want_msg"
  fi
done
check_true "no target left" test ! -e out.raw

# --- too few file descriptors -------------------------------------------------------
# Each layer holds one; with a limit of 300 the chain cannot be opened,
# and the message says why and what to do.
LAST_CMD="(ulimit -n 300; ferry info $top)"
( ulimit -n 300 && exec "$FERRY" info "$top" ) >"$OUT" 2>"$ERR" </dev/null && RC=0 || RC=$?
crash_reason
expect_failure "a chain deeper than the open-file limit: refused" "$top"
expect_stderr "RLIMIT_NOFILE" "the message names the limit"
expect_stderr "limit of 300 open files" "the message gives the limit"
expect_stderr "ulimit -n" "the message says how to raise it"
expect_stderr "$top: layer " "the message names the top image and the layer"

done_testing
