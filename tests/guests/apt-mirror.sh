#!/usr/bin/env bash
# apt-mirror.sh [SUITE]: print the URI of the Debian archive this machine's
# own apt configuration uses for SUITE (default: the host's codename) with
# the component "main", so debootstrap fetches from wherever apt does and
# no archive host is written into the project.
#
# Reads /etc/apt/sources.list and /etc/apt/sources.list.d/*.list (one-line
# "deb [options] URI SUITE COMPONENT..." entries) and
# /etc/apt/sources.list.d/*.sources (deb822 paragraphs with Types, URIs,
# Suites, Components, and Enabled).  The first enabled "deb" entry naming
# SUITE and main wins.  Exit 1, with a message on stderr, when none does.
# APT_ETC overrides /etc/apt (for tests of this script).
set -euo pipefail

etc=${APT_ETC:-/etc/apt}
suite=${1:-}
if [ -z "$suite" ]; then
  # shellcheck disable=SC1091
  suite=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
fi
[ -n "$suite" ] || { echo "apt-mirror.sh: no suite given and none in /etc/os-release" >&2; exit 1; }

files=()
[ -f "$etc/sources.list" ] && files+=("$etc/sources.list")
for f in "$etc"/sources.list.d/*.list "$etc"/sources.list.d/*.sources; do
  [ -f "$f" ] && files+=("$f")
done

for f in "${files[@]+"${files[@]}"}"; do
  case $f in
    *.sources)
      # deb822: paragraphs separated by blank lines; fields may continue on
      # indented lines; "#" starts a comment line.
      uri=$(awk -v suite="$suite" '
        function flush() {
          if (types ~ /(^| )deb( |$)/ && enabled != "no" &&
              (" " suites " ") ~ (" " suite " ") &&
              (" " comps " ") ~ / main /) {
            split(uris, u, " "); print u[1]; found = 1; exit
          }
          types = uris = suites = comps = ""; enabled = "yes"; field = ""
        }
        BEGIN { enabled = "yes" }
        /^#/ { next }
        /^[ \t]*$/ { flush(); next }
        /^[ \t]/ {
          v = $0; sub(/^[ \t]+/, "", v)
          if (field == "types") types = types " " v
          else if (field == "uris") uris = uris " " v
          else if (field == "suites") suites = suites " " v
          else if (field == "components") comps = comps " " v
          next
        }
        {
          key = tolower($0); sub(/:.*/, "", key)
          v = $0; sub(/^[^:]*:[ \t]*/, "", v)
          field = key
          if (key == "types") types = v
          else if (key == "uris") uris = v
          else if (key == "suites") suites = v
          else if (key == "components") comps = v
          else if (key == "enabled") enabled = tolower(v)
        }
        END { if (!found) flush() }
      ' "$f")
      ;;
    *)
      uri=$(awk -v suite="$suite" '
        /^[ \t]*#/ { next }
        $1 == "deb" {
          i = 2
          if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
          if ($(i + 1) != suite) next
          for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i; exit }
        }
      ' "$f")
      ;;
  esac
  if [ -n "$uri" ]; then
    echo "${uri%/}"
    exit 0
  fi
done
echo "apt-mirror.sh: no enabled 'deb' entry for suite $suite with component main in $etc/sources.list or $etc/sources.list.d/" >&2
exit 1
