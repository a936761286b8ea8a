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
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from browser import log_in
from conftest import nonroot_hubs
from e2e.test_kernel_jobs_live import UserServer, kernel_cell
from hub import Hub
from lab.test_lab_contract import toast
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
    one_minute = kernelspec(
        "Python 3 (Slurm, 1 minute)",
        resources={"partition": "debug", "walltime": "00:01:00", "memory": "300M"},
        config={"scheduler_environment": {"SLURM_CONF": SLURM_CONF}, "poll_interval": 3},
    )
    install("slurm-1min", one_minute, base / "kernels")
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
    # the status bar counts down to the kernel job's end (its 10-minute walltime)
    item = page.locator("#jupyterhub-hpc-kernel-status")
    countdown = re.compile(rf"^Kernel job {kernel_job} · gpu1 · \d+:\d\d left$")
    expect(item).to_have_text(countdown, timeout=20_000)
    assert abs(int(item.get_attribute("data-remaining") or "0") - seconds_to_end(kernel_job)) <= 5
    interrupt_and_restart(page, kernel_job)
    assert jobs(USER).get(kernel_job) == "RUNNING"
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


def test_a_kernel_job_killed_at_its_walltime_is_explained_in_lab(hub: Hub, page: Page) -> None:
    """A notebook's kernel job reaches its 1-minute walltime: the status bar counted down to it,
    the Lab says the job ended at its walltime in Slurm's words, and nothing is resubmitted."""
    hub.ensure_user(USER)
    if not hub.user_model(USER)["servers"]:
        assert hub.spawn(USER).status_code in (201, 202)
        hub.wait_ready(USER)
    server_job = str(hub.user_model(USER)["servers"][""]["state"]["job_id"])
    path = Path(os.path.expanduser(f"~{USER}")) / "walltime.ipynb"
    notebook(path, "slurm-1min", CELL)
    shutil.chown(path, USER, USER)
    try:
        log_in(page, hub.url, USER, hub.password)
        page.goto(f"{hub.url}/user/{USER}/lab/tree/walltime.ipynb")
        run_first_cell(page, until=re.compile(r"KERNEL \d+ \S+"))
        _, job, node = output(page).inner_text().split()
        item = page.locator("#jupyterhub-hpc-kernel-status")
        expect(item).to_have_text(re.compile(rf"^Kernel job {job} · {node} · 0:\d\d left$"), timeout=20_000)
        expect(item).to_have_class(re.compile(r"jp-hpc-status-critical"))
        # Slurm ends the job at its limit (it looks every ~30 s)
        ended = toast(page, re.compile(rf"Kernel job {job} ended: kernel job {job} \(slurm\) TIMEOUT"))
        expect(ended).to_be_visible(timeout=180_000)
        expect(ended).to_contain_text("killed at its walltime")
        dismiss_dialogs(page)  # JupyterLab's own "kernel died" dialog, if it shows one
        ended.locator(".jp-toast-button", has_text="Details").click()
        expect(page.locator(".jp-hpc-kernel-job-ended")).to_contain_text("TimeLimit")
        expect(item).to_be_hidden(timeout=10_000)
        # the restarter's attempts submit nothing: only the server's job is queued
        page.wait_for_timeout(15_000)
        assert jobs(USER) == {server_job: "RUNNING"}
    finally:
        path.unlink(missing_ok=True)
        hub.stop_server(USER)


def dismiss_dialogs(page: Page) -> None:
    dialog = page.locator(".jp-Dialog")
    for _ in range(5):
        page.wait_for_timeout(1000)
        if not dialog.count():
            return
        dialog.first.locator(".jp-Dialog-button.jp-mod-accept").click()


def seconds_to_end(job: str) -> float:
    """Seconds until Slurm's EndTime of ``job`` (local time, as scontrol prints it)."""
    found = re.search(r"\bEndTime=(\S+)", slurm("scontrol", "show", "job", job))
    assert found
    return datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S").timestamp() - time.time()


def type_into_first_cell(page: Page, source: str) -> None:
    editor = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content").first
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(source)


def kernel_menu(page: Page, item: re.Pattern[str]) -> None:
    page.get_by_role("menuitem", name="Kernel").click()
    page.get_by_role("menuitem", name=item).click()


def interrupt_and_restart(page: Page, job: str) -> None:
    """Interrupt a running cell and restart the kernel from JupyterLab's Kernel menu: the interrupt
    keeps the kernel's state, the restart is a new kernel process in the same job."""
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    indicator = notebook.locator(".jp-Notebook-ExecutionIndicator")
    type_into_first_cell(page, "state = 'kept'; import time; time.sleep(120)")
    notebook.locator(".jp-CodeCell .jp-InputPrompt").first.click()
    notebook.locator('[data-command="notebook:run-cell-and-select-next"]').click()
    expect(indicator).to_have_attribute("data-status", "busy", timeout=20_000)
    page.wait_for_timeout(1000)
    clicked = time.monotonic()
    kernel_menu(page, re.compile(r"^Interrupt Kernel"))
    expect(output(page)).to_contain_text("KeyboardInterrupt", timeout=10_000)
    interrupted = time.monotonic() - clicked
    assert interrupted < 5, f"the interrupt took {interrupted:.1f} s"
    type_into_first_cell(page, "import os; print('STATE', state, os.environ['SLURM_JOB_ID'])")
    run_first_cell(page, until=re.compile(r"STATE kept \d+"))
    assert output(page).inner_text().split() == ["STATE", "kept", job]
    kernel_menu(page, re.compile(r"^Restart Kernel…"))
    page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
    expect(indicator).to_have_attribute("data-status", "idle", timeout=60_000)
    type_into_first_cell(page, "import os; print('AFTER', 'state' in globals(), os.environ['SLURM_JOB_ID'])")
    run_first_cell(page, until=re.compile(r"AFTER \S+ \d+"))
    # a new kernel (the variable is gone) in the same allocation
    assert output(page).inner_text().split() == ["AFTER", "False", job]


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
