"""Kernels as batch jobs in real JupyterLab and headless Debian Chromium (issue 16), on the live Slurm:
a JupyterLab run as a test user with the package's server extension and a batch kernelspec
(tests/lab/kernel_jobs_lab.py).

* A blocker job of the same user holds every CPU of the node; the notebook opens with the batch
  kernel and the page says "Kernel job N is queued: <Slurm's reason in plain words>; expected start
  ...", N being the job Slurm has pending; the blocker is cancelled, the kernel job starts, the
  notification says where it runs and until when, and the cell prints that very SLURM_JOB_ID.
  The Lab polls the kernel jobs route while the kernel is starting, and not once after. Both with
  jupyter_server's default start (its request waits for the job) and with pending kernels.
* A batch kernel made in the "New batch kernel…" dialog: a value the job request refuses comes back
  with its message, the kernelspec is in the launcher at once and its notebook runs in a job.
* A running batch kernel whose job the scheduler ends (scancel): an error notification saying so.
* A batch kernel whose command fails in the job: an error notification with the job's end in the
  scheduler's words, its Details the tail of the job's output.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from browser import run_command

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


@pytest.fixture(params=[False, True], ids=["blocking-start", "pending-kernels"])
def lab(request: pytest.FixtureRequest) -> Iterator[UserLab]:
    """jupyter_server's default (the start request waits for the job) and
    ``MappingKernelManager.use_pending_kernels`` (it answers at once, the kernel is "starting")."""
    server = UserLab(poll_interval=2.0, pending_kernels=request.param)
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


def open_queued(lab: UserLab, page: Page, name: str) -> tuple[Any, re.Match[str]]:
    """Open a notebook with the batch kernel while a blocker fills the node: its queued
    notification, and that notification's text matched by QUEUED (the job Slurm has pending)."""
    lab.write_notebook(name, CELL)
    page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}")
    queued = toast(page, QUEUED)
    expect(queued).to_be_visible(timeout=60_000)
    found = QUEUED.search(queued.inner_text())
    assert found is not None
    assert slurm_state(found.group(1)) == "PENDING"
    return queued, found


def test_a_queued_batch_kernel_says_why_then_where_it_runs(lab: UserLab, page: Page) -> None:
    polls: list[float] = []

    def seen(request: Request) -> None:
        if ROUTE in request.url:
            polls.append(time.monotonic())

    page.on("request", seen)
    block = blocker(lab.user)
    try:
        _, found = open_queued(lab, page, "queued.ipynb")
        job = found.group(1)
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
    # the status bar counts down to the kernel job's scheduler end (a 5-minute walltime: under the
    # hub's default 300 s warning, so "critical"), as it does for the server's own job
    item = page.locator("#jupyterhub-hpc-kernel-status")
    expect(item).to_have_text(re.compile(rf"^Kernel job {job} · vm · [45]:\d\d left$"), timeout=20_000)
    first = int(item.get_attribute("data-remaining") or "0")
    assert abs(first - seconds_to_end(job)) <= 5, (first, seconds_to_end(job))
    expect(item).to_have_class(re.compile(r"jp-hpc-status-critical"))
    page.wait_for_timeout(2500)
    assert int(item.get_attribute("data-remaining") or "0") < first  # it ticks
    # the kernel runs: no polling any more (the status item asks once a minute)
    settled = len(polls)
    page.wait_for_timeout(8000)
    assert len(polls) == settled, f"{len(polls) - settled} polls after the kernel was running"


def seconds_to_end(job: str) -> float:
    """Seconds until Slurm's EndTime of ``job`` (local time, as scontrol prints it)."""
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, check=True)
    found = re.search(r"\bEndTime=(\S+)", shown.stdout)
    assert found, shown.stdout
    return datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S").timestamp() - time.time()


def test_a_queued_batch_kernel_is_cancelled_from_its_notification(lab: UserLab, page: Page) -> None:
    block = blocker(lab.user)
    try:
        queued, found = open_queued(lab, page, "cancelled.ipynb")
        job = found.group(1)
        queued.locator(".jp-toast-button", has_text="Cancel job").click()
        expect(toast(page, f"Kernel job {job} cancelled")).to_be_visible(timeout=10_000)
        deadline = time.monotonic() + 3
        while slurm_state(job):
            assert time.monotonic() < deadline, f"the kernel job {job} is still in the queue"
            time.sleep(0.2)
        assert slurm_state(block) == "RUNNING"
        (listed,) = [k for k in lab.kernel_jobs() if k["job_id"] == job]
        assert "cancelled at the user's request" in listed["ended"]
        # the user's own doing: no "ended" error notification for it
        page.wait_for_timeout(6000)
        expect(toast(page, re.compile(rf"Kernel job {job} ended"))).to_have_count(0)
    finally:
        subprocess.run(["scancel", block], check=False)


