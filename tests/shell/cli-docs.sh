#!/usr/bin/env bash
# cli-docs.sh: ferry's usage texts, its man page (cli/ferry.pod, built into
# ferry.1) and its bash completion (cli/ferry.bash) agree, command by
# command:
#
#   - every command `ferry --help` lists has a section in ferry(1) and is
#     completed;
#   - every option a command's usage (`ferry CMD --help`) shows is in that
#     command's section of ferry(1) and among the completion's candidates
#     for `ferry CMD -<TAB>`;
#   - the man page and the completion list the same options;
#   - every option either lists is one ferry accepts (getopt does not call
#     it unrecognized or invalid);
#   - the formats `ferry --help` lists are completed after -f and -O, and
#     named in the man page.
#
# So an option added to a command's usage fails here until ferry.pod and
# ferry.bash have it too.  The man page is read from its roff (pod2man's
# .IX index lines: a "Subsection" per command, an "Item" per option); the
# completion is driven as bash drives it (cli-lib.sh).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
require python3
MAN_PAGE=${FERRY_MAN:-}
COMPLETION=${FERRY_COMPLETION:-$SRCDIR/cli/ferry.bash}
[ -f "$MAN_PAGE" ] || die "FERRY_MAN=$MAN_PAGE is not the built ferry.1 (run it with meson test)"
[ -f "$COMPLETION" ] || die "no completion at $COMPLETION"

# options_of_usage: the options in the usage text on stdin: those of the
# synopsis (the "usage:" line and the lines that continue it, indented
# further than the descriptions) and the tag of each description line
# ("  -s, --strict   what it does").  Mentions in prose do not count.
options_of_usage () {
  python3 -c '
import re, sys
opt = re.compile(r"(?<![\w/:.=-])(--?[A-Za-z][A-Za-z0-9-]*)")
found = set()
in_synopsis = False
for line in sys.stdin.read().splitlines():
    indent = len(line) - len(line.lstrip(" "))
    if line.startswith("usage:"):
        in_synopsis = True
        found.update(opt.findall(line))
        continue
    if in_synopsis and indent >= 6:
        found.update(opt.findall(line))
        continue
    in_synopsis = False
    if 1 <= indent <= 4 and line.lstrip().startswith("-"):
        tag = re.split(r"\s{2,}", line.strip())[0]
        found.update(opt.findall(tag))
found.discard("--help"); found.discard("-h")
print(" ".join(sorted(found)))
'
}

# man_commands: the commands ferry(1) has a section for.
# man_options CMD: the options of CMD's section.
man_index () {
  python3 - "$MAN_PAGE" "$@" <<'PY'
import re, sys
opt = re.compile(r"(?<![\w/:.=-])(--?[A-Za-z][A-Za-z0-9-]*)")
section, cmd, options = None, None, {}
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    line = line.rstrip("\n")
    if line.startswith(".SH"):
        section = line[3:].strip().strip('"')
        cmd = None
    elif section == "COMMANDS" and line.startswith(".IX Subsection"):
        cmd = line.split(None, 2)[2].strip().strip('"')
        options.setdefault(cmd, set())
    elif section == "COMMANDS" and cmd and line.startswith(".IX Item"):
        tag = line.split(None, 2)[2].strip().strip('"')
        if tag.startswith("-"):
            options[cmd].update(opt.findall(tag))
if len(sys.argv) == 2:
    print(" ".join(sorted(options)))
else:
    print(" ".join(sorted(options.get(sys.argv[2], ()))))
PY
}

# in_list WORD LIST: WORD is one of the words of LIST.
in_list () {
  [[ " $2 " == *" $1 "* ]]
}

# missing FROM IN: the words of FROM that are not in IN.
missing () {
  local w out=""
  for w in $1; do in_list "$w" "$2" || out="$out $w"; done
  echo "${out# }"
}

