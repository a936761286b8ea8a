"""Job-side launcher: start Jupyter on a free port of the node, prove it listens, report the port.

Runs inside the batch job as the user::

    jupyterhub-hpc-singleuser [--ip ADDR] [--port-range LOW-HIGH] -- jupyterhub-singleuser ...

It loads the job's software modules first (:mod:`.modules`; a failed load ends the job at
once with the tool's message), then picks a port, starts the server command on it (telling
it the address through ``JUPYTERHUB_SERVICE_URL``) and waits until **the server's own process** listens
there: the listening socket of ``ADDR:PORT`` in ``/proc/net/tcp`` must be one the
server process (or a descendant) holds open. Another user's process that takes
the port first (other users share the node) is never reported: the launcher
says so, stops that attempt and tries another port. Only then does it report
**only the port** (``{"port": N}``) to ``$JUPYTERHUB_API_URL/hpc/port`` with the
server's own token, retrying with back-off while the hub is unreachable (a hub
restart must not kill a job that starts meanwhile). It stays the server's
parent: signals are passed on, its exit status is the server's, and the job's
private directory (runtime files, kernel sockets, certificates) is removed at
the end.
"""

from __future__ import annotations

import argparse
import enum
import fcntl
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from .certs import SSL_KEY_ENV, write_job_certificates
from .hubcall import hub_ssl_context
from .listeners import TcpSocket, listeners, process_tree, socket_inodes
from .modules import load_server_modules
from .portrange import parse_port_range
from .private import PrivateDir

#: the job's container, if any (jupyterhub_hpc.containers.runtimes.CONTAINER_ENV; not imported:
#: the launcher stays standard library only without a container)
CONTAINER_ENV = "JUPYTERHUB_HPC_CONTAINER"


