# fault-lib.sh: what the fault-injection tests (fault-*.sh) share.  Source
# it after lib.sh; it needs qemu-img, qemu-io and python3, and moves into
# the work directory.
#
# Every host-file write, flush and rename of ferry goes through the
# primitives of lib/common/util.c, where FERRY_FAULT (lib/common/fault.h)
# fails one with EIO or ENOSPC, or kills the process instead of doing it.
# fault_convert runs a small conversion once with FERRY_FAULT_TRACE to
# count its operations of each kind, then again with a fault at each of
# them, and judges what is left with the peers:
#
# - killed (SIGKILL, the process does nothing more): the target is absent
#   under its name, or whole (qemu-img check finds it clean, qemu-img
#   compare finds it equal to the source); and a later ferry run into the
#   same folder removes whatever the dead one left, and says so
#   (lib/image/target.c notes 5 and 6): the kills of one kind share a
#   folder, so each run cleans after the one before, and one more run
#   after the last kill leaves the folder holding nothing but its own file;
#   for a conversion, a kill that left the target whole is followed by the
#   same command again, which must clean up and refuse the existing target
#   (what a user does after a kill);
# - failing (EIO at any write, flush or rename, ENOSPC at a write): exit
#   status 1, a message that names the target and not its temporary name,
#   says what failed, and nothing at all left in the folder.
#
# The kills test the order of the operations as the program issues them
# (the page cache survives a kill); ordering against a power cut rests on
# the syncs, which are argued in the code, not tested here.
#
# Runtime: every operation up to FAULT_ALL of a kind is tested, then
# FAULT_SPREAD more spread evenly over the rest, and the last one; under
# the sanitizers (several times slower) fewer.

require qemu-img qemu-io python3
cd "$WORK" || die "cd $WORK"
MiB=$((1 << 20))

FAULT_ALL=${FAULT_ALL:-16}
FAULT_SPREAD=${FAULT_SPREAD:-6}
if [ "$FERRY_SANITIZED" = 1 ]; then
  FAULT_ALL=${FAULT_ALL_SANITIZED:-4}
  FAULT_SPREAD=${FAULT_SPREAD_SANITIZED:-2}
fi

# fault_points TOTAL: the operations (1..TOTAL) a fault is injected at.
fault_points () {
  local total=$1 i n prev=0
  for ((i = 1; i <= total && i <= FAULT_ALL; i++)); do echo $i; done
  [ "$total" -le "$FAULT_ALL" ] && return
  prev=$FAULT_ALL
  for ((i = 1; i <= FAULT_SPREAD; i++)); do
    n=$((FAULT_ALL + (total - FAULT_ALL) * i / (FAULT_SPREAD + 1)))
    [ "$n" -gt "$prev" ] && [ "$n" -lt "$total" ] && echo $n && prev=$n
  done
  echo "$total"
}

# count_ops TRACE KIND: how many operations of KIND the trace lists.
count_ops () {
  grep -c " $2 " "$1" || true
}

# list_range N...: "1-16, 20, 25" for the ascending numbers N.
list_range () {
  local out="" start="" prev="" n
  for n in "$@" ""; do
    if [ -n "$prev" ] && [ "$n" = "$((prev + 1))" ]; then
      prev=$n
      continue
    fi
    if [ -n "$start" ]; then
      out+="${out:+, }$start"
      [ "$prev" != "$start" ] && out+="-$prev"
    fi
    start=$n prev=$n
  done
  echo "$out"
}

# whole_image IMG QFMT SRC SRC_QFMT: prints why IMG is not a whole copy
# of SRC (nothing when it is): qemu-img check (vhd-vdi-tool.py vhd-check
# for vpc, which qemu-img does not check; nothing for raw) and qemu-img
# compare.
whole_image () {
  local img=$1 qfmt=$2 src=$3 sqfmt=$4 out
  case $qfmt in
    raw) ;;
    vpc)
      out=$("$PYTHON" "$TESTS_DIR/vhd-vdi-tool.py" vhd-check "$img" 2>&1) ||
        echo "vhd-check: $out" ;;
    *)
      out=$(qemu-img check -f "$qfmt" "$img" 2>&1) ||
        echo "qemu-img check: $out" ;;
  esac
  out=$(qemu-img compare -f "$sqfmt" -F "$qfmt" "$src" "$img" 2>&1) ||
    echo "qemu-img compare: $out"
}

# leftovers DIR TARGET: what a killed run left in DIR that the next run
# must remove and name: its hidden names (a lock file only when it is
# alone), and, with no TARGET, every name (extents put in place before a
# descriptor that never followed).
leftovers () {
  local dir=$1 target=$2 hidden
  hidden=$(ls -A "$dir" | grep '^\.' | grep -v '\.lock$' || true)
  [ -z "$hidden" ] && hidden=$(ls -A "$dir" | grep '^\.' || true)
  echo "$hidden"
  [ -e "$dir/$target" ] || ls "$dir"
}

