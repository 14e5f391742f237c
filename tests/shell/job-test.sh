#!/usr/bin/env bash
# job-test: a test migration, then the cutover (ferry job add --test): the
# copy is booted isolated, on a throw-away overlay, by QEMU (the judge:
# the smallest guests, boot sectors assembled here from
# tests/guests/boot-sector.S, print a login prompt or a kernel panic), and
# the job waits in awaiting-cutover with no output folder until `ferry job
# cutover` puts it in place; a retry tests again from the start; a guest
# that does not boot fails the job, naming why.
. "$(dirname "$0")/lib.sh"
require qemu-img qemu-system-x86_64 python3 as ld
export FERRY_ACCEL=tcg

cd "$WORK" || die "cd $WORK"
mkdir -p src
for g in tcg-only panic; do
  "$SRCDIR/tests/guests/make-boot-sector.sh" "$g" "src/$g.img" 2>"$WORK/.mk" ||
    die "make-boot-sector.sh $g: $(cat "$WORK/.mk")"
done
vmx () {
  cat <<EOF2
displayName = "$1"
guestOS = "other-64"
memSize = "256"
ide0:0.present = "TRUE"
ide0:0.fileName = "$2"
EOF2
}
vmx good tcg-only.img >src/good.vmx
vmx bad panic.img >src/bad.vmx
json_field () {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
job_state () {
  "$FERRY" job show --json "$1" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])'
}

fy job add --test src/good.vmx --to qemu -O raw --out good --no-convert \
  --verify-timeout 60 --json
expect_exit 0 "add --test: exit 0"
id=$(json_field "$OUT" id)
fy job run "$id" --json
expect_exit 0 "run: the test boots"
check_true "run: the job awaits its cutover" test "$(json_field "$OUT" state)" = awaiting-cutover
check_true "run: no output folder before the cutover" test ! -e good
check_true "run: the copy waits in the job's working folder" \
  test -f ".good.ferry-job-$id/good-disk1.img"
check_true "run: the record says it booted to the login prompt" \
  sh -c "'$FERRY' job show '$id' | grep -q 'test boot: booted to \"ferry-test login:'"
same_content "run: the tested copy is the source, untouched by the boot" \
  src/tcg-only.img raw ".good.ferry-job-$id/good-disk1.img" raw
check_true "run: the record's events name no command (the library speaks none)" \
  sh -c "! '$FERRY' job show '$id' | grep -q 'ferry job'"
fy job run "$id"
expect_exit 1 "run again: refused while it awaits its cutover"
expect_stderr "awaiting its cutover" "run again: says so"

# Resume is no cutover: the job stays tested, awaiting it, with no output.
fy job resume "$id" --wait --json
check_true "resume: still awaiting the cutover" test "$(json_field "$OUT" state)" = awaiting-cutover
check_true "resume: no output folder" test ! -e good
check_true "resume: the copy still waits in the working folder" \
  test -f ".good.ferry-job-$id/good-disk1.img"

# Retry: test again, from the start.
fy job retry "$id" --wait --json
expect_exit 0 "retry: exit 0"
check_true "retry: tested again, awaiting the cutover" test "$(json_field "$OUT" state)" = awaiting-cutover
check_true "retry: booted twice in all" \
  test "$("$FERRY" job show "$id" | grep -c 'test boot: booted')" = 2

fy job cutover "$id" --wait --json
expect_exit 0 "cutover: exit 0"
check_true "cutover: the job is done" test "$(json_field "$OUT" state)" = done
check_true "cutover: the output folder is in place" test -x good/good.sh
same_content "cutover: the disk is the source" src/tcg-only.img raw good/good-disk1.img raw
check_true "cutover: no working folder left" test -z "$(ls -A | grep -F .good.ferry)"
fy job cutover "$id"
expect_exit 1 "cutover of a done job: refused"

# A guest that does not boot.
fy job add --test src/bad.vmx --to qemu -O raw --out bad --no-convert \
  --verify-timeout 60 --json
id=$(json_field "$OUT" id)
fy job run "$id"
expect_exit 1 "a guest that panics: the job fails"
expect_stderr "the test boot failed" "a guest that panics: says the test boot failed"
check_true "a guest that panics: the job is failed" test "$(job_state "$id")" = failed
check_true "a guest that panics: no output folder" test ! -e bad
fy job cancel "$id"
expect_exit 0 "cancel: exit 0"
check_true "cancel: nothing left" test -z "$(ls -A | grep -F .bad.ferry)"

# --verify: the output booted in place after the commit.
fy job add src/good.vmx --to qemu -O raw --out vgood --no-convert --verify \
  --verify-timeout 60 --json
id=$(json_field "$OUT" id)
fy job run "$id" --json
expect_exit 0 "--verify: the output boots"
check_true "--verify: the job is done" test "$(json_field "$OUT" state)" = done
check_true "--verify: its boot step is recorded" \
  sh -c "'$FERRY' job show '$id' | grep -E -q '^  boot +done'"
fy job add src/bad.vmx --to qemu -O raw --out vbad --no-convert --verify \
  --verify-timeout 60 --json
id=$(json_field "$OUT" id)
fy job run "$id"
expect_exit 1 "--verify, a guest that panics: the job fails"
expect_stderr "vbad is in place, but its verification failed" \
  "--verify, a guest that panics: says the output is in place but did not boot"
check_true "--verify, a guest that panics: the output stays" test -x vbad/bad.sh

done_testing
