"""The idle policy in real JupyterLab (headless Debian Chromium) on the local backend: "idle" means
nobody used it, even with the Lab tab open and visible.

One hub (real JupyterHub, configurable-http-proxy, jupyterhub-singleuser with this package's server
and Lab extensions), a GPU profile with ``idle_timeout`` 40 s and ``idle_warning`` 20 s, and the
hub told of JupyterHub's own activity every second (the fallback basis, for servers without the
extension):

* hpcuser1's Lab is open and visible, nobody touches it: the idle warning appears in Lab (with
  "I'm still here"), then the hub stops the server and its job is cancelled;
* hpcuser2's Lab gets keyboard and mouse input (Playwright) every few seconds: it runs well past
  the timeout; left alone, it gets the warning, and "I'm still here" moves its stop time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from browser import log_in
from hub import Hub, wait_for

from .conftest import FAST, LocalQueue

pytestmark = [pytest.mark.hub, pytest.mark.browser]

TIMEOUT = 40
WARNING = 20
REPORT = 5
IDLE_USER, USED_USER = "hpcuser1", "hpcuser2"
LAB_NOTIFICATION_SETTINGS = {"fetchNews": "false", "checkForUpdates": False}


def parse(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def hub(queue: LocalQueue, tmp_path: Path) -> Iterator[Hub]:
    settings_dir = queue.root / "lab-settings"
    path = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(LAB_NOTIFICATION_SETTINGS))
    for p in [settings_dir, *settings_dir.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    private = queue.root / "hubs"
    private.mkdir(mode=0o700, exist_ok=True)
    spawner = {
        **FAST,
        "local_state_dir": str(queue.state_dir),
        "job_output": str(queue.log_dir / "{username}-{job_id}.log"),
        "profile_list": [
            {"display_name": "CPU", "slug": "cpu", "default": True},
            {
                "display_name": "GPU",
                "slug": "gpu",
                "spawner_override": {
                    "idle_timeout": TIMEOUT,
                    "idle_warning": WARNING,
                    "idle_report_interval": REPORT,
                },
            },
        ],
        "idle_check_interval": 1.0,
        "environment": {"JUPYTERHUB_ACTIVITY_INTERVAL": "1", "JUPYTERLAB_SETTINGS_DIR": str(settings_dir)},
    }
    config = {"JupyterHub": {"last_activity_interval": 1}}
    the_hub = Hub(private / "idle-lab", spawner=spawner, spawner_class="local-hpc", config=config)
    the_hub.start()
    yield the_hub
    the_hub.kill_all()
    with contextlib.suppress(OSError):
        shutil.copy(the_hub.log_path, tmp_path / "hub.log")


def card(hub: Hub, user: str) -> dict[str, Any]:
    r = hub.api("GET", f"/hpc/card/{user}/")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return dict(r.json())


def open_lab(hub: Hub, browser: Browser, user: str) -> Page:
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    log_in(page, hub.url, user, hub.password)
    page.goto(f"{hub.url}/user/{user}/lab")
    expect(page.locator("#jupyterhub-hpc-status")).to_be_visible(timeout=90_000)
    assert page.evaluate("document.visibilityState") == "visible"
    return page


def server_token(queue: LocalQueue, job: str) -> str:
    """The API token in the environment of the job's Jupyter server (root reads it)."""
    for pid in queue.processes(job):
        with contextlib.suppress(OSError):
            match = re.search(
                rb"(?:^|\0)JUPYTERHUB_API_TOKEN=([^\0]+)", Path(f"/proc/{pid}/environ").read_bytes()
            )
            if match:
                return match.group(1).decode()
    raise AssertionError(f"no server token in the processes of job {job}")


def report(hub: Hub, token: str, body: Any = None, raw: bytes | None = None) -> requests.Response:
    return requests.post(
        f"{hub.url}/hub/api/hpc/use",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        data=raw if raw is not None else json.dumps(body),
        timeout=10,
    )


def check_use_reports_are_guarded(hub: Hub, queue: LocalQueue, jobs: dict[str, str]) -> None:
    """Only a running server's own token reports its use: bounded, validated, monotonic."""
    token = server_token(queue, jobs[USED_USER])
    time.sleep(2)  # a report the Lab's page load sent has arrived
    kept = card(hub, USED_USER)["idle"]["last_activity"]
    now = datetime.now(timezone.utc)
    assert report(hub, hub.user_token(USED_USER), {"last_use": now.isoformat()}).status_code == 403
    assert report(hub, "not-a-token", {"last_use": now.isoformat()}).status_code == 403
    for body in (
        {"last_use": (now + timedelta(hours=1)).isoformat()},  # the far future
        {"last_use": now.replace(tzinfo=None).isoformat()},  # no time zone
        {"last_use": "yesterday"},
        {"last_use": 12},
        {"last_use": now.isoformat(), "user": IDLE_USER},
        [now.isoformat()],
    ):
        r = report(hub, token, body)
        assert r.status_code == 400, (body, r.status_code, r.text[:200])
    assert report(hub, token, raw=b'{"last_use": "' + b"9" * 100_000 + b'"}').status_code in (400, 413)
    assert card(hub, USED_USER)["idle"]["last_activity"] == kept  # nothing of that changed it
    older = report(hub, token, {"last_use": (now - timedelta(hours=1)).isoformat()})
    assert older.status_code == 200 and card(hub, USED_USER)["idle"]["last_activity"] == kept  # monotonic
    # another user's server token reports for that user's own server, never for this one
    assert report(hub, server_token(queue, jobs[IDLE_USER]), {"last_use": now.isoformat()}).status_code == 200
    assert card(hub, USED_USER)["idle"]["last_activity"] == kept


