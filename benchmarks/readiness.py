"""What the launcher's ownership check costs a spawn (issue 11: at most 0.1 s).

The launcher now reports the port only once the server's own process listens on it: it
polls ``/proc/net/tcp`` every 50 ms and, once something listens, matches the socket's inode
against the server's process tree. Measured here, without a scheduler (the launcher is the
same program in a job):

* **detection**: from the moment the server's socket listens (the stand-in server's clock,
  just after ``listen()``) to the moment the hub stub receives the port report: the
  check's whole cost to a spawn, HTTP round trip included;
* **one check**: a single ``holders()`` + ``socket_inodes(process_tree())`` pass, with the
  machine's processes plus ``--extra-processes`` idle ones of this user (a busy login or
  compute node has hundreds).

Before this change the launcher reported the port before Jupyter bound it and the hub
then polled the port every 0.1 s (``HPCSpawner._wait_listening``), so the spawn already
waited up to 0.1 s for the listener; that wait remains, and now finds the port open at
its first try.

    /opt/jupyterhub-hpc/venv/bin/python benchmarks/readiness.py [--runs 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKE_SERVER = ROOT / "tests" / "fakes" / "fake_server.py"
sys.path.insert(0, str(ROOT / "src"))

from jupyterhub_hpc.singleuser.launcher import holders  # noqa: E402
from jupyterhub_hpc.singleuser.listeners import process_tree, socket_inodes  # noqa: E402


class Stub(ThreadingHTTPServer):
    daemon_threads = True
    received: list[float]


class Handler(BaseHTTPRequestHandler):
    server: Stub

    def do_POST(self) -> None:
        self.server.received.append(time.time())
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


def detection_once(stub: Stub, tmp: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update(
        PYTHONPATH=str(ROOT / "src"),
        TMPDIR=tmp,
        JUPYTERHUB_API_TOKEN="bench",
        JUPYTERHUB_API_URL=f"http://127.0.0.1:{stub.server_address[1]}/hub/api/",
        JUPYTERHUB_SERVICE_URL="http://127.0.0.1:0/",
        FAKE_SERVE="0.3",
    )
    before = len(stub.received)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyterhub_hpc.singleuser",
            "--ip",
            "127.0.0.1",
            "--",
            sys.executable,
            str(FAKE_SERVER),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    info = json.loads(next(line for line in out.splitlines() if line.startswith("fake-server: {"))[13:])
    assert len(stub.received) == before + 1
    return stub.received[-1] - float(info["listening_at"])


def one_check(extra: int) -> tuple[float, int]:
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(extra)]
    try:
        port = 1  # nothing listens: the check reads the tables and finds nobody
        started = time.perf_counter()
        rounds = 50
        for _ in range(rounds):
            holders("127.0.0.1", port)
            socket_inodes(process_tree(os.getpid()))
        per_check = (time.perf_counter() - started) / rounds
        processes = sum(1 for p in os.listdir("/proc") if p.isdigit())
    finally:
        for proc in sleepers:
            proc.kill()
            proc.wait()
    return per_check, processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--extra-processes", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    stub = Stub(("127.0.0.1", 0), Handler)
    stub.received = []
    threading.Thread(target=stub.serve_forever, args=(0.02,), daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        detections = [detection_once(stub, tmp) for _ in range(args.runs)]
    stub.shutdown()
    per_check, processes = one_check(args.extra_processes)
    result = {
        "runs": args.runs,
        "detection_s": {
            "median": statistics.median(detections),
            "max": max(detections),
            "min": min(detections),
        },
        "one_check_s": per_check,
        "processes_on_machine": processes,
        "poll_interval_s": 0.05,
    }
    print(f"listening -> port report received, {args.runs} launches:")
    print(f"  median {result['detection_s']['median'] * 1000:.1f} ms, max {max(detections) * 1000:.1f} ms")
    print(f"one ownership check with {processes} processes on the machine: {per_check * 1000:.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
