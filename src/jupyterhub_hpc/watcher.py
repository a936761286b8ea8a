"""One shared queue watcher per scheduler per hub process.

Every spawner of a scheduler registers its job here; one asyncio task asks the
scheduler about **all** registered jobs in one command per interval and keeps
the answers in a cache that ``Spawner.poll()`` reads. While any spawn is waiting
(:meth:`QueueWatcher.hurry`), the interval shrinks to ``fast_interval`` (still
one command for all jobs). A failed or timed-out query marks the jobs UNKNOWN
(never gone) and backs off exponentially. A job the scheduler stops listing is
reported ``NOT_FOUND`` only after two consecutive successful answers, then
looked up in accounting when the backend has it.

What others want to know of a watcher (``/hub/metrics``, benchmarks) they read
from :meth:`QueueWatcher.snapshot`, an immutable :class:`WatcherSnapshot`, and
:func:`all_watchers` lists the watchers of the process: this module pushes into
nothing and imports neither :mod:`jupyterhub_hpc.metrics` nor Prometheus.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .backends.base import QueryError
from .client import SchedulerClient
from .commands import CommandError
from .states import JobState, JobStatus

__all__ = [
    "QUERY_DURATION_BOUNDS",
    "QueueWatcher",
    "WatcherSettings",
    "WatcherSnapshot",
    "all_snapshots",
    "all_watchers",
    "get_watcher",
]

#: upper bounds (seconds) of the classes the wall times of status queries are counted in
QUERY_DURATION_BOUNDS: tuple[float, ...] = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


@dataclass(frozen=True)
class WatcherSettings:
    """Timing of a watcher (seconds)."""

    interval: float = 30.0
    fast_interval: float = 1.0
    timeout: float = 30.0
    max_backoff: float = 300.0
    #: wait this long after a wake-up so that registrations arriving together share one query
    coalesce: float = 0.1


@dataclass(frozen=True)
class WatcherSnapshot:
    """What a watcher knows at one moment (:meth:`QueueWatcher.snapshot`); immutable.

    The query counters grow for the life of the watcher: ``query_duration_counts[i]``
    is the number of queries that took at most ``QUERY_DURATION_BOUNDS[i]`` seconds
    (cumulative, as a Prometheus histogram's buckets); ``queries`` counts them all.
    """

    #: the backend's name (``slurm``) and cluster (``""`` when none is set)
    backend: str
    cluster: str
    status_prefix: tuple[str, ...]
    #: the interval in force: the fast one while a spawn waits
    interval: float
    #: the delay before the next query while backing off after failures; 0 when healthy
    backoff: float
    #: failed queries in a row (0 after a success)
    consecutive_failures: int
    #: Unix time of the last successful query; None before the first
    last_success: float | None
    #: jobs registered, and spawns waiting for theirs (the watcher hurries meanwhile)
    registered: int
    waiting: int
    #: registered jobs by their last known state (every state present, 0 when none)
    jobs_by_state: Mapping[JobState, int]
    queries: int
    query_failures: int
    query_seconds_total: float
    last_query_seconds: float
    query_duration_counts: tuple[int, ...]


class QueueWatcher:
    """The shared status cache of one scheduler (see the module docstring)."""

    def __init__(
        self,
        client: SchedulerClient,
        *,
        settings: WatcherSettings | None = None,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self.log = log or logging.getLogger(__name__)
        #: runs the status and accounting queries (prefix, environment, SSH: its settings)
        self.client = client
        self.backend = client.backend
        self.settings = settings or WatcherSettings()
        self._cache: dict[str, JobStatus] = {}
        self._registered: set[str] = set()
        self._absent: dict[str, int] = {}
        self._seen: dict[str, asyncio.Event] = {}
        self._hurry = 0
        self._confirm = False
        self._wake: asyncio.Event | None = None
        self._updated: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._accounting = client.has_accounting()
        # counters (see :meth:`snapshot`)
        self.failures = 0
        self.queries = 0
        self.query_failures = 0
        self.last_query_seconds = 0.0
        self.query_seconds_total = 0.0
        #: queries per duration class (``QUERY_DURATION_BOUNDS``, then the longer ones)
        self._duration_classes = [0] * (len(QUERY_DURATION_BOUNDS) + 1)
        self.last_success: float | None = None

    # -- registration ------------------------------------------------------------
    def register(self, job_id: str) -> None:
        """Watch ``job_id`` from now on; the next query includes it soon."""
        if job_id not in self._registered:
            self._registered.add(job_id)
            self._seen.setdefault(job_id, asyncio.Event())
            self._ensure_running()
            self.refresh_soon()

    def unregister(self, job_id: str) -> None:
        self._registered.discard(job_id)
        self._absent.pop(job_id, None)
        self._seen.pop(job_id, None)
        self._cache.pop(job_id, None)

    @property
    def job_ids(self) -> list[str]:
        return sorted(self._registered)

    @contextlib.contextmanager
    def hurry(self) -> Iterator[None]:
        """Use the fast interval while the block runs (a spawn is waiting)."""
        self._hurry += 1
        self.refresh_soon()
        try:
            yield
        finally:
            self._hurry -= 1

    def refresh_soon(self) -> None:
        """Wake the loop (the next query still waits for ``coalesce`` seconds)."""
        if self._wake is not None:
            self._wake.set()

    # -- reading -------------------------------------------------------------------
    def cached(self, job_id: str) -> JobStatus:
        """The last known status; UNKNOWN before any answer."""
        return self._cache.get(job_id) or JobStatus(job_id=job_id, state=JobState.UNKNOWN)

    async def status(self, job_id: str) -> JobStatus:
        """The cached status, after the first query that included this job (the
        first-load gate, bounded by the command timeout)."""
        self.register(job_id)
        seen = self._seen[job_id]
        if not seen.is_set():
            await _woken(seen, self.settings.timeout + 5)
        return self.cached(job_id)

    def snapshot(self) -> WatcherSnapshot:
        """What this watcher knows now, as an immutable value (for metrics at scrape time)."""
        by_state = dict.fromkeys(JobState, 0)
        for job_id in self._registered:
            by_state[self.cached(job_id).state] += 1
        counts: list[int] = []
        running = 0
        for count in self._duration_classes[: len(QUERY_DURATION_BOUNDS)]:
            running += count
            counts.append(running)
        return WatcherSnapshot(
            backend=self.backend.name,
            cluster=self.backend.cluster,
            status_prefix=self.client.settings.prefixes.status,
            interval=self.settings.fast_interval if self._hurry else self.settings.interval,
            backoff=self._delay() if self.failures else 0.0,
            consecutive_failures=self.failures,
            last_success=self.last_success,
            registered=len(self._registered),
            waiting=self._hurry,
            jobs_by_state=MappingProxyType(by_state),
            queries=self.queries,
            query_failures=self.query_failures,
            query_seconds_total=self.query_seconds_total,
            last_query_seconds=self.last_query_seconds,
            query_duration_counts=tuple(counts),
        )

    async def wait_update(self, timeout: float) -> None:
        """Return after the next query finished (or after ``timeout``)."""
        self._ensure_running()
        assert self._updated is not None
        event = self._updated
        await _woken(event, timeout)

    # -- the loop ------------------------------------------------------------------
    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            if self._task is not None and not self._task.cancelled() and self._task.exception():
                self.log.error(
                    "queue watcher for %s died; restarting",
                    self.backend.name,
                    exc_info=self._task.exception(),
                )
            self._wake = asyncio.Event()
            self._updated = asyncio.Event()
            self._task = asyncio.ensure_future(self._run())

    def _delay(self) -> float:
        base = self.settings.fast_interval if self._hurry else self.settings.interval
        if self.failures:
            return float(min(max(base, 1.0) * 2**self.failures, self.settings.max_backoff))
        return base

    async def _run(self) -> None:
        assert self._wake is not None
        last = 0.0
        while True:
            delay = self._delay()
            wait = max(0.0, last + delay - time.monotonic())
            if wait:
                await _woken(self._wake, wait)
            self._wake.clear()
            # after a wake-up, respect the fast interval (or the back-off) as a floor
            floor = self.settings.fast_interval if not self.failures else self._delay()
            gap = max(self.settings.coalesce, last + floor - time.monotonic())
            await asyncio.sleep(gap)
            if not self._registered:
                continue
            last = time.monotonic()
            await self.refresh()

    async def refresh(self) -> None:
        """Run one batched status query now and update the cache."""
        ids = sorted(self._registered)
        if not ids:
            return
        started = time.monotonic()
        self.queries += 1
        try:
            statuses = await self.client.status(ids, timeout=self.settings.timeout)
        except (CommandError, QueryError) as exc:
            self.failures += 1
            self.query_failures += 1
            self.log.warning(
                "%s status query failed (%d in a row, next try in %.0f s): %s",
                self.backend.name,
                self.failures,
                self._delay(),
                exc,
            )
            for job_id in ids:
                self._cache[job_id] = self.cached(job_id).with_state(JobState.UNKNOWN)
        else:
            self.failures = 0
            self.last_success = time.time()
            await self._store(statuses)
        finally:
            self._count_duration(time.monotonic() - started)
        for job_id in ids:
            # a job seen missing once is not "seen" until the next answer confirms it
            if job_id in self._seen and (self.failures or self._absent.get(job_id) != 1):
                self._seen[job_id].set()
        if self._confirm:
            self._confirm = False
            self.refresh_soon()
        assert self._updated is not None
        self._updated.set()
        self._updated = asyncio.Event()

    def _count_duration(self, seconds: float) -> None:
        self.last_query_seconds = seconds
        self.query_seconds_total += seconds
        # a query of exactly a bound's length counts in that bound's class (``le``)
        self._duration_classes[bisect.bisect_left(QUERY_DURATION_BOUNDS, seconds)] += 1

    async def _store(self, statuses: dict[str, JobStatus]) -> None:
        gone: list[str] = []
        for job_id, status in statuses.items():
            if job_id not in self._registered:
                continue
            if status.state is JobState.NOT_FOUND:
                self._absent[job_id] = self._absent.get(job_id, 0) + 1
                if self._absent[job_id] < 2:
                    # debounce: confirm with the next answer, which comes soon
                    self._cache.setdefault(job_id, status.with_state(JobState.UNKNOWN))
                    self._confirm = True
                    continue
                gone.append(job_id)
            else:
                self._absent.pop(job_id, None)
            self._cache[job_id] = status
        if gone and self._accounting:
            await self._lookup_accounting(gone)

    async def _lookup_accounting(self, job_ids: list[str]) -> None:
        try:
            found = await self.client.accounting(job_ids, timeout=self.settings.timeout)
        except (CommandError, QueryError) as exc:
            self.log.info(
                "%s accounting is not available (%s); relying on exit-status markers", self.backend.name, exc
            )
            self._accounting = False
            return
        for job_id, status in found.items():
            if job_id in self._registered:
                self._cache[job_id] = status

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


async def _woken(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set or ``seconds`` have passed. Not ``wait_for``: on Python 3.11 it
    returns the event instead of raising when a cancellation comes in the step that sets it, and
    a loop cancelled once (``asyncio.run`` at exit, :meth:`QueueWatcher.stop`) would run on."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()


_WATCHERS: dict[tuple[object, ...], QueueWatcher] = {}


def get_watcher(
    client: SchedulerClient,
    *,
    settings: WatcherSettings | None = None,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
) -> QueueWatcher:
    """The one watcher for this scheduler client (backend, cluster, commands, prefixes,
    scheduler environment, SSH host: :attr:`SchedulerClient.key`) in this process,
    created on first use. Settings of the first caller win."""
    watcher = _WATCHERS.get(client.key)
    if watcher is None:
        watcher = _WATCHERS[client.key] = QueueWatcher(client, settings=settings, log=log)
    return watcher


def all_watchers() -> list[QueueWatcher]:
    """Every watcher of this process (``get_watcher``'s registry)."""
    return list(_WATCHERS.values())


def all_snapshots() -> list[WatcherSnapshot]:
    """A snapshot of every watcher of this process (what ``/hub/metrics`` exports)."""
    return [watcher.snapshot() for watcher in all_watchers()]
