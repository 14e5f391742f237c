#!/usr/bin/env python3
"""lib-flags.py: find library messages that name an option of the ferry
command line.  The library (lib/, plugins/) serves programs that have no
command line (a daemon, the nbdkit plugin); it says what is wrong in its
own terms, and the CLI adds the flag that fixes it.

  lib-flags.py CLI-DIR FILE...

The options are ferry's own, read from CLI-DIR's sources: every long
option of a getopt_long table ("network-map") and every letter of a
getopt short-option string ("O", "n", ...).  In each FILE, C string
literals are read as the compiler joins them (adjacent literals, with the
<inttypes.h> macros between them); comments are left out.  A literal is
reported when it holds --NAME for one of the long options, anywhere (a
step's reason or a remedy is as much a message as an error); or -X for one
of the letters, given as a hint gives it (at the start, in parentheses or
quotes, after "with", "use", ...), in an argument of a call that makes a
message (ferry_error, ferry_warn, add_check, ...): elsewhere, and after a
program's name ("rpm -e"), a short option is most often another program's
(qemu -m, dracut -f).
Prints FILE:LINE: the literal, one a line; exits 1 when there is one.
"""
import re
import sys

# Calls whose literal arguments become what a user reads.
SINKS = {
    'ferry_error', 'ferry_error_errno', 'ferry_error_prefix', 'ferry_log',
    'ferry_warn', 'ferry_debug', 'check_report', 'add_check', 'vm_note',
    'guest_step', 'nbdkit_error', 'record_error',
}


def cli_options(cli_dir, files):
    longs, shorts = set(), set()
    for name in files:
        text = open(name, encoding='utf-8', errors='replace').read()
        longs.update(re.findall(r'\{\s*"([a-z][a-z0-9-]*)"\s*,\s*'
                                r'(?:no|required|optional)_argument', text))
        for m in re.finditer(r'getopt(?:_long)?\s*\([^;]*?"([^"]*)"', text):
            shorts.update(c for c in m.group(1) if c.isalpha())
    shorts.discard('h')         # -h is every program's help, no hint
    return longs, shorts


def strip_comments(text):
    """TEXT with comments blanked (newlines kept), literals intact."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i))
            i = j
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(text[i:j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return ''.join(out)


LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
JOIN = re.compile(r'\s*(?:PRI[a-zA-Z0-9]+\s*)?$')


def literal_groups(text):
    """(start offset, joined value) of each run of adjacent literals."""
    groups = []
    for m in LITERAL.finditer(text):
        if text[m.start() - 1:m.start()] == "'":
            continue
        between = text[groups[-1][1]:m.start()] if groups else None
        if between is not None and JOIN.match(between):
            start, _, value = groups[-1]
            macro = '%d' if 'PRI' in between else ''
            groups[-1] = (start, m.end(), value + macro + m.group(1))
        else:
            groups.append((m.start(), m.end(), m.group(1)))
    return [(s, v) for s, _, v in groups]


def enclosing_call(text, pos):
    """The name of the call whose parentheses hold POS, or None."""
    depth = 0
    i = pos - 1
    while i >= 0:
        c = text[i]
        if c == ')':
            depth += 1
        elif c == '(':
            if depth == 0:
                m = re.search(r'([A-Za-z_][A-Za-z0-9_]*)\s*$', text[:i])
                return m.group(1) if m else None
            depth -= 1
        elif c in ';{}' and depth == 0:
            return None
        i -= 1
    return None


def scan(name, longs, shorts):
    text = strip_comments(open(name, encoding='utf-8', errors='replace').read())
    long_re = re.compile(r'--(%s)(?![a-z0-9-])' % '|'.join(
        re.escape(o) for o in sorted(longs, key=len, reverse=True)))
    # A short option as a hint gives it: at the start of the message, in
    # parentheses or quotes, or after "with", "use", "give", "pass", "or";
    # "rpm -e" is rpm's.
    short_re = re.compile(r"(?:^|[('\"]|\b(?:with|use|give|pass|or) )"
                          r"-([%s])(?=$|[\s,:)'\"=])" % ''.join(sorted(shorts)))
    found = []
    for start, value in literal_groups(text):
        hit = long_re.search(value)
        if not hit and enclosing_call(text, start) in SINKS:
            hit = short_re.search(value)
        if hit:
            line = text.count('\n', 0, start) + 1
            found.append('%s:%d: "%s"' % (name, line, value))
    return found


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    import glob
    cli = sorted(glob.glob(sys.argv[1] + '/*.c'))
    longs, shorts = cli_options(sys.argv[1], cli)
    if not longs or not shorts:
        raise SystemExit('lib-flags.py: no options found in %s' % sys.argv[1])
    found = []
    for name in sys.argv[2:]:
        found += scan(name, longs, shorts)
    for f in found:
        print(f)
    sys.exit(1 if found else 0)


if __name__ == '__main__':
    main()
