"""``jupyterhub_hpc.hubprocess`` with small fake hubs (``python -c`` programs started as
``python -c CODE -f CONFIG``): waiting for one that answers HTTP, one that exits early, one
that leaves a process in its group that ignores SIGTERM, one that ignores SIGTERM itself."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jupyterhub_hpc.hubprocess import (
    API_PATH,
    HubExited,
    HubProcess,
    HubTimeout,
    free_port,
    hub_environment,
    log_offset,
    log_tail,
)
from jupyterhub_hpc.local_scheduler.store import ProcessId
from needs import needs

#: answers 200 at /hub/api/ on $FAKE_HUB_PORT, 404 elsewhere; exits 0 at SIGTERM
SERVING = """
import http.server, os, signal, sys
print("fake hub", sys.argv[1:], os.getcwd(), os.environ.get("FAKE_HUB_MARK"), flush=True)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/hub/api/" else 404)
        self.end_headers()
        self.wfile.write(b'{"version": "fake"}')

signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
http.server.HTTPServer(("127.0.0.1", int(os.environ["FAKE_HUB_PORT"])), Handler).serve_forever()
"""

#: a hub whose configuration is broken
EXITING = """
import sys
print("Traceback: the config is broken", flush=True)
sys.exit(7)
"""

#: leaves a child in its process group that ignores SIGTERM; exits 3 at SIGTERM
LEAVING_A_CHILD = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
print(child.pid, flush=True)
time.sleep(300)
"""

#: ignores SIGTERM
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    """The process exists and has not ended (a zombie has): the local scheduler's /proc reader."""
    process = ProcessId.of(pid)
    return process is not None and process.alive()


