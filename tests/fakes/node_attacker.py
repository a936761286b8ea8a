"""Another user on the compute node, for the shared-node tests; run as that user.

``bind``: read ``PORT`` or ``ADDRESS PORT`` lines from standard input, bind and listen on
each (``0.0.0.0`` without an address), print ``bound N`` (or ``busy N: reason``); every
connection accepted is recorded as one JSON line in the file ``--log`` with the first bytes
it sent (a hub routing a user's browser here would show cookies and the xsrf token in them).

``subscribe``: a ZMQ SUB socket on each endpoint given (``tcp://...`` or ``ipc://...``),
subscribed to everything, for ``--seconds``; prints ``{"messages": N, "with_marker": M,
"errors": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import threading
import time


def bind(log: str) -> None:
    listeners: list[socket.socket] = []
    lock = threading.Lock()

    def serve(sock: socket.socket) -> None:
        while True:
            try:
                conn, peer = sock.accept()
            except OSError:
                return
            conn.settimeout(2)
            try:
                first = conn.recv(4096)
            except OSError:
                first = b""
            with lock, open(log, "a") as handle:
                handle.write(
                    json.dumps(
                        {
                            "port": sock.getsockname()[1],
                            "peer": peer[0],
                            "sent": first.decode(errors="replace"),
                        }
                    )
                    + "\n"
                )
            conn.close()

    for line in sys.stdin:
        *address, port_text = line.split()
        port = int(port_text)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
        try:
            sock.bind((address[0] if address else "0.0.0.0", port))
            sock.listen()
        except OSError as exc:
            print(f"busy {port}: {exc}", flush=True)
            sock.close()
            continue
        listeners.append(sock)
        threading.Thread(target=serve, args=(sock,), daemon=True).start()
        print(f"bound {port}", flush=True)
    # stdin closed: keep the ports until killed
    while True:
        select.select([], [], [], 3600)


def subscribe(endpoints: list[str], seconds: float, marker: str) -> None:
    import zmq

    context = zmq.Context()
    sockets, errors = [], []
    for endpoint in endpoints:
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.LINGER, 0)
        try:
            sub.connect(endpoint)
        except zmq.ZMQError as exc:
            errors.append(f"{endpoint}: {exc}")
            sub.close()
            continue
        sockets.append(sub)
    poller = zmq.Poller()
    for sub in sockets:
        poller.register(sub, zmq.POLLIN)
    messages = with_marker = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for sub, _ in poller.poll(100):
            frames = sub.recv_multipart()
            messages += 1
            if any(marker.encode() in frame for frame in frames):
                with_marker += 1
    print(json.dumps({"messages": messages, "with_marker": with_marker, "errors": errors}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("bind")
    b.add_argument("--log", required=True)
    s = sub.add_parser("subscribe")
    s.add_argument("--seconds", type=float, default=8)
    s.add_argument("--marker", default="")
    s.add_argument("endpoints", nargs="*")
    args = parser.parse_args()
    if args.mode == "bind":
        bind(args.log)
    else:
        subscribe(args.endpoints, args.seconds, args.marker)


if __name__ == "__main__":
    main()
