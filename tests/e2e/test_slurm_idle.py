"""The idle policy live on the real Slurm (22.05 by default, see tests/slurm_cluster.py): a real
JupyterHub as the unprivileged hub account, configurable-http-proxy, jupyterhub-singleuser in Slurm
jobs, a profile with a seconds-scale ``idle_timeout``. The story (tests/idle_story.py): the idle
server is stopped and its job leaves the queue as CANCELLED, a server kept in use is not, a profile
without a timeout never is, and the next spawn says why."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from hub import Hub
from idle_story import ACTIVITY_CONFIG, SPAWNER, check_idle_story
from slurm_cluster import SlurmCluster, selected_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USERS = ("hpcuser1", "hpcuser2", "hpcuser3")
FAST = {"memory": "400M", "status_interval": 3.0, "command_timeout": 20.0, "poll_interval": 3}
CLUSTER: SlurmCluster = selected_cluster()


@pytest.fixture(autouse=True)
def no_jobs_left_behind() -> Iterator[None]:
    """Cancel what this test submitted (and only that: other jobs of the users are left alone)."""
    CLUSTER.check_version()
    before = {user: set(CLUSTER.jobs(user)) for user in USERS}
    yield
    for user in USERS:
        for job in set(CLUSTER.jobs(user)) - before[user]:
            CLUSTER.run("scancel", job, check=False)


def state_of(job: str) -> str:
    out = CLUSTER.run("scontrol", "show", "job", job, check=False).stdout
    return next((w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")), "")


def test_idle_servers_of_a_timed_profile_are_stopped_and_told_why(
    nonroot_hub_factory: Callable[..., Hub],
) -> None:
    hub = nonroot_hub_factory(config=ACTIVITY_CONFIG, **{**CLUSTER.spawner, **FAST, **SPAWNER})
    hub.start()
    jobs = check_idle_story(
        hub,
        USERS,
        job_running=lambda user, job: CLUSTER.jobs(user).get(job) == "RUNNING",
        job_gone=lambda user, job: job not in CLUSTER.jobs(user) and state_of(job) == "CANCELLED",
    )
    for user in USERS:
        assert not set(CLUSTER.jobs(user)) & set(jobs), CLUSTER.jobs(user)