def _wait_for_line(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.endswith("\n"):
            return text.splitlines()[0]
        time.sleep(0.02)
    raise AssertionError(f"nothing in {path}")


def _until(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


class Fakes:
    """Starts fake hubs in a directory; kills whatever of them is left at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.config = directory / "jupyterhub_config.py"
        self.config.write_text("# the fake hubs do not read it\n")
        self.log = directory / "hub.log"
        self.started: list[HubProcess] = []
        self.pids: list[int] = []

    def start(self, code: str, **kwargs: object) -> HubProcess:
        hub = HubProcess.start(
            self.config,
            log_path=self.log,
            command=[sys.executable, "-c", code],
            **kwargs,  # type: ignore[arg-type]
        )
        self.started.append(hub)
        return hub

    def cleanup(self) -> None:
        for pid in self.pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        for hub in self.started:
            if hub.proc.returncode is None:
                hub.proc.kill()
                hub.proc.wait()


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[Fakes]:
    found = Fakes(tmp_path)
    try:
        yield found
    finally:
        found.cleanup()


def test_start_then_wait_until_it_answers(fakes: Fakes, tmp_path: Path) -> None:
    port = free_port()
    env = hub_environment(tmp_path / "bin", {"FAKE_HUB_PORT": str(port), "FAKE_HUB_MARK": "marked"})
    assert env["PATH"].startswith(f"{tmp_path / 'bin'}:") and env["FAKE_HUB_MARK"] == "marked"
    hub = fakes.start(SERVING, env=env, cwd=tmp_path, args=["--Some.option=1"])
    assert hub.wait_ready(f"http://127.0.0.1:{port}{API_PATH}", timeout=30) is True
    assert hub.status() is None
    # its own session and process group; started as COMMAND -f CONFIG, output in the log
    assert os.getsid(hub.pid) == hub.pid and os.getpgid(hub.pid) == hub.pid
    line = _wait_for_line(fakes.log)
    assert line == f"fake hub ['-f', '{fakes.config}', '--Some.option=1'] {tmp_path} marked"
    assert line in hub.log_tail() and hub.log_offset() == log_offset(fakes.log) > 0
    assert hub.stop(timeout=30) == 0
    assert not Path(f"/proc/{hub.pid}").exists() or not _alive(hub.pid)
    assert hub.stop() == 0 and hub.kill() == 0  # once stopped, both are harmless


def test_a_hub_that_exits_early_is_reported_with_the_end_of_its_log(fakes: Fakes) -> None:
    hub = fakes.start(EXITING)
    t0 = time.monotonic()
    with pytest.raises(HubExited) as caught:
        hub.wait_ready(f"http://127.0.0.1:{free_port()}{API_PATH}", timeout=60)
    assert time.monotonic() - t0 < 30  # not the whole timeout
    assert caught.value.status == 7
    assert "the config is broken" in caught.value.tail and "the config is broken" in str(caught.value)
    assert isinstance(caught.value, RuntimeError)
    # exited, not reaped: the pid stays reserved until stop or kill
    assert hub.status() == 7 and Path(f"/proc/{hub.pid}").exists() and hub.proc.returncode is None
    assert hub.stop() == 7


def test_a_hub_that_never_answers_times_out(fakes: Fakes) -> None:
    hub = fakes.start(STUBBORN)
    with pytest.raises(HubTimeout, match="did not answer"):
        hub.wait_ready(f"http://127.0.0.1:{free_port()}{API_PATH}", timeout=0.5)
    assert "ready" in hub.log_tail()
    assert hub.wait_ready(f"http://127.0.0.1:{free_port()}{API_PATH}", 30, cancelled=lambda: True) is False
    assert hub.kill() == -signal.SIGKILL


def test_stop_kills_a_child_left_in_the_group_that_ignores_sigterm(fakes: Fakes) -> None:
    hub = fakes.start(LEAVING_A_CHILD)
    child = int(_wait_for_line(fakes.log))
    fakes.pids.append(child)
    assert os.getpgid(child) == hub.pid
    killed: list[bool] = []
    assert hub.stop(timeout=30, on_kill=lambda: killed.append(True)) == 3
    assert not killed  # it stopped at SIGTERM
    assert _until(lambda: not _alive(child)), "the child survived"


def test_stop_kills_a_hub_that_ignores_sigterm_after_the_timeout_or_when_forced(fakes: Fakes) -> None:
    hub = fakes.start(STUBBORN)
    _wait_for_line(fakes.log)
    killed: list[bool] = []
    t0 = time.monotonic()
    assert hub.stop(timeout=0.5, on_kill=lambda: killed.append(True)) == -signal.SIGKILL
    assert killed == [True] and time.monotonic() - t0 < 10
    fakes.log.unlink()
    hub = fakes.start(STUBBORN)
    _wait_for_line(fakes.log)
    t0 = time.monotonic()
    assert hub.stop(timeout=300, force=lambda: time.monotonic() - t0 > 0.3) == -signal.SIGKILL
    assert time.monotonic() - t0 < 10


def test_kill_ends_the_hub_alone(fakes: Fakes) -> None:
    hub = fakes.start(LEAVING_A_CHILD)
    child = int(_wait_for_line(fakes.log))
    fakes.pids.append(child)
    assert hub.kill() == -signal.SIGKILL
    # what the hub started survives it, as after a crash
    assert _alive(child)


def test_status_after_someone_else_reaped_the_hub(fakes: Fakes) -> None:
    hub = fakes.start(EXITING)
    assert hub.proc.wait(timeout=30) == 7  # a caller's own poll() or wait()
    assert hub.status() == 7 and hub.stop() == 7


@needs(os.geteuid() == 0, "starting a hub as another user needs root")
def test_an_unprivileged_hub_runs_with_the_given_ids(fakes: Fakes, tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    os.chmod(tmp_path, 0o755)
    hub = fakes.start(STUBBORN, user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])
    _wait_for_line(fakes.log)
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{hub.pid}/status").read_text().splitlines())
    assert fields["Uid"].split()[0] == str(nobody.pw_uid)
    assert fields["Gid"].split()[0] == str(nobody.pw_gid)
    assert fields["Groups"].split() in ([], [str(nobody.pw_gid)])
    assert hub.stop(timeout=0.5) == -signal.SIGKILL


def test_free_port_and_log_helpers(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    missing = tmp_path / "none.log"
    assert log_tail(missing) == "" and log_offset(missing) == 0
    log = tmp_path / "hub.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(log, 3) == "line 97\nline 98\nline 99"
    assert log_offset(log) == log.stat().st_size


def test_the_environment_keeps_this_process_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.setenv("SOMETHING", "kept")
    env = hub_environment("/venv/bin")
    assert env["PATH"] == "/venv/bin:/usr/bin" and env["SOMETHING"] == "kept"
    monkeypatch.delenv("PATH")
    assert hub_environment("/venv/bin")["PATH"] == "/venv/bin:/usr/bin:/bin"
