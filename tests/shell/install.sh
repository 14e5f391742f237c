#!/usr/bin/env bash
# install.sh: `meson install` of this build into a temporary DESTDIR, and
# the installed tree judged by the peers that will use it:
#
#   - exactly four files: ferry, nbdkit-ferry-plugin.so, ferry.1 and the
#     bash completion;
#   - the installed ferry reports the project's version, and its info and
#     convert are judged by qemu-img (info, compare, check);
#   - the plugin sits in nbdkit's own plugindir (nbdkit --dump-config), is
#     the "ferry" plugin to nbdkit (so `nbdkit ferry IMAGE` finds it once
#     installed for real), serves an image that nbdcopy copies and
#     qemu-img finds equal, and is where the installed ferry serve looks;
#   - man finds ferry(1) under the installed man folder and renders it
#     without a warning (man --warnings, groff -ww);
#   - bash-completion's own loader finds the completion under the
#     installed data folder, and it completes `ferry con<TAB>`.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
require meson nbdkit nbdcopy qemu-img man groff python3
[ -n "${BUILDDIR:-}" ] || die "BUILDDIR is not set (run it with meson test)"
BASH_COMPLETION=/usr/share/bash-completion/bash_completion
[ -f "$BASH_COMPLETION" ] || die "no $BASH_COMPLETION (scripts/install-deps installs bash-completion)"

ROOT=$WORK/root
if meson install -C "$BUILDDIR" --no-rebuild --destdir "$ROOT" >"$WORK/install.log" 2>&1; then
  ok "meson install --destdir"
else
  not_ok "meson install --destdir failed" "$(tail -n 30 "$WORK/install.log")"
  done_testing
fi

# The build's directories (meson's options) and the project's version.
meson introspect "$BUILDDIR" --buildoptions --projectinfo >"$WORK/intro.json" 2>&1 ||
  die "meson introspect: $(cat "$WORK/intro.json")"
