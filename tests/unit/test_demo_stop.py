"""How ``jupyterhub-hpc demo`` stops, without a hub: its output into a dead pipe or a closed
terminal, its signals, the hub's process group, and the jobs' leftover processes.
(``tests/local/test_demo.py`` runs the whole demo in a pipeline and stops it.)"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyterhub_hpc import demo as demo_mod
from jupyterhub_hpc.demo import Demo, _leftovers
from jupyterhub_hpc.hubprocess import HubProcess
from jupyterhub_hpc.local_scheduler.store import ENV_MARKER, ProcessId

SRC = str(Path(demo_mod.__file__).resolve().parents[1])

#: writes twice to standard output, then reports on standard error that it went on
WRITER = """
import sys
from jupyterhub_hpc.demo import say
sys.stdin.readline()
{write}("Stopping JupyterHub and its servers...")
{write}("Demo stopped; nothing of it is left running.")
sys.stderr.write("went on\\n")
"""


def _python(code: str, **kwargs: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen([sys.executable, "-c", code], env=env, **kwargs)  # type: ignore[call-overload, no-any-return]


def _write_into_dead_pipe(write: str) -> tuple[int, str]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone: as tee after Ctrl-C
    try:
        proc = _python(
            WRITER.format(write=write), stdin=subprocess.PIPE, stdout=write_end, stderr=subprocess.PIPE
        )
    finally:
        os.close(write_end)
    _, err = proc.communicate(b"\n", timeout=30)
    return proc.returncode, err.decode()


def test_say_into_a_pipe_without_reader_goes_on_and_exits_cleanly() -> None:
    code, err = _write_into_dead_pipe("say")
    assert (code, err) == (0, "went on\n")
    # plain print dies of it: what the demo did before
    code, err = _write_into_dead_pipe("print")
    assert code != 0 and "BrokenPipeError" in err and "went on" not in err


def test_say_into_a_closed_terminal_goes_on() -> None:
    master, slave = os.openpty()
    try:
        proc = _python(
            WRITER.format(write="say"), stdin=subprocess.PIPE, stdout=slave, stderr=subprocess.PIPE
        )
    finally:
        os.close(slave)
    os.close(master)  # the terminal is gone: writes to it fail with EIO
    _, err = proc.communicate(b"\n", timeout=30)
    assert (proc.returncode, err.decode()) == (0, "went on\n")


def _bare_demo(tmp_path: Path) -> Demo:
    """A Demo without its constructor (which creates a user and a directory)."""
    demo = object.__new__(Demo)
    demo.args = argparse.Namespace(backend="local")
    demo.workdir = tmp_path
    demo.state_dir = tmp_path / "jobs"
    demo.state_dir.mkdir(exist_ok=True)
    demo.hub = None
    demo.proxy = None
    demo.stopping = demo.force = False
    demo.interrupted = None
    return demo


def test_one_ctrl_c_delivered_twice_does_not_force_a_second_one_later_does(tmp_path: Path) -> None:
    demo = _bare_demo(tmp_path)
    demo._on_signal(signal.SIGINT, None)
    demo._on_signal(signal.SIGINT, None)  # the same keypress, relayed once more (sudo, a shell)
    assert demo.stopping and not demo.force
    assert demo.interrupted is not None
    demo.interrupted -= demo_mod.FORCE_AFTER  # as if the first came that long ago
    demo._on_signal(signal.SIGINT, None)
    assert demo.force


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_repeated_hangup_or_term_stops_without_forcing(tmp_path: Path, signum: int) -> None:
    demo = _bare_demo(tmp_path)
    for _ in range(3):
        demo._on_signal(signum, None)
        time.sleep(demo_mod.FORCE_AFTER / 2)
    assert demo.stopping and not demo.force


@pytest.mark.parametrize("ignored", [False, True], ids=["terminal", "nohup"])
def test_sighup_stops_the_demo_unless_nohup(ignored: bool) -> None:
    code = f"""
import argparse, signal
from jupyterhub_hpc.demo import Demo
# a terminal's SIGHUP is the default disposition, nohup's is ignored (whatever ran this test)
signal.signal(signal.SIGHUP, signal.SIG_IGN if {ignored} else signal.SIG_DFL)
demo = object.__new__(Demo)
demo.stopping = demo.force = False
demo.interrupted = None
demo.install_signals()
print(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN, signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN)
signal.raise_signal(signal.SIGHUP)
print(demo.stopping)
"""
    proc = _python(code, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.decode().split() == [str(ignored), "True", str(not ignored)]


def _alive(pid: int) -> bool:
    """The process exists and has not ended (a zombie has): the local scheduler's /proc reader."""
    process = ProcessId.of(pid)
    return process is not None and process.alive()


#: a "hub": leaves a child in its process group that ignores SIGTERM, exits at SIGTERM
FAKE_HUB = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
print(child.pid, flush=True)  # after the handler: the test signals as soon as it reads this
time.sleep(300)
"""


def test_stop_hub_kills_what_the_hub_left_in_its_process_group(tmp_path: Path) -> None:
    demo = _bare_demo(tmp_path)
    hub = _python(FAKE_HUB, stdout=subprocess.PIPE, start_new_session=True)
    assert hub.stdout is not None
    child = int(hub.stdout.readline())
    try:
        demo.hub = HubProcess(hub, tmp_path / "jupyterhub.log")
        assert demo.hub_status() is None
        os.kill(hub.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while demo.hub_status() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # exited, not reaped: its pid (and so its group) cannot be anyone else's yet
        assert demo.hub_status() == 3 and Path(f"/proc/{hub.pid}").exists()
        assert _alive(child) and os.getpgid(child) == hub.pid
        demo.stop_hub(timeout=30)
        assert hub.returncode == 3
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        for pid in (child, hub.pid):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        hub.wait()


def test_stop_jobs_kills_what_of_the_jobs_would_not_stop(tmp_path: Path) -> None:
    demo = _bare_demo(tmp_path)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    # a job process (it carries the job's marker) and one that names the state directory
    # (Popen returns after the exec: command lines and environments are final)
    job = subprocess.Popen(
        [sys.executable, "-c", stubborn], env={**os.environ, ENV_MARKER: f"{demo.state_dir}/7"}
    )
    named = subprocess.Popen([sys.executable, "-c", stubborn, str(demo.state_dir / "7")])
    other = subprocess.Popen([sys.executable, "-c", stubborn])
    try:
        # a loaded machine may show a just-started process's old command line for a moment
        want, deadline = sorted([job.pid, named.pid]), time.monotonic() + 10
        while sorted(_leftovers(demo.state_dir)) != want and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(_leftovers(demo.state_dir)) == want
        demo.stop_jobs(timeout=0.5)
        assert job.wait(timeout=10) == -signal.SIGKILL
        assert named.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None
        assert _leftovers(demo.state_dir) == []
    finally:
        for proc in (job, named, other):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
