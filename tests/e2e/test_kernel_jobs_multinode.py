"""A kernel preset in real JupyterLab, end to end on the multi-node Slurm (scripts/slurm-multinode.sh):
a real JupyterHub (as the unprivileged hub account) starts hpcuser4's server as a job on a ``debug``
node; in headless Chromium the user opens a notebook with the admin's batch kernel preset (the
``gpu`` partition, node gpu1), the cell prints the kernel job's ``SLURM_JOB_ID`` and its node, which
is not the server's; shutting the kernel down from JupyterLab ends its job.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from browser import log_in
from conftest import nonroot_hubs
from e2e.test_kernel_jobs_live import UserServer, kernel_cell
from hub import Hub
from lab.test_modules_live import notebook, output, run_first_cell
from multinode_slurm import SLURM_CONF, slurm

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser]

USER = "hpcuser4"
SETTINGS: dict[str, Any] = {
    "scheduler_environment": {"SLURM_CONF": SLURM_CONF},
    "partition": "debug",
    "memory": "400M",
    "walltime": "01:00:00",
    "status_interval": 3.0,
    "command_timeout": 20.0,
    "poll_interval": 3,
}
CELL = "import os; print('KERNEL', os.environ['SLURM_JOB_ID'], os.environ['SLURMD_NODENAME'])"


def jobs(user: str) -> dict[str, str]:
    states = "--states=PENDING,RUNNING,COMPLETING"
    out = slurm("squeue", "--noheader", f"--user={user}", states, "--format=%i|%T")
    return dict(line.split("|", 1) for line in out.split())


@pytest.fixture(scope="module")
def kernels_dir() -> Iterator[Path]:
    """The admin's preset, on the server's JUPYTER_PATH (through the spawner's environment)."""
    from jupyterhub_hpc.kernels.spec import install, kernelspec

    base = Path(tempfile.mkdtemp(prefix="kernel-presets-"))
    spec = kernelspec(
        "Python 3 (Slurm gpu node)",
        resources={"partition": "gpu", "walltime": "00:10:00", "memory": "300M"},
        config={"scheduler_environment": {"SLURM_CONF": SLURM_CONF}, "poll_interval": 3},
    )
    install("slurm-gpu", spec, base / "kernels")
    subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, kernels_dir: Path) -> Iterator[Hub]:
    assert "is UP" in slurm("scontrol", "ping")
    slurm("scancel", f"--user={USER}")
    spawner = {**SETTINGS, "environment": {"JUPYTER_PATH": str(kernels_dir)}}
    with nonroot_hubs(tmp_path_factory.mktemp("kernel-hubs")) as make:
        hub = make(**spawner)
        hub.start()
        try:
            yield hub
        finally:
            slurm("scancel", f"--user={USER}")


def test_a_kernel_preset_runs_as_its_own_job_on_another_node(hub: Hub, page: Page) -> None:
    hub.ensure_user(USER)
    r = hub.spawn(USER)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(USER)
    server_job = str(hub.user_model(USER)["servers"][""]["state"]["job_id"])
    server_node = re.search(r"\bNodeList=(\S+)", slurm("scontrol", "show", "job", server_job))
    assert server_node is not None and server_node.group(1).startswith("cpu")
    home = Path(os.path.expanduser(f"~{USER}"))
    path = home / "batch-kernel.ipynb"
    notebook(path, "slurm-gpu", CELL)
    shutil.chown(path, USER, USER)
    log_in(page, hub.url, USER, hub.password)
    page.goto(f"{hub.url}/user/{USER}/lab/tree/batch-kernel.ipynb")
    expect(page.locator(".jp-NotebookPanel .jp-Toolbar-kernelName").first).to_contain_text(
        "Python 3 (Slurm gpu node)", timeout=60_000
    )
    run_first_cell(page, until=re.compile(r"KERNEL \d+ \S+"))
    _, kernel_job, kernel_node = output(page).inner_text().split()
    assert kernel_job != server_job and jobs(USER).get(kernel_job) == "RUNNING"
    assert kernel_node == "gpu1" != server_node.group(1)
    # the kernel shut down from JupyterLab's menu: its job leaves the queue, the server's stays
    page.get_by_role("menuitem", name="Kernel").click()
    page.get_by_role("menuitem", name=re.compile(r"^Shut Down Kernel")).click()
    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        dialog.get_by_role("button", name="Shut Down").click()
    deadline = time.monotonic() + 10
    while kernel_job in jobs(USER):
        assert time.monotonic() < deadline, "the kernel job is still queued"
        time.sleep(0.2)
    assert server_job in jobs(USER)
    hub.stop_server(USER)
    path.unlink(missing_ok=True)


