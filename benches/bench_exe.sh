#!/usr/bin/env bash
# Builds the bench target NAME (a helper binary under benches/, e.g. tls_keepalive,
# grpc_target) and prints the path of its executable, for load.sh and instructions.sh.
set -euo pipefail
cargo bench --bench "$1" --no-run --message-format=json 2>/dev/null | python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]==sys.argv[1] and m.get("executable"): print(m["executable"])' "$1"
