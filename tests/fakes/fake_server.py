"""A stand-in for jupyterhub-singleuser in launcher tests: listens where
``JUPYTERHUB_SERVICE_URL`` says, after ``FAKE_DELAY`` seconds, prints what it was
given as one JSON line, answers every connection with a tiny HTTP 200 and exits
after ``FAKE_SERVE`` seconds (0: until SIGTERM) with status ``FAKE_EXIT``;
``FAKE_FAIL_BEFORE_LISTEN=N`` exits with N before it listens. With ``FAKE_TLS_CERT`` and
``FAKE_TLS_KEY`` it speaks TLS with that certificate (a spoofing server without the user's
own); ``FAKE_LOG`` names a file where each request line it received is appended."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
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
    listening_at = time.time()
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
                "listening_at": listening_at,
            }
        ),
        flush=True,
    )
    serve = float(os.environ.get("FAKE_SERVE", "0"))
    context = None
    if os.environ.get("FAKE_TLS_CERT"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.environ["FAKE_TLS_CERT"], os.environ["FAKE_TLS_KEY"])
    sock.settimeout(0.1)
    deadline = time.monotonic() + serve if serve else None
    while deadline is None or time.monotonic() < deadline:
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        answer(conn, context)
    sys.exit(int(os.environ.get("FAKE_EXIT", "0")))


def answer(conn: socket.socket, context: ssl.SSLContext | None) -> None:
    """Read a request (through TLS with ``context``), log its first line, answer 200."""
    conn.settimeout(2)
    try:
        if context is not None:
            try:
                conn = context.wrap_socket(conn, server_side=True)
            except ssl.SSLError as exc:
                log(f"TLS handshake failed: {exc.reason}")
                return
        request = conn.recv(4096)
        if request:
            log(request.split(b"\r\n", 1)[0].decode(errors="replace"))
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except OSError:
        pass
    finally:
        conn.close()


def log(line: str) -> None:
    if os.environ.get("FAKE_LOG"):
        with open(os.environ["FAKE_LOG"], "a") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main()
