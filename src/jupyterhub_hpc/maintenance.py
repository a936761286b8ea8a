"""Maintenance reservations: cached per scheduler, shown on the card, the form and the progress.

One reservations query per scheduler client per ``maintenance_ttl`` (Slurm:
``scontrol --oneliner show reservation``, plus ``show partition`` for the partitions'
nodes only when a MAINT reservation exists) serves the whole hub process:
:class:`ReservationCache` keeps the last answer; a failing query keeps the last good
one, notes the error and logs once per failure streak. The query runs through the
spawner's :class:`~jupyterhub_hpc.client.SchedulerClient`, as the hub's own account,
like the limits queries. Never per user request: the card and the progress only read
what is cached; the running servers' ``poll()`` and a pending spawn refresh it (awaited,
one query per TTL for all of them), and so does the spawn form.

What uses it:

- :func:`card_section` (the job card's ``maintenance`` list, :mod:`jupyterhub_hpc.jobcard`);
- :func:`pending_note` (a pending job's progress message names the reservation);
- :func:`walltime_caps` / :func:`capped_limits` (the profiles clip the walltime so that a
  job ends before the next maintenance of its partition, or refuse, per
  ``maintenance_walltime``).

Backends without reservations (all but Slurm today) return none: the feature is then off.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from traitlets import Bool, CaselessStrEnum, Float, Integer
from traitlets.config import Configurable

from .backends.base import QueryError
from .backends.limits import ClusterLimits
from .backends.reservations import Reservation, ReservationSnapshot, WalltimeCap, iso_utc, walltime_cap
from .client import SchedulerClient
from .commands import CommandError
from .request import walltime_text
from .states import JobState, JobStatus

__all__ = [
    "MaintenanceOptions",
    "ReservationCache",
    "announcement_payloads",
    "capped_limits",
    "card_section",
    "get_reservation_cache",
    "keep_fresh",
    "local_now",
    "pending_note",
    "walltime_caps",
]

log = logging.getLogger(__name__)


class MaintenanceOptions(Configurable):
    """The spawner's maintenance settings (a base class of the batch spawners)."""

    maintenance_reservations = Bool(
        True,
        help="""
        Ask the scheduler for its maintenance reservations (Slurm: ``scontrol show
        reservation``, flag ``MAINT``): the job card lists those that affect a server's
        partition or nodes, the spawn form shows the next one per partition and keeps the
        walltime within it (``maintenance_walltime``), and a job pending behind one says so.
        One query per cluster per ``maintenance_ttl`` serves all users. Backends without
        reservations have none.
        """,
    ).tag(config=True)

    maintenance_ttl = Float(
        60.0,
        min=1.0,
        help="""Seconds the reservations are reused before the scheduler is asked again.""",
    ).tag(config=True)

    maintenance_timeout = Float(
        10.0,
        help="""
        Seconds the reservations query may take; when it fails, the last answer is kept
        (and the failure logged once until a query succeeds again).
        """,
    ).tag(config=True)

    maintenance_walltime = CaselessStrEnum(
        ["clip", "refuse", "off"],
        default_value="clip",
        help="""
        What a start whose walltime would cross the next maintenance reservation of its
        partition gets. ``clip`` (default): the walltime is shortened to what ends
        ``maintenance_margin`` seconds before the reservation starts (whole minutes), and
        the progress says so; the form's default and maximum are clipped the same way.
        ``refuse``: such a request is refused (HTTP 400 naming the reservation and its
        start); the form's default and maximum are still clipped. ``off``: the walltime is
        left as asked (the job then waits until the maintenance is over; the form shows
        the reservation). A reservation in progress, or one too close for a minute's job,
        clips nothing: the job waits, and its progress says why.
        """,
    ).tag(config=True)

    maintenance_margin = Integer(
        60,
        min=0,
        help="""Seconds a clipped job ends before the maintenance reservation starts.""",
    ).tag(config=True)

    maintenance_time_min = Bool(
        False,
        help="""
        With ``maintenance_walltime = "clip"``: submit the walltime as asked with Slurm's
        ``--time-min=<what fits>`` instead of a shortened ``--time``. Slurm's backfill
        scheduler then lowers the limit to exactly that minimum when the job could not
        start before the maintenance otherwise (it does not pick the longest limit that
        fits, measured on 22.05: that is why the hub computes the fit itself), and keeps
        the asked limit when the job can start after it. Slurm only.
        """,
    ).tag(config=True)

    maintenance_horizon = Float(
        14 * 86400.0,
        help="""Seconds ahead in which upcoming maintenance reservations are shown (card, form).""",
    ).tag(config=True)


