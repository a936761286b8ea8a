"""The spawner contract on every backend that runs here, through a real JupyterHub.

Live schedulers: Slurm (scripts/slurm.sh), Grid Engine (scripts/gridengine.sh), OAR
(scripts/oar.sh). PBS Pro, Torque, LSF and HTCondor cannot run on this machine: they
are the fake CLI of ``tests/fakes/cli`` (real subprocesses, the recorded output
formats, the job script really run as the user), reached through the same
``scheduler_commands``, sudo prefix and subprocess path as a real one.

Each backend: start -> ready (the server answers through the proxy), its output file
is 0600, the hub's poll keeps it, stop -> the scheduler no longer runs it; and a job
that dies before its server reports its exit code and the tail of its output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import cancel_all, slurm_jobs
from hub import Hub, wait_for

pytestmark = [pytest.mark.hub]

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "cli"
USER = "hpcuser3"
FAST: dict[str, Any] = {"status_interval": 3.0, "command_timeout": 20.0, "poll_interval": 3}
#: sudo keeps the token for the submit command (root's rule implies SETENV); the Slurm
#: tests use the sudoers env_keep written by scripts/test-users.sh instead
SUDO_KEEP_TOKEN = [
    "sudo",
    "-n",
    "-u",
    "{username}",
    "--preserve-env=JUPYTERHUB_API_TOKEN,JPY_API_TOKEN",
    "--",
]
FAKE_COMMANDS = {
    "pbs": ["qsub", "qstat", "qdel"],
    "torque": ["qsub", "qstat", "qdel"],
    "lsf": ["bsub", "bjobs", "bkill"],
    "htcondor": ["condor_submit", "condor_q", "condor_history", "condor_rm"],
}
BACKENDS = ["slurm", "sge", "oar", "pbs", "torque", "lsf", "htcondor"]


@pytest.fixture
def fake_bin() -> Iterator[Path]:
    """A private copy of the fake CLI with a fresh, world-writable state directory."""
    root = Path(tempfile.mkdtemp(prefix="jupyterhub-hpc-fakecli-"))
    os.chmod(root, 0o755)
    shutil.copytree(FAKES, root / "bin", ignore=shutil.ignore_patterns("state", "__pycache__"))
    state = root / "bin" / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    for name in ("lock", "calls.log"):
        (state / name).touch()
        os.chmod(state / name, 0o666)
    yield root / "bin"
    for job in _fake_jobs(root / "bin").values():
        if job.get("pid") and job.get("state") == "running":
            subprocess.run(["kill", "-TERM", f"-{job['pid']}"], check=False)
    shutil.rmtree(root, ignore_errors=True)


def _fake_jobs(bin_dir: Path) -> dict[str, Any]:
    path = bin_dir / "state" / "jobs.json"
    return dict(json.loads(path.read_text())["jobs"]) if path.exists() else {}


def _settings(backend: str, fake_bin: Path) -> dict[str, Any]:
    settings: dict[str, Any] = {**FAST, "memory": "400M"}
    if backend != "slurm":
        settings["submit_prefix"] = SUDO_KEEP_TOKEN
    if backend == "sge":
        settings["memory"] = "4G"  # h_vmem limits virtual memory: a Python server needs room
        settings["partition"] = "all.q"
    if backend in FAKE_COMMANDS:
        settings["scheduler_commands"] = {name: str(fake_bin / name) for name in FAKE_COMMANDS[backend]}
    return settings


def job_running(backend: str, job_id: str, fake_bin: Path) -> bool:
    """Whether the scheduler itself (its own commands, not our parsers) still runs the job."""
    if backend == "slurm":
        return job_id in slurm_jobs(USER)
    if backend == "sge":
        out = subprocess.run(["qstat", "-u", USER], capture_output=True, text=True, check=False).stdout
        return any(line.split()[:1] == [job_id] for line in out.splitlines())
    if backend == "oar":
        out = subprocess.run(
            ["oarstat", "-s", "-j", job_id], capture_output=True, text=True, check=False
        ).stdout
        return out.strip().split(":")[-1].strip() in (
            "Waiting",
            "toLaunch",
            "Launching",
            "Running",
            "Finishing",
        )
    job = _fake_jobs(fake_bin).get(job_id)
    return bool(job and job["state"] != "done")


def cancel_leftovers(backend: str) -> None:
    if backend == "slurm":
        cancel_all([USER])
    elif backend == "sge":
        subprocess.run(["qdel", "-u", USER], capture_output=True, check=False)
    elif backend == "oar":
        out = subprocess.run(["oarstat", "-u", USER], capture_output=True, text=True, check=False).stdout
        ids = [ln.split()[0] for ln in out.splitlines()[2:] if ln.split() and ln.split()[0].isdigit()]
        if ids:
            subprocess.run(
                ["sudo", "-u", USER, "--", "env", f"PWD=/home/{USER}", "oardel", *ids],
                capture_output=True,
                check=False,
            )


@pytest.fixture
def contract_hub(tmp_path: Path, fake_bin: Path) -> Iterator[Callable[[str], Hub]]:
    hubs: list[tuple[Hub, str]] = []

    def make(backend: str) -> Hub:
        cancel_leftovers(backend)
        hub = Hub(tmp_path / f"hub-{backend}", spawner=_settings(backend, fake_bin), spawner_class=backend)
        hubs.append((hub, backend))
        return hub

    yield make
    for hub, backend in hubs:
        hub.kill_all()
        cancel_leftovers(backend)


def _job_id(hub: Hub) -> str:
    return str(hub.user_model(USER)["servers"][""]["state"]["job_id"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_start_poll_stop(contract_hub: Callable[[str], Hub], fake_bin: Path, backend: str) -> None:
    hub = contract_hub(backend)
    hub.start()
    r = hub.spawn(USER)
    assert r.status_code in (201, 202), r.text
    server = hub.wait_ready(USER, timeout=120)
    job_id = str(server["state"]["job_id"])
    assert job_running(backend, job_id, fake_bin)
    # the job's output (node, port, Jupyter's log of every file opened) is the user's alone
    output = Path(f"/home/{USER}/.jupyterhub-hpc-{job_id}.log")
    assert output.stat().st_mode & 0o777 == 0o600, (backend, oct(output.stat().st_mode))
    assert "the server listens on" in output.read_text(errors="replace")
    token = hub.user_token(USER)
    status = hub.server_status(USER, token)
    assert status.status_code == 200, status.text[:300]
    # several hub poll intervals later the server is still there (poll answers None)
    time.sleep(7)
    assert hub.user_model(USER)["servers"][""]["ready"] is True
    assert hub.server_status(USER, token).status_code == 200
    hub.stop_server(USER, timeout=90)
    wait_for(
        lambda: not job_running(backend, job_id, fake_bin), 30, message=f"{backend} job {job_id} still runs"
    )
    if backend in FAKE_COMMANDS:
        calls = [json.loads(ln) for ln in (fake_bin / "state" / "calls.log").read_text().splitlines()]
        submits = [c for c in calls if c["prog"] in ("qsub", "bsub", "condor_submit")]
        assert len(submits) == 1 and submits[0]["uid"] != 0, submits  # submitted once, as the user
        assert any(c["prog"] in ("qdel", "bkill", "condor_rm") for c in calls)


@pytest.mark.parametrize("backend", BACKENDS)
def test_job_dying_early_reports_exit_code_and_output(
    contract_hub: Callable[[str], Hub], backend: str
) -> None:
    hub = contract_hub(backend)
    hub.per_user({USER: {"job_script_prologue": "echo 'loading the environment failed' >&2\nexit 3"}})
    hub.start()
    hub.spawn(USER)
    events = hub.progress_events(USER, timeout=90)
    final = events[-1]
    assert final.get("failed"), events
    message = final["message"]
    assert "exit code 3" in message, message
    assert "loading the environment failed" in message, message
    wait_for(lambda: hub.user_model(USER)["servers"] == {}, 30, message="the failed server is still listed")
