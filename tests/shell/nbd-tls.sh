#!/usr/bin/env bash
# nbd-tls: TLS with pre-shared keys and with X.509 certificates, both
# ways: ferry as the client of nbdkit's and qemu-nbd's TLS, and ferry
# serve as the server of nbdinfo, qemu-img and ferry.  A wrong key, a
# certificate from another CA, a missing client certificate and a plain
# client of a TLS server each fail with a message that says so; ferry
# serve --tls-certs lets in only clients with a certificate of its CA.  Keys
# and certificates are made here (psktool, certtool) with ECDSA keys,
# which take milliseconds.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nbd-lib.sh"
require qemu-img qemu-io qemu-nbd nbdkit nbdinfo psktool certtool python3

cd "$WORK" || die "cd $WORK"

mkimg qcow2 disk.qcow2 4M
qio qcow2 disk.qcow2 "write -s $RAND 0 1m" "write -P 0x17 3m 64k"

# --- keys and certificates ---------------------------------------------------------
mkdir -p psk bad ca2
psktool -u alice -p psk/keys.psk >/dev/null 2>&1 || die "psktool"
psktool -u alice -p bad/keys.psk >/dev/null 2>&1 || die "psktool"
PSK=$WORK/psk/keys.psk
BADPSK=$WORK/bad/keys.psk

# new_key FILE: an ECDSA private key.
new_key () {
  certtool --generate-privkey --key-type=ecdsa --outfile "$1" >/dev/null 2>&1 ||
    die "certtool --generate-privkey"
}
# new_ca DIR: a CA key and certificate in DIR.
new_ca () {
  new_key "$1/ca-key.pem"
  printf 'cn = ferry test CA %s\nca\ncert_signing_key\nexpiration_days = 2\n' "$1" >"$1/ca.info"
  certtool --generate-self-signed --load-privkey "$1/ca-key.pem" \
    --template "$1/ca.info" --outfile "$1/ca-cert.pem" >/dev/null 2>&1 ||
    die "certtool --generate-self-signed"
}
# new_cert CA_DIR OUT_DIR ROLE: OUT_DIR/ROLE-key.pem and ROLE-cert.pem
# signed by the CA, with the CA's certificate beside them.
new_cert () {
  local ca=$1 dir=$2 role=$3 usage=tls_www_client
  mkdir -p "$dir"
  [ "$role" = server ] && usage=$'tls_www_server\ndns_name = localhost\nip_address = 127.0.0.1'
  new_key "$dir/$role-key.pem"
  printf 'cn = localhost\n%s\nencryption_key\nsigning_key\nexpiration_days = 2\n' "$usage" >"$dir/$role.info"
  certtool --generate-certificate --load-ca-certificate "$ca/ca-cert.pem" \
    --load-ca-privkey "$ca/ca-key.pem" --load-privkey "$dir/$role-key.pem" \
    --template "$dir/$role.info" --outfile "$dir/$role-cert.pem" >/dev/null 2>&1 ||
    die "certtool --generate-certificate"
  cp "$ca/ca-cert.pem" "$dir/"
}
mkdir -p ca
new_ca ca
new_ca ca2
new_cert ca server server
new_cert ca client client
new_cert ca2 client2 client        # a client of another CA
mkdir -p noclient && cp ca/ca-cert.pem noclient/   # trusts the CA, has no certificate
SERVER=$WORK/server
CLIENT=$WORK/client

# expect_tls_refused WHAT: the last ferry run failed over TLS, saying so.
expect_tls_refused () {
  expect_exit 1 "$1: refused"
  expect_stderr "TLS handshake failed" "$1: the message says the TLS handshake failed"
}

# --- ferry as the client: nbdkit -------------------------------------------------------
start_nbdkit kpsk --tls=require --tls-psk="$PSK" file disk.qcow2
sock=$WORK/kpsk.sock
fy compare -f raw "nbds+unix://alice@/?socket=$sock&tls-psk-file=$PSK" -F raw disk.qcow2
expect_exit 0 "PSK: ferry reads nbdkit's TLS export"
fy info --json "nbds+unix://alice@/?socket=$sock&tls-psk-file=$PSK"
check_true "PSK: info says TLS" grep -q '"TLS":true' "$OUT"
fy info "nbds+unix://alice@/?socket=$sock&tls-psk-file=$BADPSK"
expect_tls_refused "PSK: a wrong key"
fy info "nbd+unix:///?socket=$sock"
expect_exit 1 "a plain client of a TLS server: refused"
expect_stderr "does the server require TLS?" "a plain client: the message asks about TLS"

start_nbdkit kx509 --tls=require --tls-certificates="$SERVER" --tls-verify-peer file disk.qcow2
sock=$WORK/kx509.sock
fy compare -f raw "nbds+unix:///?socket=$sock&tls-certificates=$CLIENT" -F raw disk.qcow2
expect_exit 0 "X.509: ferry reads nbdkit's TLS export"
fy info "nbds+unix:///?socket=$sock&tls-certificates=$WORK/client2"
expect_tls_refused "X.509: a client certificate from another CA"
fy info "nbds+unix:///?socket=$sock&tls-certificates=$WORK/noclient"
expect_tls_refused "X.509: no client certificate"

