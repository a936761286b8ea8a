"""Slurm's reservations query: ``scontrol -o show reservation`` (and ``scontrol -o show partition``
for the nodes of each partition), argv builders and pure parsers.

Called through :class:`~.slurm.SlurmBackend` (``reservations_argv``/``parse_reservations``,
``partition_nodes_argv``/``parse_partition_nodes``) and run by the scheduler client like every
other command. ``-o`` prints one ``Key=value`` line per record, the same in Slurm 22.05 and 24.11
(tests/data/slurm/22.05 and 24.11, ``reservations*.txt``); an empty list is the text
``No reservations in the system`` (exit 0). Values never contain blanks except
``Licenses``/``Features`` expressions we do not read.
"""

from __future__ import annotations

import re
from datetime import datetime

from .hostlist import expand_hostlist
from .reservations import Reservation

__all__ = [
    "expand_hostlist",
    "parse_key_values",
    "parse_scontrol_partitions",
    "parse_scontrol_reservations",
    "scontrol_partitions_argv",
    "scontrol_reservations_argv",
]

NO_RESERVATIONS = "No reservations in the system"
_NULL = {"", "(null)", "n/a", "N/A", "None"}


def _clusters(cluster: str) -> list[str]:
    return [f"--clusters={cluster}"] if cluster else []


def scontrol_reservations_argv(scontrol: str, cluster: str) -> list[str]:
    return [scontrol, "--oneliner", *_clusters(cluster), "show", "reservation"]


def scontrol_partitions_argv(scontrol: str, cluster: str) -> list[str]:
    return [scontrol, "--oneliner", *_clusters(cluster), "show", "partition"]


_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_/:]*)=")


def parse_key_values(line: str) -> dict[str, str]:
    """``A=1 B=x y C=(null)`` -> ``{"A": "1", "B": "x y", "C": "(null)"}``: a value runs to the
    next `` Key=`` (so ``TRES=cpu=6`` keeps its own ``=``).

    >>> parse_key_values("ReservationName=m TRES=cpu=6,mem=1G Users=root")
    {'ReservationName': 'm', 'TRES': 'cpu=6,mem=1G', 'Users': 'root'}
    """
    matches = list(_KEY.finditer(line))
    out: dict[str, str] = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        out[match.group(1)] = line[match.end() : end].strip()
    return out


def _time(text: str) -> datetime:
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise ValueError(f"not a Slurm time: {text!r}") from None


def _names(text: str | None) -> tuple[str, ...]:
    if text is None or text.strip() in _NULL:
        return ()
    return tuple(n for n in (s.strip() for s in text.split(",")) if n)


def parse_scontrol_reservations(text: str) -> list[Reservation]:
    """Reservations from ``scontrol --oneliner show reservation``; raises ``ValueError`` on a
    line that is no reservation."""
    found: list[Reservation] = []
    for line in text.splitlines():
        if not line.strip() or line.strip() == NO_RESERVATIONS:
            continue
        values = parse_key_values(line)
        if "ReservationName" not in values or "StartTime" not in values or "EndTime" not in values:
            raise ValueError(f"unexpected scontrol reservation line: {line[:200]!r}")
        partition = values.get("PartitionName", "")
        nodes = values.get("Nodes", "")
        found.append(
            Reservation(
                name=values["ReservationName"],
                start=_time(values["StartTime"]),
                end=_time(values["EndTime"]),
                flags=frozenset(_names(values.get("Flags"))),
                nodes=expand_hostlist(nodes),
                nodes_text="" if nodes in _NULL else nodes,
                partition=None if partition in _NULL else partition,
                state=values.get("State", ""),
                users=_names(values.get("Users")),
                accounts=_names(values.get("Accounts")),
                groups=_names(values.get("Groups")),
            )
        )
    return found


def parse_scontrol_partitions(text: str) -> dict[str, frozenset[str]]:
    """{partition: its node names} from ``scontrol --oneliner show partition``."""
    out: dict[str, frozenset[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        values = parse_key_values(line)
        name = values.get("PartitionName")
        if not name:
            raise ValueError(f"unexpected scontrol partition line: {line[:200]!r}")
        out[name] = frozenset(expand_hostlist(values.get("Nodes", "")))
    return out
