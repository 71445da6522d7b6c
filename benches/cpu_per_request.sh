#!/usr/bin/env bash
# CPU time per proxied HTTP/1.1 request of edgelb, HAProxy and nginx (and of the load
# generator and the target beside them): utime + stime from /proc/PID/stat over a
# wrk -c64 run, divided by the requests. Steadier than requests/s on a shared machine.
#
#   benches/cpu_per_request.sh [SECONDS=5]     T=threads (default 1); RUNS=1 for 3 rounds (default 2)
#   PROTO=h2: HTTP/2 over TLS from h2load, 10 connections x 10 streams (the load table's row)
#   PROTO=l4short: tcp listeners, one new connection per request (wrk -c32, Connection: close;
#     the load table's L4 short-connections row); nginx only with libnginx-mod-stream
#   EDGELB=target/release/edgelb (default)
# Needs: apt-get install -y nginx-light haproxy wrk nghttp2-client openssl python3
set -euo pipefail
DUR=${1:-5}; EDGELB=${EDGELB:-target/release/edgelb}
W=$(mktemp -d /tmp/cpu.XXXX); chmod 755 $W
cleanup() { for f in $W/*.pid; do [ -f $f ] && kill $(cat $f) 2>/dev/null || true; done; sleep 0.3; rm -rf $W; }
trap cleanup EXIT
head -c 1024 /dev/zero | tr '\0' x > $W/body.txt
openssl ecparam -name prime256v1 -genkey -noout -out $W/key.pem 2>/dev/null
openssl req -x509 -new -key $W/key.pem -days 2 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" -out $W/cert.pem 2>/dev/null
cat $W/cert.pem $W/key.pem > $W/combined.pem
cat > $W/targets.conf <<C
worker_processes 1; pid $W/targets.pid; error_log $W/targets.err; daemon on;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:19001; root $W; location / { try_files /body.txt =404; } }
  server { listen 127.0.0.1:19002; root $W; location / { try_files /body.txt =404; } } }
C
STREAM_MOD=""; [ -f /usr/lib/nginx/modules/ngx_stream_module.so ] && STREAM_MOD="load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
cat > $W/nginx.conf <<C
$STREAM_MOD
worker_processes ${T:-1}; pid $W/nginx.pid; error_log $W/nginx.err; daemon on;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream tg { server 127.0.0.1:19001 weight=3; server 127.0.0.1:19002 weight=1; keepalive 128; }
  server { listen 127.0.0.1:18081; location / { proxy_pass http://tg; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:18441 ssl http2; ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem;
    location / { proxy_pass http://tg; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
$( [ -n "$STREAM_MOD" ] && echo "stream { server { listen 127.0.0.1:18291; proxy_pass 127.0.0.1:19001; } }" )
C
cat > $W/haproxy.cfg <<C
global
  nbthread ${T:-1}
  maxconn 8000
  pidfile $W/haproxy.pid
  daemon
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:18082
  bind 127.0.0.1:18442 ssl crt $W/combined.pem alpn h2,http/1.1
  default_backend tg
backend tg
  balance roundrobin
  server a 127.0.0.1:19001 weight 3
  server b 127.0.0.1:19002 weight 1
frontend short
  mode tcp
  bind 127.0.0.1:18292
  default_backend web
backend web
  mode tcp
  server s 127.0.0.1:19001
C
cat > $W/edgelb.toml <<C
[global]
worker_threads = ${T:-1}
[admin]
bind = "127.0.0.1:19901"
[[listeners]]
name = "bench"
protocol = "http"
bind = "127.0.0.1:18083"
default_action = { forward = "tg" }
[[listeners]]
name = "tls"
protocol = "https"
bind = "127.0.0.1:18443"
certificates = [ { cert = "$W/cert.pem", key = "$W/key.pem" } ]
default_action = { forward = "tg" }
[[listeners]]
name = "short"
protocol = "tcp"
bind = "127.0.0.1:18293"
default_action = { forward = "web" }
[[target_groups]]
name = "tg"
protocol = "http"
targets = [ { address = "127.0.0.1:19001", weight = 3 }, { address = "127.0.0.1:19002", weight = 1 } ]
[[target_groups]]
name = "web"
protocol = "tcp"
targets = [ { address = "127.0.0.1:19001" } ]
C
nginx -c $W/targets.conf; nginx -c $W/nginx.conf; haproxy -f $W/haproxy.cfg
$EDGELB run --config $W/edgelb.toml > $W/edgelb.log 2>&1 & echo $! > $W/edgelb.pid
sleep 1; kill -0 $(cat $W/edgelb.pid) 2>/dev/null || { cat $W/edgelb.log; exit 1; }
TCK=$(getconf CLK_TCK)
cpu() { # pids → utime stime ticks summed
  local u=0 s=0; for p in "$@"; do read -r a b < <(awk '{print $14, $15}' /proc/$p/stat); u=$((u+a)); s=$((s+b)); done; echo $u $s; }
pids_of() { case $1 in
  nginx) pgrep -f "nginx: worker" | while read p; do grep -q nginx.conf /proc/$(awk '{print $4}' /proc/$p/stat)/cmdline && echo $p; done ;;
  haproxy) cat $W/haproxy.pid ;;
  edgelb) cat $W/edgelb.pid ;; esac; }
for r in 1 2 ${RUNS:+3}; do
for b in edgelb:18083:18443 haproxy:18082:18442 nginx:18081:18441; do
  IFS=: read -r n port tls_port <<< "$b"; pids=$(pids_of $n | tr '\n' ' ')
  [ "${PROTO:-}" = h2 ] && port=$tls_port
  [ "${PROTO:-}" = l4short ] && port=1829${port: -1}
  [ "${PROTO:-}" = l4short ] && [ $n = nginx ] && [ -z "$STREAM_MOD" ] && continue
  read u0 s0 < <(cpu $pids)
  tp=$(pgrep -f "nginx: worker" | while read p; do grep -q targets.conf /proc/$(awk '{print $4}' /proc/$p/stat)/cmdline && echo $p || true; done | tr '\n' ' ')
  read tu0 ts0 < <(cpu $tp)
  if [ "${PROTO:-}" = h2 ]; then
    # h2load's summary in wrk's words: requests done and req/s; no percentiles.
    out=$( { /usr/bin/time -f "WRKCPU %U %S" h2load -c10 -m10 -D $DUR https://127.0.0.1:$port/; } 2>&1 \
      | awk '/^finished in/{gsub(",","",$4); print "Requests/sec:", $4} /^requests:/{print $8, "requests in"} /WRKCPU/{print} END{print "99% n/a"}')
  elif [ "${PROTO:-}" = l4short ]; then
    out=$( { /usr/bin/time -f "WRKCPU %U %S" wrk -t1 -c32 -d${DUR}s --latency -H "Connection: close" http://127.0.0.1:$port/; } 2>&1)
  else
    out=$( { /usr/bin/time -f "WRKCPU %U %S" wrk -t1 -c64 -d${DUR}s --latency http://127.0.0.1:$port/; } 2>&1)
  fi
  read tu1 ts1 < <(cpu $tp)
  python3 -c "import sys; print(f'   targets {(float(sys.argv[1]))/float(sys.argv[3])/float(sys.argv[2])*1e6:.2f} us/req, wrk {float(sys.argv[4])/float(sys.argv[2])*1e6:.2f} us/req')" $((tu1-tu0+ts1-ts0)) $(awk '/requests in/{print $1}' <<<"$out") $TCK $(awk '/WRKCPU/{print $2+$3}' <<<"$out")
  read u1 s1 < <(cpu $pids)
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$out"); reqs=$(awk '/requests in/{print $1}' <<<"$out"); p99=$(awk '$1=="99%"{print $2}' <<<"$out")
  python3 -c "import sys; u,s,r,t=map(float,sys.argv[1:5]); print(f'{sys.argv[5]:8} {float(sys.argv[6]):>10.0f} req/s p99 {sys.argv[7]:8} user {u/t/r*1e6:6.2f} us/req  sys {s/t/r*1e6:6.2f} us/req  total {(u+s)/t/r*1e6:6.2f}  cpu% {(u+s)/t/$DUR*100:5.1f}')" $((u1-u0)) $((s1-s0)) $reqs $TCK $n $rps $p99
done; done
