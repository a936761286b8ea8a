"""Job-side launcher: bind a free port on the node, report it to the hub, run Jupyter.

Runs inside the batch job as the user::

    jupyterhub-hpc-singleuser [--ip ADDR] [--port-range LOW-HIGH] -- jupyterhub-singleuser ...

It reports **only the port** (``{"port": N}``) to ``$JUPYTERHUB_API_URL/hpc/port``
with the server's own token, retrying with back-off while the hub is
unreachable (a hub restart must not kill a job that starts meanwhile), then
replaces itself with the server command, which it tells the address through
``JUPYTERHUB_SERVICE_URL``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import socket
import ssl
import stat
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from ..certs import SSL_KEY_ENV, write_job_certificates

RETRY_STATUSES = {502, 503, 504}


def parse_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not sep or not low.isdigit() or not high.isdigit() or not 0 < int(low) <= int(high) < 65536:
        raise argparse.ArgumentTypeError(f"not a port range: {text!r} (use LOW-HIGH)")
    return int(low), int(high)


def node_address() -> str:
    """The address this node's host name resolves to (never 0.0.0.0)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def interface_address(name: str) -> str:
    """The IPv4 address of the network interface ``name`` (Linux ``SIOCGIFADDR``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
    return socket.inet_ntoa(packed[20:24])


def bind_address(spec: str) -> str:
    """Where the server listens: ``""`` the node's own address; an interface name
    (``ib0``) that interface's IPv4 address; otherwise an address or a host name,
    in which ``{hostname}`` is this node's name (``"{hostname}-ib"``)."""
    if not spec:
        return node_address()
    if "/" not in spec and os.path.isdir(f"/sys/class/net/{spec}"):
        return interface_address(spec)
    return socket.gethostbyname(spec.replace("{hostname}", socket.gethostname()))


def private_dir() -> str:
    """This user's private directory on the node (0700), outside the home directory,
    for Jupyter's runtime files (the server's info file holds its API token, kernels'
    connection files their keys): ``$XDG_RUNTIME_DIR/jupyterhub-hpc`` or
    ``$TMPDIR/jupyterhub-hpc-UID``, reused by the user's later jobs. Should that
    path be anything else (a symlink, another owner, other modes), a new directory."""
    uid = os.getuid()
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if base and os.path.isdir(base) and os.stat(base).st_uid == uid:
        path = os.path.join(base, "jupyterhub-hpc")
    else:
        base = tempfile.gettempdir()
        path = os.path.join(base, f"jupyterhub-hpc-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode) and info.st_uid == uid and stat.S_IMODE(info.st_mode) == 0o700:
        return path
    return tempfile.mkdtemp(prefix=f"jupyterhub-hpc-{uid}-", dir=base)


def pick_port(ip: str, port_range: tuple[int, int] | None) -> int:
    """A port that is free on ``ip`` now: from the kernel, or from ``port_range``."""
    if port_range is None:
        candidates: Sequence[int] = [0]
    else:
        candidates = list(range(port_range[0], port_range[1] + 1))
        random.shuffle(candidates)
    for candidate in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((ip, candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise SystemExit(f"jupyterhub-hpc-singleuser: no free port on {ip} in {port_range}")


def _ssl_context() -> ssl.SSLContext | None:
    ca = os.environ.get("JUPYTERHUB_SSL_CLIENT_CA")
    if not ca:
        return None
    ctx = ssl.create_default_context(cafile=ca)
    cert, key = os.environ.get("JUPYTERHUB_SSL_CERTFILE"), os.environ.get("JUPYTERHUB_SSL_KEYFILE")
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


def report_port(api_url: str, token: str, port: int, *, timeout: float) -> None:
    """POST the port to the hub, retrying with exponential back-off for ``timeout`` s."""
    url = api_url.rstrip("/") + "/hpc/port"
    body = json.dumps({"port": port}).encode()
    deadline = time.monotonic() + timeout
    delay = 0.5
    context = _ssl_context()
    while True:
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                response.read()
                return
        except urllib.error.HTTPError as exc:
            if exc.code not in RETRY_STATUSES:
                detail = exc.read().decode(errors="replace")[:500]
                raise SystemExit(
                    f"jupyterhub-hpc-singleuser: the hub refused the port: {exc.code} {detail}"
                ) from None
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc))
        if time.monotonic() + delay > deadline:
            raise SystemExit(f"jupyterhub-hpc-singleuser: hub unreachable for {timeout:.0f} s ({problem})")
        print(
            f"jupyterhub-hpc-singleuser: hub not reachable ({problem}); retrying in {delay:.1f} s", flush=True
        )
        time.sleep(delay)
        delay = min(delay * 2, 30.0)


def service_url(ip: str, port: int) -> str:
    """``JUPYTERHUB_SERVICE_URL`` with this node's address and port (path kept)."""
    base = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:0/")
    parts = urlsplit(base)
    scheme = "https" if os.environ.get("JUPYTERHUB_SSL_CERTFILE") else parts.scheme or "http"
    return urlunsplit((scheme, f"{ip}:{port}", parts.path or "/", "", ""))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="jupyterhub-hpc-singleuser", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--ip",
        default="",
        help="address, host name ({hostname} allowed) or interface to bind (default: the node's address)",
    )
    parser.add_argument("--port-range", type=parse_range, default=None, help="LOW-HIGH")
    parser.add_argument(
        "--report-timeout",
        type=float,
        default=900.0,
        help="seconds to keep retrying the port report while the hub is away",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the server command")
    args = parser.parse_args(argv)
    command = [c for c in args.command]
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        command = ["jupyterhub-singleuser"]
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    api_url = os.environ.get("JUPYTERHUB_API_URL", "")
    if not token or not api_url:
        raise SystemExit("jupyterhub-hpc-singleuser: JUPYTERHUB_API_TOKEN and JUPYTERHUB_API_URL must be set")
    private = private_dir()
    if SSL_KEY_ENV in os.environ:  # internal_ssl: the job carries its server's certificates
        write_job_certificates(os.environ, tempfile.mkdtemp(prefix="certs-", dir=private))
        print("jupyterhub-hpc-singleuser: internal SSL certificates written", flush=True)
    ip = bind_address(args.ip)
    port = pick_port(ip, args.port_range)
    print(f"jupyterhub-hpc-singleuser: using {ip}:{port} on {socket.gethostname()}", flush=True)
    report_port(api_url, token, port, timeout=args.report_timeout)
    env = dict(os.environ)
    env["JUPYTERHUB_SERVICE_URL"] = service_url(ip, port)
    if not env.get("JUPYTER_RUNTIME_DIR"):
        # not ~/.local/share/jupyter/runtime: keep the token-bearing files off the (shared) home
        env["JUPYTER_RUNTIME_DIR"] = private
    sys.stdout.flush()
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
