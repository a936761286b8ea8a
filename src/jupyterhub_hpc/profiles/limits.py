"""Live limits from the scheduler: partitions, per-node sizes, idle resources, associations.

One ``sinfo`` call (and one ``sacctmgr`` call where accounting exists) per cluster
per TTL serves every user of the hub process: :class:`LimitsCache` keeps the last
answer, hands it out while a refresh runs, and never lets a failing scheduler
break a page (the last good data, or none, is returned with the error noted).
Values configured by the admin (``partition_limits``) override live ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..commands import CommandError, run_command, with_environment
from ..request import format_walltime, parse_memory_mib, parse_walltime_seconds

__all__ = [
    "SINFO_FIELDS",
    "ClusterLimits",
    "LimitsCache",
    "PartitionInfo",
    "configured_partition_fields",
    "get_limits_cache",
    "parse_gres",
    "parse_sacctmgr_associations",
    "parse_sinfo_nodes",
    "parse_slurm_duration",
]

log = logging.getLogger(__name__)

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


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses (``gpu:a100:4(S:0-1),nvme:1``)."""
    items, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return [i.strip() for i in items if i.strip()]


def parse_gres(text: str) -> dict[str, int]:
    """GPU counts by type from a GRES string (``""`` is the untyped GPU).

    >>> parse_gres("gpu:tesla:2"), parse_gres("gpu:a100:4(S:0-1),nvme:1")
    ({'tesla': 2}, {'a100': 4})
    >>> parse_gres("gpu:0"), parse_gres("(null)")
    ({'': 0}, {})
    >>> parse_gres("gpu:tesla:1(IDX:0)")
    {'tesla': 1}
    """
    result: dict[str, int] = {}
    for item in _split_top_level(text):
        item = item.split("(", 1)[0]
        parts = item.split(":")
        if parts[0] != "gpu" or len(parts) < 2:
            continue
        count_text = parts[-1]
        kind = parts[1] if len(parts) >= 3 else ""
        if not count_text.isdigit():
            continue
        result[kind] = result.get(kind, 0) + int(count_text)
    return result


@dataclass(frozen=True)
class PartitionInfo:
    """What one partition offers; sizes are of its *largest* node, times in seconds."""

    name: str
    up: bool = True
    default: bool = False
    max_walltime: int | None = None
    default_walltime: int | None = None
    cpus_per_node: int | None = None
    memory_per_node: int | None = None
    gpus_per_node: Mapping[str, int] = field(default_factory=dict)
    nodes: int = 0
    idle_nodes: int = 0
    idle_cpus: int = 0
    idle_gpus: int = 0

    def max_gpus(self, gpu_type: str | None) -> int:
        """GPUs one job may get on one node (of ``gpu_type``, or of any type)."""
        if gpu_type:
            return self.gpus_per_node.get(gpu_type, 0)
        return max(self.gpus_per_node.values(), default=0)

    @property
    def gpu_types(self) -> list[str]:
        return sorted(t for t, n in self.gpus_per_node.items() if t and n)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "up": self.up,
            "default": self.default,
            "max_walltime": None if self.max_walltime is None else format_walltime(self.max_walltime),
            "max_walltime_seconds": self.max_walltime,
            "cpus_per_node": self.cpus_per_node,
            "memory_per_node_mib": self.memory_per_node,
            "gpus_per_node": dict(self.gpus_per_node),
            "gpu_types": self.gpu_types,
            "nodes": self.nodes,
            "idle_nodes": self.idle_nodes,
            "idle_cpus": self.idle_cpus,
            "idle_gpus": self.idle_gpus,
        }


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


@dataclass(frozen=True)
class Associations:
    """Accounts and QoS a user may use (from ``sacctmgr show associations``)."""

    accounts: tuple[str, ...] = ()
    qos: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class ClusterLimits:
    """One scheduler's limits at one moment; ``associations`` is None without accounting."""

    partitions: Mapping[str, PartitionInfo] = field(default_factory=dict)
    fetched_at: float = 0.0
    live: bool = False
    error: str | None = None
    associations: Mapping[str, Associations] | None = None

    def default_partition(self) -> str | None:
        return next((p.name for p in self.partitions.values() if p.default), None)

    def partition(self, name: str | None) -> PartitionInfo | None:
        return self.partitions.get(name or self.default_partition() or "")

    def for_user(self, user: str) -> Associations | None:
        if self.associations is None:
            return None
        return self.associations.get(user, Associations())

    def with_config(self, configured: Mapping[str, Mapping[str, Any]]) -> ClusterLimits:
        """Admin values win over live ones; a configured partition need not exist live."""
        partitions = dict(self.partitions)
        for name, values in configured.items():
            base = partitions.get(name, PartitionInfo(name=name))
            partitions[name] = replace(base, **configured_partition_fields(name, values))
        return replace(self, partitions=partitions)

    def to_json(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "error": self.error,
            "fetched_at": self.fetched_at or None,
            "default_partition": self.default_partition(),
            "partitions": [p.to_json() for p in self.partitions.values()],
        }


