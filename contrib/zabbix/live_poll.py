#!/usr/bin/env python3
"""A real Zabbix 6.0 server polling a real edgelb through the imported template.

Run by live_import.sh once the template is imported (the frontend's JSON-RPC API
and the PostgreSQL database are up); takes the API URL, an API token, the
database port, a work directory and the edgelb binary. It starts one target (a
plain HTTP server on loopback), edgelb in front of it (plus a group that no
listener uses), and zabbix_server with 1 s configuration syncs; links a host to
"edgelb by HTTP" with 1 s polling and discovery, then asserts:

  * the items get values (health "ok", last reload successful, the target in
    service, one healthy target in the group) and no item or discovery rule is
    unsupported or in error;
  * discovery finds the used group and its target, never the unused group;
  * stopping the group's only target fires "target group web has no healthy
    target" (and not the target's own trigger: it depends on the group having
    a healthy target); bringing it back clears it by itself;
  * a reload that fails fires the reload trigger, which holds until a good
    reload clears it (a state, not a one-poll change);
  * a target removed by a reload leaves no item and no problem behind;
  * the certificate of an https listener that expires in 7 days is discovered
    and raises its expiry problem (the one problem while everything is in
    service); a reload with a certificate good for a year clears it.

Every wait has a deadline; on failure the last API answers and the tail of the
server's log are printed.
"""

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

API, TOKEN, PGPORT, WORK, EDGELB = sys.argv[1:6]
STARTED = time.monotonic()
DEADLINE = int(os.environ.get("DEADLINE", "60"))  # seconds for each condition


