#!/usr/bin/env python3
"""warm-writer: rewrite whole chunks of a file (or block device) with random
bytes at a steady pace, as a running VM would, until SIGTERM.

    warm-writer.py FILE CHUNK FIRST COUNT INTERVAL LOG

Each write covers chunk number n (n in [FIRST, FIRST+COUNT), picked at
random) exactly, is made durable with fsync, and only then is logged as a
line "TIME n" (TIME: seconds since the epoch) in LOG; a SIGTERM ends the
writer between two writes, so the last line logged is the last write."""
import os
import random
import signal
import sys
import time

path, chunk, first, count, interval, log = sys.argv[1:7]
chunk, first, count, interval = int(chunk), int(first), int(count), float(interval)
stop = False


def on_term(signum, frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
fd = os.open(path, os.O_RDWR)
with open(log, "a", buffering=1) as out:
    print("READY", file=out)
    while not stop:
        n = random.randrange(first, first + count)
        os.pwrite(fd, os.urandom(chunk), n * chunk)
        os.fsync(fd)
        print("%.6f %d" % (time.time(), n), file=out)
        time.sleep(interval)
os.close(fd)
