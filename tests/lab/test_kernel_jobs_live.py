"""Kernels as batch jobs in real JupyterLab and headless Debian Chromium (issue 16), on the live Slurm:
a JupyterLab run as a test user with the package's server extension and a batch kernelspec
(tests/lab/kernel_jobs_lab.py).

* A blocker job of the same user holds every CPU of the node; the notebook opens with the batch
  kernel and the page says "Kernel job N is queued: <Slurm's reason in plain words>; expected start
  ...", N being the job Slurm has pending; the blocker is cancelled, the kernel job starts, the
  notification says where it runs and until when, and the cell prints that very SLURM_JOB_ID.
  The Lab polls the kernel jobs route while the kernel is starting, and not once after.
* A batch kernel whose command fails in the job: an error notification with the job's end in the
  scheduler's words, its Details the tail of the job's output.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Request, expect

from .kernel_jobs_lab import BROKEN, BROKEN_OUTPUT, UserLab, blocker, slurm_state
from .test_lab_contract import toast
from .test_modules_live import output, run_first_cell

pytestmark = [pytest.mark.slurm, pytest.mark.browser]

CELL = "import os; print('JOB=' + os.environ['SLURM_JOB_ID'])"
QUEUED = re.compile(
    r"Kernel job (\d+) is queued: (waiting for free resources|other jobs have priority); "
    r"expected start (\d\d:\d\d|not known yet)"
)
ROUTE = "/jupyterhub-hpc/kernels"


@pytest.fixture
def lab() -> Iterator[UserLab]:
    server = UserLab(poll_interval=2.0)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser: Browser, lab: UserLab) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        yield page
    except Exception:
        page.screenshot(path=str(lab.log.with_suffix(".png")))
        raise
    finally:
        context.close()


def test_a_queued_batch_kernel_says_why_then_where_it_runs(lab: UserLab, page: Page) -> None:
    polls: list[float] = []

    def seen(request: Request) -> None:
        if ROUTE in request.url:
            polls.append(time.monotonic())

    page.on("request", seen)
    block = blocker(lab.user)
    lab.write_notebook("queued.ipynb", CELL)
    try:
        page.goto(f"{lab.url}/lab/tree/queued.ipynb?token={lab.token}")
        queued = toast(page, QUEUED)
        expect(queued).to_be_visible(timeout=60_000)
        found = QUEUED.search(queued.inner_text())
        assert found is not None
        job = found.group(1)
        assert slurm_state(job) == "PENDING"
        listed = {k["job_id"]: k for k in lab.kernel_jobs()}
        assert listed[job]["state"] == "PENDING" and listed[job]["reason"] == found.group(2)
        assert polls, "the route was not polled while the kernel was queued"
    finally:
        subprocess.run(["scancel", block], check=False)
    running = toast(page, re.compile(rf"Kernel job {job} runs on vm until \d\d:\d\d"))
    expect(running).to_be_visible(timeout=60_000)
    run_first_cell(page, until=re.compile(r"JOB=\d+"))
    expect(output(page)).to_have_text(f"JOB={job}")
    assert slurm_state(job) == "RUNNING"
    # the kernel runs: no polling any more
    settled = len(polls)
    page.wait_for_timeout(8000)
    assert len(polls) == settled, f"{len(polls) - settled} polls after the kernel was running"


def test_a_failing_batch_kernel_is_explained_in_a_notification(lab: UserLab, page: Page) -> None:
    lab.write_notebook("broken.ipynb", CELL, kernel=BROKEN)
    page.goto(f"{lab.url}/lab/tree/broken.ipynb?token={lab.token}")
    failed = toast(page, re.compile(r"Kernel job \d+ ended: kernel job \d+ \(slurm\)"))
    expect(failed).to_be_visible(timeout=60_000)
    expect(failed).to_contain_text("exited with status 3 before it bound its ports")
    # JupyterLab's own "Error Starting Kernel" dialog (the start request failed) goes first
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_be_visible(timeout=30_000)
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    failed.locator(".jp-toast-button", has_text="Details").click()
    expect(page.locator(".jp-hpc-kernel-job-ended")).to_contain_text(BROKEN_OUTPUT)
    # once: later polls (another batch kernel starting) do not repeat it
    expect(failed).to_have_count(1)
