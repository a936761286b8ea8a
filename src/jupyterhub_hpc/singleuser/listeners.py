"""Who listens on a TCP port of this node: ``/proc/net/tcp`` and ``/proc/<pid>/fd``.

Job-side (standard library only). The launcher uses it to prove that the socket
the hub will connect to belongs to the user's own server process before it reports
the port; ``jupyterhub-hpc audit --node`` uses it to list other users' listeners.
The parser is a pure function of the table's text.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TcpSocket",
    "decode_address",
    "listeners",
    "parse_proc_net_tcp",
    "process_tree",
    "socket_inodes",
]

#: ``st`` of a listening socket in ``/proc/net/tcp``
LISTEN = "0A"
TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


@dataclass(frozen=True)
class TcpSocket:
    """One line of ``/proc/net/tcp`` or ``/proc/net/tcp6``."""

    address: str
    port: int
    remote_address: str
    remote_port: int
    state: str
    uid: int
    inode: int

    @property
    def listening(self) -> bool:
        return self.state == LISTEN

    @property
    def is_wildcard(self) -> bool:
        return self.address in ("0.0.0.0", "::")

    def covers(self, address: str) -> bool:
        """True when a connection to ``address`` on this port would reach this (listening) socket."""
        return self.is_wildcard or self.address == address

    @property
    def endpoint(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


def decode_address(hexaddr: str, byteorder: str = "little") -> str:
    """An address of ``/proc/net/tcp[6]``: 32-bit words in the machine's byte order."""
    raw = bytes.fromhex(hexaddr)
    words = [raw[i : i + 4] for i in range(0, len(raw), 4)]
    if byteorder == "little":
        words = [w[::-1] for w in words]
    packed = b"".join(words)
    if len(packed) == 4:
        return str(ipaddress.IPv4Address(packed))
    address = ipaddress.IPv6Address(packed)
    return str(address.ipv4_mapped) if address.ipv4_mapped else str(address)


def parse_proc_net_tcp(text: str, byteorder: str = "little") -> list[TcpSocket]:
    """Every socket of a ``/proc/net/tcp`` or ``tcp6`` table (the header line is skipped;
    lines that do not parse are skipped too)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10 or not fields[0].endswith(":") or not fields[0][:-1].isdigit():
            continue
        try:
            local, local_port = fields[1].split(":")
            remote, remote_port = fields[2].split(":")
            out.append(
                TcpSocket(
                    decode_address(local, byteorder),
                    int(local_port, 16),
                    decode_address(remote, byteorder),
                    int(remote_port, 16),
                    fields[3].upper(),
                    int(fields[7]),
                    int(fields[9]),
                )
            )
        except ValueError:
            continue
    return out


def listeners(port: int | None = None) -> list[TcpSocket]:
    """The node's listening TCP sockets (IPv4 and IPv6), optionally on one port."""
    found: list[TcpSocket] = []
    for path in TABLES:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        found.extend(
            sock
            for sock in parse_proc_net_tcp(text, sys.byteorder)
            if sock.listening and (port is None or sock.port == port)
        )
    return found


def socket_inodes(pids: Iterable[int]) -> set[int]:
    """Inodes of the sockets the processes ``pids`` hold open (those we may read)."""
    inodes: set[int] = set()
    for pid in pids:
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if target.startswith("socket:[") and target.endswith("]"):
                inodes.add(int(target[8:-1]))
    return inodes


def own_processes() -> Iterator[int]:
    """The pids of every process of this uid (those that are gone by the time they are looked
    at are left out by the callers' own reads)."""
    uid = os.getuid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not entry.isascii():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                yield int(entry)
        except OSError:
            continue


def _parents() -> Iterator[tuple[int, int]]:
    """(pid, parent pid) of every process of this uid."""
    for pid in own_processes():
        try:
            stat_text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        rest = stat_text[stat_text.rfind(")") + 2 :].split()
        if len(rest) > 1 and rest[1].isdigit():
            yield pid, int(rest[1])


def process_tree(root: int) -> set[int]:
    """``root`` and all its descendants (processes of this uid)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents():
        children.setdefault(ppid, []).append(pid)
    tree, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree
