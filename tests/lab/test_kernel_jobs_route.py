"""``GET jupyterhub-hpc/kernels`` (jupyterhub_hpc.lab.kernels) in a real JupyterLab run as a test user
with the package's server extension and a batch kernelspec on the live Slurm
(tests/lab/kernel_jobs_lab.py): refused without the server's token; empty without kernel jobs; a
kernel job queued behind a blocker of the same user is listed while jupyter_server's start request
still waits (PENDING, the reason in plain words, the job Slurm has); once the blocker is cancelled
it runs on the node with its end time; shut down, it is gone from the route and the queue."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from .kernel_jobs_lab import KERNEL, UserLab, blocker, slurm_state

pytestmark = [pytest.mark.slurm]


@pytest.fixture
def lab() -> Iterator[UserLab]:
    server = UserLab()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def wait_for(check: Any, timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(message)


def test_the_route_lists_a_queued_kernel_job_then_its_running_job(lab: UserLab) -> None:
    assert lab.api("GET", "/jupyterhub-hpc/kernels", token=False).status_code == 403
    assert lab.kernel_jobs() == []
    block = blocker(lab.user)
    started: dict[str, requests.Response] = {}

    def start() -> None:  # jupyter_server answers once the kernel is ready
        started["reply"] = lab.api("POST", "/api/kernels", json={"name": KERNEL}, timeout=180)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    try:
        queued = wait_for(
            lambda: [k for k in lab.kernel_jobs() if k["state"] == "PENDING" and k["reason"]],
            30,
            f"no queued kernel job listed: {lab.kernel_jobs()}",
        )[0]
        assert slurm_state(queued["job_id"]) == "PENDING"
        assert queued["reason"] in ("waiting for free resources", "other jobs have priority"), queued
        assert queued["backend"] == "slurm" and queued["ended"] == "" and queued["node"] in (None, "")
        assert "reply" not in started  # the start request still waits for the job
    finally:
        subprocess.run(["scancel", block], check=False)
    thread.join(120)
    reply = started["reply"]
    assert reply.status_code == 201, reply.text
    kernel_id = reply.json()["id"]
    running = wait_for(
        lambda: [k for k in lab.kernel_jobs() if k["state"] == "RUNNING"], 30, "the kernel job is not running"
    )
    assert running[0]["kernel_id"] == kernel_id and running[0]["job_id"] == queued["job_id"]
    assert running[0]["node"] == "vm" and running[0]["end_time"], running
    assert slurm_state(queued["job_id"]) == "RUNNING"
    assert lab.api("DELETE", f"/api/kernels/{kernel_id}", timeout=30).status_code == 204
    assert lab.kernel_jobs() == []
    wait_for(lambda: slurm_state(queued["job_id"]) == "", 5, "the kernel job is still in the queue")


def test_a_queued_kernel_job_is_cancelled_through_the_route(lab: UserLab) -> None:
    """``DELETE jupyterhub-hpc/kernels/<id>`` on a kernel whose job waits: the job leaves the queue
    within 3 s, the start fails and the route says why; a kernel that is not a kernel job is a 404."""
    assert lab.api("DELETE", "/jupyterhub-hpc/kernels/0123abcd", token=False).status_code == 403
    assert lab.api("DELETE", "/jupyterhub-hpc/kernels/0123abcd").status_code == 404
    block = blocker(lab.user)
    started: dict[str, requests.Response] = {}

    def start() -> None:
        started["reply"] = lab.api("POST", "/api/kernels", json={"name": KERNEL}, timeout=180)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    try:
        queued = wait_for(
            lambda: [k for k in lab.kernel_jobs() if k["state"] == "PENDING"], 30, "no queued kernel job"
        )[0]
        job = queued["job_id"]
        cancelled = lab.api("DELETE", f"/jupyterhub-hpc/kernels/{queued['kernel_id']}")
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json() == {"kernel_id": queued["kernel_id"], "job_id": job}
        wait_for(lambda: slurm_state(job) == "", 3, f"the kernel job {job} is still in the queue")
        thread.join(30)
        reply = started["reply"]
        assert reply.status_code == 500, reply.text  # the start failed (jupyter_server says no more)
        assert slurm_state(block) == "RUNNING"  # only the kernel's job went
        (listed,) = [k for k in lab.kernel_jobs() if k["job_id"] == job]
        assert "cancelled at the user's request while it was queued" in listed["ended"], listed
        # its start has ended: nothing more to cancel
        again = lab.api("DELETE", f"/jupyterhub-hpc/kernels/{queued['kernel_id']}")
        assert again.status_code == 409, again.text
        assert lab.api("GET", "/api/kernels").json() == []
    finally:
        subprocess.run(["scancel", block], check=False)
