#!/usr/bin/env bash
# Side-by-side load comparison of edgelb, HAProxy and nginx on loopback, on every axis
# of issue #10. Each scenario runs RUNS times per balancer (interleaved), and the table
# shows medians and edgelb's ratios. Same worker count for all three.
#
#   benches/load.sh [RUNS=3] [SECONDS=5] [THREADS=1]     (ONLY=regex: just the rows whose name matches;
#                                                          VERBOSE=1: every run's figure on stderr)
#   EDGELB=target/release/edgelb (default; cargo build --release first)
# Needs: apt-get install -y nginx-light libnginx-mod-stream haproxy wrk nghttp2-client iperf3 openssl python3
set -euo pipefail
RUNS=${1:-3}; DUR=${2:-5}; THREADS=${3:-1}
EDGELB=${EDGELB:-target/release/edgelb}
for t in nginx haproxy wrk h2load iperf3 openssl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done
[ -x "$EDGELB" ] || { echo "no edgelb binary at $EDGELB (cargo build --release)" >&2; exit 2; }
W=$(mktemp -d /tmp/edgelb-load.XXXX); chmod 755 "$W"
cleanup() { for f in "$W"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done; pkill -f "iperf3 -s -p 19201" 2>/dev/null || true; sleep 0.3; rm -rf "$W"; }
trap cleanup EXIT
head -c 1024 /dev/zero | tr '\0' 'x' > "$W/body.txt"
# An ECDSA P-256 certificate for every TLS frontend.
openssl ecparam -name prime256v1 -genkey -noout -out "$W/key.pem" 2>/dev/null
openssl req -x509 -new -key "$W/key.pem" -days 2 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" -out "$W/cert.pem" 2>/dev/null
cat "$W/cert.pem" "$W/key.pem" > "$W/combined.pem"
# Mutual TLS: a client CA and a P-256 client certificate it issued.
openssl ecparam -name prime256v1 -genkey -noout -out "$W/client-ca.key" 2>/dev/null
openssl req -x509 -new -key "$W/client-ca.key" -days 2 -subj "/CN=load clients CA" -addext "basicConstraints=critical,CA:TRUE" -out "$W/client-ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$W/client.key" 2>/dev/null
openssl req -new -key "$W/client.key" -subj "/CN=load client" -out "$W/client.csr" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' > "$W/client.ext"
openssl x509 -req -in "$W/client.csr" -CA "$W/client-ca.pem" -CAkey "$W/client-ca.key" -CAcreateserial -days 2 -extfile "$W/client.ext" -out "$W/client.pem" 2>/dev/null
# The TLS keep-alive load generator (wrk and h2load cannot present a client certificate).
TLS_LOAD=$("$(dirname "$0")/bench_exe.sh" tls_keepalive)
# A one-thread gRPC unary server (h2 crate) as the target of the gRPC row.
GRPC_TARGET=$("$(dirname "$0")/bench_exe.sh" grpc_target)
# One unary call's request: a length-prefixed protobuf message (field 1 = "hello").
printf '\x00\x00\x00\x00\x07\x0a\x05hello' > "$W/grpc_request.bin"
STREAM_MOD=""; [ -f /usr/lib/nginx/modules/ngx_stream_module.so ] && STREAM_MOD="load_module /usr/lib/nginx/modules/ngx_stream_module.so;"

cat > "$W/targets.conf" <<C
worker_processes 1; pid $W/targets.pid; error_log $W/targets.err; daemon on;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:19001; root $W; location / { try_files /body.txt =404; } }
  server { listen 127.0.0.1:19002; root $W; location / { try_files /body.txt =404; } }
  # An h2c (HTTP/2 prior knowledge) target for the HTTP/2-to-targets rows.
  server { listen 127.0.0.1:19011 http2; root $W; location / { try_files /body.txt =404; } } }
