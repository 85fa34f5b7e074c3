#!/usr/bin/env bash
# Makes throw-away certificates for the TLS tests in DIR with openssl:
#   ca.crt/key              a test CA
#   server.crt/key          signed by it, for localhost and 127.0.0.1
#   client.crt/key          signed by it, for client authentication
#   rogue-ca.crt/key        an unrelated CA
#   rogue-client.crt/key    a client certificate signed by the rogue CA
#   make_certs.sh DIR
set -euo pipefail
d=$1
mkdir -p "$d"
cd "$d"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }
ca() {  # NAME CN
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -days 2 -subj "/CN=$2" -out "$1.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() {  # NAME CN CA EXTENSIONS
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "mcdrop test CA"
ca rogue-ca "some other CA"
leaf server localhost ca "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
leaf client "mcdrop test client" ca "extendedKeyUsage=clientAuth"
leaf rogue-client "mcdrop test client" rogue-ca "extendedKeyUsage=clientAuth"