# --- commands -------------------------------------------------------------------
"$FERRY" --help >"$WORK/help" 2>&1 || die "ferry --help failed: $(cat "$WORK/help")"
commands=$(sed -n 's/^  ferry \([a-z][a-z0-9-]*\).*/\1/p' "$WORK/help" | tr '\n' ' ')
commands=${commands% }
[ -n "$commands" ] || die "ferry --help lists no command"
man_cmds=$(man_index)
comp_cmds=$(complete_ferry "$COMPLETION" ferry "" | tr '\n' ' ')
m=$(missing "$commands" "$man_cmds")
if [ -z "$m" ]; then ok "ferry(1) has a section for each command"; else not_ok "ferry(1) has no section for: $m"; fi
m=$(missing "$commands" "$comp_cmds")
if [ -z "$m" ]; then ok "the completion completes each command"; else not_ok "the completion does not complete: $m" "it offers: $comp_cmds"; fi
m=$(missing "$man_cmds" "$commands")
[ -z "$m" ] || not_ok "ferry(1) has sections for commands ferry --help does not list: $m"

# --- each command's options ----------------------------------------------------------
for cmd in $commands; do
  if ! "$FERRY" "$cmd" --help >"$WORK/usage" 2>&1; then
    not_ok "$cmd: ferry $cmd --help failed" "$(cat "$WORK/usage")"
    continue
  fi
  usage=$(options_of_usage <"$WORK/usage")
  man=$(man_index "$cmd")
  comp=$(complete_ferry "$COMPLETION" ferry "$cmd" - | grep -v -x -e --help | tr '\n' ' ')
  comp=${comp% }
  if [ -z "$usage" ]; then
    not_ok "$cmd: no option found in its usage" "$(cat "$WORK/usage")"
    continue
  fi
  m=$(missing "$usage" "$man")
  if [ -z "$m" ]; then
    ok "$cmd: ferry(1) has every option of the usage ($usage)"
  else
    not_ok "$cmd: ferry(1) lacks $m, which ferry $cmd --help lists" "usage: $usage" "ferry(1): $man"
  fi
  m=$(missing "$usage" "$comp")
  if [ -z "$m" ]; then
    ok "$cmd: the completion offers every option of the usage"
  else
    not_ok "$cmd: the completion lacks $m, which ferry $cmd --help lists" "usage: $usage" "completion: $comp"
  fi
  if [ -z "$(missing "$man" "$comp")" ] && [ -z "$(missing "$comp" "$man")" ]; then
    ok "$cmd: ferry(1) and the completion list the same options"
  else
    not_ok "$cmd: ferry(1) and the completion differ" \
      "only in ferry(1): $(missing "$man" "$comp")" "only in the completion: $(missing "$comp" "$man")"
  fi
  # Every documented option is one ferry takes: with no other argument a
  # known option fails later (a missing IMAGE, a missing value), an
  # unknown one at getopt.
  bad=""
  # shellcheck disable=SC2086  # the word lists are split on purpose
  for o in $(printf '%s\n' $man $comp | sort -u); do
    (cd "$WORK" && timeout 20 "$FERRY" "$cmd" "$o" </dev/null >"$WORK/o.out" 2>&1)
    if grep -q -E "unrecognized option|invalid option" "$WORK/o.out"; then
      bad="$bad $o"
    fi
  done
  if [ -z "$bad" ]; then
    ok "$cmd: ferry $cmd accepts every option ferry(1) and the completion list"
  else
    not_ok "$cmd: ferry $cmd does not accept$bad, which ferry(1) or the completion list"
  fi
done

# --- formats --------------------------------------------------------------------------
formats=$(sed -n 's/^formats: *//p' "$WORK/help")
[ -n "$formats" ] || die "ferry --help lists no formats"
for o in -f -O; do
  comp=$(complete_ferry "$COMPLETION" ferry convert "$o" "" | tr '\n' ' ')
  m=$(missing "$formats" "$comp")
  if [ -z "$m" ]; then ok "convert $o <TAB> offers every format ($formats)"; else not_ok "convert $o <TAB> lacks $m" "offers: $comp"; fi
done
m=""
for f in $formats; do
  grep -q -F "\\fB$f\\fR" "$MAN_PAGE" || m="$m $f"
done
if [ -z "$m" ]; then ok "ferry(1) names every format"; else not_ok "ferry(1) does not name the formats$m"; fi

done_testing
