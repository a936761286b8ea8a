"""Prometheus metrics of the queue watchers, served by JupyterHub's own ``/hub/metrics``.

Nothing is registered when this module is imported: the spawner calls
:func:`ensure_registered` when it first needs its scheduler's watcher, which adds
one collector to ``prometheus_client``'s default registry (the one
``/hub/metrics`` serves), so a process that never talks to a scheduler exports
nothing of ours.

The collector reads every watcher's :class:`~jupyterhub_hpc.watcher.WatcherSnapshot`
when ``/hub/metrics`` is scraped (:func:`families`): the watcher keeps its own
counts and durations and knows nothing of this module or of Prometheus.

Every series is labelled ``backend`` (``slurm``, ``local``, ...) and ``cluster``
(the backend's cluster, ``default`` when none is set); watchers sharing labels
(e.g. different status prefixes) are added up:

``jupyterhub_hpc_status_query_duration_seconds`` (histogram)
    Wall time of each batched status command (one per interval for all jobs);
    its ``_count`` is the number of status commands run.
``jupyterhub_hpc_status_query_failures_total`` (counter)
    Status commands that failed or timed out (the jobs are UNKNOWN meanwhile).
``jupyterhub_hpc_jobs`` (gauge, extra label ``state``)
    Registered jobs by their last known state (``PENDING``, ``RUNNING``, ...,
    ``UNKNOWN`` before the first answer or while the scheduler does not answer).
``jupyterhub_hpc_status_backoff_seconds`` (gauge)
    Delay before the next status command while backing off after failures; 0
    when the last command succeeded.
``jupyterhub_hpc_status_consecutive_failures`` (gauge)
    Failed status commands in a row (0 when healthy).
``jupyterhub_hpc_status_last_success_timestamp_seconds`` (gauge)
    Unix time of the last successful status command (absent before the first).
``jupyterhub_hpc_waiting_spawns`` (gauge)
    Spawns waiting for their job right now (the watcher uses its fast interval
    while this is above 0).

The histogram and the counter appear from a scheduler's first status command on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import REGISTRY
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .states import JobState
from .watcher import QUERY_DURATION_BOUNDS, WatcherSnapshot, all_snapshots

__all__ = ["WatcherCollector", "ensure_registered", "families", "labels_of"]

LABELS = ("backend", "cluster")

log = logging.getLogger(__name__)
_lock = threading.Lock()
_registered: list[WatcherCollector] = []


def labels_of(snapshot: WatcherSnapshot) -> tuple[str, str]:
    """(backend, cluster) label values of a watcher's snapshot."""
    return snapshot.backend, snapshot.cluster or "default"


@dataclass
class _Totals:
    """The snapshots of one (backend, cluster) added up."""

    backoff: float = 0.0
    failures: float = 0.0
    waiting: float = 0.0
    last_success: float | None = None
    queries: int = 0
    query_failures: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(QUERY_DURATION_BOUNDS))
    jobs: dict[JobState, int] = field(default_factory=lambda: dict.fromkeys(JobState, 0))

    def add(self, snap: WatcherSnapshot) -> None:
        self.backoff = max(self.backoff, snap.backoff)
        self.failures = max(self.failures, float(snap.consecutive_failures))
        self.waiting += float(snap.waiting)
        if snap.last_success is not None:
            self.last_success = max(self.last_success or 0.0, snap.last_success)
        self.queries += snap.queries
        self.query_failures += snap.query_failures
        self.seconds += snap.query_seconds_total
        self.buckets = [a + b for a, b in zip(self.buckets, snap.query_duration_counts, strict=True)]
        for state, count in snap.jobs_by_state.items():
            self.jobs[state] += count


def _bound(value: float) -> str:
    """A bucket bound as ``prometheus_client`` writes it (``0.01``, ``1.0``)."""
    return repr(float(value))


def families(snapshots: Iterable[WatcherSnapshot]) -> list[Metric]:
    """Our metric families for ``snapshots`` (a pure function: the collector's work)."""
    totals: dict[tuple[str, str], _Totals] = {}
    for snap in snapshots:
        totals.setdefault(labels_of(snap), _Totals()).add(snap)
    duration = HistogramMetricFamily(
        "jupyterhub_hpc_status_query_duration_seconds",
        "Wall time of one batched scheduler status query (all jobs of the hub)",
        labels=list(LABELS),
    )
    query_failures = CounterMetricFamily(
        "jupyterhub_hpc_status_query_failures",
        "Scheduler status queries that failed or timed out",
        labels=list(LABELS),
    )
    jobs = GaugeMetricFamily(
        "jupyterhub_hpc_jobs", "Registered jobs by last known state", labels=[*LABELS, "state"]
    )
    backoff = GaugeMetricFamily(
        "jupyterhub_hpc_status_backoff_seconds",
        "Delay before the next status query while backing off after failures (0: healthy)",
        labels=list(LABELS),
    )
    failures = GaugeMetricFamily(
        "jupyterhub_hpc_status_consecutive_failures",
        "Failed status queries in a row",
        labels=list(LABELS),
    )
    last_success = GaugeMetricFamily(
        "jupyterhub_hpc_status_last_success_timestamp_seconds",
        "Unix time of the last successful status query",
        labels=list(LABELS),
    )
    waiting = GaugeMetricFamily(
        "jupyterhub_hpc_waiting_spawns",
        "Spawns waiting for their job (the watcher uses its fast interval meanwhile)",
        labels=list(LABELS),
    )
    for key, total in sorted(totals.items()):
        labels = list(key)
        if total.queries:
            buckets = [
                (_bound(b), float(n)) for b, n in zip(QUERY_DURATION_BOUNDS, total.buckets, strict=True)
            ]
            duration.add_metric(labels, [*buckets, ("+Inf", float(total.queries))], sum_value=total.seconds)
            query_failures.add_metric(labels, float(total.query_failures))
        for state in sorted(total.jobs, key=lambda s: s.value):
            jobs.add_metric([*labels, state.value], float(total.jobs[state]))
        backoff.add_metric(labels, total.backoff)
        failures.add_metric(labels, total.failures)
        waiting.add_metric(labels, total.waiting)
        if total.last_success is not None:
            last_success.add_metric(labels, total.last_success)
    return [duration, query_failures, jobs, backoff, failures, last_success, waiting]


class WatcherCollector(Collector):
    """Reads every watcher of this process at scrape time."""

    def collect(self) -> Iterator[Metric]:
        try:
            yield from families(all_snapshots())
        except Exception:  # a broken snapshot must not break JupyterHub's own metrics
            log.exception("cannot export the jupyterhub_hpc metrics")

    def describe(self) -> Iterator[Metric]:
        # no samples at registration time: the registry must not call collect() then
        return iter(())


def ensure_registered() -> WatcherCollector:
    """Add our collector to the default registry once per process; return it."""
    if _registered:  # the spawner calls this often: no lock once done
        return _registered[0]
    with _lock:
        if not _registered:
            collector = WatcherCollector()
            REGISTRY.register(collector)
            _registered.append(collector)
        return _registered[0]
