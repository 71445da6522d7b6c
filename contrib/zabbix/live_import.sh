#!/usr/bin/env bash
# Imports contrib/zabbix/edgelb_template.yaml into a real Zabbix 6.0 frontend
# (Debian's zabbix-frontend-php on a throw-away PostgreSQL database, served by
# `php -S` on loopback) through the JSON-RPC API, and fails on any error.
# With an edgelb binary as second argument, a real zabbix_server then polls a
# live edgelb through the template (contrib/zabbix/live_poll.py).
# Needs root (it writes the frontend's /etc/zabbix/zabbix.conf.php) and:
#   apt-get install -y --no-install-recommends postgresql zabbix-server-pgsql zabbix-frontend-php php-pgsql php-cli
set -euo pipefail
TEMPLATE=${1:-contrib/zabbix/edgelb_template.yaml}
EDGELB_BIN=${2:-}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=${PGPORT:-25432}; WEBPORT=${WEBPORT:-28080}
W=$(mktemp -d /tmp/zabbix-live.XXXX); chmod 755 "$W"; chown postgres "$W"
cleanup() {
  [ -f "$W/php.pid" ] && kill "$(cat "$W/php.pid")" 2>/dev/null || true
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
runuser -u postgres -- "$PGBIN/initdb" -D "$W/pg" -A trust -U postgres >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg" -w -l "$W/pg.log" \
  -o "-p $PGPORT -k $W -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
psql() { command psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }
psql -c "create database zabbix" >/dev/null
for f in schema images data; do zcat "/usr/share/zabbix-server-pgsql/$f.sql.gz"; done | psql -d zabbix >/dev/null
mkdir -p /etc/zabbix
cat > /etc/zabbix/zabbix.conf.php <<PHP
<?php
\$DB['TYPE'] = 'POSTGRESQL'; \$DB['SERVER'] = '127.0.0.1'; \$DB['PORT'] = '$PGPORT';
\$DB['DATABASE'] = 'zabbix'; \$DB['USER'] = 'postgres'; \$DB['PASSWORD'] = ''; \$DB['SCHEMA'] = '';
\$DB['ENCRYPTION'] = false; \$DB['KEY_FILE'] = ''; \$DB['CERT_FILE'] = ''; \$DB['CA_FILE'] = '';
\$DB['VERIFY_HOST'] = false; \$DB['CIPHER_LIST'] = ''; \$DB['VAULT_URL'] = ''; \$DB['VAULT_DB_PATH'] = '';
\$DB['VAULT_TOKEN'] = ''; \$DB['DOUBLE_IEEE754'] = true;
\$ZBX_SERVER = '127.0.0.1'; \$ZBX_SERVER_PORT = '10051'; \$ZBX_SERVER_NAME = 'edgelb test';
\$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;
PHP
php -S "127.0.0.1:$WEBPORT" -t /usr/share/zabbix > "$W/php.log" 2>&1 & echo $! > "$W/php.pid"
API="http://127.0.0.1:$WEBPORT/api_jsonrpc.php"
rpc() { # method params-json [auth]
  curl -fsS -H 'Content-Type: application/json-rpc' "$API" \
    -d "{\"jsonrpc\":\"2.0\",\"method\":\"$1\",\"params\":$2,\"id\":1${3:+,\"auth\":\"$3\"}}"
}
for i in $(seq 100); do curl -fs -o /dev/null "$API" -d '{}' -H 'Content-Type: application/json-rpc' && break; sleep 0.2; done
LOGIN=$(rpc user.login '{"username":"Admin","password":"zabbix"}')
TOKEN=$(echo "$LOGIN" | python3 -c 'import sys,json; print(json.load(sys.stdin)["result"])')
SOURCE=$(python3 -c 'import sys,json; print(json.dumps(open(sys.argv[1]).read()))' "$TEMPLATE")
RULES='{"groups":{"createMissing":true},"templates":{"createMissing":true,"updateExisting":true},"items":{"createMissing":true,"updateExisting":true},"triggers":{"createMissing":true,"updateExisting":true},"discoveryRules":{"createMissing":true,"updateExisting":true},"valueMaps":{"createMissing":true,"updateExisting":true}}'
OUT=$(rpc configuration.import "{\"format\":\"yaml\",\"rules\":$RULES,\"source\":$SOURCE}" "$TOKEN")
echo "$OUT" | python3 -c 'import sys,json
r=json.load(sys.stdin)
if r.get("result") is not True:
    sys.exit("configuration.import failed: " + json.dumps(r.get("error", r)))'
COUNT=$(rpc template.get '{"filter":{"host":["edgelb by HTTP"]},"selectItems":"count","selectTriggers":"count","selectDiscoveries":"count"}' "$TOKEN")
echo "$COUNT" | python3 -c 'import sys,json
t=json.load(sys.stdin)["result"]
if len(t) != 1: sys.exit("the template was not created")
t=t[0]
name, items, triggers, rules = t["name"], t["items"], t["triggers"], t["discoveries"]
print(f"Zabbix 6.0 imported {name!r}: {items} items, {triggers} triggers, {rules} discovery rules")'
if [ -n "$EDGELB_BIN" ]; then
  python3 "$(dirname "$0")/live_poll.py" "$API" "$TOKEN" "$PGPORT" "$W" "$(realpath "$EDGELB_BIN")"
fi