# removed_all DIR NAMES [quiet]: prints why the last run did not remove
# and name each of NAMES (lines) in DIR (nothing when it did); it may name
# DIR by an absolute path.  With "quiet", only that they are gone (a run
# killed before it could say so: ferry v2v reports at its end).
removed_all () {
  local dir=$1 name
  while IFS= read -r name; do
    [ -z "$name" ] && continue
    if [ "${3:-}" != quiet ] &&
       ! grep -F -- "$dir/$name, left by a ferry process that is gone" "$ERR" |
         grep -q "removed "; then
      echo "$dir/$name was left, and the next run did not say it removed it: $(last_run)"
    elif [ "${name:0:1}" = . ] && [ -e "$dir/$name" ]; then
      echo "$dir/$name is still there after the next run"
    fi
  done <<<"$2"
}
head -c 65536 /dev/urandom >"$WORK/later-src.raw"

# rerun_refused DIR TARGET LEFT: prints why the last run, the killed
# command run again while DIR/TARGET stood whole beside the leftovers LEFT
# of the kill, did not refuse TARGET as existing after removing and naming
# each of LEFT (nothing when it did); no hidden name may be left in DIR.
rerun_refused () {
  local dir=$1 target=$2 hidden
  if [ -n "$CRASH" ] || [ "$RC" != 1 ]; then
    echo "exit status $RC${CRASH:+ ($CRASH)}, expected 1: $(last_run)"
  elif ! grep -q -F -- "$dir/$target exists already" "$ERR"; then
    echo "the message does not say $dir/$target exists already: $(last_run)"
  fi
  removed_all "$dir" "$3"
  hidden=$(ls -A "$dir" | grep '^\.' || true)
  [ -n "$hidden" ] && echo "left in $dir: $hidden"
}

