#!/usr/bin/env python3
"""qmp-call.py: one QMP command to a running QEMU, a client that is not
ferry's (a socket and json), for the tests that drive test VMs.

  qmp-call.py SOCKET COMMAND [ARGUMENTS-JSON]
        connect to the QMP Unix socket SOCKET, negotiate, run COMMAND with
        the arguments (a JSON object) and print its "return" as JSON on
        one line; events that come meanwhile are passed over.  An "error"
        reply is printed on stderr (class: desc) with exit status 1; no
        answer within 30 s, exit status 2.
"""
import json
import socket
import sys

TIMEOUT_S = 30


# Read replies from F until one that is not an event; return it.
def reply(f):
    while True:
        line = f.readline()
        if not line:
            raise EOFError("QEMU closed the QMP connection")
        msg = json.loads(line)
        if "event" not in msg:
            return msg


# Send COMMAND with ARGS over the socket S (through file F); its reply.
def call(s, f, command, args=None):
    msg = {"execute": command}
    if args is not None:
        msg["arguments"] = args
    s.sendall(json.dumps(msg).encode() + b"\n")
    return reply(f)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: qmp-call.py SOCKET COMMAND [ARGUMENTS-JSON]")
    args = json.loads(sys.argv[3]) if len(sys.argv) == 4 else None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT_S)
    try:
        s.connect(sys.argv[1])
        f = s.makefile("r")
        reply(f)  # the greeting
        r = call(s, f, "qmp_capabilities")
        if "error" in r:
            sys.exit("qmp_capabilities: %s" % r["error"])
        r = call(s, f, sys.argv[2], args)
    except socket.timeout:
        print("qmp-call.py: %s: no answer within %d s" % (sys.argv[2], TIMEOUT_S),
              file=sys.stderr)
        sys.exit(2)
    except (OSError, EOFError, ValueError) as e:
        print("qmp-call.py: %s: %s: %s" % (sys.argv[1], sys.argv[2], e), file=sys.stderr)
        sys.exit(2)
    if "error" in r:
        print("%s: %s" % (r["error"].get("class"), r["error"].get("desc")),
              file=sys.stderr)
        sys.exit(1)
    print(json.dumps(r.get("return")))


main()
