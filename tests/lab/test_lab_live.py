"""The Lab extension live: a real JupyterHub (root, configurable-http-proxy), a real Slurm job (22.05
by default; ``JUPYTERHUB_HPC_TEST_SLURM=24.11`` for the cluster of scripts/slurm24.sh, see
tests/slurm_cluster.py) with a 3-minute walltime and seconds-scale thresholds, the package's own server
extension (jupyterhub_hpc.lab) in the job's jupyterhub-singleuser, JupyterLab in headless Debian Chromium.
The hub also runs the package's announcements service (hub-managed, as docs/lab.md configures it):
an announcement for the user's group, its body carrying script payloads, shows as a notification
and in the panel and runs nothing. One hub, one job, one browser page for the whole story.

With ``JUPYTERHUB_HPC_SCREENSHOTS=DIR`` it also saves the docs' screenshots of this real job into DIR
(docs/img/lab-card.png, lab-status.png, lab-warning.png, lab-announcement.png; docs/lab.md says how)."""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Locator, Page, expect

from browser import log_in
from hub import Hub, wait_for
from jupyterhub_hpc.announcements import announcements_service
from jupyterhub_hpc.hubprocess import free_port
from profiles.hubs import FAST, job_id, stop_all, wait_ready
from slurm_cluster import SlurmCluster, selected_cluster

from .conftest import LAB_NOTIFICATION_SETTINGS
from .test_lab_contract import assert_saved, toast, type_into_cell, write_notebook

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser]

CLUSTER: SlurmCluster = selected_cluster()

USER = "hpcuser3"
WALLTIME = "00:03:00"
WARNINGS = [150, 60]
AUTOSAVE = 45
SERVICE = "hpc-announcements"
WRITER = "wendy"
XSS_BODY = (
    "Scratch is **read-only** from 08:00 for a file system check.\n\n"
    '<img src="x" onerror="window.__hpcXss = 1"><script>window.__hpcXss = 2</script>'
    '<svg onload="window.__hpcXss = 3"></svg>[details](javascript:window.__hpcXss=4)'
)


def scontrol(job: str) -> dict[str, str]:
    """``scontrol show job`` of the selected cluster as {key: value}."""
    fields: dict[str, str] = {}
    for token in CLUSTER.run("scontrol", "show", "job", job).stdout.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def shot(page: Page, locator: Locator, name: str, *, hide_toasts: bool = False) -> None:
    """The docs' screenshot lab-NAME.png of an element, when JUPYTERHUB_HPC_SCREENSHOTS names a directory."""
    out = os.environ.get("JUPYTERHUB_HPC_SCREENSHOTS")
    if out:
        page.wait_for_timeout(600)  # toasts slide in
        style = ".Toastify { visibility: hidden !important; }" if hide_toasts else None
        locator.screenshot(path=str(Path(out) / f"lab-{name}.png"), style=style)


def slurm_time(value: str) -> float:
    """Slurm's local ISO time (2026-12-03T07:30:48) as epoch seconds."""
    return time.mktime(time.strptime(value, "%Y-%m-%dT%H:%M:%S"))


@pytest.fixture
def user_dir() -> Iterator[Path]:
    """A directory of the test user's (the notebook and the Lab's settings: no news toast)."""
    account = pwd.getpwnam(USER)
    path = Path(account.pw_dir) / f"lab-live-{secrets.token_hex(4)}"
    settings = path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps(LAB_NOTIFICATION_SETTINGS))
    for p in [path, *path.rglob("*")]:
        os.chown(p, account.pw_uid, account.pw_gid)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def hub(tmp_path: Path, user_dir: Path) -> Iterator[Hub]:
    CLUSTER.check_version()
    spawner = {
        **CLUSTER.spawner,
        **FAST,
        "walltime": WALLTIME,
        "walltime_warnings": WARNINGS,
        "walltime_autosave": AUTOSAVE,
        "environment": {"JUPYTERLAB_SETTINGS_DIR": str(user_dir / "lab-settings")},
        "notebook_dir": str(user_dir),
    }
    spawner["announcements_service"] = SERVICE
    hub = Hub(tmp_path / "hub", spawner=spawner)
    ann = announcements_service(
        port=free_port(), writer_users=[WRITER], cwd=str(hub.root), python=sys.executable
    )
    hub.settings["config"] = {
        "JupyterHub": {
            "services": ann["services"],  # after the test's own service and role (tests/hub.py)
            "load_roles": ann["load_roles"],
            "custom_scopes": ann["custom_scopes"],
            "load_groups": {"physics": {"users": [USER]}},
        }
    }
    (hub.root / "settings.json").write_text(json.dumps(hub.settings))
    hub.start()
    try:
        yield hub
    finally:
        for job in stop_all(hub, [USER]):
            CLUSTER.run("scancel", job, check=False)
        hub.kill_all()


def test_job_card_warnings_save_all_and_scontrol_update_live(
    hub: Hub, browser: Browser, user_dir: Path
) -> None:
    account = pwd.getpwnam(USER)
    notebook = user_dir / "work.ipynb"
    write_notebook(notebook, "x = 1")
    os.chown(notebook, account.pw_uid, account.pw_gid)

    hub.ensure_user(USER)
    posted = post_announcements(hub)
    assert hub.api("POST", f"/users/{USER}/server", json={}).status_code in (201, 202)
    wait_ready(hub, USER)
    job = job_id(hub, USER)
    assert scontrol(job)["TimeLimit"] == "00:03:00"

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        log_in(page, hub.url, USER, hub.password)
        page.goto(f"{hub.url}/user/{USER}/lab")
        run_story(hub, page, job, notebook, posted)
    except Exception:
        page.screenshot(path=str(hub.root / "failure.png"))
        raise
    finally:
        context.close()