def local_now(now: datetime | float | None = None) -> datetime:
    """``now`` (aware, naive local, or a Unix time; None: the clock) as the naive local
    time the scheduler's times are in."""
    if now is None:
        return datetime.now()
    if isinstance(now, int | float):
        return datetime.fromtimestamp(now)
    return now.astimezone().replace(tzinfo=None) if now.tzinfo is not None else now


class ReservationCache:
    """The reservations of one scheduler, shared by all users; at most one query per ``ttl``.

    Queries run only inside an awaited call (:meth:`get`: the servers' ``poll()``, a pending
    spawn, the spawn form), never as a task left behind.
    """

    def __init__(self, client: SchedulerClient) -> None:
        self.client = client
        self.current: ReservationSnapshot | None = None
        self.queries = 0
        self.failing = False
        self._refresh: asyncio.Task[ReservationSnapshot] | None = None

    def _stale(self, ttl: float) -> bool:
        return self.current is None or time.time() - self.current.fetched_at >= ttl

    def _start(self, timeout: float) -> asyncio.Task[ReservationSnapshot]:
        loop = asyncio.get_running_loop()
        task = self._refresh
        # a refresh of another (closed) event loop never finishes in this one
        if task is None or task.done() or task.get_loop() is not loop:
            task = self._refresh = loop.create_task(self._fetch(timeout))
        return task

    async def get(self, ttl: float, timeout: float) -> ReservationSnapshot:
        """The cached answer, refreshed first when it is older than ``ttl`` (every caller at that
        moment waits for the same one query, at most ``timeout`` seconds)."""
        if self._stale(ttl):
            await asyncio.shield(self._start(timeout))  # one waiter cancelled: not the others' query
        assert self.current is not None
        return self.current

    def peek(self) -> ReservationSnapshot:
        """What is cached now (empty before the first answer); never runs or starts a query."""
        return self.current or ReservationSnapshot()

    async def _fetch(self, timeout: float) -> ReservationSnapshot:
        self.queries += 1
        try:
            result = await self.client.reservations(timeout)
        except (CommandError, QueryError) as exc:
            if not self.failing:
                log.warning(
                    "scheduler reservations unavailable (%s), keeping the last answer: %s",
                    self.client.describe(),
                    exc,
                )
            self.failing = True
            previous = self.current or ReservationSnapshot()
            result = replace(previous, fetched_at=time.time(), error=str(exc))
        else:
            if self.failing:
                log.info("scheduler reservations available again (%s)", self.client.describe())
            self.failing = False
        self.current = result
        return result


_CACHES: dict[tuple[object, ...], ReservationCache] = {}


def get_reservation_cache(client: SchedulerClient) -> ReservationCache:
    """The one cache for this scheduler client in this process (created on first use)."""
    cache = _CACHES.get(client.key)
    if cache is None:
        cache = _CACHES[client.key] = ReservationCache(client)
    return cache


# -- the spawner's view ------------------------------------------------------------------------
def _enabled(spawner: Any) -> bool:
    return bool(getattr(spawner, "maintenance_reservations", False)) and hasattr(spawner, "scheduler_client")


def _snapshot(spawner: Any) -> ReservationSnapshot:
    """The cached reservations of the spawner's scheduler (never queries)."""
    if not _enabled(spawner):
        return ReservationSnapshot()
    return get_reservation_cache(spawner.client).peek()


def _walltime(spawner: Any) -> int | None:
    """The walltime (seconds) of the spawner's job request, if known."""
    resolution = getattr(spawner, "profile_resolution", None)
    request = getattr(resolution, "request", None)
    if request is not None:
        return int(request.walltime)
    try:
        return int(spawner.job_request().walltime)
    except Exception:  # no request can be built: the card shows no crossing
        return None


def _job(spawner: Any) -> tuple[JobStatus | None, str | None]:
    """(the watcher's last status of the job, the job's partition as far as known)."""
    status: JobStatus | None = None
    if getattr(spawner, "job_id", ""):
        status = spawner.watcher.cached(spawner.job_id)
    partition = status.partition if status is not None else None
    if not partition:
        resolution = getattr(spawner, "profile_resolution", None)
        request = getattr(resolution, "request", None)
        partition = getattr(request, "partition", None) or getattr(spawner, "partition", None) or None
    return status, partition


