#!/usr/bin/env python3
"""Structural check of the Zabbix 6.0 template export (contrib/zabbix/edgelb_template.yaml):
the fields Zabbix 6.0's importer requires, 32-hex UUIDs that are unique, item types and
value types Zabbix knows, dependent items whose master exists, and trigger expressions
that name this template and an item key it defines. Not a substitute for importing it
into a Zabbix server; it catches what makes an import fail."""
import re
import sys
import yaml

path = sys.argv[1] if len(sys.argv) > 1 else "contrib/zabbix/edgelb_template.yaml"
doc = yaml.safe_load(open(path))
errors = []
export = doc.get("zabbix_export") or {}
if export.get("version") != "6.0":
    errors.append("zabbix_export.version must be '6.0'")
uuids = []
ITEM_TYPES = {"ZABBIX_PASSIVE", "TRAP", "SIMPLE", "INTERNAL", "ZABBIX_ACTIVE", "EXTERNAL", "ODBC", "IPMI", "SSH", "TELNET", "CALCULATED", "JMX", "SNMP_TRAP", "DEPENDENT", "HTTP_AGENT", "SNMP_AGENT", "ITEM_TYPE_SCRIPT"}
VALUE_TYPES = {"FLOAT", "CHAR", "LOG", "UNSIGNED", "TEXT"}
PRIORITIES = {"NOT_CLASSIFIED", "INFO", "WARNING", "AVERAGE", "HIGH", "DISASTER"}

def need(obj, keys, where):
    for k in keys:
        if k not in obj:
            errors.append(f"{where}: missing {k}")

def uuid_of(obj, where):
    u = obj.get("uuid", "")
    # Zabbix 6.0's import accepts only UUIDv4: version digit 4, variant 8-b.
    if not re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}", str(u)):
        errors.append(f"{where}: uuid {u!r} is not a UUIDv4 in 32 lower-case hex digits")
    uuids.append(u)

for g in export.get("groups", []):
    uuid_of(g, f"group {g.get('name')}")
for t in export.get("templates", []):
    name = t.get("template")
    need(t, ["uuid", "template", "name", "groups"], f"template {name}")
    uuid_of(t, f"template {name}")
    keys = set()
    def check_item(item, where, prototype=False):
        need(item, ["uuid", "name", "key"], where)
        uuid_of(item, where)
        if item.get("type", "ZABBIX_PASSIVE") not in ITEM_TYPES:
            errors.append(f"{where}: unknown type {item.get('type')}")
        if item.get("value_type", "FLOAT") not in VALUE_TYPES:
            errors.append(f"{where}: unknown value_type {item.get('value_type')}")
        if item.get("type") == "HTTP_AGENT" and "url" not in item:
            errors.append(f"{where}: HTTP_AGENT needs url")
        if item.get("type") == "DEPENDENT":
            master = (item.get("master_item") or {}).get("key")
            if master not in keys:
                errors.append(f"{where}: master item {master!r} is not defined before it")
        if item["key"] in keys:
            errors.append(f"{where}: duplicate key {item['key']}")
        keys.add(item["key"])
    def check_trigger(trig, where):
        need(trig, ["uuid", "expression", "name"], where)
        uuid_of(trig, where)
        if trig.get("priority", "NOT_CLASSIFIED") not in PRIORITIES:
            errors.append(f"{where}: unknown priority {trig.get('priority')}")
        for host, key in re.findall(r"/([^/]+)/([^\[,)]+(?:\[[^\]]*\])?)", trig["expression"]):
            if host != name:
                errors.append(f"{where}: expression names host {host!r}, not the template")
            if key not in keys:
                errors.append(f"{where}: expression uses unknown item key {key!r}")
    for item in t.get("items", []):
        check_item(item, f"item {item.get('key')}")
    for item in t.get("items", []):
        for trig in item.get("triggers", []):
            check_trigger(trig, f"trigger {trig.get('name')}")
    for rule in t.get("discovery_rules", []):
        check_item(rule, f"discovery rule {rule.get('key')}")
        for proto in rule.get("item_prototypes", []):
            check_item(proto, f"item prototype {proto.get('key')}", prototype=True)
        for proto in rule.get("item_prototypes", []):
            for trig in proto.get("trigger_prototypes", []):
                check_trigger(trig, f"trigger prototype {trig.get('name')}")
    for m in t.get("macros", []):
        if not re.fullmatch(r"\{\$[A-Z0-9_.]+\}", m.get("macro", "")):
            errors.append(f"macro {m.get('macro')!r} is not a user macro")
if len(uuids) != len(set(uuids)):
    errors.append("uuids are not unique")
for e in errors:
    print(f"{path}: {e}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"{path}: ok ({len(uuids)} objects)")