# --- ferry as the client: qemu-nbd, and writing over TLS ----------------------------
cp disk.qcow2 target.qcow2
qio qcow2 target.qcow2 "write -P 0x99 0 4m"
start_qemu_nbd qpsk --object "tls-creds-psk,id=tls0,endpoint=server,dir=$WORK/psk" \
  --tls-creds tls0 -f qcow2 target.qcow2
sock=$WORK/qpsk.sock
fy convert -O raw disk.qcow2 "nbds+unix://alice@/?socket=$sock&tls-psk-file=$PSK"
expect_exit 0 "PSK: ferry writes into qemu-nbd's TLS export"
fy info "nbds+unix://alice@/?socket=$sock&tls-psk-file=$BADPSK"
expect_tls_refused "PSK, qemu-nbd: a wrong key"
stop_server
same_content "PSK: what ferry wrote over TLS" target.qcow2 qcow2 disk.qcow2 qcow2
qemu_clean "PSK: qemu-img check after writing over TLS" target.qcow2

start_qemu_nbd qx509 --object "tls-creds-x509,id=tls0,endpoint=server,dir=$SERVER" \
  --tls-creds tls0 -r -f qcow2 disk.qcow2
sock=$WORK/qx509.sock
fy convert "nbds+unix:///?socket=$sock&tls-certificates=$CLIENT" x509.raw
expect_exit 0 "X.509: ferry reads qemu-nbd's TLS export" &&
  same_content "X.509, qemu-nbd: qemu-img compare" x509.raw raw disk.qcow2 qcow2
fy info "nbds+unix:///?socket=$sock&tls-certificates=$WORK/client2"
expect_tls_refused "X.509, qemu-nbd: a client of another CA"
stop_server

# --- ferry serve as the server --------------------------------------------------------
start_serve spsk --readonly --socket "$WORK/spsk.sock" --tls-psk "$PSK" disk.qcow2 ||
  die "ferry serve --tls-psk: $(cat spsk.log)"
sock=$WORK/spsk.sock
check_true "ferry serve --tls-psk prints an nbds URI" \
  test "$URI" = "nbds+unix:///?socket=$sock"
nbdinfo --size "nbds+unix://alice@/?socket=$sock&tls-psk-file=$PSK" >size.out 2>&1
check_true "PSK: nbdinfo reads ferry serve" grep -q -x 4194304 size.out
nbdinfo --size "nbds+unix://alice@/?socket=$sock&tls-psk-file=$BADPSK" >bad.out 2>&1 &&
  not_ok "PSK: nbdinfo with a wrong key was let in"
nbdinfo --size "nbd+unix:///?socket=$sock" >plain.out 2>&1 &&
  not_ok "PSK: a plain nbdinfo was let in"
qemu-img compare --object "tls-creds-psk,id=tls0,endpoint=client,dir=$WORK/psk,username=alice" \
  --image-opts "driver=nbd,server.type=unix,server.path=$sock,tls-creds=tls0" \
  "driver=qcow2,file.driver=file,file.filename=$WORK/disk.qcow2" >qemu.out 2>&1
check_true "PSK: qemu-img reads ferry serve ($(cat qemu.out))" grep -q identical qemu.out
fy compare -f raw "nbds+unix://alice@/?socket=$sock&tls-psk-file=$BADPSK" disk.qcow2
expect_exit 2 "PSK: ferry with a wrong key against ferry serve"
expect_stderr "TLS handshake failed" "PSK, ferry against ferry: the message says so"
stop_serve "PSK server"

port=$(free_port)
start_serve sx509 --readonly --port "$port" --bind 127.0.0.1 --tls-certs "$SERVER" disk.qcow2 ||
  die "ferry serve --tls-certs: $(cat sx509.log)"
check_true "ferry serve --tls-certs prints an nbds URI" test "$URI" = "nbds://127.0.0.1:$port/"
nbdinfo --size "nbds://localhost:$port/?tls-certificates=$CLIENT" >size.out 2>&1
check_true "X.509: nbdinfo reads ferry serve ($(cat size.out))" grep -q -x 4194304 size.out
qemu-img compare --object "tls-creds-x509,id=tls0,endpoint=client,dir=$CLIENT" \
  --image-opts "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$port,tls-creds=tls0" \
  "driver=qcow2,file.driver=file,file.filename=$WORK/disk.qcow2" >qemu.out 2>&1
check_true "X.509: qemu-img reads ferry serve ($(cat qemu.out))" grep -q identical qemu.out
fy compare "nbds://localhost:$port/?tls-certificates=$CLIENT" disk.qcow2
expect_exit 0 "X.509: ferry reads ferry serve"
fy info "nbds://localhost:$port/?tls-certificates=$WORK/client2"
expect_tls_refused "X.509: ferry trusting another CA against ferry serve"
# The server verifies its clients too, as qemu-nbd does by default: a
# client with no certificate, or one from another CA, is not let in.
fy info "nbds://localhost:$port/?tls-certificates=$WORK/noclient"
expect_tls_refused "X.509: ferry serve refuses a client with no certificate"
nbdinfo --size "nbds://localhost:$port/?tls-certificates=$WORK/noclient" >nocert.out 2>&1 &&
  not_ok "X.509: nbdinfo with no client certificate was let in"
check_true "X.509: nbdinfo with no client certificate is refused ($(head -c 300 nocert.out))" \
  grep -q -i "tls\|handshake\|certificate" nocert.out
stop_serve "X.509 server"

done_testing