opt () {
  python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
if sys.argv[2] == "version":
    print(j["projectinfo"]["version"])
else:
    print(next(o["value"] for o in j["buildoptions"] if o["name"] == sys.argv[2]))
' "$WORK/intro.json" "$1"
}
prefix=$(opt prefix)
bindir=$prefix/$(opt bindir)
mandir=$prefix/$(opt mandir)
datadir=$prefix/$(opt datadir)
version=$(opt version)
plugindir=$(opt nbdkit_plugindir)
nbdkit_plugindir=$(nbdkit --dump-config | sed -n 's/^plugindir=//p')
[ -n "$plugindir" ] || plugindir=$nbdkit_plugindir
case $plugindir in /*) ;; *) plugindir=$prefix/$plugindir ;; esac
if [ -z "$prefix" ] || [ -z "$version" ] || [ -z "$nbdkit_plugindir" ]; then
  die "could not read the build's options or nbdkit's plugindir"
fi
plugin=$ROOT$plugindir/nbdkit-ferry-plugin.so
completion=$ROOT$datadir/bash-completion/completions/ferry

# --- what was installed ------------------------------------------------------
got=$(cd "$ROOT" && find . ! -type d | sed 's|^\.||' | LC_ALL=C sort)
want=$(printf '%s\n' "$bindir/ferry" "$plugindir/nbdkit-ferry-plugin.so" \
         "$mandir/man1/ferry.1" "$datadir/bash-completion/completions/ferry" |
       sed 's|//*|/|g' | LC_ALL=C sort)
if [ "$got" = "$want" ]; then
  ok "four files installed: ferry, the plugin, the man page, the completion"
else
  not_ok "installed files differ" "installed:" "$got" "expected:" "$want"
fi

# --- ferry --------------------------------------------------------------------
installed_ferry=$ROOT$bindir/ferry
if [ -x "$installed_ferry" ]; then
  # shellcheck disable=SC2034  # lib.sh's fy and convert_and_judge run $FERRY
  FERRY=$installed_ferry
  fy --version
  if [ "$RC" = 0 ] && [ "$(cat "$OUT")" = "ferry $version" ]; then
    ok "the installed ferry is version $version"
  else
    not_ok "ferry --version does not say ferry $version" "$(last_run)"
  fi

  mkimg qcow2 "$WORK/src.qcow2" 4M
  qio qcow2 "$WORK/src.qcow2" "write -s $RAND 0 1M" "write -P 0x5a 3M 64k"
  fy info --json "$WORK/src.qcow2"
  want_size=$(qinfo "$WORK/src.qcow2" qcow2 virtual-size)
  got_size=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["format"], j["virtual-size"])' "$OUT" 2>/dev/null)
  if [ "$RC" = 0 ] && [ "$got_size" = "qcow2 $want_size" ]; then
    ok "installed ferry info: qcow2, $want_size bytes, as qemu-img info says"
  else
    not_ok "installed ferry info disagrees with qemu-img info (qcow2 $want_size)" "$(last_run)"
  fi
  convert_and_judge "installed ferry convert qcow2 -> raw" \
    "$WORK/src.qcow2" qcow2 "$WORK/out.raw" raw
  convert_and_judge "installed ferry convert raw -> qcow2" \
    "$WORK/out.raw" raw "$WORK/out.qcow2" qcow2
else
  not_ok "no executable ferry at $installed_ferry"
fi

# --- the nbdkit plugin ------------------------------------------------------------
if [ -f "$plugin" ] && [ "$plugindir" = "$nbdkit_plugindir" ]; then
  ok "the plugin is in nbdkit's plugindir ($nbdkit_plugindir) under DESTDIR"
else
  not_ok "the plugin is not at $plugin, in nbdkit's plugindir $nbdkit_plugindir"
fi
if nbdkit --dump-plugin "$plugin" >"$WORK/dump" 2>&1 && grep -q '^name=ferry$' "$WORK/dump"; then
  ok "nbdkit loads the installed plugin as \"ferry\" (nbdkit ferry IMAGE)"
else
  not_ok "nbdkit --dump-plugin $plugin" "$(cat "$WORK/dump")"
fi
rm -f "$WORK/served.raw"
if timeout 60 nbdkit -r -U - --run "nbdcopy \"\$uri\" '$WORK/served.raw'" \
     "$plugin" "$WORK/src.qcow2" readonly=true >"$WORK/serve.log" 2>&1; then
  same_content "nbdkit with the installed plugin serves the image (nbdcopy, qemu-img compare)" \
    "$WORK/src.qcow2" qcow2 "$WORK/served.raw" raw
else
  not_ok "nbdkit with the installed plugin" "$(cat "$WORK/serve.log")"
fi
if grep -a -q -F "$plugindir/nbdkit-ferry-plugin.so" "$installed_ferry"; then
  ok "the installed ferry serve looks for the plugin where it was installed"
else
  not_ok "the installed ferry does not name $plugindir/nbdkit-ferry-plugin.so"
fi

# --- the man page --------------------------------------------------------------------
found=$(MANPATH='' man -M "$ROOT$mandir" -w ferry 2>&1)
if [ "$found" = "$ROOT$mandir/man1/ferry.1" ]; then
  ok "man -M finds ferry(1) in the installed man folder"
else
  not_ok "man -M $ROOT$mandir -w ferry: '$found'"
fi
if LC_ALL=C MANWIDTH=80 man --warnings -l "$ROOT$mandir/man1/ferry.1" \
     >"$WORK/man.txt" 2>"$WORK/man.err" && [ ! -s "$WORK/man.err" ] &&
   grep -q '^NAME' "$WORK/man.txt" && grep -q '^EXIT STATUS' "$WORK/man.txt"; then
  ok "man -l renders ferry(1) without warnings"
else
  not_ok "man --warnings -l ferry.1" "$(cat "$WORK/man.err")" "$(head -n 5 "$WORK/man.txt")"
fi
if groff -ww -z -man "$ROOT$mandir/man1/ferry.1" >"$WORK/groff.err" 2>&1 && [ ! -s "$WORK/groff.err" ]; then
  ok "groff -ww finds nothing to warn about"
else
  not_ok "groff -ww -z -man ferry.1" "$(cat "$WORK/groff.err")"
fi

# --- bash completion ---------------------------------------------------------------------
# bash-completion's loader, looking in the installed data folder first (and
# not in this user's own completions).
loaded=$(HOME=$WORK XDG_DATA_HOME=$WORK/none XDG_DATA_DIRS=$ROOT$datadir bash -c '
  . "$1" >/dev/null 2>&1
  __load_completion ferry && complete -p ferry' load "$BASH_COMPLETION" 2>&1)
if [ "$loaded" = "complete -F _ferry ferry" ]; then
  ok "bash-completion's loader finds the installed completion"
else
  not_ok "bash-completion's loader does not find it in $ROOT$datadir" "$loaded"
fi
got=$(complete_ferry "$completion" ferry con 2>&1 | tr '\n' ' ')
if [ "$got" = "convert convert-guest " ]; then
  ok "ferry con<TAB> completes to convert and convert-guest"
else
  not_ok "ferry con<TAB>: '$got'"
fi

done_testing