def idle_toast(page: Page) -> Any:
    return page.locator(
        ".Toastify__toast", has=page.locator(".jp-toast-message", has_text=re.compile("unless you use it"))
    )


def test_a_visible_lab_nobody_uses_is_stopped_and_input_keeps_one_running(
    hub: Hub, queue: LocalQueue, browser: Browser
) -> None:
    jobs = {}
    for user in (IDLE_USER, USED_USER):
        hub.ensure_user(user)
        assert hub.spawn(user, {"profile": "gpu"}).status_code in (201, 202)
    for user in (IDLE_USER, USED_USER):
        jobs[user] = str(hub.wait_ready(user, timeout=120)["state"]["job_id"])
    idle_page = open_lab(hub, browser, IDLE_USER)
    used_page = open_lab(hub, browser, USED_USER)
    t0 = time.monotonic()
    # both servers report their use, so the hub counts that and no longer JupyterHub's activity
    wait_for(lambda: card(hub, IDLE_USER)["idle"]["basis"] == "use", 20, 0.5, "no use report")
    assert card(hub, USED_USER)["idle"]["basis"] == "use"
    check_use_reports_are_guarded(hub, queue, jobs)

    warned_at = stopped_at = None
    basis_at_warning_kind = ""
    last_input = 0.0
    while time.monotonic() - t0 < TIMEOUT + 30:
        if time.monotonic() - last_input >= 4:
            # real input in hpcuser2's Lab: a key, a wheel turn and a click on the file browser
            used_page.keyboard.press("Shift")
            used_page.mouse.move(700, 450)
            used_page.mouse.wheel(0, 40)
            used_page.mouse.click(150, 600)
            last_input = time.monotonic()
        if warned_at is None and idle_toast(idle_page).count():
            warned_at = time.monotonic() - t0
            idle = card(hub, IDLE_USER)["idle"]
            basis_at_warning_kind = idle["basis"]
            expect(
                idle_toast(idle_page).locator(".jp-toast-button", has_text="I'm still here")
            ).to_be_visible()
        if stopped_at is None and not hub.user_model(IDLE_USER)["servers"]:
            stopped_at = time.monotonic() - t0
        time.sleep(0.5)

    # the visible, untouched Lab: warned, then stopped, its job cancelled
    assert warned_at is not None, "no idle warning in the untouched Lab"
    assert stopped_at is not None, "the untouched Lab's server was not stopped"
    assert warned_at < stopped_at <= TIMEOUT + 15, (warned_at, stopped_at)
    # judged on its use: the card said so at the warning (JupyterHub's own last_activity of it is
    # not asserted: since the Lab extension's polls carry no_track_activity it may or may not move)
    assert basis_at_warning_kind == "use"
    queue.wait_state(jobs[IDLE_USER], "CANCELLED", timeout=30)
    assert f"{IDLE_USER}: idle: Job {jobs[IDLE_USER]} was stopped by the hub" in hub.log_tail(200_000)

    # the one with input: still running well past its timeout
    assert hub.user_model(USED_USER)["servers"][""]["ready"]
    assert queue.status(jobs[USED_USER])[jobs[USED_USER]]["state"] == "RUNNING"

    # left alone it is warned; "I'm still here" moves its stop time
    toast = idle_toast(used_page)
    expect(toast).to_be_visible(timeout=(TIMEOUT + 10) * 1000)
    before = parse(card(hub, USED_USER)["idle"]["stops_at"])
    toast.locator(".jp-toast-button", has_text="I'm still here").click()
    expect(toast).to_have_count(0, timeout=5000)
    wait_for(
        lambda: parse(card(hub, USED_USER)["idle"]["stops_at"]) > before + 5, 15, 0.5, "stop time not moved"
    )
    assert hub.user_model(USED_USER)["servers"][""]["ready"]
    assert hub.api("DELETE", f"/users/{USED_USER}/server").status_code in (202, 204)
    queue.wait_state(jobs[USED_USER], "CANCELLED", "COMPLETED", timeout=60)
