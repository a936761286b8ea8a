"""Prometheus metrics of the queue watchers, served by JupyterHub's own ``/hub/metrics``.

Nothing is registered when this module is imported: the metrics join
``prometheus_client``'s default registry (the one ``/hub/metrics`` serves) the
first time a watcher reports a query (:func:`record_query`), so a process that
never talks to a scheduler exports nothing of ours.

Every series is labelled ``backend`` (``slurm``, ``local``, ...) and ``cluster``
(the backend's cluster, ``default`` when none is set):

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

The gauges are computed from the live watchers when ``/hub/metrics`` is scraped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .states import JobState

if TYPE_CHECKING:
    from .watcher import QueueWatcher

__all__ = ["ensure_registered", "labels_of", "record_query"]

LABELS = ("backend", "cluster")
QUERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

log = logging.getLogger(__name__)
_lock = threading.Lock()
_metrics: dict[str, Any] = {}


def labels_of(watcher: QueueWatcher) -> tuple[str, str]:
    """(backend, cluster) label values of a watcher."""
    return watcher.backend.name, watcher.backend.cluster or "default"


class _WatcherCollector(Collector):
    """Gauges read from every watcher of this process at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from .watcher import all_watchers  # the watcher module imports this one

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
        # several watchers may share labels (e.g. different status prefixes): add them up
        by_state: dict[tuple[str, str, str], int] = {}
        per_watcher: dict[tuple[str, str], list[float]] = {}
        success: dict[tuple[str, str], float] = {}
        for watcher in all_watchers():
            key = labels_of(watcher)
            for state in JobState:
                by_state.setdefault((*key, state.value), 0)
            for job_id in watcher.job_ids:
                state_key = (*key, watcher.cached(job_id).state.value)
                by_state[state_key] += 1
            delay = watcher._delay() if watcher.failures else 0.0
            row = per_watcher.setdefault(key, [0.0, 0.0, 0.0])
            row[0] = max(row[0], delay)
            row[1] = max(row[1], float(watcher.failures))
            row[2] += float(getattr(watcher, "_hurry", 0))
            if watcher.last_success is not None:
                success[key] = max(success.get(key, 0.0), watcher.last_success)
        for state_key, count in sorted(by_state.items()):
            jobs.add_metric(list(state_key), count)
        for key, (delay, fails, hurry) in sorted(per_watcher.items()):
            backoff.add_metric(list(key), delay)
            failures.add_metric(list(key), fails)
            waiting.add_metric(list(key), hurry)
        for key, when in sorted(success.items()):
            last_success.add_metric(list(key), when)
        yield from (jobs, backoff, failures, last_success, waiting)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # no samples at registration time: the registry must not call collect() then
        return iter(())


def ensure_registered() -> dict[str, Any]:
    """Register our metrics on the default registry once per process; return them."""
    with _lock:
        if not _metrics:
            _metrics["duration"] = Histogram(
                "jupyterhub_hpc_status_query_duration_seconds",
                "Wall time of one batched scheduler status query (all jobs of the hub)",
                LABELS,
                buckets=QUERY_BUCKETS,
            )
            _metrics["failures"] = Counter(
                "jupyterhub_hpc_status_query_failures",
                "Scheduler status queries that failed or timed out",
                LABELS,
            )
            _metrics["collector"] = collector = _WatcherCollector()
            REGISTRY.register(collector)
        return _metrics


def record_query(watcher: QueueWatcher) -> None:
    """Called by the watcher after each status query (successful or not). Never raises:
    metrics must not disturb the status loop."""
    try:
        metrics = ensure_registered()
        labels = labels_of(watcher)
        metrics["duration"].labels(*labels).observe(watcher.last_query_seconds)
        failures = metrics["failures"].labels(*labels)  # exported (as 0) from the first query on
        if watcher.failures:
            # ``failures`` counts failures in a row, 0 after a success: > 0 here means this one failed
            failures.inc()
    except Exception:
        log.exception("cannot update the jupyterhub_hpc metrics")
