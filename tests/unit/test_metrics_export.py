"""The metrics are made from watcher snapshots at scrape time (no hub: the live check is
``test_metrics.py``). The text is what ``prometheus_client`` serves at ``/hub/metrics``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from types import MappingProxyType

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from jupyterhub_hpc import metrics
from jupyterhub_hpc.backends.slurm import SlurmBackend
from jupyterhub_hpc.client import get_client
from jupyterhub_hpc.states import JobState
from jupyterhub_hpc.watcher import QUERY_DURATION_BOUNDS, WatcherSnapshot, get_watcher

LABELS = 'backend="slurm",cluster="default"'


def snapshot(**fields: object) -> WatcherSnapshot:
    jobs = dict.fromkeys(JobState, 0)
    jobs.update({JobState.PENDING: 2, JobState.RUNNING: 1})
    values: dict[str, object] = {
        "backend": "slurm",
        "cluster": "",
        "status_prefix": (),
        "interval": 30.0,
        "backoff": 0.0,
        "consecutive_failures": 0,
        "last_success": 1700000000.5,
        "registered": 3,
        "waiting": 1,
        "jobs_by_state": MappingProxyType(jobs),
        "queries": 4,
        "query_failures": 1,
        "query_seconds_total": 0.5,
        "last_query_seconds": 0.2,
        # cumulative: one query <= 0.05 s, two more <= 0.25 s, the fourth took 90 s
        "query_duration_counts": (0, 0, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3),
    }
    values.update(fields)
    return WatcherSnapshot(**values)  # type: ignore[arg-type]


class Fixed(Collector):
    def __init__(self, snapshots: Iterable[WatcherSnapshot]) -> None:
        self.snapshots = list(snapshots)

    def collect(self) -> Iterator[Metric]:
        yield from metrics.families(self.snapshots)


def scrape(*snapshots: WatcherSnapshot) -> str:
    registry = CollectorRegistry()
    registry.register(Fixed(snapshots))
    return generate_latest(registry).decode()


def sample(text: str, name: str, labels: str = LABELS) -> float | None:
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_every_metric_from_one_snapshot() -> None:
    text = scrape(snapshot())
    assert sample(text, "jupyterhub_hpc_status_query_duration_seconds_count") == 4
    assert sample(text, "jupyterhub_hpc_status_query_duration_seconds_sum") == 0.5
    buckets = {
        le: sample(text, "jupyterhub_hpc_status_query_duration_seconds_bucket", f'{LABELS},le="{le}"')
        for le in [*(repr(b) for b in QUERY_DURATION_BOUNDS), "+Inf"]
    }
    assert buckets["0.025"] == 0 and buckets["0.05"] == 1 and buckets["0.25"] == 3
    assert buckets["60.0"] == 3 and buckets["+Inf"] == 4
    assert "# TYPE jupyterhub_hpc_status_query_duration_seconds histogram" in text
    assert sample(text, "jupyterhub_hpc_status_query_failures_total") == 1
    assert "# TYPE jupyterhub_hpc_status_query_failures_total counter" in text
    assert sample(text, "jupyterhub_hpc_jobs", f'{LABELS},state="PENDING"') == 2
    assert sample(text, "jupyterhub_hpc_jobs", f'{LABELS},state="RUNNING"') == 1
    assert sample(text, "jupyterhub_hpc_jobs", f'{LABELS},state="UNKNOWN"') == 0
    assert sample(text, "jupyterhub_hpc_status_backoff_seconds") == 0
    assert sample(text, "jupyterhub_hpc_status_consecutive_failures") == 0
    assert sample(text, "jupyterhub_hpc_status_last_success_timestamp_seconds") == 1700000000.5
    assert sample(text, "jupyterhub_hpc_waiting_spawns") == 1


def test_watchers_sharing_labels_add_up_and_clusters_stay_apart() -> None:
    behind_sudo = snapshot(
        status_prefix=("sudo", "-n"),
        backoff=120.0,
        consecutive_failures=2,
        last_success=1700000100.0,
        waiting=2,
        queries=1,
        query_failures=0,
        query_seconds_total=0.01,
        query_duration_counts=(1,) * len(QUERY_DURATION_BOUNDS),
    )
    other = snapshot(cluster="c2", queries=0, query_duration_counts=(0,) * 12, last_success=None)
    text = scrape(snapshot(), behind_sudo, other)
    assert sample(text, "jupyterhub_hpc_status_query_duration_seconds_count") == 5
    assert sample(text, "jupyterhub_hpc_status_query_duration_seconds_bucket", f'{LABELS},le="0.01"') == 1
    assert sample(text, "jupyterhub_hpc_jobs", f'{LABELS},state="PENDING"') == 4
    assert sample(text, "jupyterhub_hpc_waiting_spawns") == 3
    # the worst of the two: the scheduler is backing off for one of them
    assert sample(text, "jupyterhub_hpc_status_backoff_seconds") == 120
    assert sample(text, "jupyterhub_hpc_status_consecutive_failures") == 2
    assert sample(text, "jupyterhub_hpc_status_last_success_timestamp_seconds") == 1700000100
    c2 = 'backend="slurm",cluster="c2"'
    assert sample(text, "jupyterhub_hpc_jobs", f'{c2},state="RUNNING"') == 1
    # no query yet: gauges, but neither the histogram nor the counter
    assert sample(text, "jupyterhub_hpc_status_query_duration_seconds_count", c2) is None
    assert sample(text, "jupyterhub_hpc_status_query_failures_total", c2) is None
    assert sample(text, "jupyterhub_hpc_status_last_success_timestamp_seconds", c2) is None


def test_a_scrape_reads_the_live_watchers_once_registered() -> None:
    collector = metrics.ensure_registered()
    assert metrics.ensure_registered() is collector, "registered once per process"
    watcher = get_watcher(
        get_client(SlurmBackend(cluster="metrics-export-test", commands={"squeue": "/nonexistent"}))
    )
    labels = 'backend="slurm",cluster="metrics-export-test"'
    text = generate_latest(REGISTRY).decode()
    assert sample(text, "jupyterhub_hpc_waiting_spawns", labels) == 0
    watcher.failures = 3  # what the next scrape sees, with nothing pushed anywhere
    text = generate_latest(REGISTRY).decode()
    assert sample(text, "jupyterhub_hpc_status_consecutive_failures", labels) == 3
    assert sample(text, "jupyterhub_hpc_status_backoff_seconds", labels) == watcher.snapshot().backoff > 0
    watcher.failures = 0


def test_a_snapshot_is_a_value() -> None:
    assert snapshot() == snapshot()
    assert replace(snapshot(), queries=5) != snapshot()
