#!/usr/bin/env python3
"""Deploys the IndexedDB mirror flow (idb-mirror.json) into a NiFi and wires it to a root input
port, for docker-compose.yml's one-shot `mirror-deploy` service (or by hand):

    NIFI_URL=http://localhost:8080/nifi POSTGRES_JDBC_URL=jdbc:postgresql://postgres:5432/idb \
    POSTGRES_USER=nifi POSTGRES_PASSWORD=... JDBC_DRIVER_LOCATION=/opt/nifi/nifi-current/drivers \
    ROOT_PORT=from-bridge python3 tests/flows/deploy-idb-mirror.py

Idempotent: when a process group named `idb-mirror` exists already it only makes sure everything
runs. Standard library only.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request

NIFI = os.environ.get("NIFI_URL", "http://localhost:8080/nifi").rstrip("/")
API = NIFI + "-api"
FLOW = os.environ.get("FLOW", os.path.join(os.path.dirname(os.path.abspath(__file__)), "idb-mirror.json"))
ROOT_PORT = os.environ.get("ROOT_PORT", "from-bridge")
PARAMS = {
    "postgres.jdbc.url": os.environ.get("POSTGRES_JDBC_URL"),
    "postgres.user": os.environ.get("POSTGRES_USER"),
    "postgres.password": os.environ.get("POSTGRES_PASSWORD"),
    "jdbc.driver.location": os.environ.get("JDBC_DRIVER_LOCATION"),
}
CLIENT = "idb-mirror-deploy"


def call(method, path, body=None):
    req = urllib.request.Request(API + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {path}: HTTP {e.code}: {e.read().decode()[:2000]}")
    return json.loads(raw) if raw else None


def log(msg):
    print(f"[mirror-deploy] {msg}", flush=True)


deadline = time.time() + 600
while True:
    try:
        call("GET", "/flow/about")
        break
    except (urllib.error.URLError, OSError, SystemExit) as e:
        if time.time() > deadline:
            raise SystemExit(f"NiFi at {NIFI} did not answer within 10 minutes: {e}")
        time.sleep(5)
root = call("GET", "/flow/process-groups/root")["processGroupFlow"]
root_id = root["id"]
groups = [g for g in root["flow"]["processGroups"] if g["component"]["name"] == "idb-mirror"]
if groups:
    gid = groups[0]["id"]
    inner = None
    log(f"process group idb-mirror exists ({gid})")
else:
    flow = json.load(open(FLOW))
    for ctx in flow.get("parameterContexts", {}).values():
        for p in ctx.get("parameters", []):
            value = PARAMS.get(p["name"])
            if value:
                p["value"] = value
    missing = [k for k, v in PARAMS.items() if not v]
    if missing:
        log(f"parameters not given (flow defaults kept): {', '.join(missing)}")
    flow["flowContents"]["name"] = "idb-mirror"
    g = call("POST", f"/process-groups/{root_id}/process-groups", {
        "revision": {"version": 0, "clientId": CLIENT},
        "component": {"name": "idb-mirror", "position": {"x": 400.0, "y": 0.0}},
        "versionedFlowSnapshot": flow})
    gid = g["id"]
    log(f"deployed {FLOW} as process group idb-mirror ({gid})")
    ins = call("GET", f"/process-groups/{gid}/input-ports")["inputPorts"]
    inner = [p for p in ins if p["component"]["name"] == "in"][0]["id"]
    ports = call("GET", f"/process-groups/{root_id}/input-ports")["inputPorts"]
    existing = [p for p in ports if p["component"]["name"] == ROOT_PORT]
    if existing:
        port_id = existing[0]["id"]
    else:
        port_id = call("POST", f"/process-groups/{root_id}/input-ports", {
            "revision": {"version": 0, "clientId": CLIENT},
            "component": {"name": ROOT_PORT, "position": {"x": 0.0, "y": 0.0}}})["id"]
    call("POST", f"/process-groups/{root_id}/connections", {
        "revision": {"version": 0, "clientId": CLIENT},
        "component": {"source": {"id": port_id, "groupId": root_id, "type": "INPUT_PORT"},
                      "destination": {"id": inner, "groupId": gid, "type": "INPUT_PORT"}}})
    log(f"root input port {ROOT_PORT} → idb-mirror/in")

call("PUT", f"/flow/process-groups/{gid}/controller-services", {"id": gid, "state": "ENABLED"})
for _ in range(120):
    svcs = call("GET", f"/flow/process-groups/{gid}/controller-services?includeAncestorGroups=false")["controllerServices"]
    states = [s["component"]["state"] for s in svcs]
    if all(s == "ENABLED" for s in states):
        break
    time.sleep(1)
else:
    errs = [s["component"].get("validationErrors") for s in svcs]
    raise SystemExit(f"controller services not enabled: {states} {errs}")
call("PUT", f"/flow/process-groups/{gid}", {"id": gid, "state": "RUNNING"})
for p in call("GET", f"/process-groups/{root_id}/input-ports")["inputPorts"]:
    if p["component"]["name"] == ROOT_PORT and p["component"]["state"] != "RUNNING":
        call("PUT", f"/input-ports/{p['id']}/run-status", {
            "revision": {"version": p["revision"]["version"], "clientId": CLIENT}, "state": "RUNNING"})
log(f"running: send to root input port {ROOT_PORT}; the mirror is the table idb_mirror")
