"""The idle policy live on the local backend: a real JupyterHub, configurable-http-proxy and
jupyterhub-singleuser, a profile with a seconds-scale ``idle_timeout`` (the story is
tests/idle_story.py; the Slurm run of it is tests/e2e/test_slurm_idle.py)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub import Hub
from idle_story import ACTIVITY_CONFIG, SPAWNER, check_idle_story

from .conftest import FAST, LocalQueue

pytestmark = [pytest.mark.hub]


@pytest.fixture
def hub(queue: LocalQueue, tmp_path: Path) -> Iterator[Hub]:
    private = queue.root / "hubs"
    private.mkdir(mode=0o700, exist_ok=True)
    spawner = {
        **FAST,
        **SPAWNER,
        "local_state_dir": str(queue.state_dir),
        "job_output": str(queue.log_dir / "{username}-{job_id}.log"),
    }
    the_hub = Hub(private / "idle", spawner=spawner, spawner_class="local-hpc", config=ACTIVITY_CONFIG)
    the_hub.start()
    yield the_hub
    the_hub.kill_all()
    with contextlib.suppress(OSError):
        shutil.copy(the_hub.log_path, tmp_path / "hub.log")


def test_idle_servers_of_a_timed_profile_are_stopped_and_told_why(hub: Hub, queue: LocalQueue) -> None:
    def state(job: str) -> str:
        return str(queue.status(job).get(job, {}).get("state"))

    check_idle_story(
        hub,
        ("hpcuser1", "hpcuser2", "hpcuser3"),
        job_running=lambda user, job: state(job) == "RUNNING",
        job_gone=lambda user, job: state(job) == "CANCELLED",
    )
