#!/usr/bin/env python3
"""Draws benches/scale.sh's CSV as one PNG of small plots, edgelb beside HAProxy.

    python3 benches/plot_scale.py [docs/scale.csv] [docs/scale.png]
Needs matplotlib (pip install matplotlib).
"""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src = sys.argv[1] if len(sys.argv) > 1 else "docs/scale.csv"
dst = sys.argv[2] if len(sys.argv) > 2 else "docs/scale.png"
points = defaultdict(list)  # (curve, metric) -> [(x, balancer, value)]
for row in csv.DictReader(open(src)):
    if row["value"] in ("", "n/a"):
        continue
    points[(row["curve"], row["metric"])].append((row["x"], row["balancer"], float(row["value"])))

PANELS = [
    ("targets", "rps", "requests/s by targets in the group", "targets", "req/s", True),
    ("targets", "p99_ms", "p99 by targets in the group", "targets", "ms (lower is better)", True),
    ("rules", "rps", "requests/s by rules (none matching)", "rules", "req/s", True),
    ("rules", "p99_ms", "p99 by rules (none matching; log scale)", "rules", "ms (lower is better)", True),
    ("reload", "seconds", "reload time", "configuration", "s (lower is better)", False),
    ("reload", "peak_mib", "peak memory", "configuration", "MiB (lower is better)", False),
    ("health", "cpu_percent", "health checks every 5 s: CPU", "targets", "% of a core", True),
    ("health", "rss_mib", "health checks every 5 s: memory", "targets", "MiB RSS", True),
    ("idle_plain", "rss_mib", "idle keep-alive connections", "connections", "MiB RSS", True),
    ("idle_tls", "rss_mib", "idle TLS 1.3 connections (HAProxy: its maxconn)", "connections", "MiB RSS", False),
]
panels = [p for p in PANELS if (p[0], p[1]) in points]
cols = 2
rows = (len(panels) + cols - 1) // cols
fig, axes = plt.subplots(rows, cols, figsize=(11, 3.2 * rows), squeeze=False)
colors = {"edgelb": "tab:blue", "haproxy": "tab:orange"}
for ax, (curve, metric, title, xlabel, ylabel, numeric) in zip(axes.flat, panels):
    data = points[(curve, metric)]
    xs = list(dict.fromkeys(x for x, _, _ in data))
    for lb in ("edgelb", "haproxy"):
        mine = [(x, v) for x, b, v in data if b == lb]
        if not mine:
            continue
        if numeric:
            ax.plot([float(x) for x, _ in mine], [v for _, v in mine], "o-", label=lb, color=colors[lb])
        else:
            offset = -0.2 if lb == "edgelb" else 0.2
            ax.bar([xs.index(x) + offset for x, _ in mine], [v for _, v in mine], 0.4, label=lb, color=colors[lb])
            for x, v in mine:
                ax.annotate(f"{v:g}", (xs.index(x) + offset, v), ha="center", va="bottom", fontsize=7)
    if numeric:
        ax.set_xscale("log")
        if "log scale" in title:
            ax.set_yscale("log")
    else:
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels(xs, fontsize=8)
        if curve != "idle_tls":
            ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if numeric and "log scale" not in title:
        ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
fig.tight_layout()
fig.savefig(dst, dpi=90)
print(f"wrote {dst}")
