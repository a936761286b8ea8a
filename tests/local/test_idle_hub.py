"""The idle policy live on the local backend: a real JupyterHub, configurable-http-proxy and
jupyterhub-singleuser, a profile with a seconds-scale ``idle_timeout`` (the story is
tests/idle_story.py; the Slurm run of it is tests/e2e/test_slurm_idle.py)."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from hub import Hub, wait_for
from idle_story import (
    ACTIVITY_CONFIG,
    BUSY_KERNELS_ARGS,
    SPAWNER,
    TIMEOUT,
    check_idle_story,
    run_silently,
    running,
    spawn_ready,
)

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


def test_a_busy_kernel_is_activity_with_the_busy_kernels_extension(hub: Hub, queue: LocalQueue) -> None:
    """A cell that computes silently (no output, no traffic) for three timeouts: with the default
    busy check every 60 s (hpcuser1, the control) the server is stopped in the middle of it; with
    a check every second (hpcuser2: ``BusyKernels.interval=1``, read by busykernels and by the
    server extension's use tracker) it lives until the cell ends, then is stopped one timeout later."""
    hub.per_user({"hpcuser2": {"args": BUSY_KERNELS_ARGS}})
    seconds = 3 * TIMEOUT
    with ThreadPoolExecutor(2) as pool:
        plain_f, busy_f = (pool.submit(spawn_ready, hub, user, "gpu") for user in ("hpcuser1", "hpcuser2"))
        plain_job, busy_job = plain_f.result(), busy_f.result()
        started = list(
            pool.map(
                lambda user: (run_silently(hub, user, hub.user_token(user), seconds), time.monotonic()),
                ("hpcuser1", "hpcuser2"),
            )
        )
    t0 = max(t for _, t in started)
    # the control: the busy kernel alone does not keep a server without the extension
    wait_for(lambda: not hub.user_model("hpcuser1")["servers"], 2 * TIMEOUT + 20, 0.5, "control not stopped")
    assert time.monotonic() < t0 + seconds, "the control was stopped only after its cell ended"
    # with the extension: alive while the kernel is busy
    time.sleep(max(0.0, t0 + seconds - 2 - time.monotonic()))
    assert running(hub, "hpcuser2"), "stopped while its kernel was busy"
    assert queue.status(busy_job)[busy_job]["state"] == "RUNNING"
    # and idle once the cell ended
    wait_for(lambda: not hub.user_model("hpcuser2")["servers"], 2 * TIMEOUT + 20, 0.5, "not stopped after")
    assert queue.wait_state(plain_job, "CANCELLED")["state"] == "CANCELLED"
    assert queue.wait_state(busy_job, "CANCELLED")["state"] == "CANCELLED"


def test_a_restarted_hub_stops_an_idle_server_at_its_profiles_timeout(hub: Hub, queue: LocalQueue) -> None:
    """The profile's timeout is kept with the job: after a crash of the hub (SIGKILL) and a start,
    the hub (whose configuration has no timeout) still stops the idle server of the GPU profile."""
    job = spawn_ready(hub, "hpcuser1", "gpu")
    hub.kill()
    hub.start()
    # the restarted hub found the server running (with its profile's timeout and its last use,
    # both kept in the state: the restart may take most of the timeout, so it may be due at once)
    assert "hpcuser1 still running" in hub.log_tail(100_000)
    wait_for(lambda: not hub.user_model("hpcuser1")["servers"], 3 * TIMEOUT + 30, 0.5, "not stopped")
    assert queue.wait_state(job, "CANCELLED")["state"] == "CANCELLED"
    assert f"hpcuser1: idle: Job {job} was stopped by the hub after" in hub.log_tail(100_000)


def test_a_server_without_the_extension_counts_jupyterhubs_activity(hub: Hub, queue: LocalQueue) -> None:
    """The fallback: a server without this package's server extension never reports its use, so
    the hub counts JupyterHub's own last_activity (proxy traffic): kept while it is polled, then
    stopped one timeout after the polling ends."""
    hub.per_user({"hpcuser1": {"args": ["--ServerApp.jpserver_extensions=jupyterhub_hpc.lab=False"]}})
    job = spawn_ready(hub, "hpcuser1", "gpu")
    token = hub.user_token("hpcuser1")
    contents = f"{hub.url}/user/hpcuser1/api/contents"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5 * TIMEOUT:
        r = hub.api("GET", "/hpc/card/hpcuser1/")
        assert r.status_code == 200 and r.json()["idle"]["basis"] == "activity", r.text[:300]
        r = requests.get(contents, headers={"Authorization": f"token {token}"}, timeout=10)
        assert r.status_code == 200, r.text[:300]
        time.sleep(1.0)
    assert running(hub, "hpcuser1") and queue.status(job)[job]["state"] == "RUNNING"
    t1 = time.monotonic()
    wait_for(lambda: not hub.user_model("hpcuser1")["servers"], TIMEOUT + 20, 0.5, "not stopped")
    assert time.monotonic() - t1 >= TIMEOUT - 3
    assert queue.wait_state(job, "CANCELLED")["state"] == "CANCELLED"