def rpc(method, params):
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1, "auth": TOKEN})
    req = urllib.request.Request(API, body.encode(), {"Content-Type": "application/json-rpc"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.load(resp)
    if "error" in answer:
        raise SystemExit(f"{method}: {answer['error']}")
    return answer["result"]


def free_port(low=None):
    """A loopback port free now: the kernel's pick, or the first free one from
    `low` (zabbix_server takes ListenPort only up to 32767)."""
    for port in range(low, low + 1000) if low else [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise SystemExit(f"no free port from {low}")


class Target:
    """A plain HTTP target on a fixed loopback port that can stop and come back."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"ok"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    def __init__(self, port):
        self.port = port
        self.server = None

    def start(self):
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Target.Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def wait(what, check, show):
    """Polls check() (truthy = done) for DEADLINE seconds; fails with show()."""
    end = time.monotonic() + DEADLINE
    while True:
        got = check()
        if got:
            print(f"  ok after {time.monotonic() - STARTED:4.1f} s: {what}")
            return got
        if time.monotonic() > end:
            print(f"FAILED waiting for: {what}\nlast state: {json.dumps(show(), indent=1)}")
            for name in ("zabbix_server.out", "zabbix_server.log", "edgelb.log"):
                path = os.path.join(WORK, name)
                if os.path.exists(path):
                    print(f"{name} (tail):\n" + "".join(open(path).readlines()[-30:]))
            raise SystemExit(1)
        time.sleep(0.5)


def certificate(days):
    """A self-signed certificate for soon.example.com valid for `days`: (cert, key) paths."""
    cert = os.path.join(WORK, f"soon-{days}.pem")
    key = os.path.join(WORK, f"soon-{days}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", str(days), "-subj", "/CN=soon.example.com",
                    "-addext", "subjectAltName=DNS:soon.example.com",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


TLS_PORT = None


def edgelb_config(admin, listen, targets, spare, broken=False, cert_days=7):
    listed = ", ".join(f'{{ address = "127.0.0.1:{p}" }}' for p in targets)
    cert, key = certificate(cert_days)
    return f"""[global]
drain_timeout = "1s"

[admin]
bind = "127.0.0.1:{admin}"

[[listeners]]
name = "front"
protocol = "http"
bind = "127.0.0.1:{listen}"
default_action = {{ forward = "web" }}

[[listeners]]
name = "secure"
protocol = "https"
bind = "127.0.0.1:{TLS_PORT}"
certificates = [ {{ cert = "{cert}", key = "{key}" }} ]
default_action = {{ forward = "web" }}

[[target_groups]]
name = "web"
protocol = "http"
targets = [ {listed} ]
[target_groups.health_check]
interval = "1s"
timeout = "500ms"
healthy_threshold = 2
unhealthy_threshold = 2

[[target_groups]]
name = "spare"
protocol = "http"
targets = [ {{ address = "127.0.0.1:{spare}" }} ]
""" + ("no_such_key = 1\n" if broken else "")


def main():
    global TLS_PORT
    admin, listen, tport, tport2, spare, TLS_PORT = (free_port() for _ in range(6))
    target = Target(tport)
    target.start()
    second = Target(tport2)
    second.start()
    config = os.path.join(WORK, "edgelb.toml")
    with open(config, "w") as f:
        f.write(edgelb_config(admin, listen, [tport], spare))
    edgelb = subprocess.Popen([EDGELB, "run", "--config", config], stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(WORK, "edgelb.log"), "w"))

    server_conf = os.path.join(WORK, "zabbix_server.conf")
    with open(server_conf, "w") as f:
        f.write(f"""LogType=file
LogFile={WORK}/zabbix_server.log
PidFile={WORK}/zabbix_server.pid
SocketDir={WORK}
DBHost=127.0.0.1
DBPort={PGPORT}
DBName=zabbix
DBUser=postgres
ListenIP=127.0.0.1
ListenPort={free_port(30051)}
CacheUpdateFrequency=1
HousekeepingFrequency=0
StartPollers=1
StartPollersUnreachable=1
StartPingers=0
StartDiscoverers=0
StartHTTPPollers=2
StartLLDProcessors=1
StartPreprocessors=2
StartReportWriters=0
Timeout=4
AllowRoot=1
""")
    server = subprocess.Popen(["zabbix_server", "-f", "-c", server_conf],
                              stdout=open(os.path.join(WORK, "zabbix_server.out"), "w"),
                              stderr=subprocess.STDOUT)
    try:
        run(admin, listen, tport, tport2, spare, config, edgelb, target)
    finally:
        server.terminate()
        edgelb.terminate()
        for p in (server, edgelb):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def run(admin, listen, tport, tport2, spare, config, edgelb, target):
    template = rpc("template.get", {"filter": {"host": ["edgelb by HTTP"]}, "output": ["templateid"]})
    group = rpc("hostgroup.create", {"name": "edgelb live test"})["groupids"][0]
    host = rpc("host.create", {
        "host": "edgelb-node-1",
        "groups": [{"groupid": group}],
        "templates": [{"templateid": template[0]["templateid"]}],
        "macros": [
            {"macro": "{$EDGELB.ADMIN}", "value": f"127.0.0.1:{admin}"},
            {"macro": "{$EDGELB.INTERVAL}", "value": "1s"},
            {"macro": "{$EDGELB.LLD.INTERVAL}", "value": "1s"},
        ],
    })["hostids"][0]
    print(f"zabbix_server polls edgelb at 127.0.0.1:{admin} as host edgelb-node-1")

    def items():
        got = rpc("item.get", {"hostids": host, "output": ["key_", "lastvalue", "state", "error", "lastclock"]})
        return {i["key_"]: i for i in got}

    def rules():
        return rpc("discoveryrule.get", {"hostids": host, "output": ["key_", "state", "error"]})

    def problems():
        got = rpc("trigger.get", {"hostids": host, "output": ["description", "value", "error", "state"],
                                  "expandDescription": True})
        return {t["description"]: t for t in got}

    def value(key):
        i = items().get(key)
        return i["lastvalue"] if i and i["lastclock"] != "0" else None

    def polls_later(key, n):
        """Waits until item `key` has taken n more values (1 s polls)."""
        first = int(items()[key]["lastclock"])
        wait(f"{n} more polls of {key}", lambda: int(items()[key]["lastclock"]) >= first + n, items)

    web_target = f"edgelb.target.up[web,127.0.0.1:{tport}]"
    wait("the health item reads ok", lambda: (value("edgelb.healthz") or "").find('"ok"') >= 0, items)
    wait("the last reload reads successful", lambda: value("edgelb.config.reload_ok") == "1", items)
    wait("discovery finds the target, which is in service", lambda: value(web_target) == "1", items)
    wait("discovery finds group web with one healthy target",
         lambda: value("edgelb.group.healthy[web]") == "1", items)
    wait("the rates have values", lambda: value("edgelb.requests.rate") is not None
         and value("edgelb.lb.5xx.rate") is not None, items)

    def clean():
        bad = [i for i in items().values() if i["state"] != "0" or i["error"]]
        bad += [r for r in rules() if r["state"] != "0" or r["error"]]
        bad += [t for t in problems().values() if t["state"] != "0" or t["error"]]
        return bad

    wait("no item, discovery rule or trigger unsupported or in error", lambda: not clean(), clean)
    spare_items = [k for k in items() if "spare" in k]
    if spare_items:
        raise SystemExit(f"the unused group was discovered: {spare_items}")
    print("  ok: the unused group spare is not discovered")

    def firing():
        return sorted(d for d, t in problems().items() if t["value"] == "1")

    expiring = "edgelb: certificate soon.example.com of secure expires within 14 days"
    cert_item = "edgelb.certificate.expiry[secure,soon.example.com]"
    wait("the certificate is discovered with its expiry", lambda: value(cert_item) is not None, items)
    wait("the certificate's expiry problem fires", lambda: expiring in firing(), firing)
    if firing() != [expiring]:
        raise SystemExit(f"problems with everything in service: {firing()}")
    print("  ok: the only problem while every used group is healthy is the expiring certificate")
    with open(config, "w") as f:
        f.write(edgelb_config(admin, listen, [tport], spare, cert_days=365))
    edgelb.send_signal(signal.SIGHUP)
    wait("a reload with a certificate good for a year clears it", lambda: not firing(), firing)

    group_down = "edgelb: target group web has no healthy target"
    target_down = f"edgelb: target 127.0.0.1:{tport} of web is OutOfService"
    target.stop()
    wait("stopping the only target fires the group's trigger", lambda: group_down in firing(), firing)
    if target_down in firing():
        raise SystemExit(f"the target's trigger fired beside its group's: {firing()}")
    if len([p for p in firing() if "healthy target" in p]) != 1:
        raise SystemExit(f"one dead group raised more than one problem: {firing()}")
    target.start()
    wait("the target back clears it by itself", lambda: not firing(), firing)

    reload_failed = "edgelb: the last configuration reload failed"
    with open(config, "w") as f:
        f.write(edgelb_config(admin, listen, [tport], spare, broken=True, cert_days=365))
    edgelb.send_signal(signal.SIGHUP)
    wait("a failed reload fires its trigger", lambda: reload_failed in firing(), firing)
    polls_later("edgelb.config.reload_ok", 3)
    if reload_failed not in firing():
        raise SystemExit("the reload trigger cleared while the failed reload stands")
    print("  ok: the trigger holds over later polls")
    # The good reload also replaces the target by another one.
    with open(config, "w") as f:
        f.write(edgelb_config(admin, listen, [tport2], spare, cert_days=365))
    edgelb.send_signal(signal.SIGHUP)
    wait("the good reload clears it", lambda: reload_failed not in firing(), firing)
    second_target = f"edgelb.target.up[web,127.0.0.1:{tport2}]"
    wait("the new target is discovered in service", lambda: value(second_target) == "1", items)
    wait("the removed target's items are deleted", lambda: web_target not in items(), items)
    polls_later("edgelb.config.reload_ok", 3)
    if firing():
        raise SystemExit(f"problems after the removed target: {firing()}")
    print("  ok: the removed target raises nothing")
    print("Zabbix 6.0 server polling a live edgelb: all checks passed")


if __name__ == "__main__":
    main()
