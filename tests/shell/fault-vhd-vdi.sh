#!/usr/bin/env bash
# fault-vhd-vdi: a fault at every write, flush and rename of a conversion
# to VHD (dynamic, fixed) and VDI (dynamic, static); fault-lib.sh says what
# each must leave (VHD judged by vhd-vdi-tool.py vhd-check, which qemu-img
# check does not do for vpc, and qemu-img compare).
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/fault-lib.sh"

size=$((6 * MiB))

make_source $size

fault_convert "vhd dynamic" src.qcow2 qcow2 d.vhd vpc -O vhd -o subformat=dynamic
fault_convert "vhd fixed" src.qcow2 qcow2 d.vhd vpc -O vhd -o subformat=fixed
fault_convert "vdi dynamic" src.qcow2 qcow2 d.vdi vdi -O vdi
fault_convert "vdi static" src.qcow2 qcow2 d.vdi vdi -O vdi -o static=on

done_testing
