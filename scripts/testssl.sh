#!/usr/bin/env bash
# Runs testssl.sh (Debian package `testssl.sh`) against an https listener of a
# freshly started edgelb with its default TLS policy, on loopback.
#
#   scripts/testssl.sh [tls13-tls12|tls13-only]   (EDGELB=target/release/edgelb)
# Prints testssl's findings; the summary is in docs/security.md.
set -euo pipefail
POLICY=${1:-tls13-tls12}
EDGELB=${EDGELB:-target/release/edgelb}
command -v testssl >/dev/null || { echo "missing testssl (apt-get install -y testssl.sh)" >&2; exit 2; }
[ -x "$EDGELB" ] || { echo "no edgelb binary at $EDGELB (cargo build --release)" >&2; exit 2; }
W=$(mktemp -d /tmp/edgelb-testssl.XXXX)
cleanup() { [ -f "$W/pid" ] && kill "$(cat "$W/pid")" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
openssl ecparam -name prime256v1 -genkey -noout -out "$W/key.pem" 2>/dev/null
openssl req -x509 -new -key "$W/key.pem" -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost" -out "$W/cert.pem" 2>/dev/null
cat > "$W/edgelb.toml" <<C
[admin]
bind = "127.0.0.1:19950"
[[listeners]]
name = "https"
protocol = "https"
bind = "127.0.0.1:19443"
tls_policy = "$POLICY"
certificates = [ { cert = "$W/cert.pem", key = "$W/key.pem" } ]
default_action = { fixed_response = { status = 200, content_type = "text/plain", body = "ok" } }
C
"$EDGELB" run --config "$W/edgelb.toml" > "$W/edgelb.log" 2>&1 & echo $! > "$W/pid"
for _ in $(seq 100); do curl -fsk -o /dev/null https://127.0.0.1:19443/ && break; sleep 0.1; done
testssl --quiet --color 0 --warnings batch --sneaky --ip one \
  --protocols --std --server-defaults --headers --vulnerable --fs \
  https://127.0.0.1:19443/ | tee "$W/report.txt"
