#!/usr/bin/env bash
# copy-resume: a copy killed with SIGKILL at a random moment resumes from
# its last checkpoint and finishes, in every format and subformat ferry
# writes.  The library helper $COPY_RESUME (tests/copy-resume.c) copies a
# 256 MiB source of data, zeroes and holes with a checkpoint every 8 MiB,
# recording each checkpoint's mark; the test kills it, resumes in a fresh
# process with ferry_copy_reopen_target, and judges the result with
# qemu-img compare and check.  Each kill's delay comes from a seed printed
# with it (COPY_RESUME_SEED=N repeats a run).  What a kill makes the copy
# do again, the data since the last checkpoint, is at most one checkpoint
# interval plus one request (checked on the checkpoints' spacing).  A
# streamOptimized VMDK cannot resume (ESTALE); a cancel makes a last
# checkpoint that resumes as well.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-io gzip
: "${COPY_RESUME:?COPY_RESUME must name the copy-resume helper}"

cd "$WORK" || die "cd $WORK"

MIB=$((1 << 20))
CKPT=$((8 * MIB))
# What a kill may cost on top of a checkpoint interval: the one item (a
# request, 4 MiB) that crossed it; the dispatcher hands out no more.
SLACK=$((4 * MIB))
KILLS=${COPY_RESUME_KILLS:-3}
SEED=${COPY_RESUME_SEED:-$(( $(date +%s) % 100000 ))}
echo "# seed $SEED"

# The source: 8 MiB stripes of random data, a byte pattern, a hole, and
# data with zeroes inside.
SIZE=$((256 * MIB))
truncate -s "$SIZE" src.raw || die "truncate"
cmds=()
for ((i = 0; i < SIZE / (8 * MIB); i++)); do
  off=$((i * 8 * MIB))
  case $((i % 4)) in
    0) cmds+=("write -s $RAND $off $((8 * MIB))") ;;
    1) cmds+=("write -P $((i + 1)) $off $((6 * MIB))") ;;
    2) ;;
    3) cmds+=("write -s $RAND $off $((3 * MIB))"
              "write -P 0 $((off + 3 * MIB)) $((2 * MIB))"
              "write -s $RAND $((off + 5 * MIB + 4096)) $((MIB + 512))") ;;
  esac
done
qio raw src.raw "${cmds[@]}"

# delay N: the Nth random delay of this run, 0 to 0.25 s.
delay () {
  awk -v s="$SEED" -v n="$1" 'BEGIN { srand(s + n); printf "%.3f", rand() * 0.25 }'
}

