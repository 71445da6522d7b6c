#!/usr/bin/env bash
# User-space instructions per proxied request, by valgrind's callgrind: two runs of
# edgelb (N1 and N2 requests from one connection), and the difference divided by
# N2 - N1 so start-up, TLS handshake and shutdown cancel out. Repeatable to a few
# instructions whatever else the machine does: the measure for small changes that
# requests/s on a shared host cannot resolve.
#
#   benches/instructions.sh [h1|h2] [N1=1000] [N2=6000]
#   h1: HTTP/1.1 keep-alive, plain (h2load --h1 -c1); h2: HTTP/2 over TLS, h2load -c1 -m10;
#   h2t: HTTP/2 prior knowledge (h2load -c1 -m10) to an http2 group's h2c target (SPEC §7);
#   grpc: gRPC unary calls (h2load -c1 -m10) to a grpc group's target (benches/grpc_target.rs)
#   EDGELB=target/release/edgelb (default); FAST_PATH=off sets [global] http1_fast_path = false;
#   CG_OUT=file keeps the N2 run's callgrind profile (callgrind_annotate --inclusive=yes file)
# Needs: apt-get install -y valgrind nginx-light nghttp2-client openssl
set -euo pipefail
PROTO=${1:-h1}; N1=${2:-1000}; N2=${3:-6000}; EDGELB=${EDGELB:-target/release/edgelb}
W=$(mktemp -d /tmp/instr.XXXX); chmod 755 $W
cleanup() { for f in $W/*.pid; do [ -f $f ] && kill $(cat $f) 2>/dev/null || true; done; sleep 0.3; rm -rf $W; }
trap cleanup EXIT
head -c 1024 /dev/zero | tr '\0' x > $W/body.txt
openssl ecparam -name prime256v1 -genkey -noout -out $W/key.pem 2>/dev/null
openssl req -x509 -new -key $W/key.pem -days 2 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" -out $W/cert.pem 2>/dev/null
cat > $W/targets.conf <<C
worker_processes 1; pid $W/targets.pid; error_log $W/targets.err; daemon on;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:19071; root $W; location / { try_files /body.txt =404; } }
  server { listen 127.0.0.1:19072 http2; root $W; location / { try_files /body.txt =404; } } }
C
cat > $W/edgelb.toml <<C
[global]
worker_threads = 1
http1_fast_path = $([ "${FAST_PATH:-on}" = off ] && echo false || echo true)
[[listeners]]
name = "plain"
protocol = "http"
bind = "127.0.0.1:18071"
default_action = { forward = "tg" }
[[listeners]]
name = "tls"
protocol = "https"
bind = "127.0.0.1:18072"
certificates = [ { cert = "$W/cert.pem", key = "$W/key.pem" } ]
default_action = { forward = "tg" }
[[listeners]]
name = "h2t"
protocol = "http"
bind = "127.0.0.1:18073"
default_action = { forward = "tg2" }
[[target_groups]]
name = "tg"
protocol = "http"
targets = [ { address = "127.0.0.1:19071" } ]
[[listeners]]
name = "grpc"
protocol = "http"
bind = "127.0.0.1:18074"
default_action = { forward = "tg3" }
[[target_groups]]
name = "tg3"
protocol = "http"
protocol_version = "grpc"
targets = [ { address = "127.0.0.1:19073" } ]
health_check = { protocol = "tcp" }
[[target_groups]]
name = "tg2"
protocol = "http"
protocol_version = "http2"
targets = [ { address = "127.0.0.1:19072" } ]
C
nginx -c $W/targets.conf
if [ "$PROTO" = grpc ]; then
  GRPC_TARGET=$("$(dirname "$0")/bench_exe.sh" grpc_target)
  "$GRPC_TARGET" 19073 & echo $! > $W/grpc_target.pid
  printf '\x00\x00\x00\x00\x07\x0a\x05hello' > $W/grpc_request.bin
fi
# Instructions of one edgelb run serving $1 requests, start to exit.
run() {
  valgrind --tool=callgrind --callgrind-out-file=$W/cg.out $EDGELB run --config $W/edgelb.toml \
    > $W/edgelb.log 2>&1 & local vg=$!
  local i; for i in $(seq 1 300); do
    (exec 3<>/dev/tcp/127.0.0.1/18072) 2>/dev/null && break; sleep 0.1; done
  if [ "$PROTO" = h2 ]; then h2load -n "$1" -c1 -m10 https://127.0.0.1:18072/ > $W/load.txt
  elif [ "$PROTO" = h2t ]; then h2load -n "$1" -c1 -m10 http://127.0.0.1:18073/ > $W/load.txt
  elif [ "$PROTO" = grpc ]; then h2load -n "$1" -c1 -m10 -d $W/grpc_request.bin -H 'content-type: application/grpc' \
    -H 'te: trailers' http://127.0.0.1:18074/test.Echo/Unary > $W/load.txt
  else h2load --h1 -n "$1" -c1 http://127.0.0.1:18071/ > $W/load.txt; fi
  grep -q "$1 succeeded" $W/load.txt || { cat $W/load.txt >&2; exit 1; }
  kill -TERM $vg; wait $vg || true
  awk '/summary:|totals:/{print $2; exit}' $W/cg.out
}
a=$(run "$N1"); b=$(run "$N2")
[ -n "${CG_OUT:-}" ] && cp $W/cg.out "$CG_OUT"
echo "$PROTO: $(( (b - a) / (N2 - N1) )) instructions per request ($a for $N1, $b for $N2)"
