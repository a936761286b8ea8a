"""JupyterHub as a subprocess: ``jupyterhub -f CONFIG`` started, waited for, stopped.

``jupyterhub-hpc demo`` runs its hub with this module; the test suite and the benchmarks
run theirs with it too. A hub started here runs in a session (and so a process group) of
its own, with its output in a log file. Its exit is noticed without reaping it: until
:meth:`HubProcess.stop` or :meth:`HubProcess.kill` reaps it, its pid cannot be given to
another process, nor its process group, which ``stop`` then empties.

Standard library only: the readiness check is one HTTP GET with ``urllib``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "API_PATH",
    "HubError",
    "HubExited",
    "HubProcess",
    "HubTimeout",
    "free_port",
    "hub_environment",
    "log_offset",
    "log_tail",
]

#: what to poll below a hub's public URL: it answers 200 (its version) once hub and proxy run
API_PATH = "/hub/api/"


class HubError(RuntimeError):
    """The hub did not come up."""


class HubExited(HubError):
    """The hub exited while it was waited for; ``status`` is its exit status."""

    def __init__(self, status: int, tail: str) -> None:
        super().__init__(f"hub exited {status}:\n{tail}")
        self.status = status
        self.tail = tail


class HubTimeout(HubError):
    """The hub still runs but did not answer in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the kernel's choice; it may be taken later)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def hub_environment(bin_dir: Path | str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with ``extra`` and ``bin_dir`` first on ``PATH``: where the
    hub finds the programs of its venv (the proxy, the package's commands)."""
    env = dict(os.environ)
    env.update(extra or {})
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def log_tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of the log at ``path`` ('' if it cannot be read)."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def log_offset(path: Path) -> int:
    """The log's size now: where what is written from now on starts (0 if there is none)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class HubProcess:
    """One hub process, the leader of its own process group, with its log file."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    @classmethod
    def start(
        cls,
        config: Path,
        *,
        log_path: Path,
        command: Sequence[str] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: int | None = None,
        group: int | None = None,
        extra_groups: Sequence[int] | None = None,
    ) -> HubProcess:
        """Start ``COMMAND -f CONFIG ARGS`` in a new session, output appended to ``log_path``.

        ``command`` defaults to this interpreter's ``python -m jupyterhub``; ``args`` are more
        of its options (``--JupyterHub.init_spawners_timeout=10``); ``env`` defaults to this
        process's environment (see :func:`hub_environment`). ``user``, ``group`` and
        ``extra_groups`` (ids) run an unprivileged hub: ``extra_groups=[]`` drops the
        supplementary groups. Standard input is ``/dev/null``.
        """
        argv = [*(command or (sys.executable, "-m", "jupyterhub")), "-f", str(config), *args]
        with open(log_path, "ab") as log:
            # its own session: a terminal's signals (Ctrl-C, hangup) reach the caller only,
            # which stops the hub in order and then empties its process group
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user,
                group=group,
                extra_groups=extra_groups,
            )
        return cls(proc, log_path)

    @property
    def pid(self) -> int:
        """The hub's pid, also its process group's id."""
        return self.proc.pid

    def status(self) -> int | None:
        """None while the hub runs, else its exit status (negative: the signal that ended it).

        The hub is not reaped here: its pid, and with it its process group, stay reserved
        until :meth:`stop` or :meth:`kill`."""
        if self.proc.returncode is not None:
            return self.proc.returncode
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped already (someone called the Popen's poll or wait)
            return self.proc.wait()
        if info is None:
            return None
        if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
            return -info.si_status
        return info.si_status

    def wait_ready(
        self,
        url: str,
        timeout: float,
        *,
        interval: float = 0.2,
        cancelled: Callable[[], bool] | None = None,
    ) -> bool:
        """Poll ``url`` (a hub's public URL + :data:`API_PATH`) until it answers 200.

        True once it does; False as soon as ``cancelled()`` is true. Raises
        :class:`HubExited` (with the end of the log) when the hub exits first and
        :class:`HubTimeout` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while cancelled is None or not cancelled():
            status = self.status()
            if status is not None:
                raise HubExited(status, self.log_tail())
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() >= deadline:
                raise HubTimeout(f"hub did not answer {url} in {timeout:g} s:\n{self.log_tail()}")
            time.sleep(interval)
        return False

    def stop(
        self,
        timeout: float = 60.0,
        *,
        force: Callable[[], bool] | None = None,
        on_kill: Callable[[], None] | None = None,
    ) -> int:
        """Stop the hub; its exit status.

        SIGTERM to the hub (which stops the proxy it started), then wait up to ``timeout``
        seconds, or until ``force()`` is true. A hub still running then is killed:
        ``on_kill()`` is called first. Last, SIGKILL to its process group, which only the
        hub and the commands it left are in (it is not reaped before), and the hub is
        reaped. Harmless on a hub that exited or was stopped already."""
        if self.proc.returncode is None:
            if self.status() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while self.status() is None and time.monotonic() < deadline:
                    if force is not None and force():
                        break
                    time.sleep(0.2)
                if self.status() is None and on_kill is not None:
                    on_kill()
            # the group is still the hub's: the hub is not reaped yet
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return self.proc.returncode

    def kill(self, timeout: float = 30.0) -> int:
        """A crash: SIGKILL to the hub alone (what it started survives it), then reap it;
        its exit status."""
        if self.proc.returncode is None:
            if self.status() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)
        return self.proc.returncode

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the hub's log."""
        return log_tail(self.log_path, lines)

    def log_offset(self) -> int:
        """The size of the hub's log now."""
        return log_offset(self.log_path)
