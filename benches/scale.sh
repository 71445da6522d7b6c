#!/usr/bin/env bash
# How edgelb's cost grows with the size of its work (issue 29), beside HAProxy doing the
# same thing, on loopback, one worker each. Writes one CSV line per point
# (curve,x,balancer,metric,value) to $OUT, then benches/plot_scale.py draws them.
#
#   benches/scale.sh [SECONDS=5]     CURVES="targets rules reload health idle" (default: all)
#   EDGELB=target/release/edgelb (default; cargo build --release first)
#   OUT=docs/scale.csv (default)
# Needs: apt-get install -y nginx-light haproxy wrk openssl python3
#
# The targets are one nginx listening on port 19001 of every address: target i of a
# group is 127.1.X.Y:19001, so 10,000 targets need no 10,000 servers. The open-file
# limit of this host (ulimit -Hn: 20,000 here, not raisable) bounds the idle-connection
# curve: its last point is as many client connections as each balancer takes under it.
set -euo pipefail
DUR=${1:-5}
EDGELB=${EDGELB:-target/release/edgelb}
OUT=${OUT:-docs/scale.csv}
CURVES=${CURVES:-targets rules reload health idle}
for t in nginx haproxy wrk openssl python3 curl; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done
[ -x "$EDGELB" ] || { echo "no edgelb binary at $EDGELB (cargo build --release)" >&2; exit 2; }
W=$(mktemp -d /tmp/edgelb-scale.XXXX); chmod 755 "$W"
cleanup() { stop_lb; [ -f "$W/targets.pid" ] && kill "$(cat "$W/targets.pid")" 2>/dev/null || true; sleep 0.3; rm -rf "$W"; }
trap cleanup EXIT
head -c 1024 /dev/zero | tr '\0' 'x' > "$W/body.txt"
openssl ecparam -name prime256v1 -genkey -noout -out "$W/key.pem" 2>/dev/null
openssl req -x509 -new -key "$W/key.pem" -days 2 -subj "/CN=localhost" -out "$W/cert.pem" 2>/dev/null
cat "$W/cert.pem" "$W/key.pem" > "$W/combined.pem"
echo "scale-bench-token-0123456789" > "$W/admin.token"
reload_edgelb() { curl -fs -o /dev/null -w '%{time_total}' -X POST -H "Authorization: Bearer $(cat "$W/admin.token")" http://127.0.0.1:19501/reload; }
cat > "$W/targets.conf" <<C
worker_processes 1; pid $W/targets.pid; error_log $W/targets.err; daemon on;
worker_rlimit_nofile 19500;
events { worker_connections 19000; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  # Port 19001 of every address (only loopback addresses are used: 127.1.X.Y).
  server { listen 19001 reuseport; root $W; location / { try_files /body.txt =404; } } }
C
nginx -c "$W/targets.conf"
# APPEND=1 adds to $OUT (another curve's run) instead of starting it anew.
[ -n "${APPEND:-}" ] || echo "curve,x,balancer,metric,value" > "$OUT"
put() { echo "$1,$2,$3,$4,$5" >> "$OUT"; echo "  $1 x=$2 $3 $4=$5" >&2; }

LB_PID=""
stop_lb() { [ -n "$LB_PID" ] && { kill "$LB_PID" 2>/dev/null || true; for _ in $(seq 100); do kill -0 "$LB_PID" 2>/dev/null || break; sleep 0.1; done; }; LB_PID=""; }
targets_list() { # n → "127.1.X.Y:19001" lines
  python3 -c 'import sys
for i in range(int(sys.argv[1])): print(f"127.1.{i // 250}.{i % 250 + 1}:19001")' "$1"; }
edgelb_rules() { python3 "$(dirname "$0")/rules.py" edgelb "$1"; } # n → TOML of n rules that never match
haproxy_rules() { python3 "$(dirname "$0")/rules.py" haproxy "$1"; } # the same rules as use_backend lines
edgelb_conf() { # targets rules interval → edgelb.toml (http on :18501, https on :18502, admin :19501)
  cat <<C
[global]
worker_threads = 1
drain_timeout = "1s"
[admin]
bind = "127.0.0.1:19501"
token_file = "$W/admin.token"
[[listeners]]
name = "http"
protocol = "http"
bind = "127.0.0.1:18501"
default_action = { forward = "tg" }
$(edgelb_rules "$2")
[[listeners]]
name = "https"
protocol = "https"
bind = "127.0.0.1:18502"
certificates = [ { cert = "$W/cert.pem", key = "$W/key.pem" } ]
default_action = { forward = "tg" }
[[target_groups]]
name = "tg"
protocol = "http"
targets = [
$(targets_list "$1" | sed 's/.*/  { address = "&" },/')
]
[target_groups.health_check]
interval = "$3"
timeout = "2s"
healthy_threshold = 2
unhealthy_threshold = 2
path = "/"
C
}
haproxy_conf() { # targets rules interval → haproxy.cfg (same ports)
  cat <<C
global
  nbthread 1
  # HAProxy asks for 2 files per connection and one per checked server: under this
  # host's limit of open files that leaves this many connections.
  maxconn $(( ($(ulimit -Hn) - 1000 - $1) / 2 < 9900 ? ($(ulimit -Hn) - 1000 - $1) / 2 : 9900 ))
  pidfile $W/haproxy.pid
  daemon
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend fe
  bind 127.0.0.1:18501
  bind 127.0.0.1:18502 ssl crt $W/combined.pem alpn http/1.1
$(haproxy_rules "$2")
  default_backend tg
backend tg
  http-reuse always
  balance roundrobin
  option httpchk GET /
  default-server check inter ${3%s}s fall 2 rise 2
$(targets_list "$1" | awk '{print "  server s" NR " " $0}')
C
}
start_edgelb() { # targets rules interval: started with 5 s checks until every target is
  # healthy, then reloaded with the interval asked (a reload keeps each target's health),
  # so that both balancers measure from all targets in service with the same checks
  edgelb_conf "$1" "$2" 5s > "$W/edgelb.toml"
  "$EDGELB" run --config "$W/edgelb.toml" > "$W/edgelb.log" 2>&1 & LB_PID=$!
  wait_healthy edgelb "$1"
  if [ "$3" != 5s ]; then
    edgelb_conf "$@" > "$W/edgelb.toml"
    reload_edgelb > /dev/null
  fi
}
start_haproxy() { # targets rules interval
  haproxy_conf "$@" > "$W/haproxy.cfg"
  haproxy -f "$W/haproxy.cfg" 2> "$W/haproxy.err"; LB_PID=$(cat "$W/haproxy.pid")
  wait_healthy haproxy "$1"
}
wait_healthy() { # balancer n: until every target of edgelb is healthy (HAProxy starts them up), at most 120 s
  local i
  for i in $(seq 1200); do curl -fs -o /dev/null http://127.0.0.1:18501/ && break; sleep 0.1; done
  [ "$1" = edgelb ] || return 0
  for i in $(seq 1200); do
    [ "$(curl -fs http://127.0.0.1:19501/status | python3 -c 'import json,sys
d=json.load(sys.stdin); print(sum(t["state"]=="healthy" for g in d["target_groups"] for t in g["targets"]))' 2>/dev/null)" = "$2" ] && return 0
    sleep 0.1
  done
  echo "edgelb: not all $2 targets healthy after 120 s" >&2
}
wrk_run() { wrk -t1 -c64 -d"${DUR}s" --latency "$@" http://127.0.0.1:18501/ 2>/dev/null; }
rps_of() { awk '/Requests\/sec/{print $2}'; }
p99_ms_of() { awk '$1=="99%"{v=$2; if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /s$/) {sub("s","",v); v*=1000}; print v}'; }
cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
rss_kib() { awk '/VmRSS/{print $2}' /proc/"$1"/status; }
hwm_kib() { awk '/VmHWM/{print $2}' /proc/"$1"/status; }

# 1. Requests/s and p99 with 1, 100 and 10,000 targets in the group (round robin over all).
if [[ " $CURVES " == *" targets "* ]]; then
  for n in ${TARGET_POINTS:-1 100 10000}; do
    for lb in edgelb haproxy; do
      start_$lb "$n" 0 30s
      wrk_run > /dev/null  # warm-up: the pools fill
      out=$(wrk_run)
      put targets "$n" "$lb" rps "$(rps_of <<< "$out")"; put targets "$n" "$lb" p99_ms "$(p99_ms_of <<< "$out")"
      stop_lb
    done
  done
fi

# 2. Routing: 1, 1,000 and 10,000 rules of host, path and path+header kinds, none matching
#    (each request runs through all of them to the default action: the worst case).
if [[ " $CURVES " == *" rules "* ]]; then
  for n in ${RULE_POINTS:-1 1000 10000}; do
    for lb in edgelb haproxy; do
      start_$lb 1 "$n" 30s
      wrk_run -H "x-tenant: none" > /dev/null
      out=$(wrk_run -H "x-tenant: none")
      put rules "$n" "$lb" rps "$(rps_of <<< "$out")"; put rules "$n" "$lb" p99_ms "$(p99_ms_of <<< "$out")"
      stop_lb
    done
  done
fi

# 3. Reload time and peak memory: 10 / 1,000 / 10,000 targets (1 rule) and 100 / 5,000 rules
#    (10 targets). edgelb: POST /reload answered (parse, validate, build, swap), median of 3.
#    HAProxy: a new process started with -sf until it is serving (its reload), median of 3.
if [[ " $CURVES " == *" reload "* ]]; then
  for spec in t10:10:1 t1000:1000:1 t10000:10000:1 r100:10:100 r5000:10:5000; do
    IFS=: read -r name targets rules <<< "$spec"
    x=$([ "${name:0:1}" = t ] && echo "targets=$targets" || echo "rules=$rules")
    start_edgelb "$targets" "$rules" 30s
    times=()
    for _ in 1 2 3; do
      times+=("$(reload_edgelb)")
    done
    put reload "$x" edgelb seconds "$(python3 -c 'import sys,statistics; print(f"{statistics.median(map(float,sys.argv[1:])):.4f}")' "${times[@]}")"
    put reload "$x" edgelb peak_mib "$(( $(hwm_kib "$LB_PID") / 1024 ))"
    stop_lb
    start_haproxy "$targets" "$rules" 30s
    times=()
    for _ in 1 2 3; do
      # The launcher parses, checks and binds, then returns as the new process serves.
      old=$(cat "$W/haproxy.pid")
      times+=("$(python3 -c 'import subprocess, sys, time
t = time.monotonic(); subprocess.run(sys.argv[1:], stderr=subprocess.DEVNULL, check=True)
print(time.monotonic() - t)' haproxy -f "$W/haproxy.cfg" -sf "$old")")
      for i in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    done
    LB_PID=$(cat "$W/haproxy.pid")
    put reload "$x" haproxy seconds "$(python3 -c 'import sys,statistics; print(f"{statistics.median(map(float,sys.argv[1:])):.4f}")' "${times[@]}")"
    put reload "$x" haproxy peak_mib "$(( $(hwm_kib "$LB_PID") / 1024 ))"
    stop_lb
  done
fi

# 4. The health checker alone: 1,000 and 10,000 targets checked every 5 s (HTTP GET /, a
#    new connection per check for both), no traffic: CPU over 20 s and resident memory.
if [[ " $CURVES " == *" health "* ]]; then
  for n in 1000 10000; do
    for lb in edgelb haproxy; do
      start_$lb "$n" 0 5s
      sleep 5
      c0=$(cpu_ticks "$LB_PID"); sleep 20; c1=$(cpu_ticks "$LB_PID")
      put health "$n" "$lb" cpu_percent "$(python3 -c "print(f'{($c1 - $c0) / $(getconf CLK_TCK) / 20 * 100:.1f}')")"
      put health "$n" "$lb" rss_mib "$(( $(rss_kib "$LB_PID") / 1024 ))"
      stop_lb
    done
  done
fi

# 5. Resident memory while N keep-alive connections are held idle after one request each
#    (plain, and 10,000 over TLS 1.3). HAProxy's frontend is capped by its maxconn (9,499
#    under this host's open-file limit), so its curve stops at 9,400.
hold() { # port n tls → prints "idle" once every connection has had its answer, holds them 15 s
  python3 - "$@" <<'P'
import socket, ssl, sys, time
port, n, tls = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "tls"
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
conns = []
for i in range(n):
    s = socket.socket(); s.settimeout(30); s.bind((f"127.2.{i // 250}.{i % 250 + 1}", 0)); s.connect(("127.0.0.1", port))
    if tls: s = ctx.wrap_socket(s)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while len(got) < 1024 + 100 and b"x" * 1024 not in got:
        chunk = s.recv(4096)
        if not chunk: break
        got += chunk
    conns.append(s)
print("idle", flush=True)
time.sleep(15)
P
}
idle_point() { # lb port n tls
  local fifo="$W/idle.fifo"; rm -f "$fifo"; mkfifo "$fifo"
  local pid=$LB_PID
  hold "$2" "$3" "$4" > "$fifo" & local py=$!
  read -r _ < "$fifo"; sleep 5
  put "idle_$4" "$3" "$1" rss_mib "$(python3 -c "print(f'{$(rss_kib "$pid") / 1024:.1f}')")"
  wait $py || true
}
if [[ " $CURVES " == *" idle "* ]]; then
  # edgelb keeps a quarter of its descriptors for target connections (as HAProxy's
  # maxconn, from ulimit -n): its largest point is 3/4 of this host's limit.
  cap=$(( $(ulimit -Hn) * 3 / 4 - 100 ))
  for n in 100 10000 "$cap"; do
    start_edgelb 1 0 30s; idle_point edgelb 18501 "$n" plain; stop_lb
    # HAProxy's point: as many as its maxconn lets it hold (10,000 → 9,400).
    if [ "$n" -le 10000 ]; then start_haproxy 1 0 30s; idle_point haproxy 18501 "$(( n < 9400 ? n : 9400 ))" plain; stop_lb; fi
  done
  start_edgelb 1 0 30s; idle_point edgelb 18502 10000 tls; stop_lb
  start_haproxy 1 0 30s; idle_point haproxy 18502 9400 tls; stop_lb
fi
echo "wrote $OUT" >&2
