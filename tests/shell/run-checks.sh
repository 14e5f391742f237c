#!/usr/bin/env bash
# run-checks.sh: scripts/run-checks, the counter behind `make check`, on a
# build directory of its own: a tiny meson project whose tests pass, skip
# (exit 77, as lib.sh's require does) or fail.  Judged by run-checks' exit
# status and its last line, "N passed, N failed, N skipped".
#
#   - Locally a skip stays a skip: exit 0, the skip counted and listed
#     with its reason.
#   - Under CI (CI=true, as CI services and .ci/run set it) the same skip
#     is a failure: non-zero exit, named with its reason.
#   - unit:DIR runs the unit suite only; test:DIR every suite, and a
#     failing test fails the run (with or without CI).
#   - build:DIR counts a build that compiles as a pass and one that does
#     not (a warning under --werror) as a failure, with the compiler's
#     error shown: the clang release build's test.
. "$(dirname "$0")/lib.sh"
require meson ninja

RUN_CHECKS=$SRCDIR/scripts/run-checks

# project DIR FAIL_TEST: a meson project in DIR with a passing and a
# skipping test in suite "unit", and, when FAIL_TEST is "fail", a failing
# test in suite "shell"; configured in DIR/b.
project () {
  local dir=$1 fail=$2
  mkdir -p "$dir"
  cat >"$dir/meson.build" <<'EOF'
project('fake-ferry')
sh = find_program('sh')
test('passes', sh, args : ['-c', 'echo "1..1"; echo "ok 1 - fine"'],
     suite : 'unit')
test('skips', sh, suite : 'unit',
     args : ['-c', 'echo "1..0 # SKIP skips needs frobnicate"; exit 77'])
if get_option('fail')
  test('fails', sh, args : ['-c', 'echo "not ok 1 - broken"; exit 1'],
       suite : 'shell')
endif
EOF
  echo "option('fail', type : 'boolean', value : false)" >"$dir/meson_options.txt"
  local fail_opt=false
  [ "$fail" = fail ] && fail_opt=true
  meson setup "$dir/b" "$dir" -Dfail=$fail_opt \
    >"$WORK/.setup" 2>&1 || die "meson setup $dir: $(tail -n 20 "$WORK/.setup")"
}

# rc LOG CI ARGS...: run run-checks with CI=CI (unset when empty), its
# output in LOG; RC is its exit status, LAST its last line.
rc () {
  local log=$1 ci=$2
  shift 2
  RC=0
  if [ -n "$ci" ]; then
    CI=$ci "$RUN_CHECKS" "$@" >"$log" 2>&1 || RC=$?
  else
    env -u CI "$RUN_CHECKS" "$@" >"$log" 2>&1 || RC=$?
  fi
  LAST=$(tail -n 1 "$log")
}

# expect WHAT LOG WANT_RC WANT_LAST: the run exited WANT_RC ("0" or
# "nonzero") and its last line is WANT_LAST.
expect () {
  local what=$1 log=$2 want_rc=$3 want_last=$4
  if { [ "$want_rc" = 0 ] && [ "$RC" != 0 ]; } ||
     { [ "$want_rc" = nonzero ] && [ "$RC" = 0 ]; }; then
    not_ok "$what: exit status $RC, expected $want_rc" "$(tail -n 30 "$log")"
  elif [ "$LAST" != "$want_last" ]; then
    not_ok "$what: last line '$LAST', expected '$want_last'" "$(tail -n 30 "$log")"
  else
    ok "$what"
  fi
}

project "$WORK/p" pass

rc "$WORK/local.log" "" "test:$WORK/p/b"
expect "locally, a skip is a skip" "$WORK/local.log" 0 "1 passed, 0 failed, 1 skipped"
if grep -q -F "b: skips: skips needs frobnicate" "$WORK/local.log"; then
  ok "locally, the skip is listed with its reason"
else
  not_ok "locally, the skip is not listed with its reason" "$(tail -n 20 "$WORK/local.log")"
fi

rc "$WORK/ci.log" true "test:$WORK/p/b"
expect "CI=true: the skip fails the run" "$WORK/ci.log" nonzero "1 passed, 1 failed, 0 skipped"
if grep -q -F "b: skips (SKIP, which fails under CI: skips needs frobnicate)" "$WORK/ci.log"; then
  ok "CI=true: the skipped test is named as a failure, with its reason"
else
  not_ok "CI=true: the skipped test is not named as a failure" "$(tail -n 20 "$WORK/ci.log")"
fi

rc "$WORK/ci-false.log" false "test:$WORK/p/b"
expect "CI=false is a local run" "$WORK/ci-false.log" 0 "1 passed, 0 failed, 1 skipped"

project "$WORK/f" fail
rc "$WORK/unit.log" "" "unit:$WORK/f/b"
expect "unit:DIR runs the unit suite only" "$WORK/unit.log" 0 "1 passed, 0 failed, 1 skipped"
rc "$WORK/all.log" "" "test:$WORK/f/b"
expect "test:DIR runs every suite; a failing test fails the run" "$WORK/all.log" \
  nonzero "1 passed, 1 failed, 1 skipped"

# A build that does not compile: a C project with a warning and --werror.
mkdir -p "$WORK/w"
cat >"$WORK/w/meson.build" <<'EOF'
project('fake-ferry-werror', 'c')
test('runs', executable('warns', 'warns.c'), suite : 'unit')
EOF
printf 'int main (void) { int unused; return 0; }\n' >"$WORK/w/warns.c"
meson setup --werror -Dwarning_level=2 "$WORK/w/b" "$WORK/w" >"$WORK/.setup" 2>&1 ||
  die "meson setup $WORK/w: $(tail -n 20 "$WORK/.setup")"
rc "$WORK/werror.log" "" "build:$WORK/w/b"
expect "build:DIR, a build that fails is a failure" "$WORK/werror.log" nonzero "0 passed, 1 failed, 0 skipped"
if grep -q -F "unused variable" "$WORK/werror.log"; then
  ok "the compiler's error is shown"
else
  not_ok "the compiler's error is not shown" "$(cat "$WORK/werror.log")"
fi

printf 'int main (void) { return 0; }\n' >"$WORK/w/warns.c"
rc "$WORK/build.log" "" "build:$WORK/w/b"
expect "build:DIR, a build that compiles is a pass" "$WORK/build.log" 0 "1 passed, 0 failed, 0 skipped"

rc "$WORK/usage.log" "" "$WORK/p/b"
expect "one bare directory is a usage error" "$WORK/usage.log" nonzero \
  "usage: $RUN_CHECKS test:DIR|unit:DIR|build:DIR|fuzz:DIR...  (or $RUN_CHECKS BUILD ASAN_BUILD)"

done_testing