C
cat > "$W/nginx.conf" <<C
$STREAM_MOD
worker_processes $THREADS; pid $W/nginx.pid; error_log $W/nginx.err; daemon on;
events { worker_connections 30000; }
http { access_log off; keepalive_requests 1000000;
  upstream tg { server 127.0.0.1:19001 weight=3; server 127.0.0.1:19002 weight=1; keepalive 128; }
  server { listen 127.0.0.1:18081; location / { proxy_pass http://tg; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:18111 http2; location / { grpc_pass grpc://127.0.0.1:19021; } }
  # HTTP/2 to the target: nginx has it as grpc_pass only.
  server { listen 127.0.0.1:18101 http2; location / { grpc_pass grpc://127.0.0.1:19011; } }
  server { listen 127.0.0.1:18441 ssl http2; ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem; ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://tg; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:18451 ssl; ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem; ssl_protocols TLSv1.2 TLSv1.3;
    ssl_verify_client on; ssl_client_certificate $W/client-ca.pem;
    location / { proxy_pass http://tg; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Amzn-Mtls-Clientcert-Serial-Number \$ssl_client_serial; proxy_set_header X-Amzn-Mtls-Clientcert-Issuer \$ssl_client_i_dn;
      proxy_set_header X-Amzn-Mtls-Clientcert-Subject \$ssl_client_s_dn; proxy_set_header X-Amzn-Mtls-Clientcert-Validity "NotBefore=\$ssl_client_v_start;NotAfter=\$ssl_client_v_end";
      proxy_set_header X-Amzn-Mtls-Clientcert-Leaf \$ssl_client_escaped_cert; } } }
$( [ -n "$STREAM_MOD" ] && echo "stream { server { listen 127.0.0.1:18281; proxy_pass 127.0.0.1:19201; } server { listen 127.0.0.1:18291; proxy_pass 127.0.0.1:19001; } }" )
C
cat > "$W/haproxy.cfg" <<C
global
  nbthread $THREADS
  maxconn 9900
  pidfile $W/haproxy.pid
  daemon
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  mode http
  bind 127.0.0.1:18082
  bind 127.0.0.1:18442 ssl crt $W/combined.pem alpn h2,http/1.1
  bind 127.0.0.1:18452 ssl crt $W/combined.pem alpn http/1.1 verify required ca-file $W/client-ca.pem
  # The client-certificate headers edgelb sends (SPEC §8), so all three do the same work.
  http-request set-header X-Amzn-Mtls-Clientcert-Serial-Number %[ssl_c_serial,hex] if { ssl_c_used }
  http-request set-header X-Amzn-Mtls-Clientcert-Issuer %[ssl_c_i_dn] if { ssl_c_used }
  http-request set-header X-Amzn-Mtls-Clientcert-Subject %[ssl_c_s_dn] if { ssl_c_used }
  http-request set-header X-Amzn-Mtls-Clientcert-Validity NotBefore=%[ssl_c_notbefore];NotAfter=%[ssl_c_notafter] if { ssl_c_used }
  http-request set-header X-Amzn-Mtls-Clientcert-Leaf %[ssl_c_der,base64] if { ssl_c_used }
  default_backend tg
backend tg
  mode http
  http-reuse always
  balance roundrobin
  server a 127.0.0.1:19001 weight 3
  server b 127.0.0.1:19002 weight 1
frontend h2t
  mode http
  bind 127.0.0.1:18102 proto h2
  default_backend h2target
backend h2target
  mode http
  http-reuse always
  server s 127.0.0.1:19011 proto h2
frontend grpc
  mode http
  bind 127.0.0.1:18112 proto h2
  default_backend grpctarget
backend grpctarget
  mode http
  http-reuse always
  server s 127.0.0.1:19021 proto h2
frontend bulk
  mode tcp
  bind 127.0.0.1:18282
  default_backend iperf
backend iperf
  mode tcp
  server s 127.0.0.1:19201
frontend short
  mode tcp
  bind 127.0.0.1:18292
  default_backend web
backend web
  mode tcp
  server s 127.0.0.1:19001
C
rules() { python3 "$(dirname "$0")/rules.py" edgelb "$1"; } # n → TOML of n rules that never match
edgelb_config() { # port-suffix rules-count
  cat <<C
[global]
worker_threads = $THREADS
[admin]
bind = "127.0.0.1:1990$1"
[[listeners]]
name = "http"
protocol = "http"
bind = "127.0.0.1:1808$1"
default_action = { forward = "tg" }
$(rules "$2")
[[listeners]]
name = "https"
protocol = "https"
bind = "127.0.0.1:1844$1"
tls_policy = "tls13-tls12"
certificates = [ { cert = "$W/cert.pem", key = "$W/key.pem" } ]
default_action = { forward = "tg" }
[[listeners]]
name = "mtls"
protocol = "https"
bind = "127.0.0.1:1845$1"
certificates = [ { cert = "$W/cert.pem", key = "$W/key.pem" } ]
mutual_authentication = { mode = "verify", trust_store = "$W/client-ca.pem" }
default_action = { forward = "tg" }
[[listeners]]
name = "h2t"
protocol = "http"
bind = "127.0.0.1:1810$1"
default_action = { forward = "h2target" }
[[listeners]]
name = "grpc"
protocol = "http"
bind = "127.0.0.1:1811$1"
default_action = { forward = "grpctarget" }
[[listeners]]
name = "bulk"
protocol = "tcp"
bind = "127.0.0.1:1828$1"
default_action = { forward = "iperf" }
[[listeners]]
name = "short"
protocol = "tcp"
bind = "127.0.0.1:1829$1"
default_action = { forward = "web" }
[[target_groups]]
name = "tg"
protocol = "http"
targets = [ { address = "127.0.0.1:19001", weight = 3 }, { address = "127.0.0.1:19002", weight = 1 } ]
[[target_groups]]
name = "h2target"
protocol = "http"
protocol_version = "http2"
targets = [ { address = "127.0.0.1:19011" } ]
[[target_groups]]
name = "grpctarget"
protocol = "http"
protocol_version = "grpc"
targets = [ { address = "127.0.0.1:19021" } ]
health_check = { protocol = "tcp" }
[[target_groups]]
name = "iperf"
protocol = "tcp"
targets = [ { address = "127.0.0.1:19201" } ]
[[target_groups]]
name = "web"
protocol = "tcp"
targets = [ { address = "127.0.0.1:19001" } ]
C
}
edgelb_config 3 1 > "$W/edgelb.toml"
edgelb_config 4 1000 > "$W/edgelb-rules.toml"
nginx -c "$W/targets.conf"; nginx -c "$W/nginx.conf"; haproxy -f "$W/haproxy.cfg"
iperf3 -s -p 19201 -D
"$GRPC_TARGET" 19021 & echo $! > "$W/grpc_target.pid"
"$EDGELB" run --config "$W/edgelb.toml" > "$W/edgelb.log" 2>&1 & echo $! > "$W/edgelb.pid"
"$EDGELB" run --config "$W/edgelb-rules.toml" > "$W/edgelb-rules.log" 2>&1 & echo $! > "$W/edgelb-rules.pid"
for i in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:18083/ && curl -fs -o /dev/null http://127.0.0.1:18084/ && break; sleep 0.1; done

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:] if x]; m=statistics.median(v) if v else None; print("n/a" if m is None else f"{m:.2f}" if m < 10 else f"{m:.1f}")' "$@"; }
wrk_rps() { wrk -t1 -c64 -d"${DUR}s" "$@" 2>/dev/null | awk '/Requests\/sec/{print $2}'; }
wrk_p99() { wrk -t1 -c64 -d"${DUR}s" --latency "$@" 2>/dev/null | awk '$1=="99%"{v=$2; if (v ~ /ms$/) {sub("ms","",v); v*=1000} else if (v ~ /us$/) {sub("us","",v)} else if (v ~ /s$/) {sub("s","",v); v*=1000000}; print v}'; }
h2_rps() { h2load -n 200000 -c 10 -m 10 -D "$DUR" "$1" 2>/dev/null | awk '/^finished in/{gsub(",","",$4); print $4}'; }
# gRPC unary calls/s: h2load POSTs a length-prefixed message with the gRPC headers.
grpc_rps() { h2load -n 200000 -c 10 -m 10 -D "$DUR" -d "$W/grpc_request.bin" -H 'content-type: application/grpc' -H 'te: trailers' "$1" 2>/dev/null | awk '/^finished in/{gsub(",","",$4); print $4}'; }
# p99 of request times (ms), from h2load's per-request log (start, status, µs).
h2_p99() { h2load -n 200000 -c 10 -m 10 -D "$DUR" --log-file="$W/h2.log" "$1" >/dev/null 2>&1
  python3 -c 'import sys; t=sorted(int(l.split()[2]) for l in open(sys.argv[1]) if l.strip()); print(f"{t[int(len(t)*0.99)]/1000:.2f}" if t else "")' "$W/h2.log"; }
hs_rate() { openssl s_time -connect "$1" -new -time "$DUR" -tls1_3 "${@:2}" 2>/dev/null | awk '/connections in/{print $1/$4; exit}'; }
mtls_hs_rate() { hs_rate "$1" -cert "$W/client.pem" -key "$W/client.key"; }
tls_rps() { "$TLS_LOAD" "$1" "$DUR" 64 "${@:2}" 2>/dev/null; } # HTTP/1.1 keep-alive over TLS, 64 connections
mtls_rps() { tls_rps "$1" "$W/client.pem" "$W/client.key"; }
iperf_gbps() { iperf3 -c 127.0.0.1 -p "$1" -t "$DUR" -f g 2>/dev/null | awk '/receiver/{print $7}'; }
short_cps() { wrk -t1 -c32 -d"${DUR}s" -H "Connection: close" "http://127.0.0.1:$1/" 2>/dev/null | awk '/Requests\/sec/{print $2}'; }
rss_kib() { awk '/VmRSS/{print $2}' /proc/"$1"/status; }
idle_mem() { # port pid [held] → RSS growth (KiB) with 10,000 keep-alive connections idle for 6 s after one
  # request each; with "held", the whole resident set while they are held
  local before; before=$(rss_kib "$2")
  local fifo="$W/idle.fifo"; rm -f "$fifo"; mkfifo "$fifo"
  python3 - "$1" > "$fifo" <<'P' &
import socket, sys, time
port = int(sys.argv[1]); conns = []
for _ in range(10000):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"); conns.append(s)
for s in conns:
    s.recv(4096)
print("idle", flush=True)
time.sleep(9)
P
  local py=$!
  read -r _ < "$fifo"; sleep 6
  local after; after=$(rss_kib "$2"); wait $py || true
  if [ "${3:-}" = held ]; then echo "$after"; else echo $(( after - before )); fi
}
slowloris_ratio() { # port → a normal client's req/s with 1,000 slowloris connections open ÷ without
  local base; base=$(wrk_rps "http://127.0.0.1:$1/")
  python3 - "$1" "$((DUR + 3))" <<'P' &
import socket, sys, time
port, dur = int(sys.argv[1]), float(sys.argv[2]); conns = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n"); conns.append(s)
end = time.time() + dur
while time.time() < end:  # one more header line per connection per second
    for s in conns:
        try: s.sendall(b"X-Slow: 1\r\n")
        except OSError: pass
    time.sleep(1)
P
  local py=$!; sleep 1.5
  local loaded; loaded=$(wrk_rps "http://127.0.0.1:$1/"); kill $py 2>/dev/null || true; wait $py 2>/dev/null || true
  python3 -c "import sys; print(f'{float(sys.argv[2])/float(sys.argv[1]):.2f}')" "$base" "$loaded"
}
row() { # name unit lower-is-better edgelb-cmd haproxy-cmd nginx-cmd (ONLY=regex picks rows)
  local name=$1 unit=$2 lower=$3; shift 3
  [[ -z "${ONLY:-}" || "$name" =~ $ONLY ]] || return 0
  local e=() h=() n=()
  for _ in $(seq "$RUNS"); do e+=("$(eval "$1")"); h+=("$(eval "$2")"); n+=("$(eval "$3")"); done
  [ -n "${VERBOSE:-}" ] && echo "  $name: edgelb ${e[*]} | HAProxy ${h[*]} | nginx ${n[*]}" >&2
  local me mh mn; me=$(median "${e[@]}"); mh=$(median "${h[@]}"); mn=$(median "${n[@]}")
  python3 - "$name" "$unit" "$lower" "$me" "$mh" "$mn" <<'P'
import sys
name, unit, lower, e, h, n = sys.argv[1:]
def ratio(a, b):
    try: return f"{float(a)/float(b):.2f}"
    except: return "n/a"
print(f"| {name} | {unit} | {e} | {h} | {n} | {ratio(e,h)} | {ratio(e,n)} |" + ("  (lower is better)" if lower == "1" else ""))
P
}
echo "edgelb load comparison — runs=$RUNS seconds=$DUR threads=$THREADS ($(nproc) cores, $(date -u +%F))"
echo "| scenario | unit | edgelb | HAProxy | nginx | ÷HAProxy | ÷nginx |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
row "HTTP/1.1 keep-alive, 1 KiB" "req/s" 0 "wrk_rps http://127.0.0.1:18083/" "wrk_rps http://127.0.0.1:18082/" "wrk_rps http://127.0.0.1:18081/"
row "HTTP/1.1 keep-alive p99" "µs" 1 "wrk_p99 http://127.0.0.1:18083/" "wrk_p99 http://127.0.0.1:18082/" "wrk_p99 http://127.0.0.1:18081/"
row "HTTP/2 over TLS, 10 conns × 10 streams" "req/s" 0 "h2_rps https://127.0.0.1:18443/" "h2_rps https://127.0.0.1:18442/" "h2_rps https://127.0.0.1:18441/"
row "HTTP/2 to an h2c target, 10 conns × 10 streams" "req/s" 0 "h2_rps http://127.0.0.1:18103/" "h2_rps http://127.0.0.1:18102/" "h2_rps http://127.0.0.1:18101/"
row "HTTP/2 to an h2c target, p99 of 10 conns × 10 streams" "ms" 1 "h2_p99 http://127.0.0.1:18103/" "h2_p99 http://127.0.0.1:18102/" "h2_p99 http://127.0.0.1:18101/"
row "gRPC unary calls (h2load, 10 conns × 10 streams)" "calls/s" 0 "grpc_rps http://127.0.0.1:18113/test.Echo/Unary" "grpc_rps http://127.0.0.1:18112/test.Echo/Unary" "grpc_rps http://127.0.0.1:18111/test.Echo/Unary"
row "TLS 1.3 handshakes (openssl s_time -new)" "conn/s" 0 "hs_rate 127.0.0.1:18443" "hs_rate 127.0.0.1:18442" "hs_rate 127.0.0.1:18441"
row "mTLS 1.3 handshakes, P-256 client certificate (s_time -new)" "conn/s" 0 "mtls_hs_rate 127.0.0.1:18453" "mtls_hs_rate 127.0.0.1:18452" "mtls_hs_rate 127.0.0.1:18451"
row "HTTP/1.1 keep-alive over TLS 1.3, 1 KiB" "req/s" 0 "tls_rps 127.0.0.1:18443" "tls_rps 127.0.0.1:18442" "tls_rps 127.0.0.1:18441"
row "HTTP/1.1 keep-alive over mutual TLS 1.3, 1 KiB" "req/s" 0 "mtls_rps 127.0.0.1:18453" "mtls_rps 127.0.0.1:18452" "mtls_rps 127.0.0.1:18451"
row "L4 bulk (iperf3)" "Gbit/s" 0 "iperf_gbps 18283" "iperf_gbps 18282" "[ -n '$STREAM_MOD' ] && iperf_gbps 18281 || true"
row "L4 short connections" "conn/s" 0 "short_cps 18293" "short_cps 18292" "[ -n '$STREAM_MOD' ] && short_cps 18291 || true"
row "10,000 idle keep-alive connections: resident set while held" "KiB RSS" 1 "idle_mem 18083 \$(cat $W/edgelb.pid) held" "idle_mem 18082 \$(cat $W/haproxy.pid) held" "idle_mem 18081 \$(pgrep -P \$(cat $W/nginx.pid) | head -1) held"
row "10,000 idle keep-alive connections: RSS growth of a burst" "KiB RSS" 1 "idle_mem 18083 \$(cat $W/edgelb.pid)" "idle_mem 18082 \$(cat $W/haproxy.pid)" "idle_mem 18081 \$(pgrep -P \$(cat $W/nginx.pid) | head -1)"
row "1,000 slowloris connections: normal client's req/s, loaded ÷ unloaded" "ratio" 0 "slowloris_ratio 18083" "slowloris_ratio 18082" "slowloris_ratio 18081"
[[ -z "${ONLY:-}" || "routing" =~ $ONLY ]] || exit 0
E1=(); E1000=()
for _ in $(seq "$RUNS"); do E1+=("$(wrk_rps http://127.0.0.1:18083/)"); E1000+=("$(wrk_rps http://127.0.0.1:18084/)"); done
m1=$(median "${E1[@]}"); m1000=$(median "${E1000[@]}")
python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'| routing: 1,000 rules vs 1 | req/s | {b:.1f} vs {a:.1f} | | | cost {100*(1-b/a):.1f}% | |')" "$m1" "$m1000"
