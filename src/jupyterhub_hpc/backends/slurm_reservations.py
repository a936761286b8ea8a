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


def expand_hostlist(text: str) -> tuple[str, ...]:
    """Slurm's host list syntax expanded.

    >>> expand_hostlist("cpu[1-3],gpu1")
    ('cpu1', 'cpu2', 'cpu3', 'gpu1')
    >>> expand_hostlist("n[08-10,12]")
    ('n08', 'n09', 'n10', 'n12')
    >>> expand_hostlist("r[1-2]n[1-2]")
    ('r1n1', 'r1n2', 'r2n1', 'r2n2')
    >>> expand_hostlist("(null)")
    ()
    """
    text = text.strip()
    if text in _NULL:
        return ()
    names: list[str] = []
    for item in _split_outside_brackets(text):
        names.extend(_expand_one(item))
    return tuple(names)


def _split_outside_brackets(text: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return [i for i in (s.strip() for s in items) if i]


def _expand_one(item: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", item)
    if match is None:
        return [item]
    head, tail = item[: match.start()], item[match.end() :]
    out: list[str] = []
    for part in match.group(1).split(","):
        if "-" in part:
            low, high = part.split("-", 1)
            width = len(low) if low.startswith("0") else 0
            numbers = [str(n).zfill(width) for n in range(int(low), int(high) + 1)]
        else:
            numbers = [part]
        for number in numbers:
            out.extend(_expand_one(f"{head}{number}{tail}"))
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
