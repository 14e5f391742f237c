#!/usr/bin/env bash
# vmdk-bad: damaged and hostile VMDK files.  The fuzzer-made afl9.vmdk of
# the corpus (a sparse header with an absurd capacity), and variants of
# good images (made by qemu-img, by ferry, and by vmdk-make.py) with one
# thing broken each: header fields, the grain directory and tables, the
# stream's footer, markers and compressed data, the descriptor's lines and
# the extent files it names (missing, a folder, a FIFO that would block
# forever), and the COWD and seSparse headers and tables.  ferry info and
# ferry convert must exit 1 with a message that names the file and says
# what is wrong, with no crash, no sanitizer report, no huge allocation,
# no hang, and no target left behind.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/vmdk-lib.sh"
require qemu-img qemu-io python3 timeout bzip2

cd "$WORK" || die "cd $WORK"
export FY_TIMEOUT=30
mb=$((1 << 20))

# refuse WHAT IMG NAMED RE [info-may-pass]: ferry info and ferry convert
# (to raw and to qcow2) refuse IMG: exit 1, a message naming NAMED and
# matching the ERE RE.  With info-may-pass, info may read IMG (damage only
# the data path reaches) but must not crash.
refuse () {
  local what=$1 img=$2 named=$3 re=$4 mode=${5:-}
  mkdir -p out && rm -rf out/*
  fy info "$img"
  if [ "$mode" = info-may-pass ] && [ -z "$CRASH" ] && [ "$RC" = 0 ]; then
    ok "$what: ferry info reads the header (the damage is further in)"
  else
    expect_failure "$what: ferry info" "$named"
    expect_stderr_re "$re" "$what: ferry info says what is wrong"
  fi
  fy convert -O raw "$img" out/x.raw
  expect_failure "$what: ferry convert -O raw" "$named"
  expect_stderr_re "$re" "$what: ferry convert says what is wrong"
  fy convert -f vmdk -O qcow2 "$img" out/x.qcow2
  expect_failure "$what: ferry convert -O qcow2" "$named"
  if [ -z "$(ls -A out)" ]; then
    ok "$what: no target and no temporary file left"
  else
    not_ok "$what: left behind: $(ls -A out | tr '\n' ' ')"
  fi
}
# damage NAME FROM PATCH...: copy FROM to NAME and patch it.
damage () {
  local name=$1 from=$2
  shift 2
  cp "$from" "$name" || die "cp $from"
  mk patch "$name" "$@"
}

# --- afl9.vmdk, from qemu's fuzzing ---------------------------------------------------------
bzip2 -dc "$CORPUS/broken/afl9.vmdk.bz2" >afl9.vmdk || die "bunzip2 afl9"
refuse "afl9.vmdk" afl9.vmdk afl9.vmdk 'capacity'
for cmd in "info --json" check compare; do
  case $cmd in
    compare) fy compare afl9.vmdk afl9.vmdk ;;
    *) fy $cmd afl9.vmdk ;;
  esac
  if [ -n "$CRASH" ]; then
    not_ok "afl9.vmdk: ferry $cmd crashed" "$(last_run)"
  elif [ "$RC" = 0 ]; then
    not_ok "afl9.vmdk: ferry $cmd passed it" "$(last_run)"
  elif grep -q afl9.vmdk "$ERR"; then
    ok "afl9.vmdk: ferry $cmd refuses it (exit $RC)"
  else
    not_ok "afl9.vmdk: ferry $cmd: no message naming the file" "$(last_run)"
  fi
done

# --- hosted sparse header ------------------------------------------------------------------
mkimg vmdk good.vmdk 4M
qio vmdk good.vmdk "write -P 0x11 0 128k" "write -s $RAND 1m 1m" "write -P 0x22 3m 64k"
damage cap.vmdk good.vmdk 12 '<Q' 0x4000000000000000
refuse "capacity of 2^62 sectors" cap.vmdk cap.vmdk 'capacity'
damage grain0.vmdk good.vmdk 20 '<Q' 0
refuse "grain size 0" grain0.vmdk grain0.vmdk 'grain size'
damage grain3.vmdk good.vmdk 20 '<Q' 3
refuse "grain size 3 sectors" grain3.vmdk grain3.vmdk 'grain size'
damage grainhuge.vmdk good.vmdk 20 '<Q' 0x40000000
refuse "grain of 512 GiB" grainhuge.vmdk grainhuge.vmdk 'grain size'
damage gtes0.vmdk good.vmdk 44 '<I' 0
refuse "0 entries per grain table" gtes0.vmdk gtes0.vmdk 'entries per grain table'
damage gtes.vmdk good.vmdk 44 '<I' 65536
refuse "65536 entries per grain table" gtes.vmdk gtes.vmdk 'entries per grain table'
damage gdpast.vmdk good.vmdk 56 '<Q' 0x7fffffff
refuse "grain directory past the end" gdpast.vmdk gdpast.vmdk 'grain directory'
damage version.vmdk good.vmdk 4 '<I' 4
refuse "sparse extent version 4" version.vmdk version.vmdk 'version 4'
damage compress.vmdk good.vmdk 77 '<H' 2
refuse "compression algorithm 2" compress.vmdk compress.vmdk 'compression algorithm 2'
damage nl.vmdk good.vmdk 75 B 0x0a
refuse "line-ending check bytes changed" nl.vmdk nl.vmdk 'line-ending|text-mode'
head -c 300 good.vmdk >short.vmdk
refuse "a header cut short" short.vmdk short.vmdk 'too short'

# --- grain directory and tables ---------------------------------------------------------------
cp good.vmdk gt.vmdk && mk gd-entry gt.vmdk 0 0x7ffffff0
refuse "grain table past the end" gt.vmdk gt.vmdk 'grain table 0 .*past the end' info-may-pass
cp good.vmdk gte.vmdk && mk gt-entry gte.vmdk 0 1 0x7ffffff0
refuse "grain past the end" gte.vmdk gte.vmdk 'grain table 0 entry 1 points past the end' info-may-pass

# ferry check finds what reading would trip on, and what it would not.
check_finds () {
  local what=$1 img=$2 re=$3
  fy check "$img"
  if [ -z "$CRASH" ] && [ "$RC" = 2 ] && grep -q -E -- "$re" "$OUT" "$ERR"; then
    ok "$what: ferry check reports it (exit 2)"
  else
    not_ok "$what: ferry check should exit 2 and say /$re/" "$(last_run)"
  fi
}
fy check good.vmdk
expect_exit 0 "ferry check passes the good image"
check_finds "grain past the end" gte.vmdk 'entry 1 points past the end'
cp good.vmdk dup.vmdk && mk gt-entry dup.vmdk 0 1 "$(mk gt-entry good.vmdk 0 0)"
check_finds "two entries share a grain" dup.vmdk 'entry 1: the grain at offset .* overlaps'
cp good.vmdk meta.vmdk && mk gt-entry meta.vmdk 0 0 1
check_finds "a grain over the header" meta.vmdk 'overlaps metadata'
rgt=$(python3 -c 'import struct,sys; f=open(sys.argv[1],"rb"); h=f.read(512); r=struct.unpack_from("<Q",h,48)[0]; f.seek(r*512); print(struct.unpack("<I",f.read(4))[0])' good.vmdk)
damage red.vmdk good.vmdk $((rgt * 512)) '<I' 0x12345
check_finds "a redundant table that differs" red.vmdk 'grain table 0 differs from its redundant copy'

# --- streamOptimized ------------------------------------------------------------------------------
mkimg raw s.raw 4M
qio raw s.raw "write -s $RAND 0 1m" "write -P 0x33 2m 64k"
fy convert -O vmdk -o subformat=streamOptimized s.raw stream.vmdk
expect_exit 0 "a streamOptimized image to damage" || die "no stream"
fsize=$(stat -c %s stream.vmdk)
head -c $((fsize - 1024)) stream.vmdk >cut.vmdk
refuse "a stream cut short (no footer)" cut.vmdk cut.vmdk 'footer'
first=$(mk gt-entry stream.vmdk 0 0)
damage lba.vmdk stream.vmdk $((first * 512)) '<Q' 77
refuse "a grain marker for the wrong sector" lba.vmdk lba.vmdk 'grain marker .* is for sector 77' info-may-pass
damage msize.vmdk stream.vmdk $((first * 512 + 8)) '<I' 0x7fffffff
refuse "a grain marker with a huge size" msize.vmdk msize.vmdk 'grain marker' info-may-pass
damage zlib.vmdk stream.vmdk $((first * 512 + 14)) '<Q' 0x5a5a5a5a5a5a5a5a
refuse "damaged compressed data" zlib.vmdk zlib.vmdk 'not valid zlib|inflates' info-may-pass
check_finds "a grain marker for the wrong sector" lba.vmdk 'is for sector 77'
fy check stream.vmdk
expect_exit 0 "ferry check passes the good stream"

# --- descriptors ------------------------------------------------------------------------------------
mkimg raw flat.bin 1M
desc () {
  { printf '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="custom"\n'
    printf '%s\n' "$@"; } >"$name"
}
name=quote.vmdk desc 'RW 2048 FLAT "flat.bin 0'
refuse "an unterminated quote" quote.vmdk quote.vmdk 'line 6.*closing quote'
name=type.vmdk desc 'RW 2048 FLOPPY "flat.bin" 0'
refuse "an unknown extent type" type.vmdk type.vmdk "line 6.*'FLOPPY'"
name=none.vmdk desc '# no extents'
refuse "no extent lines" none.vmdk none.vmdk 'no extent'
name=zero.vmdk desc 'RW 0 FLAT "flat.bin" 0'
refuse "an extent of 0 sectors" zero.vmdk zero.vmdk 'line 6.*0 sectors'
name=cid.vmdk desc 'RW 2048 FLAT "flat.bin" 0' 'CID=xyz'
refuse "a CID that is not hexadecimal" cid.vmdk cid.vmdk 'CID'
name=garbage.vmdk desc 'RW 2048 FLAT "flat.bin" 0' 'this line means nothing'
refuse "a line that is nothing" garbage.vmdk garbage.vmdk 'line 7'
name=missing.vmdk desc 'RW 2048 FLAT "nosuch.bin" 0'
refuse "a missing extent file" missing.vmdk nosuch.bin 'No such file'
mkdir -p adir
name=dir.vmdk desc 'RW 2048 FLAT "adir" 0'
refuse "an extent that is a folder" dir.vmdk adir 'regular file or a block device'
mkfifo fifo.bin
name=fifo.vmdk desc 'RW 2048 FLAT "fifo.bin" 0'
refuse "an extent that is a FIFO (no hang)" fifo.vmdk fifo.bin 'regular file or a block device'
echo "just text" >text.bin
name=sparsetext.vmdk desc 'RW 2048 SPARSE "text.bin"'
refuse "a SPARSE extent that is a text file" sparsetext.vmdk text.bin 'neither a hosted sparse'
name=sparseoff.vmdk desc 'RW 2048 SPARSE "good.vmdk" 0'
refuse "a SPARSE extent with an offset" sparseoff.vmdk sparseoff.vmdk 'takes no offset'
{ echo "version=1"; head -c $((2 * mb)) /dev/zero | tr '\0' '#'; } >huge.vmdk
fy info -f vmdk huge.vmdk
expect_failure "a 2 MiB 'descriptor' read as vmdk" huge.vmdk
expect_stderr "too large" "a 2 MiB 'descriptor': says it is too large"
fy info huge.vmdk
check_true "a 2 MiB text file is not probed as a descriptor" grep -q '^file format: raw' "$OUT"

# --- names that are URIs ---------------------------------------------------------------------------
# An image is untrusted input: a name it records (an extent, a parent, a
# backing file) or a VMX's disk name is a file, never a URI.  A listener
# on a Unix socket notes every connection; each name below points at it,
# and ferry must refuse without connecting.
# (The listener also ends by itself once this shell is gone.)
python3 -c '
import os, socket, sys, time
parent = os.getppid()
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(16)
s.settimeout(1)
end = time.time() + 600
while time.time() < end and os.getppid() == parent:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    with open(sys.argv[2], "a") as log:
        log.write("connected\n")
    c.close()
' "$WORK/trap.sock" "$WORK/trap.log" </dev/null >/dev/null 2>&1 &
at_exit "kill $!"
for ((i = 0; i < 100; i++)); do [ -S "$WORK/trap.sock" ] && break; sleep 0.05; done
[ -S "$WORK/trap.sock" ] || die "no listener on trap.sock"
trap_uri="nbd+unix:///?socket=$WORK/trap.sock"
# no_connection WHAT: nothing has connected to the listener.
no_connection () {
  if [ -s "$WORK/trap.log" ]; then
    not_ok "$1: ferry connected to the socket the image names" "$(last_run)"
    : >"$WORK/trap.log"
  else
    ok "$1: ferry did not connect"
  fi
}
name=uri.vmdk desc "RW 2048 FLAT \"$trap_uri\" 0"
refuse "a FLAT extent that is an NBD URI" uri.vmdk uri.vmdk 'line 6: the extent file .* is a URI'
no_connection "a FLAT extent that is an NBD URI"
fy convert -n -O vmdk good.vmdk uri.vmdk
expect_failure "a FLAT extent that is an NBD URI, written with -n" uri.vmdk
no_connection "a FLAT extent that is an NBD URI, written with -n"
name=urisparse.vmdk desc "RW 2048 SPARSE \"$trap_uri\""
refuse "a SPARSE extent that is an NBD URI" urisparse.vmdk urisparse.vmdk 'is a URI'
no_connection "a SPARSE extent that is an NBD URI"
name=hint.vmdk desc "RW 2048 SPARSE \"good.vmdk\"" "parentFileNameHint=\"$trap_uri\""
refuse "a parentFileNameHint that is an NBD URI" hint.vmdk hint.vmdk "parent '.*' is a URI"
no_connection "a parentFileNameHint that is an NBD URI"
qemu-img create -q -f qcow2 -u -b "$trap_uri" -F raw uri.qcow2 4M ||
  die "qemu-img create uri.qcow2"
: >"$WORK/trap.log"
refuse "a qcow2 backing file that is an NBD URI" uri.qcow2 uri.qcow2 "backing file '.*' is a URI"
no_connection "a qcow2 backing file that is an NBD URI"
mkdir -p out
fy convert -O qcow2 -B "$trap_uri" -F raw good.vmdk out/b.qcow2
expect_failure "convert -B with an NBD URI" "$trap_uri"
no_connection "convert -B with an NBD URI"
# A VMX beside the disks, read from its own folder, names the socket.
mkdir -p vm
printf 'displayName = "u"\nguestOS = "other-64"\nmemSize = "512"\nscsi0.present = "TRUE"\nscsi0:0.present = "TRUE"\nscsi0:0.fileName = "%s"\n' \
  "$trap_uri" >vm/u.vmx
cd vm || die "cd vm"
fy v2v u.vmx --to libvirt --out out --dry-run
no_connection "a VMX disk that is an NBD URI, read from its folder"
fy v2v u.vmx --to libvirt --out out
cd "$WORK" || die "cd $WORK"
if [ "$RC" = 1 ] && [ -z "$CRASH" ] && [ ! -e vm/out ]; then
  ok "a VMX disk that is an NBD URI: v2v refuses it"
else
  not_ok "a VMX disk that is an NBD URI: v2v should refuse it, writing nothing" "$(last_run)"
fi
no_connection "a VMX disk that is an NBD URI: v2v"

# --- COWD and seSparse -------------------------------------------------------------------------------
mkimg raw d.raw 8M
qio raw d.raw "write -s $RAND 0 1m" "write -P 0x44 5m 8k"
mk cowd cowd.vmdk d.raw 1
mk sesparse se.vmdk d.raw
damage cowd-gd.vmdk cowd.vmdk 24 '<I' 1
refuse "COWD: too few grain directory entries" cowd-gd.vmdk cowd-gd.vmdk 'grain directory entries'
damage cowd-grain.vmdk cowd.vmdk 16 '<I' 0
refuse "COWD: grain size 0" cowd-grain.vmdk cowd-grain.vmdk 'grain size'
damage cowd-ver.vmdk cowd.vmdk 4 '<I' 2
refuse "COWD: version 2" cowd-ver.vmdk cowd-ver.vmdk 'COWD version 2'
damage cowd-gd2.vmdk cowd.vmdk 20 '<I' 0x7fffffff
refuse "COWD: grain directory past the end" cowd-gd2.vmdk cowd-gd2.vmdk 'grain directory'
damage se-ver.vmdk se.vmdk 8 '<Q' 0x300000001
refuse "seSparse: an unknown version" se-ver.vmdk se-ver.vmdk 'seSparse version'
damage se-journal.vmdk se.vmdk $((512 + 24)) '<Q' 1
refuse "seSparse: a journal to replay" se-journal.vmdk se-journal.vmdk 'journal'
damage se-gd.vmdk se.vmdk 1024 '<Q' 0x2000000000000000
refuse "seSparse: a directory entry that is no table" se-gd.vmdk se-gd.vmdk 'grain directory entry 0'
damage se-gte.vmdk se.vmdk $(((2 + 1) * 512)) '<Q' 0x4000000000000000
refuse "seSparse: a grain state that does not exist" se-gte.vmdk se-gte.vmdk 'no grain state' info-may-pass

done_testing