# fault_each WHAT DIR TARGET JUDGE QUIET FERRY-ARGS...: a fault at each
# operation of `ferry FERRY-ARGS`, which makes DIR/TARGET (DIR is made
# here), as the header says.  JUDGE is a function that prints why its
# argument, the target, is not whole (nothing when it is).  QUIET=quiet
# when the command reports what it removed only at its end.  Where
# FAULT_AFTER_KILL names a function, it is called after each kill at a
# write with the temporary file left behind (if any), and prints why that
# file is wrong.  (A kill at a flush or a rename leaves the file's content
# as a kill at the next write does, or complete.)  Where FAULT_RERUN is
# set, each kill that left the target whole is followed by the same
# command, without removing anything: it must remove what the kill left
# and refuse the target as existing (rerun_refused); the target is then
# removed by hand, as after every kill that left it whole.
fault_each () {
  local what=$1 dir=$2 target=$3 judge=$4 quiet=$5 kind action n total
  local bad why points absent whole tmp left
  shift 5
  rm -rf "$dir" && mkdir "$dir"
  rm -f "$WORK/trace"
  FERRY_FAULT_TRACE=$WORK/trace fy "$@"
  expect_exit 0 "$what: without a fault" || return 1
  why=$($judge "$dir/$target")
  if [ -n "$why" ]; then not_ok "$what: without a fault, the target is whole" "$why"; return 1; fi
  for kind in write sync rename; do
    total=$(count_ops "$WORK/trace" $kind)
    if [ "$total" = 0 ]; then
      not_ok "$what: it makes no $kind operation" "$(cat "$WORK/trace")"
      continue
    fi
    points=$(fault_points "$total")
    # Killed at each point, in one folder: each run removes, and names,
    # what the run before it left; a last run after the last kill.
    bad=() absent=0 whole=0 left=""
    rm -rf "$dir" && mkdir "$dir"
    for n in $points; do
      FERRY_FAULT=$kind:$n:kill fy "$@"
      # A job resumed by the same command has fewer operations left: it
      # may end before the point.
      if [ "$RC" != 137 ] && ! { [ -n "${FAULT_JOBS:-}" ] && [ "$RC" = 0 ]; }; then
        bad+=("$kind $n: exit status $RC, expected 137 (SIGKILL): $(last_run)")
      fi
      why=$(removed_all "$dir" "$left" "$quiet")
      [ -n "$why" ] && bad+=("$kind $n: $why")
      if [ -n "${FAULT_AFTER_KILL:-}" ] && [ $kind = write ]; then
        tmp=$(ls -d "$dir/.$target".ferry-???????????? 2>/dev/null | head -1)
        why=$($FAULT_AFTER_KILL "$tmp")
        [ -n "$why" ] && bad+=("$kind $n: $why")
      fi
      left=$(leftovers "$dir" "$target")
      # A job's working folder is not a leftover: the same command
      # resumes it (FAULT_JOBS).
      [ -n "${FAULT_JOBS:-}" ] && left=$(printf '%s\n' "$left" | grep -v -E '\.ferry-job-[0-9]+$' || true)
      if [ -e "$dir/$target" ]; then
        why=$($judge "$dir/$target")
        [ -n "$why" ] && bad+=("$kind $n: $dir/$target exists and is not whole: $why")
        whole=$((whole + 1))
        if [ -n "${FAULT_RERUN:-}" ]; then
          fy "$@"
          why=$(rerun_refused "$dir" "$target" "$left")
          [ -n "$why" ] && bad+=("$kind $n, the same command again: $why")
          left=""
        fi
        rm -rf "$dir"/[!.]*            # the target (and its extents)
      else
        absent=$((absent + 1))
      fi
    done
    if [ -n "${FAULT_JOBS:-}" ]; then
      # The job the last kill left, resumed to its end by the same command.
      if [ ! -e "$dir/$target" ]; then
        fy "$@"
        [ "$RC" != 0 ] && bad+=("after $kind $n, the same command again: $(last_run)")
        why=$($judge "$dir/$target")
        [ -n "$why" ] && bad+=("after $kind $n, resumed: $dir/$target is not whole: $why")
      fi
      rm -rf "$dir"/[!.]*
    fi
    fy convert -O raw "$WORK/later-src.raw" "$dir/later.raw"
    [ "$RC" != 0 ] && bad+=("the run after the last kill failed: $(last_run)")
    why=$(removed_all "$dir" "$left")
    [ -n "$why" ] && bad+=("after $kind $n: $why")
    [ "$(ls -A "$dir")" != later.raw ] &&
      bad+=("after the run that followed the last kill, $dir holds $(ls -A "$dir" | tr '\n' ' ')")
    if [ ${#bad[@]} = 0 ]; then
      ok "$what: killed at $kind $(list_range $points) of $total: the target absent ($absent) or whole ($whole), what was left removed by the next run"
    else
      not_ok "$what: killed at $kind $(list_range $points) of $total" "${bad[@]}"
    fi
    # Failing from each point on.
    bad=()
    rm -rf "$dir" && mkdir "$dir"
    for n in $points; do
      for action in eio $([ $kind = write ] && [ "$n" = "$((total / 2 + 1))" ] && echo enospc); do
        FERRY_FAULT=$kind:$n:$action fy "$@"
        why=$(fault_failed "$dir/$target" $action)
        [ -n "$why" ] && bad+=("$kind $n $action: $why")
        if [ -n "${FAULT_JOBS:-}" ]; then
          # A failed job keeps its working folder for a retry; cancelling
          # the job removes it.
          why=$(ls -A "$dir" | grep -E "^\.$target\.ferry-job-[0-9]+\$" || true)
          if [ -n "$why" ] && ! "$FERRY" job cancel "${why##*-}" >/dev/null 2>&1; then
            bad+=("$kind $n $action: ferry job cancel ${why##*-} failed")
          fi
        fi
        if [ -n "$(ls -A "$dir")" ]; then
          bad+=("$kind $n $action: left $(ls -A "$dir" | tr '\n' ' ')")
          rm -rf "$dir" && mkdir "$dir"
        fi
      done
    done
    if [ ${#bad[@]} = 0 ]; then
      ok "$what: failing from $kind $(list_range $points) of $total: exit 1, a message naming $dir/$target, nothing left"
    else
      not_ok "$what: failing from $kind $(list_range $points) of $total" "${bad[@]}"
    fi
  done
}

# fault_convert WHAT SRC SRC_QFMT DST QFMT [FERRY CONVERT OPTIONS...]:
# fault_each for `ferry convert -m 1 OPTIONS SRC f/DST`; QFMT is DST's
# format as qemu-img names it.
fault_convert () {
  local what=$1 dst=$4
  FAULT_SRC=$2 FAULT_SQFMT=$3 FAULT_QFMT=$5
  shift 5
  FAULT_RERUN=1 fault_each "$what" f "$dst" judge_image "" \
    convert -m 1 "$@" "$FAULT_SRC" "f/$dst"
}

# judge_image IMG: whole_image against fault_convert's source.
judge_image () {
  whole_image "$1" "$FAULT_QFMT" "$FAULT_SRC" "$FAULT_SQFMT"
}

# make_source SIZE [MIX]: src.qcow2 of SIZE bytes (64 KiB clusters) with
# fill_pattern's standard mix, the source of the conversions; MIX is
# fill_pattern's cluster (default 64 KiB) and "compress" to add a
# compressed cluster.
make_source () {
  mkimg qcow2 src.qcow2 "$1" cluster_size=65536
  fill_pattern qcow2 src.qcow2 "${2:-65536}" "$1" ${3:-}
}

# fault_failed TARGET ACTION: prints why the last run did not fail the
# way an injected ACTION (eio, enospc) must (nothing when it did): exit 1,
# no crash, a message naming TARGET and the error, never a temporary name.
fault_failed () {
  local target=$1 says
  case $2 in
    eio) says="Input/output error" ;;
    enospc) says="No space left on device" ;;
  esac
  if [ -n "$CRASH" ] || [ "$RC" != 1 ]; then
    echo "exit status $RC${CRASH:+ ($CRASH)}, expected 1: $(last_run)"
  elif ! grep -q -F -- "$target" "$ERR"; then
    echo "the message does not name $target: $(last_run)"
  elif ! grep -q -F -- "$says" "$ERR"; then
    echo "the message does not say '$says': $(last_run)"
  elif grep -q -E 'ferry-[0-9a-f]{6,}' "$ERR"; then
    echo "the message names a temporary file: $(last_run)"
  fi
}
