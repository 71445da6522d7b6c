#!/usr/bin/env bash
# Makes a development CA and certificates for local testing (never for a real site).
#
#   certs/make-dev-certs.sh [DIR=certs/dev] [NAME ...]
#
# Writes DIR/ca.pem (trust it in your client: curl --cacert DIR/ca.pem), and for each
# NAME (default: localhost) DIR/NAME.pem (leaf + CA chain) and DIR/NAME.key, with ECDSA
# P-256 keys, subjectAltNames NAME (and 127.0.0.1 / ::1 for localhost), valid 825 days.
# Needs: openssl. Private keys stay in DIR, which .gitignore keeps out of the repository.
set -euo pipefail
DIR=${1:-certs/dev}; shift || true
NAMES=("$@"); [ ${#NAMES[@]} -gt 0 ] || NAMES=(localhost)
mkdir -p "$DIR"; chmod 700 "$DIR"
if [ ! -f "$DIR/ca.key" ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$DIR/ca.key"
  openssl req -x509 -new -key "$DIR/ca.key" -sha256 -days 3650 -subj "/CN=edgelb development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$DIR/ca.pem"
fi
for name in "${NAMES[@]}"; do
  san="DNS:$name"
  [ "$name" = localhost ] && san="$san,IP:127.0.0.1,IP:::1"
  openssl ecparam -name prime256v1 -genkey -noout -out "$DIR/$name.key"
  openssl req -new -key "$DIR/$name.key" -subj "/CN=$name" -out "$DIR/$name.csr"
  openssl x509 -req -in "$DIR/$name.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial -days 825 -sha256 \
    -extfile <(printf "subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" "$san") -out "$DIR/$name.crt" 2>/dev/null
  cat "$DIR/$name.crt" "$DIR/ca.pem" > "$DIR/$name.pem"
  rm -f "$DIR/$name.csr" "$DIR/$name.crt"
  chmod 600 "$DIR/$name.key"
  echo "wrote $DIR/$name.pem and $DIR/$name.key"
done
