#!/usr/bin/env python3
"""Per-phase latency of proxied HTTP/1.1 requests, from a balancer's syscall trace
(`perf script` of recvfrom enter/exit, sendto/writev enter, epoll_wait exit; see
benches/phases.sh). Reads under 200 bytes are client requests, larger ones target
responses; sends under 200 bytes go to targets, larger ones to clients.

  A  in the balancer: a request read -> its send to the target
  B  the target: that send -> the response read (the target's work and its scheduling)
  C  in the balancer: the response read -> its send to the client
  D  the client: the response sent -> the connection's next request read
  W  an epoll_wait return -> each read it reported (waiting behind the batch)

  benches/phases.py TRACE.txt"""
import sys, re
ev = re.compile(r'\s(\d+\.\d+):\s+syscalls:(sys_\w+): (.*)')
pending_fd = {}
last_epoll = None
events = []  # (kind r|s, time, fd, bytes, last epoll return)
for line in open(sys.argv[1]):
    m = ev.search(line)
    if not m: continue
    t = float(m.group(1)); kind = m.group(2); rest = m.group(3)
    tid = line.split()[1]
    if kind == 'sys_exit_epoll_wait':
        last_epoll = t
    elif kind == 'sys_enter_recvfrom':
        pending_fd[tid] = int(re.search(r'fd: (0x[0-9a-f]+)', rest).group(1), 16)
    elif kind == 'sys_exit_recvfrom':
        n = int(rest.strip(), 16)
        if n >= 2**63: n = -1
        fd = pending_fd.pop(tid, None)
        if fd is not None and n > 0:
            events.append(('r', t, fd, n, last_epoll))
    elif kind in ('sys_enter_sendto', 'sys_enter_writev'):
        fd = int(re.search(r'fd: (0x[0-9a-f]+)', rest).group(1), 16)
        n = int(re.search(r'(?:len|vlen): (0x[0-9a-f]+)', rest).group(1), 16)
        events.append(('s', t, fd, n, None))
# Sends under 200 bytes are requests to targets, larger ones responses to
# clients; requests go to targets in the order they were read (FIFO).
from collections import deque
A, B, C, D, W = [], [], [], [], []
waiting = deque()      # (client fd, read time) not yet sent to a target
owner = {}             # target fd -> (client fd, send time)
resp_read = {}         # client fd -> response read time
last_sent = {}         # client fd -> time its response was sent
for k, t, fd, n, te in events:
    if k == 'r' and n < 200:
        waiting.append((fd, t))
        if fd in last_sent: D.append(t - last_sent.pop(fd))
        if te is not None: W.append(t - te)
    elif k == 's' and n < 200 and waiting:
        c, tr = waiting.popleft()
        A.append(t - tr); owner[fd] = (c, t)
    elif k == 'r' and n >= 200 and fd in owner:
        c, ts = owner.pop(fd)
        B.append(t - ts); resp_read[c] = t
        if te is not None: W.append(t - te)
    elif k == 's' and n >= 200 and fd in resp_read:
        C.append(t - resp_read.pop(fd)); last_sent[fd] = t
def pct(v, p):
    v = sorted(v); return v[min(len(v)-1, int(len(v)*p))] if v else float('nan')
print(f"{'phase (µs)':42} {'n':>7} {'p50':>7} {'p90':>7} {'p99':>7} {'p99.9':>7}")
for name, v in [('A in balancer: request read -> target send', A), ('B target: send -> response read', B),
                ('C in balancer: response read -> client send', C),
                ('D client: response sent -> next request read', D),
                ('W epoll return -> the read it reported', W)]:
    print(f"{name:42} {len(v):7} " + " ".join(f"{pct(v,p)*1e6:7.0f}" for p in (0.5, 0.9, 0.99, 0.999)))
