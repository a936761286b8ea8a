"""Reading the facts of ``jupyterhub-hpc audit --node``: ``/proc``, the file system, and
probes of local ports (see :mod:`jupyterhub_hpc.audit.node` for the checks)."""

from __future__ import annotations

import glob
import ipaddress
import os
import pwd
import socket
import ssl
import stat
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from .node import (
    DEFAULT_OUTPUT_GLOBS,
    DEFAULT_RUNTIME_GLOBS,
    PRIVATE_DIR,
    Listener,
    NodeFacts,
    PathFacts,
    classify_http,
    parse_proc_net_tcp,
    process_kind,
)

__all__ = ["collect", "probe"]

_ZMTP = b"\xff"
_MAX_FILES = 500


def _connect_host(address: str) -> str:
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:
        return "::1" if ip.version == 6 else "127.0.0.1"
    return address


def _read_all(sock: socket.socket, limit: int = 65536) -> bytes:
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(4096)
        except (TimeoutError, OSError):
            break
        if not chunk:
            break
        data += chunk
    return data


def probe(address: str, port: int, timeout: float = 1.0) -> str:
    """What listens on ``address:port``: ``zmq`` (a ZeroMQ greeting), what :func:`classify_http`
    says of ``GET /api`` (also over TLS when plain HTTP gets nothing), or ``closed``."""
    host = _connect_host(address)
    request = f"GET /api HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
    try:
        with socket.create_connection((host, port), timeout) as sock:
            sock.settimeout(min(timeout, 0.3))
            try:
                first = sock.recv(16)
            except TimeoutError:
                first = None
            if first is not None:
                return "zmq" if first.startswith(_ZMTP) else ("silent" if not first else "other")
            sock.settimeout(timeout)
            sock.sendall(request)
            answer = classify_http(_read_all(sock))
    except OSError:
        return "closed"
    if answer not in ("silent", "other", "tls"):
        return answer
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(request)
                found = classify_http(_read_all(tls))
                return found if found != "silent" else "tls"
    except ssl.SSLError:
        return "tls"
    except OSError:
        return answer


def login_uid_min(path: str = "/etc/login.defs") -> int:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "UID_MIN" and fields[1].isdigit():
            return int(fields[1])
    return 1000


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


def processes(proc: str = "/proc") -> tuple[dict[int, tuple[int, str]], dict[int, set[str]]]:
    """({socket inode: (pid, kind)} of our own processes, {uid: Jupyter kinds} of the others)."""
    me = os.getuid()
    inodes: dict[int, tuple[int, str]] = {}
    kinds: dict[int, set[str]] = defaultdict(set)
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        base = os.path.join(proc, entry)
        try:
            uid = os.stat(base).st_uid
            with open(os.path.join(base, "cmdline"), "rb") as handle:
                kind = process_kind(handle.read())
        except OSError:
            continue
        if uid != me:
            if kind:
                kinds[uid].add(kind)
            continue
        try:
            fds = os.listdir(os.path.join(base, "fd"))
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(base, "fd", fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[int(target[8:-1])] = (int(entry), kind)
    return inodes, kinds


def path_facts(path: str) -> PathFacts | None:
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return None
    return PathFacts(path, info.st_uid, info.st_mode, _user(info.st_uid), os.access(path, os.R_OK))


def _files_under(directory: str, depth: int = 3) -> list[PathFacts]:
    out: list[PathFacts] = []
    root_depth = directory.rstrip("/").count("/")
    for dirpath, dirs, names in os.walk(directory):
        if dirpath.count("/") - root_depth >= depth:
            dirs[:] = []
        for name in names:
            facts = path_facts(os.path.join(dirpath, name))
            if facts is not None and stat.S_ISREG(facts.mode):
                out.append(facts)
            if len(out) >= _MAX_FILES:
                return out
    return out


def collect(
    output_globs: Sequence[str] = DEFAULT_OUTPUT_GLOBS,
    runtime_globs: Sequence[str] = DEFAULT_RUNTIME_GLOBS,
    *,
    do_probe: bool = True,
    timeout: float = 1.0,
    environ: Mapping[str, str] | None = None,
) -> NodeFacts:
    env = os.environ if environ is None else environ
    me = os.getuid()
    uid_min = login_uid_min()
    own, kinds = processes()
    listeners = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii", errors="replace") as handle:
                text = handle.read()
        except OSError:
            continue
        for sock in parse_proc_net_tcp(text, sys.byteorder):
            if not sock.listening:
                continue
            pid, kind = own.get(sock.inode, (None, "")) if sock.uid == me else (None, "")
            worth = sock.uid != me and sock.uid >= uid_min and sock.uid != 65534
            found = probe(sock.address, sock.port, timeout) if do_probe and worth else ""
            listeners.append(Listener(sock, _user(sock.uid), found, pid, kind))
    tmp = env.get("TMPDIR", "")
    patterns = list(runtime_globs)
    if tmp and os.path.isabs(tmp) and os.path.normpath(tmp) != "/tmp":
        patterns.append(os.path.join(tmp, "jupyterhub-hpc-*"))
    outputs = _globbed(output_globs)
    dirs = [d for d in _globbed(patterns) if d.is_dir and not _skipped_dir(d.path)]
    files: list[PathFacts] = []
    for d in dirs:
        if d.uid != me:
            files += _files_under(d.path)
    return NodeFacts(
        uid=me,
        user=_user(me),
        uid_min=uid_min,
        listeners=tuple(listeners),
        jupyter_uids={uid: tuple(sorted(k)) for uid, k in kinds.items()},
        output_files=tuple(outputs),
        runtime_dirs=tuple(dirs),
        runtime_files=tuple(files),
    )


def _skipped_dir(path: str) -> bool:
    """``/tmp/jupyterhub-hpc-local`` and the like are not runtime directories."""
    name = os.path.basename(path)
    return name.startswith("jupyterhub-hpc-") and not PRIVATE_DIR.match(name)


def _globbed(patterns: Iterable[str]) -> list[PathFacts]:
    seen: dict[str, PathFacts] = {}
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            facts = path_facts(path)
            if facts is not None:
                seen.setdefault(path, facts)
    return list(seen.values())
