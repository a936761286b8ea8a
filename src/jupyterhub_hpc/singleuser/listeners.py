"""Who listens on a TCP port of this node: ``/proc/net/tcp`` and ``/proc/<pid>/fd``.

Job-side (standard library only). The launcher uses it to prove that the socket
the hub will connect to belongs to the user's own server process before it reports
the port; ``jupyterhub-hpc audit --node`` uses it to list other users' listeners.
The parser is a pure function of the table's text.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Listener",
    "listeners",
    "parse_proc_net_tcp",
    "process_tree",
    "socket_inodes",
]

#: ``st`` of a listening socket in ``/proc/net/tcp``
LISTEN = "0A"
TABLES = (("/proc/net/tcp", False), ("/proc/net/tcp6", True))


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket of the node."""

    address: str
    port: int
    uid: int
    inode: int

    @property
    def is_wildcard(self) -> bool:
        return self.address in ("0.0.0.0", "::")

    def covers(self, address: str) -> bool:
        """True when a connection to ``address`` on this port would reach this socket."""
        if self.is_wildcard or self.address == address:
            return True
        mapped = ipaddress.ip_address(self.address)
        return isinstance(mapped, ipaddress.IPv6Address) and str(mapped.ipv4_mapped or "") == address


def _address(hex_text: str, v6: bool) -> str:
    raw = bytes.fromhex(hex_text)
    if not v6:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # four host-order 32-bit words
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words))


def parse_proc_net_tcp(text: str, *, v6: bool = False) -> list[Listener]:
    """The listening sockets in the text of ``/proc/net/tcp`` (or ``tcp6`` with ``v6``).
    Lines that do not have the kernel's layout are ignored."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != LISTEN:
            continue
        try:
            addr_hex, port_hex = fields[1].split(":")
            found.append(
                Listener(
                    address=_address(addr_hex, v6),
                    port=int(port_hex, 16),
                    uid=int(fields[7]),
                    inode=int(fields[9]),
                )
            )
        except ValueError:
            continue
    return found


def listeners(port: int | None = None) -> list[Listener]:
    """The node's listening TCP sockets (IPv4 and IPv6), optionally on one port."""
    found: list[Listener] = []
    for path, v6 in TABLES:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        found.extend(sock for sock in parse_proc_net_tcp(text, v6=v6) if port is None or sock.port == port)
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


def _parents() -> Iterator[tuple[int, int]]:
    """(pid, parent pid) of every process of this uid."""
    uid = os.getuid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not entry.isascii():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            stat_text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        rest = stat_text[stat_text.rfind(")") + 2 :].split()
        if len(rest) > 1 and rest[1].isdigit():
            yield int(entry), int(rest[1])


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
