#!/usr/bin/env python3
"""N listener rules that never match (host, path, and path + header, in turn), for the
load and scale benches: as edgelb TOML or as the same rules in HAProxy's use_backend lines.

    python3 benches/rules.py edgelb|haproxy N
"""
import sys

kind, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    if kind == "edgelb":
        cond = [f'host = ["svc{i}.example.com"]', f'path = ["/api/v{i}/*"]',
                f'path = ["/static{i}/*"], headers = {{ "x-tenant" = ["t{i}-*"] }}'][i % 3]
        print(f'[[listeners.rules]]\npriority = {i + 1}\nconditions = {{ {cond} }}\naction = {{ forward = "tg" }}\n')
    else:
        print(["  use_backend tg if { hdr(host) -i svc%d.example.com }" % i,
               "  use_backend tg if { path_beg /api/v%d/ }" % i,
               "  use_backend tg if { path_beg /static%d/ } { req.hdr(x-tenant) -m beg t%d- }" % (i, i)][i % 3])
