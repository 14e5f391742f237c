#!/usr/bin/env bash
# fault-v2v: a fault at every write, flush and rename of `ferry v2v` of a
# VM with two disks (a qcow2 and a VMDK) to a libvirt folder and to an
# OVA.  The output folder is written hidden beside its name and renamed
# when it is complete (lib/migrate/cold.c, lib/image/target.c):
#
# - killed at any point: the output folder is absent, or complete (the
#   description is there and every disk passes qemu-img check and compares
#   equal to its source; an OVA's manifest digests match its members and
#   its disks compare equal); the next run into the same parent removes
#   what the dead one left, and says so when it gets to its end;
# - failing (EIO at any point, ENOSPC at a write): exit 1, a message that
#   names the output folder and never the hidden one.
#
# `ferry v2v` runs as a job (FAULT_JOBS): a kill leaves the job's working
# folder, which the same command, run again, resumes (and the test then
# runs it once more to its end, judging the output); a failure keeps it for
# a retry, and `ferry job cancel` leaves nothing.
. "$(dirname "$0")/lib.sh"
. "$TESTS_DIR/fault-lib.sh"

mkdir -p s
mkimg qcow2 s/a.qcow2 $((4 * MiB)) cluster_size=65536
fill_pattern qcow2 s/a.qcow2 65536 $((4 * MiB))
mkimg vmdk s/b.vmdk $((3 * MiB))
qio vmdk s/b.vmdk "write -s $RAND 0 512k" "write -P 0x44 2M 64k"
cat >s/vm.vmx <<'EOF'
displayName = "flt"
guestOS = "other-64"
memSize = "512"
scsi0.present = "TRUE"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "a.qcow2"
scsi0:1.present = "TRUE"
scsi0:1.fileName = "b.vmdk"
EOF

# whole_output DIR TO: prints why the output folder DIR of `--to TO` is
# not complete (nothing when it is); fault_each's judge.
whole_output () {
  local dir=$1 to=$2 why
  case $to in
    libvirt)
      [ -f "$dir/flt.xml" ] || echo "$dir/flt.xml is missing"
      why=$(whole_image "$dir/flt-disk1.qcow2" qcow2 s/a.qcow2 qcow2)
      [ -n "$why" ] && echo "disk 1: $why"
      why=$(whole_image "$dir/flt-disk2.qcow2" qcow2 s/b.vmdk vmdk)
      [ -n "$why" ] && echo "disk 2: $why"
      ;;
    ova)
      rm -rf x && mkdir x
      why=$("$PYTHON" - "$dir/flt.ova" x <<'PYEOF' 2>&1
import hashlib, re, sys, tarfile
t = tarfile.open(sys.argv[1])
names = t.getnames()
mf = [n for n in names if n.endswith(".mf")]
if not mf or not any(n.endswith(".ovf") for n in names):
    sys.exit("members: %s" % names)
for line in t.extractfile(mf[0]).read().decode().splitlines():
    m = re.match(r"SHA256\((.*)\)= ([0-9a-f]+)$", line)
    if not m or hashlib.sha256(t.extractfile(m.group(1)).read()).hexdigest() != m.group(2):
        sys.exit("manifest line %r does not match" % line)
t.extractall(sys.argv[2])
PYEOF
      ) || { echo "$dir/flt.ova: $why"; return; }
      why=$(whole_image x/flt-disk1.vmdk vmdk s/a.qcow2 qcow2)
      [ -n "$why" ] && echo "disk 1: $why"
      why=$(whole_image x/flt-disk2.vmdk vmdk s/b.vmdk vmdk)
      [ -n "$why" ] && echo "disk 2: $why"
      ;;
  esac
}

judge_libvirt () { whole_output "$1" libvirt; }
judge_ova () { whole_output "$1" ova; }

export FAULT_JOBS=1
for to in libvirt ova; do
  fault_each "--to $to" out vm judge_$to quiet \
    v2v s/vm.vmx --to $to --no-convert -m 1 --out out/vm
done

done_testing
