"use strict";
// The dashboard's logic: Prometheus text to per-group counters, counters
// over the last minute to rates and a p99, and the page drawn from them.
// Pure functions first (tests/dashboard.js runs them under node).

const WINDOW_MS = 60000;

/** Parses the labels of one series: `a="x",b="y"`. */
function parseLabels(text) {
  const labels = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  let m;
  while ((m = re.exec(text)) !== null) labels[m[1]] = m[2].replace(/\\(.)/g, "$1");
  return labels;
}

/** Per-group request and 5xx counters and response-time buckets from a scrape. */
function parseMetrics(text) {
  const groups = {};
  const group = (name) => (groups[name] = groups[name] || { requests: 0, errors: 0, buckets: {} });
  for (const line of text.split("\n")) {
    if (line === "" || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const [, name, rawLabels, rawValue] = m;
    const value = Number(rawValue);
    const labels = parseLabels(rawLabels || "");
    const g = labels.target_group;
    if (!g) continue;
    if (name === "edgelb_requests_total") group(g).requests += value;
    else if (name === "edgelb_http_responses_total" && labels.class === "5xx") group(g).errors += value;
    else if (name === "edgelb_target_response_seconds_bucket") group(g).buckets[labels.le] = value;
  }
  return groups;
}

/** The first sample no older than the window, for a sample taken at `now`. */
function windowStart(samples, now) {
  return samples.find((s) => now - s.at <= WINDOW_MS) || samples[samples.length - 1];
}

/** Requests/s, 5xx/s and the p99 (seconds; the bucket's upper bound) between two samples of a group. */
function groupRates(older, newer, seconds) {
  if (!older || !newer || seconds <= 0) return { rps: 0, errors: 0, p99: null };
  const rps = Math.max(0, newer.requests - older.requests) / seconds;
  const errors = Math.max(0, newer.errors - older.errors) / seconds;
  const bounds = Object.keys(newer.buckets)
    .map((le) => [le, le === "+Inf" ? Infinity : Number(le)])
    .sort((a, b) => a[1] - b[1]);
  const delta = (le) => Math.max(0, (newer.buckets[le] || 0) - ((older.buckets || {})[le] || 0));
  const total = delta("+Inf");
  let p99 = null;
  if (total > 0) {
    for (const [le, bound] of bounds) {
      if (delta(le) >= 0.99 * total) { p99 = bound; break; }
    }
  }
  return { rps, errors, p99 };
}

/** A small line of the last minute's values (SVG), `values` oldest first. */
function sparkline(values) {
  const w = 90, h = 18, max = Math.max(...values, 1e-9);
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(h - (v / max) * (h - 2) - 1).toFixed(1)}`);
  return `<svg width="${w}" height="${h}" aria-hidden="true"><polyline fill="none" stroke="#0969da" stroke-width="1.5" points="${points.join(" ")}"/></svg>`;
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function formatRate(v) { return v >= 100 ? v.toFixed(0) : v.toFixed(1); }
function formatSeconds(s) {
  if (s === null) return "–";
  if (s === Infinity) return "> 60 s";
  return s < 1 ? `${(s * 1000).toFixed(s < 0.01 ? 1 : 0)} ms` : `${s.toFixed(1)} s`;
}

if (typeof module !== "undefined") {
  module.exports = { parseLabels, parseMetrics, windowStart, groupRates, sparkline, escapeHtml, formatSeconds, WINDOW_MS };
} else {
  const samples = []; // { at, groups } oldest first, the last minute
  const history = {}; // group → requests/s, one per refresh

  async function refresh() {
    try {
      const [status, metrics] = await Promise.all([
        fetch("/status", { cache: "no-store" }).then((r) => r.json()),
        fetch("/metrics", { cache: "no-store" }).then((r) => r.text()),
      ]);
      const now = Date.now();
      samples.push({ at: now, groups: parseMetrics(metrics) });
      while (samples.length > 1 && now - samples[0].at > WINDOW_MS) samples.shift();
      draw(status, now);
    } catch (e) {
      document.getElementById("meta").innerHTML = `<span class="error">admin API unreachable: ${escapeHtml(e.message)}</span>`;
    }
  }

  function draw(status, now) {
    const reload = status.last_reload || {};
    document.getElementById("meta").innerHTML =
      `${escapeHtml(status.version)} · generation ${escapeHtml(status.generation)} · last reload ` +
      (reload.ok ? `ok at ${escapeHtml(reload.time)}` : `<span class="error">failed at ${escapeHtml(reload.time)}: ${escapeHtml(reload.error)}</span>`) +
      ` · updated ${new Date(now).toLocaleTimeString()}`;
    document.getElementById("listeners").innerHTML = (status.listeners || [])
      .map((l) => `<span><b>${escapeHtml(l.name)}</b> ${escapeHtml(l.protocol)} ${escapeHtml(l.bind)} · ${escapeHtml(l.active_connections)} open</span>`)
      .join("");
    const first = windowStart(samples, now), last = samples[samples.length - 1];
    const seconds = (last.at - first.at) / 1000;
    document.getElementById("groups").innerHTML = (status.target_groups || []).map((g) => {
      const r = groupRates(first.groups[g.name], last.groups[g.name], seconds);
      const h = (history[g.name] = (history[g.name] || []).concat([r.rps]).slice(-30));
      const targets = (g.targets || []).map((t) =>
        `<div class="target"><span class="addr">${escapeHtml(t.address)}</span>` +
        `<span class="state ${escapeHtml(t.state)}">${escapeHtml(t.state)}</span>` +
        `<span>${escapeHtml(t.reason || "")}</span><span>weight ${escapeHtml(t.weight)}</span>` +
        `<span class="meta">${escapeHtml(t.origin || "")}</span></div>`).join("");
      return `<div class="card" data-group="${escapeHtml(g.name)}"><h2>${escapeHtml(g.name)}</h2>` +
        `<div class="stats"><span><b>${formatRate(r.rps)}</b> req/s ${sparkline(h)}</span>` +
        `<span><b>${formatRate(r.errors)}</b> 5xx/s</span><span>p99 <b>${formatSeconds(r.p99)}</b></span>` +
        `<span>last minute</span></div>${targets}</div>`;
    }).join("");
  }

  refresh();
  setInterval(refresh, 2000);
}
