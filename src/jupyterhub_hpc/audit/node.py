"""The node side of ``jupyterhub-hpc audit --node``: what another user on this compute node
can reach of the Jupyter servers, kernels and files running here.

Run as an ordinary user, inside a job; it only reads ``/proc`` and the file system and
connects to local listening ports (an HTTP ``GET /api`` and a look at the first bytes a
port sends: ZeroMQ announces itself). It never reads the content of a file it finds
readable. The ``/proc/net/tcp`` parser and every check here are pure functions of the facts
that :func:`jupyterhub_hpc.audit.node_probe.collect` gathers.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import stat
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..singleuser.listeners import TcpSocket, decode_address, parse_proc_net_tcp
from .findings import Finding

__all__ = [
    "DEFAULT_OUTPUT_GLOBS",
    "DEFAULT_RUNTIME_GLOBS",
    "Listener",
    "NodeFacts",
    "PathFacts",
    "TcpSocket",
    "check_node",
    "classify_http",
    "decode_address",
    "parse_proc_net_tcp",
]

DEFAULT_OUTPUT_GLOBS = ("/home/*/.jupyterhub-hpc-*.log",)
DEFAULT_RUNTIME_GLOBS = (
    "/tmp/jupyterhub-hpc-*",
    "/run/user/*/jupyterhub-hpc",
    "/run/user/*/jupyter",
    "/home/*/.local/share/jupyter/runtime",
)
#: the launcher's private directories: jupyterhub-hpc-UID, or jupyterhub-hpc-UID-XXXX
PRIVATE_DIR = re.compile(r"^jupyterhub-hpc-(\d+)(-.+)?$")


def classify_http(data: bytes) -> str:
    """What answered ``GET /api``: ``jupyter`` (a Jupyter server's /api JSON), ``tornado``
    (Jupyter's web server), ``http`` (another web server), ``tls`` (a TLS alert), ``silent``
    (nothing) or ``other``."""
    if not data:
        return "silent"
    if data[:1] == b"\x15" and data[1:2] == b"\x03":
        return "tls"
    if not data.startswith(b"HTTP/"):
        return "other"
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split()
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if len(status) > 1 and status[1] == "200":
        try:
            answer = json.loads(body.decode("utf-8", "replace"))
        except ValueError:
            answer = None
        if isinstance(answer, dict) and "version" in answer:
            return "jupyter"
    if "tornado" in headers.get("server", "").lower():
        return "tornado"
    return "http"


def process_kind(cmdline: bytes) -> str:
    """``kernel``, ``server`` or "" from a NUL-separated ``/proc/PID/cmdline``."""
    argv = [a.decode(errors="replace") for a in cmdline.split(b"\0") if a]
    text = " ".join(argv)
    if "ipykernel" in text or re.search(r"(^|[/ ])kernel[-_]", text):
        return "kernel"
    names = {os.path.basename(a) for a in argv[:3]}
    servers = {"jupyterhub-singleuser", "jupyter-lab", "jupyter-server", "jupyter-notebook"}
    if names & servers or "jupyterhub-hpc-singleuser" in names:
        return "server"
    return ""


@dataclass(frozen=True)
class Listener:
    """A listening socket, with what a probe of it found (``probe``: see :func:`probe`) and,
    for our own sockets, the process holding it."""

    socket: TcpSocket
    owner: str = ""
    probe: str = ""
    pid: int | None = None
    process: str = ""  # process_kind() of that process (own sockets only)


@dataclass(frozen=True)
class PathFacts:
    path: str
    uid: int
    mode: int
    owner: str = ""
    readable: bool = False  # by the user running the audit

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


@dataclass(frozen=True)
class NodeFacts:
    uid: int
    user: str = ""
    uid_min: int = 1000
    listeners: tuple[Listener, ...] = ()
    #: kinds of Jupyter processes (server, kernel) other uids run, from readable cmdlines
    jupyter_uids: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    output_files: tuple[PathFacts, ...] = ()
    runtime_dirs: tuple[PathFacts, ...] = ()
    #: files inside other users' runtime directories (and inside our own)
    runtime_files: tuple[PathFacts, ...] = ()


def _perm(p: PathFacts) -> str:
    return f"{stat.S_IMODE(p.mode):04o}, owner {p.owner or p.uid}"


def _is_user(uid: int, facts: NodeFacts) -> bool:
    return uid >= facts.uid_min and uid != 65534


def check_listeners(facts: NodeFacts) -> list[Finding]:
    out: list[Finding] = []
    system: dict[int, list[str]] = defaultdict(list)
    by_user: dict[tuple[int, str], list[Listener]] = defaultdict(list)
    for item in facts.listeners:
        sock = item.socket
        if sock.uid == facts.uid:
            continue
        if not _is_user(sock.uid, facts):
            system[sock.uid].append(sock.endpoint)
            continue
        by_user[(sock.uid, sock.address)].append(item)
    for uid, endpoints in sorted(system.items()):
        out.append(
            Finding(
                "node.system-listener",
                "info",
                f"system account uid {uid} listens on {', '.join(sorted(endpoints))}.",
                "Nothing to do for jupyterhub-hpc (services of the node).",
                f"uid {uid}",
            )
        )
    for (uid, address), items in sorted(by_user.items()):
        kinds = facts.jupyter_uids.get(uid, ())
        runs = f" (uid {uid} runs Jupyter {'/'.join(kinds)} processes here)" if kinds else ""
        unprobed = [i for i in items if not i.probe]
        guessed_kernel = len(unprobed) >= 5 and ipaddress.ip_address(address).is_loopback
        zmq = [i for i in items if i.probe == "zmq" or (guessed_kernel and not i.probe)]
        owner = items[0].owner or f"uid {uid}"
        if zmq:
            ports = ",".join(str(i.socket.port) for i in sorted(zmq, key=lambda i: i.socket.port))
            how = (
                "speak ZeroMQ"
                if any(i.probe == "zmq" for i in zmq)
                else "are 5 or more loopback ports (not probed)"
            )
            out.append(
                Finding(
                    "node.kernel-reachable",
                    "high",
                    f"{owner}'s ports {ports} on {address} {how}: most likely Jupyter kernels over "
                    f"TCP{runs}. Anyone on the node can subscribe to a kernel's iopub channel and "
                    "see every output, without the key.",
                    "Users' kernels must use IPC (kernel_transport = 'ipc', the default of "
                    "recent jupyterhub-hpc); tell the owner, and upgrade.",
                    f"{address}:{ports} (uid {uid})",
                )
            )
        for item in sorted(items, key=lambda i: i.socket.port):
            where = f"{item.socket.endpoint} (uid {uid})"
            if item in zmq:
                continue
            if item.probe in ("jupyter", "tornado"):
                out.append(
                    Finding(
                        "node.server-reachable",
                        "high",
                        f"{owner}'s port {where} answers plain HTTP like a Jupyter server "
                        f"({item.probe}){runs}: every user on this node can talk to it, and the "
                        "hub's requests to it are not protected by TLS.",
                        "Turn on c.JupyterHub.internal_ssl (servers then speak TLS and require the "
                        "hub's client certificate) and set subdomain_host; if it is not a server "
                        "the hub started, tell the owner.",
                        where,
                    )
                )
            else:
                what = f" ({item.probe})" if item.probe else ""
                if item.probe == "tls":
                    what = " (TLS: e.g. a Jupyter server with internal_ssl)"
                out.append(
                    Finding(
                        "node.other-listener",
                        "medium",
                        f"{owner} listens on {where}{what}{runs}: reachable by every user on the node.",
                        "If it is a Jupyter server or kernel, see the owner; a port bound before "
                        "a server starts can take over that server's route (launcher fix).",
                        where,
                    )
                )
    return out


def check_own_listeners(facts: NodeFacts) -> list[Finding]:
    out: list[Finding] = []
    for item in facts.listeners:
        sock = item.socket
        if sock.uid != facts.uid:
            continue
        where = f"{sock.endpoint} (pid {item.pid})" if item.pid else sock.endpoint
        if item.process == "kernel" or item.probe == "zmq":
            out.append(
                Finding(
                    "node.own-kernel-tcp",
                    "high",
                    f"your kernel listens on TCP {where}: any other user on this node can read "
                    "its output (iopub) without the key.",
                    "Use kernel_transport = 'ipc' (hub setting) or start kernels with --transport=ipc.",
                    where,
                )
            )
        elif ipaddress.ip_address(sock.address).is_unspecified:
            server = item.process == "server"
            out.append(
                Finding(
                    "node.own-wildcard",
                    "medium" if server else "low",
                    f"your {'Jupyter server' if server else 'process'} listens on every interface: {where}.",
                    "Bind to the address the hub uses (server_bind) or to 127.0.0.1.",
                    where,
                )
            )
    return out


def check_output_files(facts: NodeFacts) -> list[Finding]:
    out: list[Finding] = []
    for path in facts.output_files:
        if path.is_dir:
            continue
        if path.uid != facts.uid and path.readable:
            out.append(
                Finding(
                    "node.readable-output",
                    "high",
                    f"{path.owner or path.uid}'s job output is readable by you ({_perm(path)}): "
                    "it shows their server's log, URLs, and whatever their code prints.",
                    f"Job output files must be 0600 (the job script sets umask 077); chmod 0600 {path.path}.",
                    path.path,
                )
            )
        elif path.uid == facts.uid and stat.S_IMODE(path.mode) & 0o044:
            out.append(
                Finding(
                    "node.own-output-readable",
                    "medium",
                    f"your job output is readable by others ({_perm(path)}).",
                    f"chmod 0600 {path.path}",
                    path.path,
                )
            )
    return out


def check_runtime(facts: NodeFacts) -> list[Finding]:
    out: list[Finding] = []
    for d in facts.runtime_dirs:
        name = os.path.basename(d.path)
        private = PRIVATE_DIR.match(name)
        mode = stat.S_IMODE(d.mode)
        if d.uid == facts.uid:
            if mode & 0o077:
                out.append(
                    Finding(
                        "node.own-runtime-dir",
                        "high",
                        f"your Jupyter runtime directory is open to others ({_perm(d)}): it holds "
                        "your server's token and your kernels' keys.",
                        f"chmod 0700 {d.path}",
                        d.path,
                    )
                )
            continue
        if private and int(private.group(1)) == facts.uid and not private.group(2):
            out.append(
                Finding(
                    "node.runtime-dir-squatted",
                    "medium",
                    f"{d.path}, the name of YOUR private directory, was created by "
                    f"{d.owner or d.uid} ({_perm(d)}).",
                    "The launcher then uses a new random directory; report the account to the admins.",
                    d.path,
                )
            )
        elif private and mode != 0o700:
            out.append(
                Finding(
                    "node.runtime-dir-mode",
                    "low",
                    f"{d.owner or d.uid}'s directory {d.path} is not 0700 ({_perm(d)}).",
                    "Runtime directories must be 0700 (the launcher creates them so); the owner "
                    f"should chmod 0700 {d.path} or remove it.",
                    d.path,
                )
            )
    for f in facts.runtime_files:
        if f.uid == facts.uid or not f.readable or f.is_dir:
            continue
        name = os.path.basename(f.path)
        holds = (
            "a kernel's connection file: its HMAC key lets you run code in that kernel"
            if name.startswith("kernel")
            else "a server's info file: its token logs you in as the owner"
            if name.startswith(("jpserver", "nbserver"))
            else "a runtime file"
        )
        out.append(
            Finding(
                "node.readable-runtime-file",
                "high",
                f"{f.owner or f.uid}'s {f.path} is readable by you ({_perm(f)}): {holds}.",
                "Jupyter's runtime files belong in a 0700 directory (the launcher's private "
                "directory); the owner should chmod 0700 the directory and stop the kernels.",
                f.path,
            )
        )
    return out


NODE_CHECKS: tuple[Callable[[NodeFacts], list[Finding]], ...] = (
    check_listeners,
    check_own_listeners,
    check_output_files,
    check_runtime,
)


def check_node(facts: NodeFacts) -> list[Finding]:
    return [finding for check in NODE_CHECKS for finding in check(facts)]
