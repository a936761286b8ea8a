"""Shared fixtures. Real-scheduler tests need the services `make test` starts
(scripts/slurm.sh, scripts/test-users.sh); they fail, never skip, without them."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

# CI runs the property tests with a fixed seed sequence, so that a red run is reproducible
# (`CI=true pytest ...` replays it); developers get fresh random examples each run.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

sys.path.insert(0, str(Path(__file__).parent))

from hub import Hub  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium shared by the tests of one module (tests/browser.py)."""
    from browser import chromium

    with chromium() as shared:
        yield shared


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh browser context of its own (no cookies of another test)."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def slurm_jobs(user: str) -> dict[str, str]:
    """{job id: state} of a user's jobs in the live queue (pending and running only)."""
    out = subprocess.run(
        ["squeue", "--noheader", f"--user={user}", "--states=PENDING,RUNNING,COMPLETING", "--format=%i|%T"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("|", 1) for line in out.split())


def cancel_all(users: list[str]) -> None:
    subprocess.run(["scancel", *[f"--user={u}" for u in users][:1]], check=False)
    for u in users:
        subprocess.run(["scancel", f"--user={u}"], check=False)


@pytest.fixture
def hub_factory(tmp_path: Path) -> Iterator[object]:
    hubs: list[Hub] = []

    def make(**spawner: object) -> Hub:
        hub = Hub(tmp_path / f"hub{len(hubs)}", spawner=dict(spawner))
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.kill_all()


#: the unprivileged account the hub runs as in the end-to-end tests (scripts/test-users.sh), under
#: the sudoers file `jupyterhub-hpc sudoers` generates (scripts/test-sudoers.sh)
HUB_ACCOUNT = "jupyterhub"


@contextlib.contextmanager
def nonroot_hubs(log_dir: Path) -> Iterator[Callable[..., Hub]]:
    """A factory of hubs that (with their proxy) run as ``HUB_ACCOUNT``, in directories
    under that account's home (pytest's tmp_path is private to root). At the end the
    hubs are stopped, their logs copied to ``log_dir`` and their directories removed."""
    account = pwd.getpwnam(HUB_ACCOUNT)
    base = Path(tempfile.mkdtemp(prefix="hubs-", dir=account.pw_dir))
    os.chown(base, account.pw_uid, account.pw_gid)
    hubs: list[Hub] = []

    def make(*, config: dict[str, dict[str, Any]] | None = None, **spawner: object) -> Hub:
        hub = Hub(base / f"hub{len(hubs)}", spawner=dict(spawner), run_as=HUB_ACCOUNT, config=config)
        hubs.append(hub)
        return hub

    try:
        yield make
    finally:
        for n, hub in enumerate(hubs):
            hub.kill_all()
            if hub.log_path.exists():
                shutil.copy(hub.log_path, log_dir / f"hub{n}.log")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def nonroot_hub_factory(tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """Like ``hub_factory``, but each hub runs as the unprivileged ``HUB_ACCOUNT``."""
    with nonroot_hubs(tmp_path) as make:
        yield make
