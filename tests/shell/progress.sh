#!/usr/bin/env bash
# progress: --progress=json prints one JSON object per line on stdout with
# done, total, percent, elapsed, bytes_per_sec, eta and finished; done never
# goes back, the last line has finished true and done == total, and nothing
# else is on stdout.  -p on a terminal draws a bar with done / total, MB/s
# and the ETA; -p on a pipe does not disturb the conversion.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io python3

cd "$WORK" || die "cd $WORK"

# check_progress WHAT: judge the JSON lines of the last run's stdout.
check_progress () {
  local what=$1 problems
  problems=$(python3 - "$OUT" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
keys = ("done", "total", "percent", "elapsed", "bytes_per_sec", "eta", "finished")
problems, objs = [], []
for n, line in enumerate(lines, 1):
    try:
        o = json.loads(line)
    except ValueError:
        problems.append("line %d is not JSON: %r" % (n, line[:200]))
        continue
    if not isinstance(o, dict):
        problems.append("line %d is not an object" % n)
        continue
    missing = [k for k in keys if k not in o]
    if missing:
        problems.append("line %d lacks %s" % (n, ", ".join(missing)))
    objs.append(o)
if not objs:
    problems.append("no progress lines")
else:
    last = objs[-1]
    if last.get("finished") is not True:
        problems.append("the last line does not have finished: true: %r" % last)
    if last.get("done") != last.get("total"):
        problems.append("the last line has done %r != total %r" % (last.get("done"), last.get("total")))
    if any(o.get("finished") is True for o in objs[:-1]):
        problems.append("finished: true before the last line")
    prev = -1
    for o in objs:
        d = o.get("done")
        if not isinstance(d, int) or d < prev:
            problems.append("done is not a growing integer: %r after %r" % (d, prev))
            break
        prev = d
    for o in objs:
        p, t = o.get("percent"), o.get("total")
        if not isinstance(p, (int, float)) or not 0 <= p <= 100:
            problems.append("percent out of range: %r" % o)
            break
        if not isinstance(t, int) or t != objs[0].get("total"):
            problems.append("total changes or is not an integer: %r" % o)
            break
        if not isinstance(o.get("elapsed"), (int, float)) or o["elapsed"] < 0:
            problems.append("elapsed is not a non-negative number: %r" % o)
            break
    if not isinstance(last.get("total"), int) or last["total"] <= 0:
        problems.append("total is %r for a source with data" % last.get("total"))
print("\n".join(problems))
EOF
)
  if [ -z "$problems" ]; then ok "$what: progress lines are well formed"; else
    not_ok "$what: progress lines" "$problems" "$(head -c 2000 "$OUT")"; fi
}

mb=$((1 << 20))
mkimg raw src.raw $((64 * mb))
qio raw src.raw "write -s $RAND 0 8m" "write -s $RAND 20m 8m" "write -s $RAND 40m 8m" \
  "write -P 0x3 63m 1m"
mkimg qcow2 src.qcow2 $((64 * mb))
qio qcow2 src.qcow2 "write -s $RAND 0 8m" "write -c -P 0x4 30m 1m" "write -z 40m 8m"

for case in "raw raw" "raw qcow2" "qcow2 raw" "qcow2 qcow2 -c" "raw qcow2 -m 1"; do
  set -- $case
  sf=$1 df=$2
  shift 2
  rm -f out.img
  fy convert -f $sf -O $df "$@" --progress=json src.$sf out.img
  expect_exit 0 "--progress=json, $case" || continue
  check_progress "$case"
  same_content "--progress=json, $case: qemu-img compare" src.$sf $sf out.img $df
done

# -p to a pipe: the conversion is unchanged.
rm -f out.img
fy convert -p -O qcow2 src.raw out.img
expect_exit 0 "-p with stdout on a pipe" &&
  same_content "-p: qemu-img compare" src.raw raw out.img qcow2

# -p on a terminal (script(1) gives ferry a pseudo-terminal): a bar that
# shows the bytes done of the allocated total (8 + 8 + 8 + 1 MiB), the
# speed and the time left, redrawn in place.
if command -v script >/dev/null 2>&1; then
  rm -f out.img
  rc=0
  script -qec "$FERRY convert -p -O qcow2 src.raw out.img" /dev/null \
    </dev/null >tty.out 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    ok "-p on a terminal: exit 0"
    if grep -q -a -E $'\r\\[#{30}\\] 100\\.00%  25 MiB / 25 MiB  [0-9.]+ MB/s  ETA 0:00' tty.out; then
      ok "-p on a terminal: the bar shows 100%, done / total, MB/s and the ETA"
    else
      not_ok "-p on a terminal: no finished bar" "$(cat -A tty.out | head -c 2000)"
    fi
    same_content "-p on a terminal: qemu-img compare" src.raw raw out.img qcow2
  else
    not_ok "-p on a terminal: exit $rc" "$(cat -A tty.out | head -c 2000)"
  fi
else
  echo "# no script(1): the terminal bar is not checked"
fi

# An empty source still ends with a finished line.
mkimg qcow2 empty.qcow2 $((4 * mb))
rm -f out.img
fy convert -O raw --progress=json empty.qcow2 out.img
if expect_exit 0 "--progress=json on an empty image"; then
  check_true "empty image: the last line has finished true" python3 -c '
import json, sys
last = json.loads(open(sys.argv[1]).read().splitlines()[-1])
sys.exit(0 if last["finished"] is True and last["done"] == last["total"] else 1)' "$OUT"
fi

done_testing
