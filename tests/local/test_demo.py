"""``jupyterhub-hpc demo`` as a user meets it: started as a command, used through the real
login page in headless Chromium, stopped with Ctrl-C (SIGINT), leaving nothing running."""

from __future__ import annotations

import os
import pwd
import queue as queue_mod
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from hub import VENV_BIN, free_port
from jupyterhub_hpc.local_scheduler.store import ENV_MARKER

from .conftest import LOCAL

pytestmark = [pytest.mark.hub, pytest.mark.browser]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Output:
    """The demo's standard output, read line by line in the background."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue_mod.Queue[str | None] = queue_mod.Queue()
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, marker: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue_mod.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if marker in line:
                return "\n".join(self.lines)
        raise AssertionError(f"no {marker!r} from the demo:\n" + "\n".join(self.lines))

    def field(self, name: str) -> str:
        match = re.search(rf"^\s*{name}:\s+(\S+)", "\n".join(self.lines), re.MULTILINE)
        assert match, (name, self.lines)
        return match.group(1)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process; None if gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[19]))


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def demo_processes(demo_pid: int, workdir: Path) -> dict[int, tuple[int, str]]:
    """{pid: (start time, command line)} of the demo's process tree and of its jobs' processes:
    they run detached, outside the tree; supervisors name the demo's directory, job processes
    carry the job marker with it."""
    stats = {pid: s for pid in _pids() if (s := _stat(pid)) is not None}
    tree = {demo_pid}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in stats.items() if ppid in tree} - tree
        tree |= children
        grew = bool(children)
    marker = f"{ENV_MARKER}={workdir}/".encode()
    jobs = {
        pid
        for pid in stats
        if str(workdir) in _cmdline(pid) or any(v.startswith(marker) for v in _environ(pid))
    }
    return {pid: (stats[pid][1], _cmdline(pid)) for pid in (tree | jobs) & stats.keys()}


def login_and_open_lab(page: Page, url: str, user: str, password: str) -> None:
    page.goto(url + "hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
    start_from_form(page)


def start_from_form(page: Page) -> None:
    """The demo's example profiles: pick "Custom", set 512M, start; JupyterLab loads."""
    page.get_by_role("radio", name="Custom").check()
    page.locator("#hpc-custom-memory").fill("512M")
    page.get_by_role("button", name="Start").click()
    # the spawn page follows the job, then JupyterLab itself loads
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    assert "/lab" in page.url, page.url


#: who runs the demo: root (servers run as a demo user), or an ordinary user (servers run as that user)
RUNNERS = {"root": [], "unprivileged": ["sudo", "-n", "-u", "jupyterhub", "--"]}


@pytest.fixture(params=sorted(RUNNERS))
def demo(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], Output, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [*RUNNERS[request.param], str(VENV_BIN / "jupyterhub-hpc"), "demo", f"--port={port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc, Output(proc), port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_demo_login_lab_stop_and_ctrl_c_leaves_nothing(
    demo: tuple[subprocess.Popen[str], Output, int],
) -> None:
    proc, out, port = demo
    out.until("Press Ctrl-C", timeout=90)
    url, user, password = out.field("URL"), out.field("user"), out.field("password")
    workdir = Path(re.search(r"Files of this demo: (\S+)", "\n".join(out.lines)).group(1))  # type: ignore[union-attr]
    assert url == f"http://127.0.0.1:{port}/"
    assert "Profiles on the spawn page: Small: 1 core, 1 GB, 1 hour; Custom" in out.lines
    hub_pid = next(pid for pid in _pids() if str(workdir / "jupyterhub_config.py") in _cmdline(pid))
    root = _uid(hub_pid) == 0
    # as root, the servers run as a Unix user of the demo; otherwise as the user who runs it
    assert user == ("hpcdemo" if root else pwd.getpwuid(_uid(hub_pid) or 0).pw_name)
    state_dir = workdir / "jobs"

    def job_states() -> list[str]:
        result = subprocess.run([LOCAL, f"--state-dir={state_dir}", "status"], capture_output=True, text=True)
        return re.findall(r'"state": "(\w+)"', result.stdout)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            login_and_open_lab(page, url, user, password)
            assert job_states() == ["RUNNING"]
            # stop it from the hub's home page
            page.goto(url + "hub/home")
            page.click("#stop")
            page.wait_for_function(
                "document.querySelector('#start').innerText.trim() === 'Start My Server'", timeout=60_000
            )
            assert job_states() == ["CANCELLED"]
            # start it again, and leave it running for Ctrl-C to clean up
            page.click("#start")
            start_from_form(page)
            assert job_states() == ["CANCELLED", "RUNNING"]
        finally:
            browser.close()

    running = demo_processes(proc.pid, workdir)
    commands = " ".join(cmd for _, cmd in running.values())
    for program in (
        "jupyterhub",
        "configurable-http-proxy",
        "jupyterhub-singleuser",
        "local_scheduler.supervisor",
    ):
        assert program in commands, (program, running)
    assert {_uid(pid) for pid in running if "jupyterhub-singleuser" in running[pid][1]} == {
        pwd.getpwnam(user).pw_uid
    }

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=90) == 0
    assert "nothing of it is left running" in out.until("Demo stopped", timeout=5)
    left = {pid: cmd for pid, (start, cmd) in running.items() if (s := _stat(pid)) and s[1] == start}
    assert left == {}
    assert demo_processes(proc.pid, workdir) == {}
    if root:  # the demo user is the demo's own: none of its processes may be left
        assert [pid for pid in _pids() if _uid(pid) == pwd.getpwnam(user).pw_uid and _stat(pid)] == []
    assert [
        pid for pid in _pids() if str(workdir) in _cmdline(pid) or str(port) in _cmdline(pid).split()
    ] == []
    assert not workdir.exists()
