"""``jupyterhub-hpc demo`` as a user meets it: started as a command, used through the real
login page in headless Chromium, stopped with Ctrl-C (SIGINT), leaving nothing running; and run
as ``jupyterhub-hpc demo 2>&1 | tee log`` (one process group), stopped by a Ctrl-C that ends the
``tee`` first or by the terminal's hangup (SIGHUP), again leaving nothing running."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import queue as queue_mod
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from browser import chromium, log_in
from hub import VENV_BIN, free_port
from jupyterhub_hpc.local_scheduler.store import ENV_MARKER

from .conftest import LOCAL

pytestmark = [pytest.mark.hub]


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
    log_in(page, url, user, password)
    start_from_form(page)


def start_from_form(page: Page) -> None:
    """The demo's example profiles: pick "Custom", set 512M, start; JupyterLab loads."""
    page.get_by_role("radio", name="Custom").check()
    page.locator("#hpc-custom-memory").fill("512M")
    page.get_by_role("button", name="Start").click()
    # the spawn page follows the job, then JupyterLab itself loads
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    assert "/lab" in page.url, page.url


MIB = 1024 * 1024


def utc_z(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_job_card(page: Page, url: str, user: str, job: dict[str, Any]) -> None:
    """The job card of the local backend's job ``job`` (its ``status`` record), started from
    the form as Custom with 512M: in JupyterLab's status bar, from the hub API, on the home page."""
    job_id, host = str(job["id"]), str(job["host"])
    assert host and job["started"] and job["ended"] and job["walltime"] == 2 * 3600, job
    # the extension's status bar item in JupyterLab names the job and its host
    status = page.locator("#jupyterhub-hpc-status")
    expect(status).to_have_attribute("data-job-id", job_id, timeout=30_000)
    expect(status).to_contain_text(f"Job {job_id} · {host} · ")
    expect(status).to_contain_text(" left")
    page.goto(url + "hub/home")
    # the hub API, with the browser's hub cookie and the page's XSRF token, as the home page asks
    fetch = """async (url) => {
        const headers = {"X-XSRFToken": window.jhdata.xsrf_token, Accept: "application/json"};
        const r = await fetch(url, {headers});
        return [r.status, await r.json()];
    }"""
    deadline = time.monotonic() + 60
    while True:
        code, card = page.evaluate(fetch, url + f"hub/api/hpc/card/{user}/")
        assert code == 200, (code, card)
        if (card["job"] or {}).get("state") == "running" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert (card["version"], card["user"], card["server_name"]) == (1, user, "")
    assert (card["backend"], card["profile"]) == ("local", "custom")
    got = card["job"]
    assert (got["id"], got["state"], got["native_state"]) == (job_id, "running", "RUNNING"), card
    assert got["nodes"] == [host]
    # as requested on the form: Custom's 1 core and 2 hours, 512M typed in
    assert (got["cores"], got["memory_bytes"], got["time_limit_seconds"]) == (1, 512 * MIB, 2 * 3600)
    # the end the local scheduler's walltime sets
    assert got["end_time"] == utc_z(job["ended"])
    # the home page's card of the server
    home_card = page.locator(f'.hpc-job-card[data-job-id="{job_id}"]')
    expect(home_card).to_be_visible(timeout=30_000)

    def field(name: str) -> Any:
        return home_card.locator(f'xpath=.//dt[normalize-space()="{name}"]/following-sibling::dd[1]')

    expect(field("Job")).to_have_text(job_id)
    expect(field("State")).to_have_text("running (RUNNING)")
    expect(field("Node")).to_have_text(host)
    expect(field("Resources")).to_have_text("1 cores, 512 MiB")
    expect(field("Ends")).not_to_have_text("unknown")
    expect(field("Time remaining")).to_contain_text(" h ")


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


@pytest.mark.browser
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

    def local_jobs() -> list[dict[str, Any]]:
        result = subprocess.run([LOCAL, f"--state-dir={state_dir}", "status"], capture_output=True, text=True)
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def job_states() -> list[str]:
        return [job["state"] for job in local_jobs()]

    with chromium() as browser:
        page = browser.new_page()
        login_and_open_lab(page, url, user, password)
        assert job_states() == ["RUNNING"]
        (job,) = local_jobs()
        check_job_card(page, url, user, job)
        # stop it from the hub's home page, which shows the demo's sample announcement
        sample = page.frame_locator("iframe#hpc-announcements").locator("article")
        expect(sample).to_contain_text("Welcome to the jupyterhub-hpc demo")
        page.click("#stop")
        page.wait_for_function(
            "document.querySelector('#start').innerText.trim() === 'Start My Server'", timeout=60_000
        )
        assert job_states() == ["CANCELLED"]
        # start it again, and leave it running for Ctrl-C to clean up
        page.click("#start")
        start_from_form(page)
        assert job_states() == ["CANCELLED", "RUNNING"]

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


# -- in a pipeline: ``jupyterhub-hpc demo 2>&1 | tee log`` ---------------------------------------


def as_ordinary_user(name: str) -> dict[str, Any]:
    """Popen arguments that run a command as ``name`` directly, as its own login shell would:
    not through sudo, whose pty (``use_pty``) would stand between the demo and the pipe."""
    pw = pwd.getpwnam(name)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": pw.pw_dir,
        "USER": name,
        "LOGNAME": name,
        "SHELL": "/bin/sh",
        "LANG": "C.UTF-8",
    }
    return {
        "user": pw.pw_uid,
        "group": pw.pw_gid,
        "extra_groups": os.getgrouplist(name, pw.pw_gid),
        "env": env,
        "cwd": pw.pw_dir,
    }