class ServerContainer(Protocol):
    """The job's container (:class:`jupyterhub_hpc.containers.launch.ContainerLaunch`)."""

    def command(self, command: list[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]: ...

    def server_pids(self) -> set[int]: ...

    def cleanup(self) -> list[str]: ...


RETRY_STATUSES = {502, 503, 504}


def parse_range(text: str) -> tuple[int, int]:
    """``--port-range LOW-HIGH``, read by the hub's own parser (:mod:`.portrange`)."""
    try:
        ports = parse_port_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return ports.low, ports.high


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


class PortsHeld(Exception):
    """No port could be used: every candidate is held by other processes."""


def port_is_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def holders(ip: str, port: int) -> list[TcpSocket]:
    """The listening sockets a connection to ``ip:port`` would reach."""
    return [sock for sock in listeners(port) if sock.covers(ip)]


def describe_holder(ip: str, port: int) -> str:
    """``"port P on NODE is held by another user's process (uid U)"``, as far as the node tells."""
    uids = sorted({sock.uid for sock in holders(ip, port)} - {os.getuid()})
    who = f"another user's process (uid {', '.join(map(str, uids))})" if uids else "another process"
    return f"port {port} on {socket.gethostname()} ({ip}) is held by {who}"


def pick_port(ip: str, port_range: tuple[int, int] | None, exclude: set[int] | None = None) -> int:
    """A port that is free on ``ip`` now: from the kernel, or from ``port_range``
    (never one of ``exclude``). Raises :class:`PortsHeld` when the range has none."""
    exclude = exclude or set()
    if port_range is None:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((ip, 0))
                port = int(sock.getsockname()[1])
            if port not in exclude:
                return port
        raise PortsHeld(f"the kernel of {socket.gethostname()} hands out no new port on {ip}")
    candidates = [p for p in range(port_range[0], port_range[1] + 1) if p not in exclude]
    random.shuffle(candidates)
    for candidate in candidates:
        if port_is_free(ip, candidate):
            return candidate
    low, high = port_range
    uids = sorted({s.uid for s in listeners() if low <= s.port <= high and s.covers(ip)} - {os.getuid()})
    by = f" (listening: uid {', '.join(map(str, uids))})" if uids else ""
    raise PortsHeld(f"every port in {low}-{high} on {socket.gethostname()} ({ip}) is in use{by}")


class Outcome(enum.Enum):
    LISTENING = "listening"  # the server's own process listens on the port
    TAKEN = "taken"  # another process holds the port
    EXITED = "exited"  # the server ended before it listened
    TIMEOUT = "timeout"


def await_own_listener(
    child: subprocess.Popen[bytes],
    ip: str,
    port: int,
    *,
    timeout: float,
    interval: float = 0.05,
    stop: Callable[[], bool] = lambda: False,
    more_roots: Callable[[], set[int]] = set,
) -> Outcome:
    """Wait until the socket a connection to ``ip:port`` reaches is one ``child`` (or
    a descendant of it, or of ``more_roots()``: a container's process) holds open; TAKEN as
    soon as it is anybody else's."""
    deadline = time.monotonic() + timeout
    while True:
        held = holders(ip, port)
        if held:
            roots = {child.pid, *more_roots()}
            ours = socket_inodes(set().union(*(process_tree(pid) for pid in roots)))
            if any(sock.inode in ours for sock in held):
                return Outcome.LISTENING
            return Outcome.TAKEN
        if child.poll() is not None:
            # it may have failed to bind a port another process bound without listening
            return Outcome.EXITED if port_is_free(ip, port) else Outcome.TAKEN
        if stop() or time.monotonic() > deadline:
            return Outcome.TIMEOUT
        time.sleep(interval)


def _call_hub(
    make_request: Callable[[], urllib.request.Request],
    *,
    timeout: float,
    what: str,
    probe: bool = False,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Send a request to the hub, retrying with exponential back-off for ``timeout`` s
    while the hub is unreachable (no connection, or HTTP 502/503/504) and ``alive()``.
    Another HTTP error is the hub refusing ``what`` (SystemExit), except for a ``probe``,
    for which any answer means the hub is there."""
    deadline = time.monotonic() + timeout
    delay = 0.5
    context = hub_ssl_context()
    while True:
        try:
            with urllib.request.urlopen(make_request(), timeout=10, context=context) as response:
                response.read()
                return
        except urllib.error.HTTPError as exc:
            if exc.code not in RETRY_STATUSES:
                if probe:
                    return
                detail = exc.read().decode(errors="replace")[:500]
                raise SystemExit(
                    f"jupyterhub-hpc-singleuser: the hub refused {what}: {exc.code} {detail}"
                ) from None
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc))
        if time.monotonic() + delay > deadline:
            raise SystemExit(f"jupyterhub-hpc-singleuser: hub unreachable for {timeout:.0f} s ({problem})")
        if not alive():
            raise SystemExit(f"jupyterhub-hpc-singleuser: the server ended before the hub took {what}")
        print(
            f"jupyterhub-hpc-singleuser: hub not reachable ({problem}); retrying in {delay:.1f} s", flush=True
        )
        time.sleep(delay)
        delay = min(delay * 2, 30.0)


def wait_for_hub(api_url: str, *, timeout: float) -> None:
    """Return once the hub's API answers at all (``GET $JUPYTERHUB_API_URL``), retrying
    while it is away (a hub restart): Jupyter itself gives up on an absent hub after
    about 30 s, so it starts only once the hub is there."""
    _call_hub(lambda: urllib.request.Request(api_url, method="GET"), timeout=timeout, what="", probe=True)


def report_port(
    api_url: str, token: str, port: int, *, timeout: float, alive: Callable[[], bool] = lambda: True
) -> None:
    """POST the port to the hub, retrying with exponential back-off for ``timeout`` s
    (while ``alive()``: a server that ended is not reported)."""
    url = api_url.rstrip("/") + "/hpc/port"
    body = json.dumps({"port": port}).encode()
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    _call_hub(
        lambda: urllib.request.Request(url, data=body, method="POST", headers=headers),
        timeout=timeout,
        what="the port",
        alive=alive,
    )


def service_url(ip: str, port: int) -> str:
    """``JUPYTERHUB_SERVICE_URL`` with this node's address and port (path kept)."""
    base = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:0/")
    parts = urlsplit(base)
    scheme = "https" if os.environ.get("JUPYTERHUB_SSL_CERTFILE") else parts.scheme or "http"
    return urlunsplit((scheme, f"{ip}:{port}", parts.path or "/", "", ""))


def kernel_environment(private: PrivateDir, transport: str, env: dict[str, str]) -> None:
    """With ``transport == "ipc"``, kernels talk over Unix sockets in the private
    directory (which only the user can enter) instead of TCP ports on 127.0.0.1 that
    every user of the node can connect to: a configuration directory put first on
    ``JUPYTER_CONFIG_PATH`` sets ``KernelManager.transport``."""
    if transport != "ipc":
        return
    config_dir = private.subdir("config")
    settings = json.dumps({"KernelManager": {"transport": "ipc"}})
    for name in ("jupyter_server_config.json", "jupyter_notebook_config.json"):
        with open(os.path.join(config_dir, name), "w", encoding="utf-8") as handle:
            handle.write(settings)
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(p for p in (config_dir, env.get("JUPYTER_CONFIG_PATH")) if p)


@dataclass
class Supervisor:
    """The server process and the signals meant for it."""

    child: subprocess.Popen[bytes] | None = None
    signals: list[int] = field(default_factory=list)
    #: run once the server has ended (a container runtime's leftovers); each says what it did
    cleanups: list[Callable[[], list[str]]] = field(default_factory=list)
    #: more processes a signal for the server goes to: a container's own process, which is not
    #: the child's descendant (podman's conmon starts it) and not the scheduler's to signal
    also_signal: Callable[[], set[int]] = set

    def forward(self, signum: int, _frame: FrameType | None) -> None:
        self.signals.append(signum)
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)
            for pid in self.also_signal():
                try:
                    os.kill(pid, signum)
                except (ProcessLookupError, PermissionError):
                    pass

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(signum, self.forward)

    @property
    def stopping(self) -> bool:
        return any(s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) for s in self.signals)

    def end(self, grace: float = 10.0) -> None:
        """Stop the current server attempt (SIGTERM, then SIGKILL after ``grace`` s)."""
        child = self.child
        if child is None or child.poll() is not None:
            return
        child.terminate()
        for pid in self.also_signal():
            try:
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def wait(self) -> int:
        """The server's exit status (128 + N for signal N, as a shell reports it)."""
        assert self.child is not None
        while True:
            try:
                code = self.child.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
        return 128 - code if code < 0 else code