# run_kill NAME FORMAT OPTIONS CHECKFMT N [compress]: copy, kill, resume,
# judge.
run_kill () {
  local name=$1 fmt=$2 opts=$3 checkfmt=$4 n=$5 compress=${6:-}
  local dst=$name.$n.img state=$name.$n.state d pid waited rc out
  rm -f "$dst" "$state" "$state.log"
  d=$(delay "$n$name")
  "$COPY_RESUME" copy src.raw "$dst" "$fmt" "$opts" "$state" "$CKPT" \
    $compress >"$name.$n.out" 2>"$name.$n.err" &
  pid=$!
  # Wait for the first checkpoint, then a random moment.
  for ((waited = 0; waited < 2000; waited++)); do
    [ -e "$state" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  sleep "$d"
  kill -KILL "$pid" 2>/dev/null
  wait "$pid"
  rc=$?
  if [ "$rc" = 0 ]; then
    ok "$name kill $n (seed $SEED, after ${d}s): the copy had finished"
    same_content "$name kill $n: finished copy equals the source" src.raw raw "$dst" "$fmt"
    return
  fi
  if [ "$rc" != 137 ]; then
    not_ok "$name kill $n: the copy failed by itself (exit $rc)" "$(cat "$name.$n.err")"
    return
  fi
  if [ ! -e "$state" ]; then
    ok "$name kill $n: killed before the first checkpoint (nothing to resume)"
    return
  fi
  out=$("$COPY_RESUME" resume src.raw "$dst" "$fmt" "$state" $compress 2>&1)
  rc=$?
  if [ "$rc" != 0 ]; then
    not_ok "$name kill $n (seed $SEED, after ${d}s): resume failed (exit $rc)" "$out" "mark: $(cat "$state")"
    return
  fi
  ok "$name kill $n (seed $SEED, after ${d}s): resumed ($out)"
  same_content "$name kill $n: resumed copy equals the source" src.raw raw "$dst" "$fmt"
  [ -n "$checkfmt" ] && qemu_clean "$name kill $n: qemu-img check is clean" "$dst" "$checkfmt"
  # durable D below B first_done F last_done L max_gap G
  set -- $out
  local below=$4 first=$6 gap=${10}
  if [ "$first" -ge "$below" ]; then
    ok "$name kill $n: progress starts at the data below the checkpoint ($first >= $below)"
  else
    not_ok "$name kill $n: progress started at $first, below $below"
  fi
  # A kill loses what was copied since the last checkpoint: at most the
  # data between two checkpoints.
  if [ "$gap" -le $((CKPT + SLACK)) ]; then
    ok "$name kill $n: at most $gap bytes of data between checkpoints (<= $((CKPT + SLACK)))"
  else
    not_ok "$name kill $n: $gap bytes of data between two checkpoints, more than $((CKPT + SLACK))"
  fi
  rm -f "$dst"
}

# expect_stale WHAT DST FORMAT STATE: resuming into DST says ESTALE.
expect_stale () {
  local what=$1 out rc
  out=$("$COPY_RESUME" resume src.raw "$2" "$3" "$4" 2>&1)
  rc=$?
  if [ "$rc" = 3 ]; then
    ok "$what: refused with ESTALE ($out)"
  else
    not_ok "$what: exit $rc, not ESTALE" "$out"
  fi
}

# name format options qemu-img-check-format [compress]
targets=(
  "raw raw - -"
  "qcow2 qcow2 compat=1.1 qcow2"
  "qcow2-v2 qcow2 compat=0.10 qcow2"
  "qcow2-c qcow2 compat=1.1 qcow2 compress"
  "vmdk vmdk subformat=monolithicSparse vmdk"
  "vhd vpc subformat=dynamic -"
  "vhd-fixed vpc subformat=fixed -"
  "vhdx vhdx subformat=dynamic vhdx"
  "vhdx-fixed vhdx subformat=fixed vhdx"
  "vdi vdi static=off vdi"
  "vdi-static vdi static=on vdi"
)
for t in "${targets[@]}"; do
  set -- $t
  name=$1 fmt=$2 opts=$3 checkfmt=$4 compress=${5:-}
  [ "$opts" = - ] && opts=
  [ "$checkfmt" = - ] && checkfmt=
  for ((k = 1; k <= KILLS; k++)); do
    run_kill "$name" "$fmt" "$opts" "$checkfmt" "$k" $compress
  done
done

# streamOptimized: written in order, so not resumable; a reopen of what a
# kill left says ESTALE, and the caller starts again.
rm -f so.img so.state so.state.log
"$COPY_RESUME" copy src.raw so.img vmdk subformat=streamOptimized so.state \
  "$CKPT" >so.out 2>so.err &
pid=$!
for ((waited = 0; waited < 2000; waited++)); do
  [ -e so.state ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.01
done
kill -KILL "$pid" 2>/dev/null
wait "$pid"
if grep -q -x "can_resume false" so.out; then
  ok "streamOptimized: ferry_image_can_resume is false"
else
  not_ok "streamOptimized: ferry_image_can_resume is not false" "$(cat so.out so.err)"
fi
if [ -e so.state ]; then
  expect_stale "streamOptimized: a reopen" so.img vmdk so.state
else
  not_ok "streamOptimized: no checkpoint before the kill" "$(cat so.err)"
fi

# A cancel stops the copy with EINTR after a last checkpoint, from which
# the copy resumes.
for t in "raw raw -" "qcow2 qcow2 compat=1.1" "vhdx vhdx subformat=dynamic"; do
  set -- $t
  name=cancel-$1 fmt=$2 opts=$3
  [ "$opts" = - ] && opts=
  rm -f "$name.img" "$name.state" "$name.state.log"
  out=$("$COPY_RESUME" cancel src.raw "$name.img" "$fmt" "$opts" "$name.state" \
        $((64 * MIB)) $((40 * MIB)) 2>&1)
  rc=$?
  if grep -q -x "can_resume true" <<<"$out"; then
    ok "$name: ferry_image_can_resume is true"
  else
    not_ok "$name: ferry_image_can_resume is not true" "$out"
  fi
  if [ "$rc" = 0 ] && grep -q "^cancelled" <<<"$out"; then
    ok "$name: the cancel stopped the copy with EINTR ($(tail -1 <<<"$out"))"
  else
    not_ok "$name: the cancel did not stop the copy (exit $rc)" "$out"
    continue
  fi
  out=$("$COPY_RESUME" resume src.raw "$name.img" "$fmt" "$name.state" 2>&1)
  rc=$?
  if [ "$rc" = 0 ]; then
    ok "$name: resumed from the cancel's checkpoint ($out)"
    same_content "$name: resumed copy equals the source" src.raw raw "$name.img" "$fmt"
    [ "$fmt" != raw ] && qemu_clean "$name: qemu-img check is clean" "$name.img" "$fmt"
  else
    not_ok "$name: resume after the cancel failed (exit $rc)" "$out"
  fi
done

# A source read in order (a gzip stream, one worker) resumes too: the
# stream is inflated up to the checkpoint and the part below it skipped.
gzip -1 -c src.raw >src.raw.gz || die "gzip"
rm -f gz.img gz.state gz.state.log
"$COPY_RESUME" cancel src.raw gz.img qcow2 "" gz.state "$CKPT" $((100 * MIB)) \
  >gz.out 2>&1 || not_ok "gzip: the first copy did not stop" "$(cat gz.out)"
out=$(SOURCE_SIZE=$SIZE "$COPY_RESUME" resume src.raw.gz gz.img qcow2 gz.state 2>&1)
rc=$?
if [ "$rc" = 0 ]; then
  ok "gzip: resumed from a stream source ($out)"
  same_content "gzip: resumed copy equals the source" src.raw raw gz.img qcow2
  qemu_clean "gzip: qemu-img check is clean" gz.img qcow2
else
  not_ok "gzip: resume from a stream source failed (exit $rc)" "$out"
fi

# A new qcow2 and VMDK killed before their first flush have no header:
# a mark of that file (as if one had been kept) gets ESTALE, not a raw
# reading of it.
for t in "qcow2 compat=1.1" "vmdk subformat=monolithicSparse"; do
  set -- $t
  rm -f early.img early.out early.state early.state.log
  "$COPY_RESUME" copy src.raw early.img "$1" "$2" early.state $((1 << 40)) \
    >early.out 2>&1 &
  pid=$!
  # As soon as the target is created (the first line).
  for ((waited = 0; waited < 2000; waited++)); do
    [ -s early.out ] && break
    sleep 0.01
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid"
  if [ $? != 137 ]; then
    not_ok "$1: the copy was not killed before its first flush" "$(cat early.out)"
    continue
  fi
  printf '4096 0 %s %s 0\n' "$(stat -c %d early.img)" "$(stat -c %i early.img)" \
    >early.state
  expect_stale "$1 killed before its first flush" early.img "$1" early.state
done

# A mark of another file: ESTALE.
cp src.raw other.raw
truncate -s 1M other.raw
printf '4096 1048576 1 1 0\n' >other.state
expect_stale "a mark of another file" other.raw raw other.state

done_testing
