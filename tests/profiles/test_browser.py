"""The spawn form in real headless Chromium (Debian's), against a real hub and the real Slurm:
pick a profile with the keyboard, change options, see the partition's walltime limit enforced by
the page and by the server, submit; Slurm gets exactly the requested partition, CPUs, memory,
time limit and GPU. Afterwards the form shows each profile's own last choices."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from browser import log_in
from hub import Hub

from .conftest import SITE_PROFILES
from .hubs import FAST, cancel, job_id, make_hub, options_body, scontrol, stop_all, wait_ready

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser]

USER = "hpcuser3"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    config = {"SlurmSpawner": {"profile_list": SITE_PROFILES, "profile_availability_refresh": 2.0}}
    hub = make_hub(tmp_path / "hub", "slurm", config, **FAST)
    hub.start()
    try:
        yield hub
    finally:
        cancel(stop_all(hub, [USER]))
        hub.kill_all()


def test_pick_a_gpu_profile_see_the_limit_and_start_on_slurm(hub: Hub, page: Page) -> None:
    # an earlier server of this user with the CPU profile (its choices are remembered)
    hub.ensure_user(USER)
    earlier = {"profile": "cpu", "cpus": 3, "walltime": "00:45:00"}
    assert hub.api("POST", f"/users/{USER}/server", json=options_body(earlier)).status_code in (201, 202)
    wait_ready(hub, USER)
    stop_all(hub, [USER])

    log_in(page, hub.url, USER, hub.password)
    page.goto(f"{hub.url}/hub/spawn")

    cpu_radio = page.get_by_role("radio", name="CPU (interactive)")
    expect(cpu_radio).to_be_checked()
    expect(page.get_by_label("CPU cores").first).to_have_value("3")
    gpus = page.get_by_label("GPUs")
    expect(gpus).to_be_hidden()  # options of unselected profiles are hidden
    # keyboard: arrow keys move through the radio group
    cpu_radio.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("radio", name="GPU")).to_be_checked()
    expect(gpus).to_be_visible()
    expect(page.get_by_label("CPU cores").first).to_be_hidden()

    # dependent field: a GPU type only with at least one GPU
    gpu_type = page.get_by_label("GPU type")
    gpus.fill("0")
    expect(gpu_type).to_be_hidden()
    gpus.fill("1")
    expect(gpu_type).to_be_visible()
    expect(gpus).to_have_attribute("max", "2")

    # the gpu partition allows 4 hours: the page says so and refuses more
    walltime = page.locator("#hpc-gpu-walltime")
    walltime.fill("05:00:00")
    expect(page.locator("#hpc-gpu-walltime-error")).to_have_text("At most 04:00:00 on partition gpu.")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#hpc-errors")).to_contain_text("Time limit: At most 04:00:00 on partition gpu.")
    assert "/hub/spawn" in page.url and hub.user_model(USER)["servers"] == {}

    # ... and so does the server, when the page's check is bypassed
    with page.expect_navigation() as nav:
        page.evaluate("document.getElementById('spawn_form').submit()")
    assert nav.value is not None and nav.value.status == 400
    expect(page.locator(".spawn-error-msg")).to_contain_text(
        "Invalid option 'walltime': 05:00:00 is more than the gpu partition's limit of 04:00:00"
    )
    assert hub.user_model(USER)["servers"] == {}

    # the availability table is refreshed from the discovery API by the page
    expect(page.locator("table.hpc-availability caption")).to_contain_text("updated", timeout=15_000)
    expect(page.locator('tr[data-partition="gpu"] td').last).to_have_text("04:00:00")

    page.get_by_role("radio", name="GPU").check()
    page.get_by_label("CPU cores").last.fill("2")
    page.locator("#hpc-gpu-walltime").fill("00:20:00")
    expect(page.locator("#hpc-gpu-walltime-error")).to_have_text("")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(r".*/(spawn-pending|user)/.*"), timeout=60_000)

    server = wait_ready(hub, USER)
    assert server["user_options"] == {
        "profile": "gpu",
        "gpus": 1,
        "gpu_type": "tesla",
        "cpus": 2,
        "walltime": "00:20:00",
    }
    job = scontrol(job_id(hub, USER))
    assert job["Partition"] == "gpu"
    assert (job["NumCPUs"], job["CPUs/Task"]) == ("2", "2")
    assert job["MinMemoryNode"] == "400M"  # the admin's memory: this profile does not offer it
    assert job["TimeLimit"] == "00:20:00"
    assert job["TresPerNode"] == "gres:gpu:tesla:1"
    assert job["JobState"] == "RUNNING"

    # stopped, the form opens on the GPU profile with its last choices; the CPU profile keeps its own
    stop_all(hub, [USER])
    page.goto(f"{hub.url}/hub/spawn")
    expect(page.get_by_role("radio", name="GPU")).to_be_checked()
    expect(page.locator("#hpc-gpu-walltime")).to_have_value("00:20:00")
    expect(page.get_by_label("CPU cores").last).to_have_value("2")
    page.get_by_role("radio", name="CPU (interactive)").check()
    expect(page.get_by_label("CPU cores").first).to_have_value("3")
    expect(page.locator("#hpc-cpu-walltime")).to_have_value("00:45:00")
