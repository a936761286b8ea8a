"""The spawner contract on the local backend: a real JupyterHub, configurable-http-proxy and
jupyterhub-singleuser, with ``spawner_class = "local-hpc"`` and jobs of ``jupyterhub-hpc-local``.

The same contract as the Slurm end-to-end tests: start, poll, stop, adoption after a hub
restart, the failure story, the walltime, and the queue beyond the concurrency limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from hub import Hub, wait_for

from .conftest import LocalQueue

pytestmark = [pytest.mark.hub]


def job_id_of(hub: Hub, user: str) -> str:
    return str(hub.user_model(user)["servers"][""]["state"]["job_id"])


def assert_reachable(hub: Hub, user: str, token: str | None = None) -> None:
    r = hub.server_status(user, token or hub.user_token(user))
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert "last_activity" in r.json()


def test_spawn_reach_stop(local_hub_factory: Callable[..., Hub], queue: LocalQueue) -> None:
    hub = local_hub_factory()
    hub.start()
    hub.ensure_user("hpcuser1")
    with ThreadPoolExecutor(1) as pool:
        posted = pool.submit(hub.spawn, "hpcuser1")
        wait_for(lambda: hub.user_model("hpcuser1")["servers"], 30)
        events = [e["message"] for e in hub.progress_events("hpcuser1")]
        assert posted.result().status_code in (201, 202)
    hub.wait_ready("hpcuser1")
    job = job_id_of(hub, "hpcuser1")
    record = queue.status(job)[job]
    assert (record["state"], record["user"]) == ("RUNNING", "hpcuser1")
    assert any(m.startswith(f"Submitted job {job}") for m in events), events
    assert any(m.startswith("Running on node ") for m in events), events
    assert_reachable(hub, "hpcuser1")
    assert queue.processes(job)
    hub.stop_server("hpcuser1")
    assert queue.status(job)[job]["state"] == "CANCELLED"
    wait_for(lambda: not queue.processes(job), 10, message="job processes left after stop")


def test_restart_adopts_running_and_queued_jobs(
    local_hub_factory: Callable[..., Hub], queue: LocalQueue
) -> None:
    hub = local_hub_factory(local_max_running=1)
    hub.start()
    hub.spawn("hpcuser1")
    hub.wait_ready("hpcuser1")
    token1 = hub.user_token("hpcuser1")
    running = job_id_of(hub, "hpcuser1")
    hub.ensure_user("hpcuser2")
    with ThreadPoolExecutor(1) as pool:
        # the request returns only after JupyterHub's slow-spawn timeout; the crash cuts it short
        pool.submit(hub.spawn, "hpcuser2")
        wait_for(lambda: hub.user_model("hpcuser2")["servers"].get("", {}).get("state", {}).get("job_id"), 30)
        queued = job_id_of(hub, "hpcuser2")
        assert queue.wait_state(queued, "PENDING")["reason"] == "JobLimit"
        # a crash (SIGKILL) while one server runs and one waits in the queue
        hub.kill()
    hub.start()
    assert_reachable(hub, "hpcuser1", token1)
    assert job_id_of(hub, "hpcuser1") == running
    assert job_id_of(hub, "hpcuser2") == queued
    assert queue.status(queued)[queued]["state"] == "PENDING"
    # the running server goes: its slot frees, the queued job starts and connects to the new hub
    hub.stop_server("hpcuser1")
    hub.wait_ready("hpcuser2", timeout=60)
    token2 = hub.user_token("hpcuser2")
    assert_reachable(hub, "hpcuser2", token2)

    # a graceful stop (cleanup_servers is off): the server keeps running and is adopted
    hub.stop()
    hub.start()
    assert_reachable(hub, "hpcuser2", token2)
    assert job_id_of(hub, "hpcuser2") == queued
    assert queue.status(queued)[queued]["state"] == "RUNNING"

    # a job that ends while the hub is down: the restarted hub knows it ended
    hub.kill()
    assert queue.run("cancel", queued, user="hpcuser2").returncode == 0
    queue.wait_state(queued, "CANCELLED", timeout=15)
    hub.start()
    wait_for(lambda: not hub.user_model("hpcuser2")["servers"], 30, message="ended job still a server")


def test_job_dying_before_its_server_fails_fast_with_its_story(local_hub_factory: Callable[..., Hub]) -> None:
    hub = local_hub_factory()
    hub.per_user({"hpcuser2": {"job_script_prologue": "echo boom; exit 3"}})
    hub.start()
    hub.ensure_user("hpcuser2")
    t0 = time.monotonic()
    hub.spawn("hpcuser2")
    events = hub.progress_events("hpcuser2", timeout=30)
    elapsed = time.monotonic() - t0
    final = events[-1]
    assert final.get("failed"), events
    assert elapsed < 10, elapsed
    message = final["message"]
    assert "exit code 3" in message, message
    assert "boom" in message, message
    assert hub.user_model("hpcuser2")["servers"] == {}


def test_queue_beyond_the_concurrency_limit_tells_why(
    local_hub_factory: Callable[..., Hub], queue: LocalQueue
) -> None:
    hub = local_hub_factory(local_max_running=1)
    hub.start()
    hub.spawn("hpcuser1")
    hub.wait_ready("hpcuser1")
    hub.ensure_user("hpcuser3")
    with ThreadPoolExecutor(2) as pool:
        posted = pool.submit(hub.spawn, "hpcuser3")
        wait_for(lambda: hub.user_model("hpcuser3")["servers"], 30)
        events_future = pool.submit(hub.progress_events, "hpcuser3", 60)
        waiting = "Waiting in queue: this machine already runs as many Jupyter servers as it allows"
        wait_for(lambda: hub.user_model("hpcuser3")["servers"][""]["state"].get("job_id"), 30)
        queued = job_id_of(hub, "hpcuser3")
        assert queue.wait_state(queued, "PENDING")["reason"] == "JobLimit"
        time.sleep(3)  # two status queries: still pending, the server is not given up
        assert hub.user_model("hpcuser3")["servers"][""]["ready"] is False
        hub.stop_server("hpcuser1")
        events = events_future.result()
        assert posted.result().status_code in (201, 202)
    messages = [e["message"] for e in events]
    assert waiting in messages, messages
    assert events[-1].get("ready"), events
    hub.wait_ready("hpcuser3")
    assert_reachable(hub, "hpcuser3")


def test_walltime_ends_the_server(local_hub_factory: Callable[..., Hub], queue: LocalQueue) -> None:
    hub = local_hub_factory()
    hub.per_user({"hpcuser3": {"walltime": "00:01:00"}})
    hub.start()
    hub.spawn("hpcuser3")
    hub.wait_ready("hpcuser3")
    job = job_id_of(hub, "hpcuser3")
    started = queue.status(job)[job]["started"]
    assert_reachable(hub, "hpcuser3")
    # the hub polls every 3 s; the job is stopped 60 s after it started
    wait_for(
        lambda: not hub.user_model("hpcuser3")["servers"],
        90,
        interval=1,
        message="server outlived its walltime",
    )
    record = queue.status(job).get(job, {})
    assert (record.get("state"), record.get("reason")) == ("TIMEOUT", "TimeLimit"), (
        record,
        sorted(p.name for p in queue.state_dir.iterdir()),
    )
    assert 59 < record["ended"] - started < 60 + 3 + 3, record  # walltime + kill wait + sweep
    assert time.time() - record["ended"] < 10
    # the hub's own account of the end names the state the scheduler reported
    lines = hub.log_tail(100_000).splitlines()
    assert any("hpcuser3" in line and f"ob {job}" in line and "TIMEOUT" in line for line in lines)
    assert queue.processes(job) == []
