#!/usr/bin/env python3
"""A stand-in for ``jupyterhub-singleuser`` in the N=20 idle-server scenario (2 real cores
cannot hold 20 Jupyter servers): it listens where the spawner's job-side helper says and
answers every GET with 200 and a small JSON body, which is all the hub's start-up check
(``GET <server>/api``) and the benchmark need. Both spawners run it the same way:
ours' launcher ``exec``s it, batchspawner-singleuser ``runpy``s it, both with
``JUPYTERHUB_SERVICE_URL`` pointing at the port they reported. Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"version": "bench-light", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


def main() -> None:
    url = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
    host, port = url.hostname or "127.0.0.1", url.port or 0
    for arg in sys.argv[1:]:  # older hubs pass --ip/--port instead
        if arg.startswith("--port="):
            port = int(arg.split("=", 1)[1])
        elif arg.startswith("--ip="):
            host = arg.split("=", 1)[1] or host
    server = HTTPServer((host, port), Handler)
    print(f"BENCH_SERVER_LISTENING {time.time():.6f} {host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
