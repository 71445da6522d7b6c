#!/usr/bin/env bash
# Where an HTTP/1.1 request's latency goes, per phase, in edgelb and in HAProxy under
# the load table's keep-alive row (wrk -c64, one worker each, two nginx targets):
# each balancer's recvfrom/sendto/writev/epoll_wait calls are traced with perf's
# syscall tracepoints for 2 s of a wrk run, and benches/phases.py pairs them into
# phases (request in, target, response out, client, and the wait behind an epoll
# batch) and prints their percentiles beside wrk's own p50/p99. The tracing costs
# both balancers alike; compare the two, not the absolute figures.
#
#   benches/phases.sh [SECONDS=8]      EDGELB=target/release/edgelb (default)
# Needs: apt-get install -y nginx-light haproxy wrk linux-perf python3
set -euo pipefail
DUR=${1:-8}; EDGELB=${EDGELB:-target/release/edgelb}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/phases.XXXX); chmod 755 $W
cleanup() { for f in $W/*.pid; do [ -f $f ] && kill $(cat $f) 2>/dev/null || true; done; sleep 0.3; rm -rf $W; }
trap cleanup EXIT
head -c 1024 /dev/zero | tr '\0' x > $W/body.txt
cat > $W/targets.conf <<C
worker_processes 1; pid $W/targets.pid; error_log $W/targets.err; daemon on;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:19401; root $W; location / { try_files /body.txt =404; } }
  server { listen 127.0.0.1:19402; root $W; location / { try_files /body.txt =404; } } }
C
cat > $W/edgelb.toml <<C
[global]
worker_threads = 1
[[listeners]]
name = "web"
protocol = "http"
bind = "127.0.0.1:18493"
default_action = { forward = "tg" }
[[target_groups]]
name = "tg"
protocol = "http"
targets = [ { address = "127.0.0.1:19401", weight = 3 }, { address = "127.0.0.1:19402", weight = 1 } ]
C
MAXCONN=$(( ($(ulimit -n) - 100) / 2 )); [ $MAXCONN -gt 20000 ] && MAXCONN=20000
cat > $W/haproxy.cfg <<C
global
  nbthread 1
  maxconn $MAXCONN
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend web
  bind 127.0.0.1:18492
  default_backend tg
backend tg
  balance roundrobin
  server a 127.0.0.1:19401 weight 3
  server b 127.0.0.1:19402 weight 1
C
nginx -c $W/targets.conf
"$EDGELB" run --config $W/edgelb.toml > $W/edgelb.log 2>&1 & echo $! > $W/edgelb.pid
haproxy -f $W/haproxy.cfg -D -p $W/haproxy.pid 2>&1 | grep -v NOTICE || true
for port in 18493 18492; do
  for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
for b in edgelb haproxy; do
  port=$([ $b = edgelb ] && echo 18493 || echo 18492)
  wrk -t1 -c64 -d${DUR}s --latency http://127.0.0.1:$port/ > $W/wrk_$b.out 2>&1 & WRK=$!
  sleep 2
  perf record -q -o $W/$b.data -p "$(cat $W/$b.pid)" \
    -e 'syscalls:sys_enter_recvfrom,syscalls:sys_exit_recvfrom,syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_exit_epoll_wait' \
    -- sleep 2 > /dev/null 2>&1
  wait $WRK
  echo "== $b: $(awk '/Requests\/sec/{print $2}' $W/wrk_$b.out) req/s, wrk p50 $(awk '/ 50%/{print $2}' $W/wrk_$b.out), p99 $(awk '/ 99%/{print $2}' $W/wrk_$b.out) (the run, traced for 2 s of it)"
  perf script -i $W/$b.data 2>/dev/null > $W/$b.txt
  python3 "$HERE/phases.py" $W/$b.txt
done
