"""What a scheduler offers, as typed values: partitions, per-node sizes, idle resources, associations.

A backend fills them from its own queries (:meth:`~.base.Backend.limits_argv` and
:meth:`~.base.Backend.parse_limits`; Slurm's ``sinfo`` and ``sacctmgr`` in
:mod:`.slurm_limits`); the profiles read them (form, validation, discovery API) and
know no scheduler command. Values configured by the admin (``partition_limits``)
override live ones (:meth:`ClusterLimits.with_config`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..request import format_walltime, parse_memory_mib, parse_walltime_seconds

__all__ = [
    "Associations",
    "ClusterLimits",
    "PartitionInfo",
    "configured_partition_fields",
    "parse_gres",
    "union",
]


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


def _largest(values: list[int | None]) -> int | None:
    """The largest of several limits; None (no limit) if any of them has none."""
    return None if any(v is None for v in values) else max(v for v in values if v is not None)


def union(name: str, parts: list[PartitionInfo]) -> PartitionInfo:
    """What a job asking for several partitions at once (``--partition=a,b``) may get: it
    runs in the first that can take it, so each limit is the largest of theirs (the
    job still has to fit one node of one of them: the scheduler refuses it otherwise)."""
    up = [p for p in parts if p.up]
    gpus: dict[str, int] = {}
    for p in up:
        for kind, count in p.gpus_per_node.items():
            gpus[kind] = max(gpus.get(kind, 0), count)
    return PartitionInfo(
        name=name,
        up=bool(up),
        max_walltime=_largest([p.max_walltime for p in up]) if up else 0,
        cpus_per_node=_largest([p.cpus_per_node for p in up]) if up else 0,
        memory_per_node=_largest([p.memory_per_node for p in up]) if up else 0,
        gpus_per_node=gpus,
        nodes=max((p.nodes for p in up), default=0),
        idle_nodes=sum(p.idle_nodes for p in up),
        idle_cpus=sum(p.idle_cpus for p in up),
        idle_gpus=sum(p.idle_gpus for p in up),
    )


@dataclass(frozen=True)
class Associations:
    """Accounts and QoS a user may use (from ``sacctmgr show associations``)."""

    accounts: tuple[str, ...] = ()
    qos: tuple[str, ...] = ()


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
        """One partition by name (None: the default one); several joined by commas are
        their :func:`union`, None if any of them does not exist."""
        if name and "," in name:
            parts = [self.partitions.get(n) for n in name.split(",")]
            found = [p for p in parts if p is not None]
            return union(name, found) if len(found) == len(parts) else None
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