def test_a_kernel_job_killed_at_its_walltime_is_explained_and_not_resubmitted(tmp_path: Path) -> None:
    """The job of a running kernel reaches its walltime: the kernel is reported dead with the job's
    state and output, and jupyter_server's automatic restarter does not submit a new job."""
    from jupyterhub_hpc.kernels.spec import install, kernelspec

    base = Path(tempfile.mkdtemp(prefix="kernel-walltime-"))
    try:
        spec = kernelspec(
            "Python 3 (1 minute)",
            resources={"partition": "debug", "walltime": "00:01:00", "memory": "300M"},
            config={"scheduler_environment": {"SLURM_CONF": SLURM_CONF}, "poll_interval": 3},
        )
        install("one-minute", spec, base / "kernels")
        (base / "out").mkdir()
        subprocess.run(["chmod", "-R", "a+rwX", str(base)], check=True)
        server = UserServer(USER, base, port=31331, env={"SLURM_CONF": SLURM_CONF})
        server.start()
        try:
            walltime_story(server)
        except AssertionError as failed:
            raise AssertionError(f"{failed}\n--- server log ---\n{server.log.read_text()[-5000:]}") from None
        finally:
            server.kill()
    finally:
        slurm("scancel", f"--user={USER}")
        shutil.rmtree(base, ignore_errors=True)


def walltime_story(server: Any) -> None:
    started = server.api("POST", "/api/kernels", json={"name": "one-minute"})
    assert started.status_code == 201, started.text
    kernel_id = started.json()["id"]
    job = server.run_cell(kernel_id, "import os; print(os.environ['SLURM_JOB_ID'])").strip()
    assert jobs(USER).get(job) == "RUNNING"
    # Slurm ends the job at its limit (checked every ~30 s): then the restarter tries its
    # restarts (nothing submitted) and the server drops the kernel as dead
    deadline = time.monotonic() + 180
    while kernel_id in [k["id"] for k in server.api("GET", "/api/kernels").json()]:
        assert time.monotonic() < deadline, "the kernel was not reported dead"
        time.sleep(2)
    assert "TIMEOUT" in slurm("squeue", "--noheader", "--states=all", f"--jobs={job}", "--format=%T")
    log = server.log.read_text()
    assert f"kernel job {job} (slurm) TIMEOUT" in log and "killed at its walltime" in log, log[-3000:]
    assert "not restarting" in log
    assert jobs(USER) == {}, "a new kernel job was submitted"


def singleuser_pids(user: str) -> list[int]:
    """The user's jupyterhub-singleuser server processes (not the launcher around them)."""
    listing = subprocess.run(
        ["pgrep", "-u", user, "-f", "jupyterhub-singleuser"], capture_output=True, text=True
    )
    pids = []
    for pid in listing.stdout.split():
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if any(part.endswith(b"/jupyterhub-singleuser") for part in argv[:2]):
            pids.append(int(pid))
    return pids


def test_a_server_killed_and_spawned_again_by_the_hub_takes_back_its_kernel(hub: Hub, page: Page) -> None:
    hub.ensure_user(USER)
    if not hub.user_model(USER)["servers"]:
        assert hub.spawn(USER).status_code in (201, 202)
        hub.wait_ready(USER)
    token = hub.user_token(USER)
    base = f"{hub.url}/user/{USER}/api/kernels"
    headers = {"Authorization": f"token {token}"}
    started = requests.post(base, headers=headers, json={"name": "slurm-gpu"}, timeout=60)
    assert started.status_code == 201, started.text
    kernel_id = started.json()["id"]
    channels = f"{base}/{kernel_id}/channels".replace("http://", "ws://", 1)
    job = kernel_cell(
        channels, headers, USER, "import os; state = 'kept-42'; print(os.environ['SLURM_JOB_ID'])"
    ).strip()
    assert jobs(USER).get(job) == "RUNNING"
    # the server process dies at once; its job ends, the hub sees it stopped
    (pid,) = singleuser_pids(USER)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while hub.user_model(USER)["servers"]:
        assert time.monotonic() < deadline, "the hub did not see the server stop"
        time.sleep(1)
    assert jobs(USER).get(job) == "RUNNING"  # the kernel's job runs on
    assert hub.spawn(USER).status_code in (201, 202)
    hub.wait_ready(USER)
    listed = requests.get(base, headers=headers, timeout=30).json()
    assert [k["id"] for k in listed] == [kernel_id], listed
    assert kernel_cell(channels, headers, USER, "print(state, os.environ['SLURM_JOB_ID'])").split() == [
        "kept-42",
        job,
    ]
    assert requests.delete(f"{base}/{kernel_id}", headers=headers, timeout=30).status_code == 204
    deadline = time.monotonic() + 3
    while job in jobs(USER):
        assert time.monotonic() < deadline, "the kernel job is still queued"
        time.sleep(0.2)
    hub.stop_server(USER)
