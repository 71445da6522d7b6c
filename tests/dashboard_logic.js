// Runs the dashboard's own logic (src/admin/dashboard/dashboard.js) on two
// real scrapes of a running edgelb: `node tests/dashboard_logic.js OLD NEW
// SECONDS GROUP` prints that group's rates as JSON.
const fs = require("fs");
const path = require("path");
const d = require(path.join(__dirname, "..", "src", "admin", "dashboard", "dashboard.js"));
const [older, newer, seconds, group] = process.argv.slice(2);
const a = d.parseMetrics(fs.readFileSync(older, "utf8"))[group];
const b = d.parseMetrics(fs.readFileSync(newer, "utf8"))[group];
const r = d.groupRates(a, b, Number(seconds));
console.log(JSON.stringify({ rps: r.rps, errors: r.errors, p99: r.p99 === Infinity ? "inf" : r.p99,
  escaped: d.escapeHtml("<b x=\"1\">&</b>"), formatted: d.formatSeconds(0.0025) }));
