#!/usr/bin/env python3
"""Builds the IndexedDB → PostgreSQL mirror flow in a running NiFi through its REST API and
downloads it as a flow definition (what the UI's "Download flow definition" returns).

    python3 tests/flows/build-idb-mirror.py NIFI_URL OUT.json

OUT is idb-mirror.json when NIFI_URL is a 1.x (built on 1.18.0) and idb-mirror-2.x.json when it
is a 2.x (built on 2.3.0: EncodeContent instead of the removed Base64EncodeContent).

NiFi needs nifi-standard-nar and a DBCPConnectionPool (nifi-dbcp-service-nar); the group it
creates ("idb-mirror-build") is deleted afterwards. How the flow works: tests/flows/README.md.
"""
import json
import sys
import urllib.request

NIFI, OUT = sys.argv[1].rstrip("/"), sys.argv[2]
API = NIFI + "-api"
REV = {"clientId": "idb-mirror-build", "version": 0}


def call(method, path, body=None):
    req = urllib.request.Request(API + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            raw = r.read()
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {path}: HTTP {e.code}: {e.read().decode()[:2000]}")
    return json.loads(raw) if raw else None


about = call("GET", "/flow/about")["about"]
version = about["version"]
root = call("GET", "/flow/process-groups/root")["processGroupFlow"]["id"]
std = {"group": "org.apache.nifi", "artifact": "nifi-standard-nar", "version": version}
dbcp_bundle = {"group": "org.apache.nifi", "artifact": "nifi-dbcp-service-nar", "version": version}

# Parameters: where PostgreSQL is and how to log in.
ctx = call("POST", "/parameter-contexts", {"revision": REV, "component": {
    "name": "idb-mirror",
    "description": "Where the IndexedDB mirror is kept (PostgreSQL over JDBC)",
    "parameters": [
        {"parameter": {"name": "postgres.jdbc.url", "sensitive": False,
                       "value": "jdbc:postgresql://localhost:5432/idb",
                       "description": "JDBC URL of the PostgreSQL database holding idb_mirror (schema: idb-mirror.sql)"}},
        {"parameter": {"name": "postgres.user", "sensitive": False, "value": "nifi",
                       "description": "PostgreSQL login (owner of idb_mirror and idb_mirror_clear, or INSERT/UPDATE/DELETE on them)"}},
        {"parameter": {"name": "postgres.password", "sensitive": True, "value": "change-me",
                       "description": "Its password"}},
        {"parameter": {"name": "jdbc.driver.location", "sensitive": False,
                       "value": "/opt/nifi/nifi-current/drivers/postgresql-42.7.7.jar",
                       "description": "The PostgreSQL JDBC driver jar (Maven Central org.postgresql:postgresql:42.7.7) on the NiFi host"}},
    ]}})
pg = call("POST", f"/process-groups/{root}/process-groups", {"revision": REV, "component": {
    "name": "idb-mirror-build", "position": {"x": 0, "y": 0},
    "parameterContext": {"id": ctx["id"]},
    "comments": "Applies IndexedDB change FlowFiles (s2s-wasm outbox: idb.* attributes, JSON content) to a mirror in PostgreSQL: newest idb.seq wins per key, duplicates are harmless, delete = tombstone, clear = per-store watermark."}})
G = pg["id"]

svc = call("POST", f"/process-groups/{G}/controller-services", {"revision": REV, "component": {
    "name": "PostgreSQL", "type": "org.apache.nifi.dbcp.DBCPConnectionPool", "bundle": dbcp_bundle,
    "properties": {
        "Database Connection URL": "#{postgres.jdbc.url}",
        "Database Driver Class Name": "org.postgresql.Driver",
        "database-driver-locations": "#{jdbc.driver.location}",
        "Database User": "#{postgres.user}",
        "Password": "#{postgres.password}",
    }}})


def port(kind, name, x, y):
    return call("POST", f"/process-groups/{G}/{kind}", {"revision": REV, "component": {
        "name": name, "position": {"x": x, "y": y}}})["id"]


def proc(name, typ, x, y, props, auto=(), comments="", sched="0 sec", tasks=1):
    return call("POST", f"/process-groups/{G}/processors", {"revision": REV, "component": {
        "name": name, "type": "org.apache.nifi.processors.standard." + typ, "bundle": std,
        "position": {"x": x, "y": y},
        "config": {"properties": props, "autoTerminatedRelationships": list(auto),
                   "comments": comments, "schedulingPeriod": sched,
                   "concurrentlySchedulableTaskCount": tasks}}})["id"]


def conn(src, src_type, dst, dst_type, rels=None):
    body = {"revision": REV, "component": {
        "source": {"id": src, "groupId": G, "type": src_type},
        "destination": {"id": dst, "groupId": G, "type": dst_type},
        "backPressureObjectThreshold": 10000, "backPressureDataSizeThreshold": "1 GB"}}
    if rels is not None:
        body["component"]["selectedRelationships"] = rels
    call("POST", f"/process-groups/{G}/connections", body)


def q(attr):
    """A SQL string literal of an attribute's value (single quotes doubled)."""
    return "'${" + attr + ":replace(\"'\", \"''\")}'"


KEY = f"{q('idb.client.id')}, {q('idb.database')}, {q('idb.store')}"
SEQ = "${idb.seq:toNumber()}"
NOT_CLEARED = (f"NOT EXISTS (SELECT 1 FROM idb_mirror_clear c WHERE (c.client_id, c.db_name, c.store) = "
               f"({KEY}) AND c.seq > {SEQ})")
UPSERT_HEAD = ("INSERT INTO idb_mirror AS m (client_id, db_name, store, key, value, seq, deleted)\n"
               f"SELECT {KEY}, {q('idb.key')}, v.value, {SEQ}, false FROM (SELECT '")
UPSERT_TAIL = ("'::jsonb AS value) v\n"
               f"WHERE {NOT_CLEARED}\n"
               "ON CONFLICT (client_id, db_name, store, key) DO UPDATE\n"
               "SET value = excluded.value, seq = excluded.seq, deleted = false, updated_at = now()\n"
               "WHERE m.seq < excluded.seq")
DELETE = ("INSERT INTO idb_mirror AS m (client_id, db_name, store, key, value, seq, deleted)\n"
          f"SELECT {KEY}, {q('idb.key')}, NULL, {SEQ}, true\n"
          f"WHERE {NOT_CLEARED}\n"
          "ON CONFLICT (client_id, db_name, store, key) DO UPDATE\n"
          "SET value = NULL, seq = excluded.seq, deleted = true, updated_at = now()\n"
          "WHERE m.seq < excluded.seq")
CLEAR = ("WITH w AS (\n"
         "  INSERT INTO idb_mirror_clear AS w (client_id, db_name, store, seq)\n"
         f"  VALUES ({KEY}, {SEQ})\n"
         "  ON CONFLICT (client_id, db_name, store) DO UPDATE SET seq = excluded.seq WHERE w.seq < excluded.seq\n"
         "  RETURNING 1)\n"
         "DELETE FROM idb_mirror\n"
         f"WHERE (client_id, db_name, store) = ({KEY}) AND seq < {SEQ}")


def replace_text(strategy, value, search=None):
    p = {"Replacement Strategy": strategy, "Replacement Value": value,
         "Evaluation Mode": "Entire text", "Maximum Buffer Size": "16 MB", "Character Set": "UTF-8"}
    if search is not None:
        p["Regular Expression"] = search
    return p


inp = port("input-ports", "in", 0, 0)
failed = port("output-ports", "failed", 900, 900)
route = proc("Route by idb.op", "RouteOnAttribute", 0, 150, {
    "Routing Strategy": "Route to Property name",
    "upsert": "${idb.op:in('put', 'add', 'snapshot'):and(${mime.type:equals('application/json')})}",
    "upsert-binary": "${idb.op:in('put', 'add', 'snapshot'):and(${mime.type:equals('application/json'):not()})}",
    "delete": "${idb.op:equals('delete')}",
    "clear": "${idb.op:equals('clear')}",
}, comments="put/add/snapshot of JSON records, of binary records, delete, clear; anything else goes to 'failed'")
escape = proc("Escape quotes", "ReplaceText", 0, 350,
              replace_text("Regex Replace", "''", "'"), auto=(),
              comments="The JSON record becomes the body of a SQL string literal: ' doubled")
if version.startswith("1."):
    b64 = proc("Binary as base64", "Base64EncodeContent", 400, 350, {"Mode": "Encode"},
               comments="Binary records are mirrored as {\"$base64\": \"...\"}, as the client encodes nested bytes")
else:  # 2.x has no Base64EncodeContent: EncodeContent, base64 on one line
    b64 = proc("Binary as base64", "EncodeContent", 400, 350,
               {"Mode": "Encode", "Encoding": "base64", "Line Output Mode": "SINGLE_LINE"},
               comments="Binary records are mirrored as {\"$base64\": \"...\"}, as the client encodes nested bytes")
strip = proc("Strip line breaks", "ReplaceText", 400, 450,
             replace_text("Regex Replace", "", "[\\r\\n]+"),
             comments="Base64EncodeContent ends lines with CRLF; JSON strings cannot hold them")
wrap_a = proc("Wrap base64 (head)", "ReplaceText", 400, 550, replace_text("Prepend", '{"$base64":"'))
wrap_b = proc("Wrap base64 (tail)", "ReplaceText", 400, 750, replace_text("Append", '"}'))
head = proc("Upsert statement (head)", "ReplaceText", 0, 550, replace_text("Prepend", UPSERT_HEAD),
            comments="INSERT ... ON CONFLICT DO UPDATE ... WHERE the row's seq is older; skipped when a newer clear() happened")
tail = proc("Upsert statement (tail)", "ReplaceText", 0, 750, replace_text("Append", UPSERT_TAIL))
dele = proc("Delete statement", "ReplaceText", 800, 350, replace_text("Always Replace", DELETE),
            comments="A tombstone with the delete's seq (an older put arriving later is ignored)")
clr = proc("Clear statement", "ReplaceText", 1200, 350, replace_text("Always Replace", CLEAR),
           comments="Raises the store's clear watermark and removes the rows older than it")
put = proc("Apply to PostgreSQL", "PutSQL", 400, 1000, {
    "JDBC Connection Pool": svc["id"],
    "Support Fragmented Transactions": "false",
    "Batch Size": "1",
    "Obtain Generated Keys": "false",
    "rollback-on-failure": "false",
}, auto=("success",), tasks=1,
    comments="One task on purpose: a clear and a put of the same store must not race. Batch Size 1: "
             "one FlowFile per database transaction, so a statement that fails cannot take others "
             "(already routed to success) down with it")

conn(inp, "INPUT_PORT", route, "PROCESSOR")
conn(route, "PROCESSOR", escape, "PROCESSOR", ["upsert"])
conn(route, "PROCESSOR", b64, "PROCESSOR", ["upsert-binary"])
conn(route, "PROCESSOR", dele, "PROCESSOR", ["delete"])
conn(route, "PROCESSOR", clr, "PROCESSOR", ["clear"])
conn(route, "PROCESSOR", failed, "OUTPUT_PORT", ["unmatched"])
conn(escape, "PROCESSOR", head, "PROCESSOR", ["success"])
conn(b64, "PROCESSOR", strip, "PROCESSOR", ["success"])
conn(strip, "PROCESSOR", wrap_a, "PROCESSOR", ["success"])
conn(wrap_a, "PROCESSOR", wrap_b, "PROCESSOR", ["success"])
conn(wrap_b, "PROCESSOR", head, "PROCESSOR", ["success"])
conn(head, "PROCESSOR", tail, "PROCESSOR", ["success"])
conn(tail, "PROCESSOR", put, "PROCESSOR", ["success"])
conn(dele, "PROCESSOR", put, "PROCESSOR", ["success"])
conn(clr, "PROCESSOR", put, "PROCESSOR", ["success"])
conn(put, "PROCESSOR", put, "PROCESSOR", ["retry"])
conn(put, "PROCESSOR", failed, "OUTPUT_PORT", ["failure"])
for p in (escape, b64, strip, wrap_a, wrap_b, head, tail, dele, clr):
    conn(p, "PROCESSOR", failed, "OUTPUT_PORT", ["failure"])

# Export, then rename the top group to the flow's name and drop this build's group.
raw = urllib.request.urlopen(f"{API}/process-groups/{G}/download").read()
flow = json.loads(raw)
flow["flowContents"]["name"] = "idb-mirror"
with open(OUT, "w") as f:
    json.dump(flow, f, indent=2)
    f.write("\n")
print(f"wrote {OUT} (NiFi {version})")

cur = call("GET", f"/process-groups/{G}")
call("DELETE", f"/process-groups/{G}?version={cur['revision']['version']}&clientId=idb-mirror-build")
c = call("GET", f"/parameter-contexts/{ctx['id']}")
call("DELETE", f"/parameter-contexts/{ctx['id']}?version={c['revision']['version']}&clientId=idb-mirror-build")
