"""Slurm's limits queries: ``sinfo`` (partitions and nodes) and ``sacctmgr`` (associations).

Argv builders and pure parsers, called through :class:`~.slurm.SlurmBackend`
(``limits_argv``/``parse_limits``, ``associations_argv``/``parse_associations``) and
run by the scheduler client like every other command.
"""

from __future__ import annotations

from typing import Any

from .limits import Associations, PartitionInfo, parse_gres

__all__ = [
    "SINFO_FIELDS",
    "parse_sacctmgr_associations",
    "parse_sinfo_nodes",
    "parse_slurm_duration",
    "sacctmgr_argv",
    "sinfo_argv",
]

#: ``sinfo --Node --Format`` fields, each written ``Name:|`` (no width limit) and the last ``Name:0``.
SINFO_FIELDS = (
    "PartitionName",
    "Partition",
    "Available",
    "NodeHost",
    "StateLong",
    "CPUs",
    "CPUsState",
    "Memory",
    "AllocMem",
    "Gres",
    "GresUsed",
    "Time",
    "DefaultTime",
)
#: node states in which nothing new starts
_UNUSABLE = ("down", "drain", "fail", "maint", "power", "reboot", "future", "inval", "unknown")


def parse_slurm_duration(text: str) -> int | None:
    """Slurm's ``[D-]HH:MM:SS`` / ``MM:SS`` / ``MM`` as seconds; None for no limit.

    >>> parse_slurm_duration("5:00"), parse_slurm_duration("4:00:00"), parse_slurm_duration("1-00:00:00")
    (300, 14400, 86400)
    >>> parse_slurm_duration("infinite") is None, parse_slurm_duration("n/a") is None
    (True, True)
    """
    text = text.strip()
    if text.lower() in ("", "infinite", "unlimited", "n/a", "none", "(null)"):
        return None
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text)
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 1:
        seconds = parts[0] * 60
    elif len(parts) == 2:
        seconds = parts[0] * 60 + parts[1]
    elif len(parts) == 3:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    else:
        raise ValueError(f"not a Slurm duration: {text!r}")
    return days * 86400 + seconds


def parse_sinfo_nodes(text: str) -> dict[str, PartitionInfo]:
    """Partitions from ``sinfo --noheader --Node --Format`` (one line per node and partition)."""
    acc: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("CLUSTER:"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < len(SINFO_FIELDS):
            raise ValueError(f"unexpected sinfo line: {line!r}")
        name, marked, avail, _host, state, cpus, cpus_state, mem, _alloc_mem, gres, gres_used, limit, dflt = (
            parts[: len(SINFO_FIELDS)]
        )
        p = acc.setdefault(
            name,
            {
                "name": name,
                "up": avail.lower() == "up",
                "default": marked.endswith("*"),
                "max_walltime": parse_slurm_duration(limit),
                "default_walltime": parse_slurm_duration(dflt),
                "cpus_per_node": 0,
                "memory_per_node": 0,
                "gpus_per_node": {},
                "nodes": 0,
                "idle_nodes": 0,
                "idle_cpus": 0,
                "idle_gpus": 0,
            },
        )
        total_gpus = parse_gres(gres)
        p["nodes"] += 1
        p["cpus_per_node"] = max(p["cpus_per_node"], int(cpus) if cpus.isdigit() else 0)
        p["memory_per_node"] = max(p["memory_per_node"], int(mem) if mem.isdigit() else 0)
        for kind, count in total_gpus.items():
            p["gpus_per_node"][kind] = max(p["gpus_per_node"].get(kind, 0), count)
        usable = not any(word in state.lower() for word in _UNUSABLE) and p["up"]
        if not usable:
            continue
        if state.lower().startswith("idle"):
            p["idle_nodes"] += 1
        idle = cpus_state.split("/")
        if len(idle) == 4 and idle[1].isdigit():
            p["idle_cpus"] += int(idle[1])
        used = parse_gres(gres_used)
        p["idle_gpus"] += sum(max(n - used.get(k, 0), 0) for k, n in total_gpus.items())
    return {
        name: PartitionInfo(**{**p, "gpus_per_node": dict(p["gpus_per_node"])}) for name, p in acc.items()
    }


def parse_sacctmgr_associations(text: str) -> dict[str, Associations]:
    """``sacctmgr --noheader --parsable2 show associations format=User,Account,Partition,QOS``
    -> {user: Associations}; rows without a user (account rows) are skipped."""
    found: dict[str, tuple[list[str], list[str]]] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 4 or not parts[0].strip():
            continue
        user, account, _partition, qos = (p.strip() for p in parts[:4])
        accounts, qos_list = found.setdefault(user, ([], []))
        if account and account not in accounts:
            accounts.append(account)
        for q in qos.split(","):
            if q and q not in qos_list:
                qos_list.append(q)
    return {u: Associations(tuple(a), tuple(q)) for u, (a, q) in found.items()}


def sinfo_argv(sinfo: str, cluster: str) -> list[str]:
    fmt = ",".join(f"{f}:|" for f in SINFO_FIELDS[:-1]) + f",{SINFO_FIELDS[-1]}:0"
    return [sinfo, "--noheader", "--Node", f"--Format={fmt}", *([f"--clusters={cluster}"] if cluster else [])]


def sacctmgr_argv(sacctmgr: str, cluster: str) -> list[str]:
    where = [f"cluster={cluster}"] if cluster else []
    return [
        sacctmgr,
        "--noheader",
        "--parsable2",
        "show",
        "associations",
        *where,
        "format=User,Account,Partition,QOS",
    ]
