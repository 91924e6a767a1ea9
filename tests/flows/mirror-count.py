#!/usr/bin/env python3
"""The demo page's "PostgreSQL mirror" line in docker-compose.yml (service `mirror-count`).

GET /mirror/count?db=D&store=S&client=C -> {"rows": N}: the live rows (not tombstones) of that
client's store in idb_mirror (tests/flows/idb-mirror.sql). The same endpoint `cargo xtask mirror
--demo` runs; the page finds it through mirror.json next to it. Any origin may read a count.

Environment: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE (libpq's), LISTEN_PORT (8091).
Needs psycopg 3 (`pip install "psycopg[binary]"`).
"""
import json
import os
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg

SAFE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
QUERY = ("SELECT count(*) FROM idb_mirror WHERE NOT deleted "
         "AND db_name = %s AND store = %s AND client_id = %s")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        try:
            if url.path != "/mirror/count":
                raise ValueError(f"unknown path {url.path}")
            args = []
            for name in ("db", "store", "client"):
                v = q.get(name, [""])[0]
                if not SAFE.match(v):
                    raise ValueError(f"parameter {name}: only [A-Za-z0-9._-], at most 128 bytes")
                args.append(v)
            with psycopg.connect() as conn:
                rows = conn.execute(QUERY, args).fetchone()[0]
            status, body = 200, {"rows": rows}
        except ValueError as e:
            status, body = 400, {"error": str(e)}
        except psycopg.Error as e:
            status, body = 503, {"error": f"PostgreSQL: {e.__class__.__name__}"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("access-control-allow-origin", "*")
        self.send_header("cache-control", "no-store")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(os.environ.get("LISTEN_PORT", "8091"))
    print(f"mirror-count: http://0.0.0.0:{port}/mirror/count", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
