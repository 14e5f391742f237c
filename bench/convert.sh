#!/usr/bin/env bash
# bench/convert.sh [BUILD]: ferry convert against its peers, on the same
# inputs in the same run, as ratios of wall time (median of RUNS runs).
#
# Inputs, made once and kept in BENCH_DIR (default /var/tmp/ferry-bench):
#   random.raw   4 GiB sparse raw, 2 GiB of random data in scattered 1 MiB
#                chunks (half of the 1 MiB slots, chosen with a fixed seed)
#   random.qcow2 the same, converted by qemu-img (the qcow2 -> raw input)
#   tar.raw      1 GiB raw whose first 512 MiB are a tar of /usr
#                (compressible, like a real disk)
#
# Cases (ferry vs peer):
#   raw -> qcow2    qemu-img convert -O qcow2
#   qcow2 -> raw    qemu-img convert -O raw
#   raw -> raw      cp --sparse=always
#   -c qcow2 (tar)  qemu-img convert -c -O qcow2
#
# ferry flushes its target before the rename; qemu-img convert (whose
# target cache mode is "unsafe" by default) and cp do not, and leave the
# data in the page cache.  So each peer run is followed by a timed
# `sync FILE`, and the table gives both ratios: against the peer as users
# run it, and against the peer plus that sync (the same durability as
# ferry's).
#
# Each input is read once before its case so that every run starts with it
# in the page cache (24 GiB of memory holds them all); outputs are removed
# between runs.  The table shows median seconds, the ratios ferry/peer,
# output sizes for -c, and ferry's peak RSS (GNU time's %M).
#
# Environment: BENCH_DIR, RUNS (3), THREADS (ferry -m; default ferry's own).
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_setup qemu-img
make_random_inputs
make_tar_input

bench_case "raw -> qcow2" random.raw r2q.qcow2 "-O qcow2" qemu-img convert -O qcow2
bench_case "qcow2 -> raw" random.qcow2 q2r.raw "-O raw" qemu-img convert -O raw
bench_case "raw -> raw" random.raw r2r.raw "-O raw" cp --sparse=always
bench_case "-c qcow2 (tar)" tar.raw c.qcow2 "-c -O qcow2" qemu-img convert -c -O qcow2
# Like for like with the peers' defaults, which do not flush: ferry's
# -t unsafe leaves its target unflushed too (compare the "ratio" column).
bench_case "raw->qcow2 -t u" random.raw r2q.qcow2 "-t unsafe -O qcow2" qemu-img convert -O qcow2
bench_case "qcow2->raw -t u" random.qcow2 q2r.raw "-t unsafe -O raw" qemu-img convert -O raw
bench_case "raw->raw -t u" random.raw r2r.raw "-t unsafe -O raw" cp --sparse=always

print_rows "bench/convert.sh"
