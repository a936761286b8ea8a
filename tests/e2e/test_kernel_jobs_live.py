"""Kernels as batch jobs (``hpc-provisioner``), live: real jupyter_client and ipykernel, run as a
test user against the real Slurm (scripts/slurm.sh) and Grid Engine (scripts/gridengine.sh).

The driver (tests/kernel_driver.py) runs as the user, like the user's own Jupyter server would;
these tests check the scheduler's own queue and what the driver saw: the cell runs inside the
job, the ports were bound on the node, the connection file is 0600 with CurveZMQ keys, an
interrupt is a message that ends ``time.sleep(60)`` in under a second, a restart keeps the job,
a shutdown takes the job out of the queue within 3 s, a new process re-attaches to a running
kernel job with its state, and a failing kernel is explained with the tail of its output.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import slurm_jobs

pytestmark = [pytest.mark.hub]

USER = "hpcuser1"
SGE_USER = "hpcuser3"
DRIVER = Path(__file__).resolve().parents[1] / "kernel_driver.py"
SGE_ENV = {"SGE_ROOT": "/var/lib/gridengine", "SGE_CELL": "default"}


@pytest.fixture(scope="module")
def kernels() -> Iterator[Path]:
    """A world-readable directory with the driver and the kernelspecs of these tests."""
    from jupyterhub_hpc.kernels.spec import install, kernelspec

    base = Path(tempfile.mkdtemp(prefix="kernel-jobs-"))
    os.chmod(base, 0o755)
    shutil.copy(DRIVER, base / "kernel_driver.py")
    small = {"partition": "debug", "walltime": "00:10:00", "memory": "500M"}
    specs = {
        "slurm-debug": kernelspec("Python 3 (Slurm debug)", resources=small),
        "slurm-broken": kernelspec(
            "Broken",
            resources=small,
            kernel_argv=[
                sys.executable,
                "-c",
                "import sys; print('no such library: libfoo.so.1', file=sys.stderr); sys.exit(3)",
                "{connection_file}",
            ],
        ),
        "slurm-nopart": kernelspec("No partition", resources={**small, "partition": "nosuchpartition"}),
        "sge-all": kernelspec(
            "Python 3 (Grid Engine)",
            backend="sge",
            resources={"partition": "all.q", "walltime": "00:10:00", "memory": "4G"},
            config={"scheduler_environment": SGE_ENV},
        ),
    }
    for name, spec in specs.items():
        install(name, spec, base / "kernels")
    out = base / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    subprocess.run(["chmod", "-R", "a+rX", str(base / "kernels")], check=True)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def drive(base: Path, scenario: str, kernel: str, user: str = USER, tag: str = "") -> dict[str, Any]:
    out = base / "out" / f"{kernel}-{tag or scenario}.json"
    result = subprocess.run(
        [
            "runuser",
            "-u",
            user,
            "--",
            sys.executable,
            str(base / "kernel_driver.py"),
            scenario,
            str(base),
            kernel,
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd="/tmp",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    facts: dict[str, Any] = json.loads(out.read_text())
    return facts


def sge_jobs(user: str) -> list[str]:
    listing = subprocess.run(
        ["qstat", "-u", user], capture_output=True, text=True, check=False, env={**os.environ, **SGE_ENV}
    ).stdout
    return [line.split()[0] for line in listing.splitlines()[2:] if line.split()]


def gone_within(seconds: float, still_there: Any) -> float:
    deadline = time.monotonic() + seconds
    while still_there():
        assert time.monotonic() < deadline, "the kernel job is still in the queue"
        time.sleep(0.2)
    return seconds - (deadline - time.monotonic())


def assert_contract(facts: dict[str, Any], user: str) -> None:
    job = facts["job"]
    assert job.isdigit(), facts
    # the cell ran in the job, as the user
    job_seen, _host, uid = facts["cell"]["output"].split()
    assert job_seen == job, facts
    assert int(uid) == pwd.getpwnam(user).pw_uid
    # ports chosen and bound on the node (the file had 0 before the kernel wrote them)
    assert all(isinstance(p, int) and p > 0 for p in facts["ports"]), facts
    assert facts["mode"] == "0o600" and facts["curve"] is True
    # an interrupt by message, the kernel keeps its state
    assert facts["interrupt"]["ename"] == "KeyboardInterrupt" and facts["interrupt"]["seconds"] < 1.0
    assert facts["after_interrupt"]["output"].strip() == "42"
    # a restart keeps the allocation and starts a fresh kernel process in it
    assert facts["job_after_restart"] == job
    lines = facts["after_restart"]["output"].split("\n")
    assert lines[0] == "False" and lines[1].split()[0] == job


def test_slurm_kernel_contract_interrupt_restart_in_place_and_shutdown(kernels: Path) -> None:
    facts = drive(kernels, "contract", "slurm-debug")
    assert_contract(facts, USER)
    # the kernel job is gone from the queue within 3 s of the shutdown
    assert time.time() - facts["shutdown_at"] < 60
    gone_within(3.0, lambda: facts["job"] in slurm_jobs(USER))
    accounting = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", facts["job"], "--format=JobName,Partition"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert "jupyter-kernel|debug" in accounting or not accounting.strip(), accounting


def test_a_new_process_reattaches_to_a_running_kernel_job_with_its_state(kernels: Path) -> None:
    first = drive(kernels, "start-keep", "slurm-debug", tag="keep")
    assert first["cell"]["output"].strip() == "kept-42"
    # the first process has exited; its kernel job runs on
    assert slurm_jobs(USER).get(first["job"]) == "RUNNING"
    second = drive(kernels, "reattach", "slurm-debug", tag="keep")
    assert second["job"] == first["job"] and second["alive"] is True
    assert second["cell"]["output"].strip() == "kept-42"
    gone_within(3.0, lambda: first["job"] in slurm_jobs(USER))


def test_a_failing_kernel_command_is_explained_with_the_tail_of_its_output(kernels: Path) -> None:
    facts = drive(kernels, "fail", "slurm-broken")
    assert facts["type"] == "KernelJobError"
    assert f"kernel job {facts['job']} (slurm)" in facts["error"]
    assert "exited with status 3 before it bound its ports" in facts["error"]
    assert "no such library: libfoo.so.1" in facts["error"]
    gone_within(3.0, lambda: facts["job"] in slurm_jobs(USER))


def test_a_job_the_scheduler_refuses_is_reported_in_its_words(kernels: Path) -> None:
    facts = drive(kernels, "fail", "slurm-nopart")
    assert facts["job"] == ""
    assert facts["error"].startswith("the scheduler refused the kernel job: ")
    assert "invalid partition" in facts["error"].lower()


def test_grid_engine_runs_the_same_kernel_contract(kernels: Path) -> None:
    facts = drive(kernels, "contract", "sge-all", user=SGE_USER)
    assert_contract(facts, SGE_USER)
    gone_within(3.0, lambda: facts["job"] in sge_jobs(SGE_USER))
