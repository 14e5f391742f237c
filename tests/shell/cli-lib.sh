# cli-lib.sh: driving ferry's bash completion, for install.sh and
# cli-docs.sh.  Source it after lib.sh.

# complete_ferry FILE WORD...: what the completion in FILE offers for the
# command line WORD... (the first is "ferry"; the cursor is at the end of
# the last, which may be ""), one candidate a line, sorted.  It runs in a
# fresh bash as bash itself calls a completion function: COMP_WORDS,
# COMP_CWORD, COMP_LINE and COMP_POINT set, and the function named by
# `complete -p ferry` called with the command, the word and the word
# before it.
complete_ferry () {
  local file=$1
  shift
  bash -c '
    . "$1" || exit 1
    shift
    spec=$(complete -p ferry 2>/dev/null) || { echo "no completion for ferry" >&2; exit 1; }
    fn=${spec#*-F }
    fn=${fn%% *}
    COMP_WORDS=("$@")
    COMP_CWORD=$(($# - 1))
    COMP_LINE="$*"
    COMP_POINT=${#COMP_LINE}
    "$fn" ferry "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    printf "%s\n" "${COMPREPLY[@]}"
  ' complete_ferry "$file" "$@" | sed '/^$/d' | LC_ALL=C sort
}
