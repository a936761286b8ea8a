"""The Lab extension against the issue-14 contract, in real JupyterLab + headless Chromium, with
the routes answered by tests/lab/fake_hpc_routes.py (fixed JSON the test rewrites): every state of
the front end in about a minute, without a hub. The same extension against the real hub, the real
server extension and a real Slurm job: test_lab_live.py."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from .conftest import Lab

pytestmark = [pytest.mark.browser]

XSS_BODY = (
    "<p>Scratch is mounted read-only from 08:00 to 12:00 for a file system check. "
    "<b>Copy what you need</b> to your home first.</p>"
    '<img src="x" onerror="window.__hpcXss = 1"><script>window.__hpcXss = 2</script>'
    '<a href="javascript:window.__hpcXss=3">details</a><svg onload="window.__hpcXss = 4"></svg>'
)


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def announcement(ident: str, title: str, **kw: Any) -> dict[str, Any]:
    a = {
        "id": ident,
        "title": title,
        "body_html": "<p>body</p>",
        "severity": "info",
        "starts": None,
        "ends": None,
        "dismissible": True,
        "required": False,
        "source": "admin",
    }
    a.update(kw)
    return a


def card(job: dict[str, Any] | None, **kw: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "version": 1,
        "poll_seconds": 2,
        "user": "alice",
        "server_name": "",
        "backend": "slurm",
        "cluster": "hpc",
        "profile": "gpu",
        "job": job,
        "walltime": {"warn_seconds": [60, 35], "autosave_seconds": 25},
        "idle": None,
        "maintenance": [],
    }
    c.update(kw)
    return c


def running_job(end: float, skew: float) -> dict[str, Any]:
    return {
        "id": "4242",
        "state": "running",
        "native_state": "RUNNING",
        "reason": None,
        "reason_text": None,
        "expected_start": None,
        "start_time": iso(end - 3600 + skew),
        "end_time": iso(end + skew),
        "time_limit_seconds": 3600,
        "partition": "gpu",
        "nodes": ["gpu7"],
        "cores": 4,
        "memory_bytes": 8 * 1024**3,
        "gpus": 1,
    }


class Fake:
    def __init__(self, root: Path) -> None:
        self.root = root

    def card(self, value: dict[str, Any]) -> None:
        tmp = self.root / "card.json.tmp"
        tmp.write_text(json.dumps(value))
        tmp.replace(self.root / "card.json")

    def announcements(self, value: list[dict[str, Any]]) -> None:
        tmp = self.root / "announcements.json.tmp"
        tmp.write_text(json.dumps(value))
        tmp.replace(self.root / "announcements.json")

    def requests(self, route: str) -> list[dict[str, Any]]:
        path = self.root / "requests.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [r for r in map(json.loads, lines) if r["route"] == route]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Fake]]:
    base = tmp_path_factory.mktemp("lab")
    (base / "root").mkdir()
    (base / "fake").mkdir()
    fake = Fake(base / "fake")
    fake.card(card(None))
    lab = Lab(base / "root", base / "fake")
    lab.start()
    try:
        yield lab, fake
    finally:
        lab.stop()


def toast(page: Page, text: str | re.Pattern[str]) -> Any:
    return page.locator(".Toastify__toast", has=page.locator(".jp-toast-message", has_text=text))


def write_notebook(path: Path, source: str) -> None:
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {},
                   "outputs": [], "source": source}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    path.write_text(json.dumps(nb))


def type_into_cell(page: Page, text: str) -> None:
    editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
    editor.click()
    page.keyboard.press("End")
    page.keyboard.type(text)
    expect(page.locator(".jp-mod-dirty, .jp-mod-dirty *").first).to_be_attached()


def test_card_warnings_autosave_announcements_in_lab(lab: tuple[Lab, Fake], browser: Browser) -> None:
    server, fake = lab
    skew = 600.0  # the card's clock runs 10 min ahead of the browser's: the countdown must not care
    end = time.time() + 90
    fake.card(card(running_job(end, skew), _clock_offset=skew))
    fake.announcements(
        [
            announcement("a1", "Scratch is read-only on Friday", body_html=XSS_BODY),
            announcement(
                "a2", "Required: new usage policy", severity="warning", required=True, dismissible=False
            ),
        ]
    )
    notebook = server.root / "work.ipynb"
    write_notebook(notebook, "x = 1")

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        run_scenario(server, fake, page, end, notebook)
    except Exception:
        page.screenshot(path=str(server.root.parent / "failure.png"))
        raise
    finally:
        context.close()


def run_scenario(server: Lab, fake: Fake, page: Page, end: float, notebook: Path) -> None:
    page.goto(f"{server.url}/lab?token={server.token}")

    status = page.locator("#jupyterhub-hpc-status")
    expect(status).to_contain_text("Job 4242 · gpu7 ·", timeout=30_000)
    expect(status).to_contain_text("left")
    remaining = int(status.get_attribute("data-remaining") or "-1")
    assert abs(remaining - (end - time.time())) <= 3, (remaining, end - time.time())

    # announcements: a toast each, the required one stays
    expect(toast(page, "Scratch is read-only on Friday")).to_be_visible(timeout=10_000)
    expect(toast(page, "Required: new usage policy")).to_be_visible()
    assert page.evaluate("window.__hpcXss") is None

    # the panel from the status item: the whole card and the announcements, the body sanitised
    status.click()
    panel = page.locator("#jupyterhub-hpc-card")
    expect(panel).to_be_visible()
    for field, value in [("id", "4242"), ("cluster", "hpc"), ("partition", "gpu"), ("nodes", "gpu7"),
                         ("cores", "4"), ("memory", "8 GiB"), ("gpus", "1")]:  # fmt: skip
        expect(panel.locator(f'tr[data-field="{field}"] td')).to_have_text(value)
    expect(panel.locator('tr[data-field="remaining"] td')).to_have_text(
        re.compile(r"^(1:[0-3]\d|0:[0-5]\d)$")
    )
    body = panel.locator('article[data-id="a1"] .jp-hpc-announcement-body')
    expect(body.locator("b")).to_have_text("Copy what you need")
    assert body.locator("script, svg, [onerror], [onload]").count() == 0
    assert "javascript:" not in body.inner_html()
    page.wait_for_timeout(500)
    assert page.evaluate("window.__hpcXss") is None
    # required ones have no Dismiss; a dismissal goes to the server and the list is fetched again
    expect(panel.locator('article[data-id="a2"] button')).to_have_count(0)
    panel.locator('article[data-id="a1"] button', has_text="Dismiss").click()
    expect(panel.locator('article[data-id="a1"]')).to_have_count(0)
    assert [r["id"] for r in fake.requests("dismiss")] == ["a1"]
    # polls do not count as the user's activity (jupyter_server's no_track_activity)
    polls = fake.requests("card")
    assert polls and all(r["no_track_activity"] == "1" for r in polls), polls[:3]

    # the walltime warning (60 s before the end) with its two actions; "Save all" saves the notebook
    page.locator(".jp-DirListing-item", has_text="work.ipynb").first.dblclick()
    type_into_cell(page, " + 41")
    warning = toast(page, re.compile(r"Your job 4242 ends in (1:00|0:[0-5]\d)"))
    expect(warning).to_be_visible(timeout=40_000)
    left = end - time.time()
    assert 36 <= left <= 61, left
    expect(warning.locator(".jp-toast-button", has_text="Stop server now")).to_be_visible()
    expect(page.locator("#jupyterhub-hpc-status")).to_have_class(re.compile("jp-hpc-status-warn"))
    warning.locator(".jp-toast-button", has_text="Save all").click()
    assert_saved(notebook, "x = 1 + 41")

    # "Stop server now": asks first, then POSTs /stop
    warning.locator(".jp-toast-button", has_text="Stop server now").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Stop the server now?")
    dialog.get_by_role("button", name="Stop server").click()
    expect(toast(page, "The server is stopping")).to_be_visible()
    assert len(fake.requests("stop")) == 1

    # automatic save 25 s before the end, said in a notification; the status is red by then
    type_into_cell(page, " + 1")
    expect(toast(page, "Saved all open documents")).to_be_visible(timeout=40_000)
    assert end - time.time() <= 26
    assert_saved(notebook, "x = 1 + 41 + 1")
    expect(page.locator("#jupyterhub-hpc-status")).to_have_class(re.compile("jp-hpc-status-critical"))

    # queued, idle and maintenance
    now = time.time()
    pending = running_job(now + 7200, 0) | {
        "state": "pending",
        "native_state": "PENDING",
        "reason": "Priority",
        "reason_text": "waiting for higher-priority jobs",
        "expected_start": iso(now + 3600),
        "nodes": [],
    }
    fake.card(
        card(
            pending,
            idle={"timeout_seconds": 1800, "warn_seconds": 300, "last_activity": iso(now - 1560),
                  "stops_at": iso(now + 240)},
            maintenance=[{"name": "maint1", "start": iso(now + 5400), "end": iso(now + 9000),
                          "partitions": ["gpu"], "nodes": "gpu[1-8]", "crosses_job": True}],
        )
    )  # fmt: skip
    expected = time.strftime("%H:%M", time.localtime(now + 3600))
    expect(status).to_have_text(f"queued: waiting for higher-priority jobs, expected start {expected}")
    expect(toast(page, "idle for 26 min: stops in 4 min unless you use it")).to_be_visible()
    expect(toast(page, re.compile(r"^Maintenance .* to .*: your job ends at it$"))).to_be_visible()

    # announcements are notified once per browser: not again after a reload, still in the panel
    page.reload()
    expect(status).to_contain_text("queued:", timeout=30_000)
    page.wait_for_timeout(4_500)  # two poll intervals
    expect(toast(page, "Required: new usage policy")).to_have_count(0)


def assert_saved(path: Path, source: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            cells = json.loads(path.read_text())["cells"]
        except json.JSONDecodeError:  # read while the server was writing it: look again
            cells = []
        if cells and "".join(cells[0]["source"]) == source:
            return
        time.sleep(0.2)
    raise AssertionError(f"{path} not saved with {source!r}: {path.read_text()[:300]}")
