"""End to end on the multi-node Slurm (scripts/slurm-multinode.sh): a second, private cluster with the
fake nodes cpu1..cpu3 and gpu1, selected by ``scheduler_environment={"SLURM_CONF": ...}``.

The hubs run as the unprivileged account under the generated sudoers files (scripts/test-sudoers.sh):
the spawner submits with ``sudo -n -u hpcuser4 -- env SLURM_CONF=... sbatch --parsable``, which the
second file allows with exactly these arguments, keeping the API token. hpcuser4 is used only here
(this cluster's job ids restart at 1: its output files must not meet those of the single-node tests).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub import Hub, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

SLURM_CONF = "/var/lib/jupyterhub-hpc-slurm-multi/etc/slurm.conf"
USER = "hpcuser4"
SETTINGS: dict[str, Any] = {
    "scheduler_environment": {"SLURM_CONF": SLURM_CONF},
    "memory": "400M",
    "walltime": "01:00:00",  # the gpu partition allows 4 h (MaxTime), not the default 8 h
    "status_interval": 3.0,
    "command_timeout": 20.0,
    "poll_interval": 3,
}
#: the job's own view of its GPUs, written to its output file before the server starts
GPU_PROLOGUE = (
    'echo "gpu-check node=${SLURMD_NODENAME:-?} CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"'
)


def slurm(*argv: str) -> str:
    """A Slurm client command against the multi-node cluster, as root."""
    env = {**os.environ, "SLURM_CONF": SLURM_CONF}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode == 0, (argv, result.stderr)
    return result.stdout


def jobs_of(user: str) -> dict[str, str]:
    out = slurm(
        "squeue", "--noheader", f"--user={user}", "--states=PENDING,RUNNING,COMPLETING", "--format=%i|%T"
    )
    return dict(line.split("|", 1) for line in out.split())


def show_job(job: str, detail: bool = False) -> str:
    return slurm("scontrol", *(["-d"] if detail else []), "show", "job", job)


@pytest.fixture
def hub_factory(nonroot_hub_factory: Callable[..., Hub]) -> Callable[..., Hub]:
    return nonroot_hub_factory


@pytest.fixture(autouse=True)
def multinode_cluster() -> Iterator[None]:
    """The cluster answers and runs no job of ours (make test starts it; it is never started here)."""
    ping = slurm("scontrol", "ping")
    assert "is UP" in ping, ping
    slurm("scancel", f"--user={USER}")
    yield
    slurm("scancel", f"--user={USER}")


def job_id_of(hub: Hub) -> str:
    return str(hub.user_model(USER)["servers"][""]["state"]["job_id"])


def assert_reachable(hub: Hub) -> None:
    r = hub.server_status(USER, hub.user_token(USER))
    assert r.status_code == 200, (r.status_code, r.text[:300])


def test_gpu_request_lands_on_the_gpu_node_with_its_gpu(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory(**SETTINGS, allowed_user_options=["partition", "gpus"])
    hub.per_user({USER: {"job_script_prologue": GPU_PROLOGUE}})
    hub.start()
    r = hub.spawn(USER, {"partition": "gpu", "gpus": 1})
    assert r.status_code in (201, 202), r.text
    server = hub.wait_ready(USER, timeout=120)
    job = job_id_of(hub)
    assert server["state"]["host"] == "gpu1"
    assert jobs_of(USER) == {job: "RUNNING"}
    info = show_job(job, detail=True)
    assert re.search(r"\bPartition=gpu\b", info), info
    assert re.search(r"\bNodeList=gpu1\b", info), info
    assert re.search(r"GRES=gpu(:tesla)?:1\(IDX:\d\)", info), info
    # through the proxy to the server on "gpu1" (a name only /etc/hosts knows)
    assert_reachable(hub)
    output = Path(f"/home/{USER}/.jupyterhub-hpc-{job}.log").read_text()
    assert "gpu-check node=gpu1 CUDA_VISIBLE_DEVICES=0\n" in output, output
    hub.stop_server(USER)
    assert jobs_of(USER) == {}


def test_a_walltime_kill_is_reported_as_such(hub_factory: Callable[..., Hub]) -> None:
    """The one slow test (~1.5 min): Slurm kills a 1-minute job only at its next limit check
    (about every 30 s), so the job ends 60-100 s after it started."""
    hub = hub_factory(**{**SETTINGS, "partition": "short", "walltime": "00:01:00"})
    hub.start()
    assert hub.spawn(USER).status_code in (201, 202)
    hub.wait_ready(USER, timeout=120)
    job = job_id_of(hub)
    t0 = time.monotonic()
    assert_reachable(hub)

    # the hub learns by itself (its poll) that the server is gone
    wait_for(lambda: not hub.user_model(USER)["servers"], 150, 1.0, "the server outlived its walltime")
    elapsed = time.monotonic() - t0
    assert elapsed < 130, elapsed
    info = show_job(job)
    assert "JobState=TIMEOUT" in info and "Reason=TimeLimit" in info, info

    # the admin's view: the hub log says which job ended, how, and why
    log = hub.log_tail(100_000)
    stopped = re.search(rf"{USER}: server stopped: (Job {job} ended at \d\d:\d\d \(TIMEOUT: [^)]*\)\.)", log)
    assert stopped, log[-3000:]
    assert stopped.group(1).endswith("(TIMEOUT: the job reached its time limit).")
    assert f"User {USER} server stopped, with exit code" in log

    # the user's view: the next spawn's progress (the spawn page) starts by saying why the previous
    # server stopped
    events = hub.spawn_with_progress(USER)
    messages = [e["message"] for e in events]
    assert f"Your previous server stopped: {stopped.group(1)}" in messages, messages
    assert events[-1].get("ready"), events
    # said once: the spawn after that has nothing to report
    hub.stop_server(USER)
    later = [e["message"] for e in hub.spawn_with_progress(USER)]
    assert not any(m.startswith("Your previous server") for m in later), later
    hub.stop_server(USER)
    assert jobs_of(USER) == {}
