"""A stand-in for jupyterhub-singleuser in launcher tests: listens where
``JUPYTERHUB_SERVICE_URL`` says, after ``FAKE_DELAY`` seconds, prints what it was
given as one JSON line, answers every connection with a tiny HTTP 200 and exits
after ``FAKE_SERVE`` seconds (0: until SIGTERM) with status ``FAKE_EXIT``;
``FAKE_FAIL_BEFORE_LISTEN=N`` exits with N before it listens."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from urllib.parse import urlsplit


def main() -> None:
    url = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    time.sleep(float(os.environ.get("FAKE_DELAY", "0")))
    if os.environ.get("FAKE_FAIL_BEFORE_LISTEN"):
        print("fake-server: failing before it listens", flush=True)
        sys.exit(int(os.environ["FAKE_FAIL_BEFORE_LISTEN"]))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(int(os.environ.get("FAKE_TERM_EXIT", "0"))))
    sock = socket.socket()
    try:
        sock.bind((url.hostname or "", url.port or 0))
    except OSError as exc:
        print(f"fake-server: cannot bind {url.netloc}: {exc}", flush=True)
        sys.exit(1)
    sock.listen()
    config_path = os.environ.get("JUPYTER_CONFIG_PATH", "")
    config = {}
    if config_path:
        first = config_path.split(os.pathsep)[0]
        try:
            with open(os.path.join(first, "jupyter_server_config.json")) as handle:
                config = json.load(handle)
        except OSError:
            pass
    print(
        "fake-server: "
        + json.dumps(
            {
                "pid": os.getpid(),
                "port": url.port,
                "runtime_dir": os.environ.get("JUPYTER_RUNTIME_DIR"),
                "config": config,
                "config_path": config_path,
            }
        ),
        flush=True,
    )
    serve = float(os.environ.get("FAKE_SERVE", "0"))
    sock.settimeout(0.1)
    deadline = time.monotonic() + serve if serve else None
    while deadline is None or time.monotonic() < deadline:
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        conn.close()
    sys.exit(int(os.environ.get("FAKE_EXIT", "0")))


if __name__ == "__main__":
    main()