def test_a_failing_batch_kernel_is_explained_in_a_notification(lab: UserLab, page: Page) -> None:
    lab.write_notebook("broken.ipynb", CELL, kernel=BROKEN)
    page.goto(f"{lab.url}/lab/tree/broken.ipynb?token={lab.token}")
    failed = toast(page, re.compile(r"Kernel job \d+ ended: kernel job \d+ \(slurm\)"))
    expect(failed).to_be_visible(timeout=60_000)
    expect(failed).to_contain_text("exited with status 3 before it bound its ports")
    # JupyterLab's own "Error Starting Kernel" dialog(s) (the start failed) go first
    dialog = page.locator(".jp-Dialog")
    expect(dialog.first).to_contain_text("Error Starting Kernel", timeout=30_000)
    # then its "Select Kernel" (accepted: "No Kernel"); another start attempt may bring more of
    # them later (seen in a full run): dismiss them until the notification's button can be clicked
    deadline = time.monotonic() + 60
    while True:
        while dialog.count():
            dialog.first.locator(".jp-Dialog-button.jp-mod-accept").click()
            page.wait_for_timeout(300)
        try:
            failed.locator(".jp-toast-button", has_text="Details").click(timeout=3000)
            break
        except PlaywrightTimeoutError:
            assert time.monotonic() < deadline, "Lab's dialogs kept covering the notification"
    expect(page.locator(".jp-hpc-kernel-job-ended")).to_contain_text(BROKEN_OUTPUT)
    # once: later polls (another batch kernel starting) do not repeat it
    expect(failed).to_have_count(1)


@pytest.fixture
def plain_lab() -> Iterator[UserLab]:
    server = UserLab(poll_interval=2.0)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_a_batch_kernel_made_in_the_dialog_is_in_the_launcher_and_runs_as_a_job(
    plain_lab: UserLab, browser: Browser
) -> None:
    lab = plain_lab
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(f"{lab.url}/lab?token={lab.token}")
        expect(page.locator(".jp-Launcher")).to_be_visible(timeout=60_000)
        run_command(page, "New batch kernel")
        form = page.locator(".jp-hpc-batch-kernel-form")
        form.locator('input[name="display_name"]').fill("My batch kernel")
        form.locator('input[name="partition"]').fill("debug")
        form.locator('input[name="memory"]').fill("500M")
        form.locator('input[name="walltime"]').fill("soon")
        page.locator(".jp-Dialog .jp-mod-accept").click()
        # refused by the job request's rules: the dialog again, with the field's message
        expect(form.locator(".jp-hpc-batch-kernel-error")).to_contain_text("walltime")
        expect(form.locator('input[name="partition"]')).to_have_value("debug")
        assert not (lab.base / "data" / "kernels").exists()
        # refused by the live partitions (asked as the user): node vm has 8 CPUs
        form.locator('input[name="walltime"]').fill("00:05:00")
        form.locator('input[name="cpus"]').fill("64")
        page.locator(".jp-Dialog .jp-mod-accept").click()
        expect(form.locator(".jp-hpc-batch-kernel-error")).to_contain_text(
            "cpus: 64 CPUs: nodes of partition debug have at most"
        )
        assert not (lab.base / "data" / "kernels").exists()
        form.locator('input[name="cpus"]').fill("")
        page.locator(".jp-Dialog .jp-mod-accept").click()
        expect(toast(page, "Batch kernel “My batch kernel” created")).to_be_visible()
        spec_file = lab.base / "data" / "kernels" / "hpc-batch-my-batch-kernel" / "kernel.json"
        config = json.loads(spec_file.read_text())["metadata"]["kernel_provisioner"]["config"]
        assert config["resources"] == {"partition": "debug", "memory": "500M", "walltime": "00:05:00"}
        # in the launcher at once; a notebook with it runs in a job of the user's
        card = page.locator(".jp-LauncherCard", has_text="My batch kernel").first
        expect(card).to_be_visible()
        card.click()
        run_first_cell_typed(page, CELL)
        job = output(page).inner_text().strip().removeprefix("JOB=")
        assert slurm_state(job) == "RUNNING"
    finally:
        context.close()


def run_first_cell_typed(page: Page, source: str) -> None:
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell .cm-content").first
    expect(cell).to_be_visible(timeout=30_000)
    cell.click()
    page.keyboard.type(source)
    run_first_cell(page, until=re.compile(r"JOB=\d+"))


def test_a_running_batch_kernel_whose_job_ends_is_explained(plain_lab: UserLab, browser: Browser) -> None:
    """The scheduler ends the kernel's job (scancel here, as at its walltime): Lab says why."""
    lab = plain_lab
    lab.write_notebook("ends.ipynb", CELL)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(f"{lab.url}/lab/tree/ends.ipynb?token={lab.token}")
        run_first_cell(page, until=re.compile(r"JOB=\d+"))
        job = output(page).inner_text().strip().removeprefix("JOB=")
        assert slurm_state(job) == "RUNNING"
        subprocess.run(["scancel", job], check=True)
        ended = toast(page, re.compile(rf"Kernel job {job} ended: kernel job {job} \(slurm\)"))
        expect(ended).to_be_visible(timeout=60_000)
        expect(ended).to_have_count(1)
    finally:
        context.close()