def start_server(
    command: list[str],
    env: dict[str, str],
    ip: str,
    args: argparse.Namespace,
    supervisor: Supervisor,
    container: ServerContainer | None = None,
) -> int | None:
    """Start the server until its own process listens on a port (returned), trying
    another port whenever another process holds the one picked. None when the
    server ended or the job is being stopped (``supervisor.child`` tells how). With a
    ``container``, the server command runs inside it."""
    tried: set[int] = set()
    for _attempt in range(args.attempts):
        try:
            port = pick_port(ip, args.port_range, exclude=tried)
        except PortsHeld as exc:
            raise SystemExit(f"jupyterhub-hpc-singleuser: {exc}") from None
        tried.add(port)
        env["JUPYTERHUB_SERVICE_URL"] = service_url(ip, port)
        print(
            f"jupyterhub-hpc-singleuser: starting the server on {ip}:{port} on {socket.gethostname()}",
            flush=True,
        )
        argv, attempt_env = container.command(command, env) if container else (command, env)
        try:
            supervisor.child = subprocess.Popen(argv, env=attempt_env)
        except OSError as exc:
            print(f"jupyterhub-hpc-singleuser: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
            raise SystemExit(127) from None
        outcome = await_own_listener(
            supervisor.child,
            ip,
            port,
            timeout=args.listen_timeout,
            stop=lambda: supervisor.stopping,
            more_roots=container.server_pids if container else set,
        )
        if outcome is Outcome.LISTENING:
            return port
        if outcome is Outcome.EXITED or supervisor.stopping:
            return None
        if outcome is Outcome.TIMEOUT:
            supervisor.end()
            raise SystemExit(
                f"jupyterhub-hpc-singleuser: the server did not listen on {ip}:{port} "
                f"within {args.listen_timeout:.0f} s"
            )
        message = describe_holder(ip, port)
        supervisor.end()
        print(f"jupyterhub-hpc-singleuser: {message}; trying another port", flush=True)
    raise SystemExit(
        f"jupyterhub-hpc-singleuser: {args.attempts} ports on {socket.gethostname()} were each taken by "
        "another process before the server could listen; not reporting any of them"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
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
    parser.add_argument(
        "--listen-timeout", type=float, default=600.0, help="seconds the server may take to listen"
    )
    parser.add_argument(
        "--attempts", type=int, default=5, help="ports to try when other processes take the one picked"
    )
    parser.add_argument(
        "--kernel-transport",
        choices=["ipc", "tcp"],
        default="ipc",
        help="how the server talks to its kernels: Unix sockets in the private directory, or TCP",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the server command")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        command = ["jupyterhub-singleuser"]
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    api_url = os.environ.get("JUPYTERHUB_API_URL", "")
    if not token or not api_url:
        raise SystemExit("jupyterhub-hpc-singleuser: JUPYTERHUB_API_TOKEN and JUPYTERHUB_API_URL must be set")
    supervisor = Supervisor()
    supervisor.install()
    private = PrivateDir()
    for path in private.stale_removed:
        print(f"jupyterhub-hpc-singleuser: removed {path} (left by an earlier job)", flush=True)
    try:
        sys.exit(run(command, token, api_url, args, private, supervisor))
    finally:
        supervisor.end()
        for cleanup in supervisor.cleanups:
            for done in cleanup():
                print(f"jupyterhub-hpc-singleuser: {done}", flush=True)
        private.remove()


def run(
    command: list[str],
    token: str,
    api_url: str,
    args: argparse.Namespace,
    private: PrivateDir,
    supervisor: Supervisor,
) -> int:
    """Start, prove, report, then wait for the server; its exit status."""
    if SSL_KEY_ENV in os.environ:  # internal_ssl: the job carries its server's certificates
        write_job_certificates(os.environ, private.subdir("certs"))
        print("jupyterhub-hpc-singleuser: internal SSL certificates written", flush=True)
    env = load_server_modules(os.environ)  # the server's environment is the one the modules left
    if not env.get("JUPYTER_RUNTIME_DIR"):
        # not ~/.local/share/jupyter/runtime: keep the token-bearing files off the (shared) home
        env["JUPYTER_RUNTIME_DIR"] = private.path
    kernel_environment(private, args.kernel_transport, env)
    ip = bind_address(args.ip)
    container = None
    if CONTAINER_ENV in env:
        from ..containers.launch import container_launch  # pydantic, only when asked for

        container = container_launch(env, private)
        if container is not None:
            supervisor.cleanups.append(container.cleanup)
            supervisor.also_signal = container.server_pids
    wait_for_hub(api_url, timeout=args.report_timeout)
    port = start_server(command, env, ip, args, supervisor, container)
    if port is None:
        return supervisor.wait() if supervisor.child is not None else 143
    print(f"jupyterhub-hpc-singleuser: the server listens on {ip}:{port}; reporting the port", flush=True)
    child = supervisor.child
    assert child is not None
    report_port(
        api_url,
        token,
        port,
        timeout=args.report_timeout,
        alive=lambda: child.poll() is None and not supervisor.stopping,
    )
    return supervisor.wait()


if __name__ == "__main__":
    main()
