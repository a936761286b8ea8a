"""The watcher's Prometheus metrics appear at a real hub's ``/hub/metrics`` after a spawn.

Uses the real Slurm: the spawn is held in the queue (``--begin``), so the job never
runs and costs no CPU; the hub cancels it at the end.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import pytest

from hub import Hub, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "hpcuser3"
LABELS = 'backend="slurm",cluster="default"'


def sample(text: str, name: str, labels: str) -> float | None:
    """The value of one sample ``name{labels}`` in Prometheus text format, or None."""
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_watcher_metrics_after_a_spawn(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory(memory="200M", status_interval=3.0, command_timeout=20.0, poll_interval=3)
    hub.per_user({USER: {"job_extra_directives": ["--begin=now+600"]}})
    hub.start()
    job = ""
    try:
        hub.spawn(USER)
        job = str(
            wait_for(
                lambda: (hub.user_model(USER)["servers"].get("", {}).get("state") or {}).get("job_id"),
                60,
                message="no job id in the spawner state",
            )
        )

        def pending_in_metrics() -> str | None:
            text = hub.metrics()
            value = sample(text, "jupyterhub_hpc_jobs", f'{LABELS},state="PENDING"')
            return text if value == 1.0 else None

        text = wait_for(pending_in_metrics, 30, interval=0.5, message="the held job is not in the metrics")
        assert sample(text, "jupyterhub_hpc_jobs", f'{LABELS},state="RUNNING"') == 0.0
        queries = sample(text, "jupyterhub_hpc_status_query_duration_seconds_count", LABELS)
        assert queries is not None and queries >= 1, text
        assert sample(text, "jupyterhub_hpc_status_query_duration_seconds_bucket", f'{LABELS},le="+Inf"') == (
            queries
        )
        assert sample(text, "jupyterhub_hpc_status_query_failures_total", LABELS) == 0.0
        assert sample(text, "jupyterhub_hpc_status_backoff_seconds", LABELS) == 0.0
        assert sample(text, "jupyterhub_hpc_status_consecutive_failures", LABELS) == 0.0
        assert sample(text, "jupyterhub_hpc_waiting_spawns", LABELS) == 1.0
        last = sample(text, "jupyterhub_hpc_status_last_success_timestamp_seconds", LABELS)
        assert last is not None and last > 0
        # JupyterHub's own metrics are still there: ours joined the same registry
        assert "jupyterhub_running_servers" in text
        hub.stop_server(USER)
        job = ""
    finally:
        if job:
            subprocess.run(["scancel", job], check=False)