_CONFIG_KEYS = {"max_walltime", "max_cpus", "max_memory", "max_gpus", "default", "up"}


def configured_partition_fields(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(values) - _CONFIG_KEYS
    if unknown:
        raise ValueError(
            f"partition_limits[{name!r}]: unknown keys {sorted(unknown)}; known: {sorted(_CONFIG_KEYS)}"
        )
    out: dict[str, Any] = {}
    if "max_walltime" in values:
        out["max_walltime"] = (
            None if values["max_walltime"] is None else parse_walltime_seconds(values["max_walltime"])
        )
    if "max_cpus" in values:
        out["cpus_per_node"] = int(values["max_cpus"])
    if "max_memory" in values:
        out["memory_per_node"] = parse_memory_mib(values["max_memory"])
    if "max_gpus" in values:
        gpus = values["max_gpus"]
        out["gpus_per_node"] = (
            {str(k): int(v) for k, v in gpus.items()} if isinstance(gpus, Mapping) else {"": int(gpus)}
        )
    if "default" in values:
        out["default"] = bool(values["default"])
    if "up" in values:
        out["up"] = bool(values["up"])
    return out


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


class LimitsCache:
    """The limits of one scheduler, shared by all users; at most one query per ``ttl`` seconds."""

    def __init__(
        self,
        backend: str,
        cluster: str,
        commands: Mapping[str, str],
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.backend = backend
        self.cluster = cluster
        self.commands = dict(commands)
        self.environment = dict(environment or {})
        self.current: ClusterLimits | None = None
        self.queries = 0
        self._refresh: asyncio.Task[ClusterLimits] | None = None

    async def get(self, ttl: float, timeout: float) -> ClusterLimits:
        """Fresh data, or the last data while a refresh runs; the first call waits (up to ``timeout``)."""
        now = time.time()
        if self.current is not None and now - self.current.fetched_at < ttl:
            return self.current
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._fetch(timeout))
        if self.current is not None:
            return self.current
        return await asyncio.shield(self._refresh)

    async def _fetch(self, timeout: float) -> ClusterLimits:
        if self.backend != "slurm":
            result = ClusterLimits(fetched_at=time.time())
        else:
            result = await self._fetch_slurm(timeout)
        self.current = result
        return result

    async def _fetch_slurm(self, timeout: float) -> ClusterLimits:
        self.queries += 1
        previous = self.current or ClusterLimits()
        try:
            argv, env = with_environment(
                [], sinfo_argv(self.commands.get("sinfo", "sinfo"), self.cluster), self.environment
            )
            out = await run_command(argv, env=env, timeout=timeout)
            if not out.ok:
                raise CommandError(out.stderr.strip() or f"sinfo exited {out.returncode}")
            partitions = parse_sinfo_nodes(out.stdout)
        except (CommandError, ValueError) as exc:
            log.warning("scheduler limits unavailable (%s): %s", self.cluster or "default cluster", exc)
            return replace(previous, fetched_at=time.time(), live=False, error=str(exc))
        associations: dict[str, Associations] | None = None
        try:
            argv, env = with_environment(
                [], sacctmgr_argv(self.commands.get("sacctmgr", "sacctmgr"), self.cluster), self.environment
            )
            acct = await run_command(argv, env=env, timeout=timeout)
            if acct.ok:
                associations = parse_sacctmgr_associations(acct.stdout)
            else:
                log.debug("no accounting information: %s", acct.stderr.strip())
        except CommandError as exc:
            log.debug("no accounting information: %s", exc)
        return ClusterLimits(
            partitions=partitions, fetched_at=time.time(), live=True, error=None, associations=associations
        )


_CACHES: dict[tuple[str, ...], LimitsCache] = {}


def get_limits_cache(
    backend: str,
    cluster: str,
    commands: Mapping[str, str] | None = None,
    environment: Mapping[str, str] | None = None,
) -> LimitsCache:
    """The one cache for this scheduler in this process (created on first use)."""
    cmds, env = dict(commands or {}), dict(environment or {})
    key: Sequence[str] = (
        backend,
        cluster,
        *sorted(f"{k}={v}" for k, v in cmds.items()),
        *sorted(f"env:{k}={v}" for k, v in env.items()),
    )
    cache = _CACHES.get(tuple(key))
    if cache is None:
        cache = _CACHES[tuple(key)] = LimitsCache(backend, cluster, cmds, env)
    return cache
