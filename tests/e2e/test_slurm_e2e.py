"""End to end on the real Slurm: real JupyterHub, configurable-http-proxy and jupyterhub-singleuser.

Each test drives the hub only through its REST API and checks Slurm with its own commands.
``JUPYTERHUB_HPC_TEST_SLURM`` picks the cluster (tests/slurm_cluster.py): Slurm 22.05 of
scripts/slurm.sh (default), or ``24.11``, the Debian 13 cluster of scripts/slurm24.sh, whose hubs
use it through their own settings (tests/e2e/slurm24_hub.py) and whose jobs run in its root.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hub import Hub, wait_for
from slurm_cluster import SlurmCluster, selected_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USERS = ["hpcuser1", "hpcuser2", "hpcuser3"]
FAST = {"memory": "400M", "status_interval": 3.0, "command_timeout": 20.0, "poll_interval": 3}
CLUSTER: SlurmCluster = selected_cluster()


def slurm_jobs(user: str) -> dict[str, str]:
    return CLUSTER.jobs(user)


@pytest.fixture(scope="module", autouse=True)
def the_selected_slurm() -> str:
    """The selected cluster answers and runs the Slurm version it is selected by (else every test fails)."""
    return CLUSTER.check_version()


@pytest.fixture
def hub_factory(nonroot_hub_factory: Callable[..., Hub]) -> Callable[..., Hub]:
    """Every hub here runs as the unprivileged account, under the generated sudoers file, with the
    selected cluster's settings."""

    def make(**spawner: object) -> Hub:
        return nonroot_hub_factory(**{**CLUSTER.spawner, **spawner})

    return make


@pytest.fixture(autouse=True)
def no_leftover_jobs() -> Iterator[None]:
    CLUSTER.cancel_all(USERS)
    yield
    CLUSTER.cancel_all(USERS)


def job_id_of(hub: Hub, user: str) -> str:
    server = hub.user_model(user)["servers"][""]
    return str(server["state"]["job_id"])


def wait_pending_job(hub: Hub, user: str) -> str:
    def pending() -> str | None:
        jobs = slurm_jobs(user)
        return next((j for j, s in jobs.items() if s == "PENDING"), None)

    return str(wait_for(pending, 60, message=f"{user} has no pending job"))


def release(job_id: str) -> None:
    CLUSTER.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")


def assert_reachable(hub: Hub, user: str, token: str | None = None) -> None:
    token = token or hub.user_token(user)
    r = hub.server_status(user, token)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert "last_activity" in r.json()