def _job_end(status: JobStatus | None, walltime: int | None, now: datetime) -> datetime | None:
    if status is None:
        return None
    if status.end_time is not None and status.state is not JobState.PENDING:
        return status.end_time
    if walltime is None:
        return status.end_time
    start = status.expected_start if status.expected_start and status.expected_start > now else now
    return start + timedelta(seconds=walltime)


async def keep_fresh(spawner: Any) -> None:
    """Refresh the spawner's scheduler's reservations when they are older than
    ``maintenance_ttl``. Awaited by ``poll()`` of every running server and by a pending spawn,
    so the cards have data and the query count depends on neither the open Lab tabs nor the
    card requests: one query per cluster per TTL while a server of it runs."""
    if _enabled(spawner):
        cache = get_reservation_cache(spawner.client)
        await cache.get(float(spawner.maintenance_ttl), float(spawner.maintenance_timeout))


def card_section(spawner: Any, now: datetime | float | None = None) -> list[dict[str, Any]]:
    """The card's ``maintenance`` list: MAINT reservations in progress or starting within
    ``maintenance_horizon`` that affect the server's partition or nodes (all of them when
    the partition is unknown), earliest first. ``crosses_job``: the job's (expected) end
    is after the reservation's start. Reads the cache only; ``[]`` when the feature is
    off or the backend has no reservations."""
    if not _enabled(spawner):
        return []
    local = local_now(now)
    snapshot = _snapshot(spawner)
    status, partition = _job(spawner)
    # every node of the job where the status has them (the card part's NodeList), else its first
    hosts = list(
        getattr(status, "nodes", None) or ([status.host] if status is not None and status.host else [])
    )
    horizon = local + timedelta(seconds=float(spawner.maintenance_horizon))
    found = snapshot.next_for(partition, local, hosts) if partition or hosts else snapshot.maintenance(local)
    end = _job_end(status, _walltime(spawner), local)
    return [
        {
            "name": r.name,
            "start": iso_utc(r.start),
            "end": iso_utc(r.end),
            "partitions": r.partitions(snapshot.partition_nodes),
            "nodes": r.nodes_text,
            "crosses_job": end is not None and end > r.start,
        }
        for r in found
        if r.start <= horizon
    ]


def _span(r: Reservation) -> str:
    start, end = iso_utc(r.start), iso_utc(r.end)
    day = start[:10]
    end_text = end[11:16] if end[:10] == day else f"{end[:10]} {end[11:16]}"
    return f"{day} {start[11:16]} to {end_text} UTC"


def pending_note(spawner: Any, status: JobStatus, now: datetime | float | None = None) -> str | None:
    """For a pending job behind a maintenance reservation: "maintenance reservation M
    (nodes cpu[1-3]) from 2026-12-03 07:37 to 08:37 UTC". The reservation is the first
    MAINT one affecting the job's partition that is in progress or that the job's
    walltime would cross; None when there is none (or nothing is cached yet)."""
    if status.state is not JobState.PENDING or not _enabled(spawner):
        return None
    local = local_now(now)
    snapshot = _snapshot(spawner)
    _, partition = _job(spawner)
    candidates = (
        snapshot.next_for(status.partition or partition, local) if (status.partition or partition) else []
    )
    if not candidates:
        return None
    end = _job_end(status, _walltime(spawner), local)
    behind = [r for r in candidates if r.active(local) or (end is not None and end > r.start)]
    reason = status.reason or ""
    if not behind and "maint" in reason.lower():
        behind = candidates[:1]
    if not behind:
        return None
    r = behind[0]
    nodes = f" (nodes {r.nodes_text})" if r.nodes_text else ""
    return f"maintenance reservation {r.name}{nodes} from {_span(r)}"


