"""Scheduler reservations as typed values, and the pure arithmetic of maintenance windows.

A backend that knows reservations fills :class:`Reservation` from its own query
(:meth:`~.base.Backend.reservations_argv` / :meth:`~.base.Backend.parse_reservations`;
Slurm's ``scontrol -o show reservation`` in :mod:`.slurm_reservations`); a backend
without the concept returns none. :mod:`jupyterhub_hpc.maintenance` caches them and
the profiles read :class:`WalltimeCap` (the longest walltime that still ends before
the next maintenance of a partition). Times are the scheduler's: naive local time,
as :func:`~.slurm.parse_slurm_time` returns them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

__all__ = ["MAINT_FLAG", "Reservation", "ReservationSnapshot", "WalltimeCap", "iso_utc", "walltime_cap"]

#: the flag of a maintenance reservation (Slurm: ``Flags=MAINT``)
MAINT_FLAG = "MAINT"


def iso_utc(when: datetime) -> str:
    """A scheduler time (naive: local) as ISO 8601 UTC with ``Z``.

    >>> iso_utc(datetime(2026, 12, 3, 7, 37, 43, tzinfo=timezone.utc))
    '2026-12-03T07:37:43Z'
    """
    aware = when if when.tzinfo is not None else when.astimezone()
    return aware.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Reservation:
    """One reservation: ``nodes`` are node names (expanded), ``nodes_text`` as the scheduler wrote them."""

    name: str
    start: datetime
    end: datetime
    flags: frozenset[str] = frozenset()
    nodes: tuple[str, ...] = ()
    nodes_text: str = ""
    partition: str | None = None
    state: str = ""
    users: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def maintenance(self) -> bool:
        return MAINT_FLAG in self.flags

    def current_or_upcoming(self, now: datetime) -> bool:
        return self.end > now

    def active(self, now: datetime) -> bool:
        return self.start <= now < self.end

    def partitions(self, partition_nodes: Mapping[str, frozenset[str]]) -> list[str]:
        """The partitions with a node in this reservation (its own ``partition`` first)."""
        mine = set(self.nodes)
        found = [p for p, nodes in partition_nodes.items() if nodes & mine]
        if self.partition and self.partition not in found:
            found.insert(0, self.partition)
        return found

    def affects(
        self,
        partition: str | None,
        partition_nodes: Mapping[str, frozenset[str]],
        job_nodes: Iterable[str] = (),
    ) -> bool:
        """Whether it takes nodes a job on ``partition`` (several joined by commas) may get,
        or the nodes the job runs on."""
        if set(job_nodes) & set(self.nodes):
            return True
        names = [p for p in (partition or "").split(",") if p]
        return any(p in self.partitions(partition_nodes) for p in names)

    def to_json(self, partition_nodes: Mapping[str, frozenset[str]]) -> dict[str, object]:
        return {
            "name": self.name,
            "start": iso_utc(self.start),
            "end": iso_utc(self.end),
            "flags": sorted(self.flags),
            "partitions": self.partitions(partition_nodes),
            "nodes": self.nodes_text,
            "state": self.state,
        }


@dataclass(frozen=True)
class ReservationSnapshot:
    """What one scheduler said about reservations at one moment (``live`` False: nothing yet,
    or a backend without reservations; ``error``: the last query failed, the data is older)."""

    reservations: tuple[Reservation, ...] = ()
    partition_nodes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    fetched_at: float = 0.0
    live: bool = False
    error: str | None = None

    def maintenance(self, now: datetime) -> list[Reservation]:
        """MAINT reservations not over at ``now``, the earliest first."""
        found = [r for r in self.reservations if r.maintenance and r.current_or_upcoming(now)]
        return sorted(found, key=lambda r: (r.start, r.name))

    def next_for(
        self, partition: str | None, now: datetime, job_nodes: Iterable[str] = ()
    ) -> list[Reservation]:
        """The MAINT reservations that affect ``partition`` (or ``job_nodes``), earliest first."""
        nodes = tuple(job_nodes)
        return [r for r in self.maintenance(now) if r.affects(partition, self.partition_nodes, nodes)]


@dataclass(frozen=True)
class WalltimeCap:
    """The longest walltime (whole minutes, seconds) that lets a job starting now end
    ``margin`` seconds before ``reservation`` starts."""

    reservation: Reservation
    seconds: int

    def describe(self) -> str:
        r = self.reservation
        return f"maintenance reservation {r.name} starts {_when(r.start)} (until {_when(r.end)})"


def _when(when: datetime) -> str:
    return iso_utc(when).replace("T", " ").replace("Z", " UTC")


def walltime_cap(reservations: Iterable[Reservation], now: datetime, margin: int) -> WalltimeCap | None:
    """The cap the earliest upcoming one of ``reservations`` puts on a job starting ``now``;
    None when none is upcoming, or when one is in progress or too close to fit a minute
    (no walltime avoids it: the job waits until it ends, and the pending message says so).

    >>> from datetime import timedelta
    >>> t = datetime(2026, 12, 3, 7, 0, 0)
    >>> r = Reservation("m", t + timedelta(minutes=30), t + timedelta(hours=1), frozenset({"MAINT"}))
    >>> walltime_cap([r], t + timedelta(seconds=20), 60).seconds  # 29:40 - 1:00 margin, whole minutes
    1680
    >>> walltime_cap([r], t + timedelta(minutes=29), 60) is None
    True
    """
    upcoming = sorted((r for r in reservations if r.end > now), key=lambda r: r.start)
    if not upcoming:
        return None
    first = upcoming[0]
    room = int((first.start - now).total_seconds()) - margin
    minutes = room // 60  # the scheduler counts time limits in minutes (Slurm rounds seconds up)
    if minutes < 1:
        return None
    return WalltimeCap(first, minutes * 60)