def test_spawn_reach_stop(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory(**FAST)
    hub.start()
    hub.ensure_user("hpcuser1")
    with ThreadPoolExecutor(1) as pool:
        posted = pool.submit(hub.spawn, "hpcuser1")
        wait_for(lambda: hub.user_model("hpcuser1")["servers"], 30)
        events = [e["message"] for e in hub.progress_events("hpcuser1")]
        assert posted.result().status_code in (201, 202)
    hub.wait_ready("hpcuser1")
    job = job_id_of(hub, "hpcuser1")
    assert slurm_jobs("hpcuser1") == {job: "RUNNING"}
    assert_reachable(hub, "hpcuser1")
    assert any(m.startswith(f"Submitted job {job}") for m in events), events
    assert any(m.startswith("Running on node ") for m in events), events
    hub.stop_server("hpcuser1")
    assert slurm_jobs("hpcuser1") == {}
    state = CLUSTER.run("scontrol", "show", "job", job, check=False).stdout
    assert "JobState=CANCELLED" in state or "JobState=COMPLETED" in state, state


@pytest.mark.parametrize("how", ["graceful", "sigkill"])
def test_restart_keeps_running_and_queued(hub_factory: Callable[..., Hub], how: str) -> None:
    hub = hub_factory(**FAST)
    hub.per_user({"hpcuser2": {"job_extra_directives": ["--begin=now+600"]}})
    hub.start()
    hub.spawn("hpcuser1")
    hub.wait_ready("hpcuser1")
    token1 = hub.user_token("hpcuser1")
    running_job = job_id_of(hub, "hpcuser1")
    hub.spawn("hpcuser2")
    queued_job = wait_pending_job(hub, "hpcuser2")
    # the job id is in the hub's database while the spawn still waits in the queue
    assert job_id_of(hub, "hpcuser2") == queued_job

    hub.stop() if how == "graceful" else hub.kill()
    hub.start()

    assert_reachable(hub, "hpcuser1", token1)
    assert job_id_of(hub, "hpcuser1") == running_job
    assert hub.user_model("hpcuser2")["servers"][""]["state"]["job_id"] == queued_job
    release(queued_job)
    hub.wait_ready("hpcuser2", timeout=120)
    assert_reachable(hub, "hpcuser2")
    assert job_id_of(hub, "hpcuser2") == queued_job
    # no orphan: exactly the two jobs the hub knows run
    assert slurm_jobs("hpcuser1") == {running_job: "RUNNING"}
    assert slurm_jobs("hpcuser2") == {queued_job: "RUNNING"}
    hub.stop_server("hpcuser1")
    hub.stop_server("hpcuser2")
    assert slurm_jobs("hpcuser1") == {} and slurm_jobs("hpcuser2") == {}


def test_job_starting_while_hub_is_down_connects_later(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory(**FAST)
    hub.per_user({"hpcuser3": {"job_extra_directives": ["--begin=now+600"]}})
    hub.start()
    hub.spawn("hpcuser3")
    job = wait_pending_job(hub, "hpcuser3")
    hub.kill()
    release(job)
    wait_for(lambda: slurm_jobs("hpcuser3").get(job) == "RUNNING", 30, message="job did not start")
    # slurmd creates the job's output file a moment after squeue says RUNNING
    log = Path(f"/home/hpcuser3/.jupyterhub-hpc-{job}.log")
    wait_for(
        lambda: log.exists() and "hub not reachable" in log.read_text(errors="replace"),
        30,
        message="launcher did not retry",
    )
    hub.start()
    hub.wait_ready("hpcuser3", timeout=120)
    assert_reachable(hub, "hpcuser3")
    assert slurm_jobs("hpcuser3") == {job: "RUNNING"}


def test_scheduler_outage_never_drops_a_running_server(hub_factory: Callable[..., Hub]) -> None:
    # squeue takes ~18 s to give up on a dead controller; a 5 s command timeout
    # makes several failed queries fit in the outage
    hub = hub_factory(**{**FAST, "command_timeout": 5.0})
    hub.start()
    hub.spawn("hpcuser1")
    hub.wait_ready("hpcuser1")
    token = hub.user_token("hpcuser1")
    job = job_id_of(hub, "hpcuser1")
    CLUSTER.control_script("stop-ctld")
    try:
        # much longer than two status intervals (3 s) and two hub poll intervals (3 s)
        t_end = time.monotonic() + 20
        while time.monotonic() < t_end:
            assert hub.user_model("hpcuser1")["servers"][""]["ready"] is True
            assert_reachable(hub, "hpcuser1", token)
            time.sleep(1)
    finally:
        CLUSTER.control_script("start-ctld")
    assert "status query failed" in hub.log_tail(100_000)
    time.sleep(7)
    assert hub.user_model("hpcuser1")["servers"][""]["ready"] is True
    assert_reachable(hub, "hpcuser1", token)
    assert slurm_jobs("hpcuser1") == {job: "RUNNING"}
    hub.stop_server("hpcuser1")


def test_job_dying_before_its_server_fails_fast_with_its_story(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory(**FAST)
    hub.per_user({"hpcuser2": {"job_script_prologue": "echo 'loading the environment failed' >&2\nexit 3"}})
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
    assert "loading the environment failed" in message, message
    assert hub.user_model("hpcuser2")["servers"] == {}