@dataclass
class Pipeline:
    demo: subprocess.Popen[bytes]
    tee: subprocess.Popen[str]
    out: Output
    port: int
    log: Path


def in_group(pgid: int) -> dict[str, Any]:
    """Popen arguments that put the child into process group ``pgid`` (0: a new one of its own)."""
    if sys.version_info >= (3, 11):
        return {"process_group": pgid}
    return {"preexec_fn": lambda: os.setpgid(0, pgid)}


#: the pipeline's processes start with the default action for these (a shell's background job
#: would ignore SIGINT, ``nohup`` SIGHUP): tee must die of them as in a terminal
DEFAULT_SIGNALS = ["env", "--default-signal=INT,HUP,PIPE"]


@pytest.fixture(params=sorted(RUNNERS))
def piped_demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pipeline]:
    """``jupyterhub-hpc demo --port=P 2>&1 | tee LOG``, both in one new process group of this
    session, as a shell runs a pipeline; ``tee``'s own output is read by the test."""
    port = free_port()
    log = tmp_path / "demo.log"
    tee = subprocess.Popen(
        [*DEFAULT_SIGNALS, "tee", str(log)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        **in_group(0),
    )
    assert tee.stdin is not None
    runner = {} if request.param == "root" else as_ordinary_user("jupyterhub")
    try:
        demo = subprocess.Popen(
            [*DEFAULT_SIGNALS, str(VENV_BIN / "jupyterhub-hpc"), "demo", f"--port={port}"],
            stdout=tee.stdin,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            **in_group(tee.pid),
            **runner,
        )
    finally:
        tee.stdin.close()
    try:
        yield Pipeline(demo=demo, tee=tee, out=Output(tee), port=port, log=log)
    finally:
        for proc in (demo, tee):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    proc.kill()


def start_server_through_api(url: str, user: str, password: str, timeout: float = 120) -> None:
    """Log in through the login form, start the server with the hub's REST API (the cookie and
    its XSRF token), wait until the hub says it is ready."""
    session = requests.Session()
    session.get(url + "hub/login", timeout=30)
    xsrf = session.cookies.get("_xsrf") or ""
    r = session.post(
        url + "hub/login",
        data={"username": user, "password": password, "_xsrf": xsrf},
        timeout=30,
        allow_redirects=False,
    )
    assert r.status_code == 302, (r.status_code, r.text[:300])
    headers = {"X-XSRFToken": session.cookies.get("_xsrf") or xsrf}
    r = session.post(
        url + f"hub/api/users/{user}/server",
        json={"profile": "custom", "memory": "512M"},
        headers=headers,
        timeout=30,
    )
    assert r.status_code in (201, 202), (r.status_code, r.text[:300])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = session.get(url + f"hub/api/users/{user}", headers=headers, timeout=30)
        r.raise_for_status()
        server = r.json()["servers"].get("")
        assert server, r.json()
        if server.get("ready"):
            return
        time.sleep(0.5)
    raise AssertionError(f"{user}'s server not ready in {timeout} s")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "hangup"])
def test_demo_in_a_pipeline_stops_on_ctrl_c_and_hangup(piped_demo: Pipeline, signum: int) -> None:
    pipe = piped_demo
    pipe.out.until("Press Ctrl-C", timeout=90)
    url, user, password = pipe.out.field("URL"), pipe.out.field("user"), pipe.out.field("password")
    workdir = Path(re.search(r"Files of this demo: (\S+)", "\n".join(pipe.out.lines)).group(1))  # type: ignore[union-attr]
    start_server_through_api(url, user, password)

    running = demo_processes(pipe.demo.pid, workdir)
    commands = " ".join(cmd for _, cmd in running.values())
    for program in (
        "jupyterhub",
        "configurable-http-proxy",
        "jupyterhub-singleuser",
        "local_scheduler.supervisor",
    ):
        assert program in commands, (program, running)
    assert {os.getpgid(pipe.demo.pid), os.getpgid(pipe.tee.pid)} == {pipe.tee.pid}

    # Ctrl-C: the terminal signals the whole foreground group, tee dies at once, and what the
    # demo prints next goes to a pipe without a reader (EPIPE). A closed terminal: the shell
    # hangs its jobs up, and the kernel does again when the shell has exited.
    os.killpg(pipe.tee.pid, signum)
    assert pipe.tee.wait(timeout=10) == -signum
    if signum == signal.SIGHUP:
        time.sleep(1.5)
        os.killpg(pipe.tee.pid, signum)
    assert pipe.demo.wait(timeout=120) == 0

    left = {pid: cmd for pid, (start, cmd) in running.items() if (s := _stat(pid)) and s[1] == start}
    assert left == {}
    assert demo_processes(pipe.demo.pid, workdir) == {}
    if user == "hpcdemo":  # the demo's own user: none of its processes may be left
        assert [pid for pid in _pids() if _uid(pid) == pwd.getpwnam(user).pw_uid and _stat(pid)] == []
    assert [
        pid for pid in _pids() if str(workdir) in _cmdline(pid) or str(pipe.port) in _cmdline(pid).split()
    ] == []
    assert not workdir.exists()
    # what tee got before it died: the banner, nothing of the stop
    assert "Press Ctrl-C" in pipe.log.read_text()