# -- the profiles' view ---------------------------------------------------------------------------
async def walltime_caps(
    spawner: Any, clients: Mapping[str, SchedulerClient], now: datetime | float | None = None
) -> tuple[dict[str, dict[str, WalltimeCap]], list[dict[str, str]]]:
    """Per target key (:class:`~jupyterhub_hpc.profiles.validate.Target`), the walltime cap
    of each partition with an upcoming maintenance, and the form's notes (one per target
    and affected partition: ``{"target", "partition", "text"}``). Awaits the first answer
    of each scheduler only (the cache's TTL as for the limits)."""
    if not getattr(spawner, "maintenance_reservations", False):
        return {}, []
    local = local_now(now)
    ttl, timeout = float(spawner.maintenance_ttl), float(spawner.maintenance_timeout)
    margin = int(spawner.maintenance_margin)
    horizon = local + timedelta(seconds=float(spawner.maintenance_horizon))
    keys = list(clients)
    snapshots = await asyncio.gather(*(get_reservation_cache(clients[k]).get(ttl, timeout) for k in keys))
    caps: dict[str, dict[str, WalltimeCap]] = {}
    notes: list[dict[str, str]] = []
    for key, snapshot in zip(keys, snapshots, strict=True):
        upcoming = [r for r in snapshot.maintenance(local) if r.start <= horizon]
        partitions = sorted({p for r in upcoming for p in r.partitions(snapshot.partition_nodes)})
        for name in partitions:
            mine = [r for r in upcoming if name in r.partitions(snapshot.partition_nodes)]
            cap = walltime_cap(mine, local, margin)
            if cap is not None:
                caps.setdefault(key, {})[name] = cap
            notes.append({"target": key, "partition": name, "text": _note(name, mine[0], cap, local)})
    return caps, notes


def _note(partition: str, r: Reservation, cap: WalltimeCap | None, now: datetime) -> str:
    text = f"Maintenance on partition {partition}: reservation {r.name} from {_span(r)}"
    if r.active(now):
        return text + " (in progress: a job waits until it is over)."
    if cap is None:
        return text + " (starts too soon for a job to end before it: a job waits until it is over)."
    return (
        text + f". A job started now ends before it with a walltime of at most {walltime_text(cap.seconds)}."
    )


def capped_limits(limits: ClusterLimits, caps: Mapping[str, WalltimeCap] | None) -> ClusterLimits:
    """``limits`` with each capped partition's ``max_walltime`` lowered to its cap (the
    form's maximum and the default walltime follow it)."""
    if not caps:
        return limits
    partitions = dict(limits.partitions)
    for name, cap in caps.items():
        part = partitions.get(name)
        if part is None:
            continue
        high = cap.seconds if part.max_walltime is None else min(part.max_walltime, cap.seconds)
        partitions[name] = replace(part, max_walltime=high)
    return replace(limits, partitions=partitions)


# -- the announcements service's view ---------------------------------------------------------------
def _announcement_id(cluster: str, name: str) -> str:
    raw = "-".join(p for p in ("maint", cluster, name) if p).lower()
    return re.sub(r"[^a-z0-9_.-]", "-", raw)[:64]


def announcement_payloads(
    snapshot: ReservationSnapshot,
    now: datetime | float | None = None,
    *,
    cluster: str = "",
    lead: float = 86400.0,
) -> list[dict[str, Any]]:
    """The MAINT reservations of ``snapshot`` as writer payloads of the announcements service
    (``POST api/v1/announcements``, ``source: "reservation"``): one per reservation, id
    ``maint-<cluster>-<name>`` (stable: a writer re-posting replaces it), shown from ``lead``
    seconds before its start to its end, for the users of the affected partitions (everyone
    when the partitions are unknown), a warning (an error while it is in progress)."""
    local = local_now(now)
    out: list[dict[str, Any]] = []
    for r in snapshot.maintenance(local):
        partitions = r.partitions(snapshot.partition_nodes)
        where = (
            f" on partition{'s' if len(partitions) > 1 else ''} {', '.join(partitions)}" if partitions else ""
        )
        nodes = f" (nodes `{r.nodes_text}`)" if r.nodes_text else ""
        out.append(
            {
                "id": _announcement_id(cluster, r.name),
                "title": f"Maintenance{where}: {_span(r)}"[:140],
                "body": (
                    f"The scheduler's maintenance reservation **{r.name}**{nodes} runs from {_span(r)}. "
                    "Servers started before it end before it starts; a server asking for longer waits "
                    "until it is over."
                ),
                "severity": "error" if r.active(local) else "warning",
                "starts": iso_utc(max(local, r.start - timedelta(seconds=lead))),
                "ends": iso_utc(r.end),
                "audience": {"partitions": partitions} if partitions else {"everyone": True},
                "dismissible": True,
                "required": False,
                "source": "reservation",
            }
        )
    return out
