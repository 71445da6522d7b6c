// A headless Chromium page driven over the DevTools protocol, for
// tests/dashboard.rs: `node dashboard_browser.js URL WIDTH HEIGHT` opens URL in
// a phone-sized viewport (mobile emulation: the page's viewport meta applies),
// prints `ready`, then reads one JavaScript expression per line on stdin and
// answers each with one JSON line on stdout: {"value": …} or {"error": "…"}.
// The protocol goes over --remote-debugging-pipe (fds 3 and 4, NUL-separated
// JSON), so neither a WebSocket client nor a debugging port is needed.
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");
const readline = require("readline");

const [url, width, height] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const browser = process.env.EDGELB_CHROMIUM_BIN || "chromium";
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "edgelb-chromium-"));
const chrome = spawn(browser, [
  "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
  "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-quic",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  `--user-data-dir=${profile}`, "about:blank",
], { stdio: ["ignore", "ignore", "ignore", "pipe", "pipe"] });
const toBrowser = chrome.stdio[3], fromBrowser = chrome.stdio[4];

let nextId = 1;
const waiting = new Map();
let pending = Buffer.alloc(0);
fromBrowser.on("data", (chunk) => {
  pending = Buffer.concat([pending, chunk]);
  let end;
  while ((end = pending.indexOf(0)) >= 0) {
    const message = JSON.parse(pending.subarray(0, end).toString("utf8"));
    pending = pending.subarray(end + 1);
    const done = message.id && waiting.get(message.id);
    if (done) {
      waiting.delete(message.id);
      done(message);
    }
  }
});

function send(method, params = {}, sessionId) {
  const id = nextId++;
  toBrowser.write(JSON.stringify({ id, method, params, sessionId }) + "\0");
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${method}: no answer in 20 s`)), 20000);
    waiting.set(id, (m) => {
      clearTimeout(timer);
      m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result);
    });
  });
}

function quit(code) {
  chrome.kill();
  fs.rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}

async function main() {
  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  await send("Emulation.setDeviceMetricsOverride",
    { width, height, deviceScaleFactor: 2, mobile: true }, sessionId);
  await send("Page.enable", {}, sessionId);
  await send("Page.navigate", { url }, sessionId);
  console.log("ready");
  const lines = readline.createInterface({ input: process.stdin });
  for await (const expression of lines) {
    const { result, exceptionDetails } = await send("Runtime.evaluate",
      { expression, returnByValue: true, awaitPromise: true }, sessionId);
    console.log(JSON.stringify(exceptionDetails
      ? { error: exceptionDetails.exception?.description || exceptionDetails.text }
      : { value: result.value === undefined ? null : result.value }));
  }
  quit(0);
}

chrome.on("exit", (code) => {
  console.log(JSON.stringify({ error: `chromium exited (${code})` }));
  process.exit(1);
});
main().catch((e) => {
  console.log(JSON.stringify({ error: String(e) }));
  quit(1);
});