def assert_countdown(page: Page, job: str) -> None:
    """The status bar's countdown equals Slurm's own EndTime (±3 s)."""
    end = slurm_time(scontrol(job)["EndTime"])
    status = page.locator("#jupyterhub-hpc-status")

    def close() -> bool:
        remaining = status.get_attribute("data-remaining")
        return remaining is not None and abs(int(remaining) - (end - time.time())) <= 3

    wait_for(close, 10, message=f"countdown {status.get_attribute('data-remaining')} vs {end - time.time()}")


def post_announcements(hub: Hub) -> dict[str, str]:
    """Through the service's REST API, as a writer: one for the user's group, one for another user."""
    hub.ensure_user(WRITER)
    r = hub.api(
        "POST",
        f"/users/{WRITER}/tokens",
        json={"scopes": [f"access:services!service={SERVICE}", "custom:announcements:write"]},
    )
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    url = f"{hub.url}/services/{SERVICE}/api/v1/announcements"
    headers = {"Authorization": f"token {token}"}
    bodies = {
        "ours": {"title": "Scratch read-only on Friday", "body": XSS_BODY, "severity": "warning",
                 "audience": {"groups": ["physics"]}},
        "theirs": {"title": "Only for hpcuser1", "audience": {"users": ["hpcuser1"]}},
    }  # fmt: skip
    # the hub starts its service with itself: wait until the service answers
    wait_for(
        lambda: requests.get(url, headers=headers, timeout=10).status_code == 200,
        30,
        message=f"the announcements service does not answer:\n{hub.log_tail(30)}",
    )
    ids = {}
    for key, body in bodies.items():
        r = requests.post(url, json=body, headers=headers, timeout=10)
        assert r.status_code == 201, r.text
        ids[key] = str(r.json()["id"])
    return ids


def run_story(hub: Hub, page: Page, job: str, notebook: Path, posted: dict[str, str]) -> None:
    fields = scontrol(job)
    status = page.locator("#jupyterhub-hpc-status")
    expect(status).to_contain_text(f"Job {job} · {fields['NodeList']} ·", timeout=60_000)
    assert status.get_attribute("data-job-id") == job
    assert_countdown(page, job)

    # the group's announcement: a notification, and in the panel its body sanitised, nothing ran
    announced = toast(page, "Scratch read-only on Friday")
    expect(announced).to_be_visible(timeout=30_000)
    shot(page, announced, "announcement")
    status.click()
    panel = page.locator("#jupyterhub-hpc-card")
    expect(panel.locator('tr[data-field="id"] td')).to_have_text(job)
    expect(panel.locator('tr[data-field="nodes"] td')).to_have_text(fields["NodeList"])
    ours = panel.locator(f'article[data-id="{posted["ours"]}"]')
    expect(ours.locator(".jp-hpc-announcement-body strong")).to_have_text("read-only")
    assert ours.locator("script, svg, [onerror], [onload], a[href^='javascript']").count() == 0
    expect(panel.locator(f'article[data-id="{posted["theirs"]}"]')).to_have_count(0)
    expect(toast(page, "Only for hpcuser1")).to_have_count(0)
    assert page.evaluate("window.__hpcXss") is None
    shot(page, panel, "card", hide_toasts=True)
    shot(page, status, "status")

    # the warning 150 s before the end, with both actions; "Save all" writes the notebook to disk
    page.locator(".jp-DirListing-item", has_text="work.ipynb").first.dblclick()
    type_into_cell(page, " + 41")
    warning = toast(page, re.compile(rf"Your job {job} ends in 2:[0-3]\d"))
    expect(warning).to_be_visible(timeout=60_000)
    expect(warning.locator(".jp-toast-button", has_text="Stop server now")).to_be_visible()
    shot(page, warning, "warning")
    warning.locator(".jp-toast-button", has_text="Save all").click()
    assert_saved(notebook, "x = 1 + 41")

    # an admin shortens the job: the new end shows within one status interval, warnings re-armed
    before = slurm_time(scontrol(job)["EndTime"])
    CLUSTER.run("scontrol", "update", f"JobId={job}", "TimeLimit=00:02:00")
    after = slurm_time(scontrol(job)["EndTime"])
    assert before - after == 60, (before, after)  # Slurm's limits are whole minutes
    t0 = time.monotonic()
    assert_countdown(page, job)
    assert time.monotonic() - t0 <= FAST["status_interval"] + 5

    # the automatic save 45 s before the (new) end, said in a notification
    type_into_cell(page, " + 1")
    expect(toast(page, "Saved all open documents")).to_be_visible(timeout=90_000)
    assert after - time.time() <= AUTOSAVE + 1
    assert_saved(notebook, "x = 1 + 41 + 1")
    expect(status).to_have_class(re.compile("jp-hpc-status-critical"))

    # "Stop server now" (the real /stop: the server's own token asks the hub): the job is released
    toast(page, re.compile(rf"Your job {job} ends in")).last.locator(
        ".jp-toast-button", has_text="Stop server now"
    ).click()
    page.locator(".jp-Dialog").get_by_role("button", name="Stop server").click()
    wait_for(lambda: not hub.user_model(USER)["servers"], 30, message=hub.log_tail(40))
    wait_for(lambda: scontrol_state(job) not in ("RUNNING", "PENDING"), 30, message=f"job {job} still runs")


def scontrol_state(job: str) -> str:
    try:
        return scontrol(job).get("JobState", "")
    except Exception:
        return "GONE"
