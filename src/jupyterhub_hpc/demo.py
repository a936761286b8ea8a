"""``jupyterhub-hpc demo``: a working hub on this machine, without a config file.

It writes a JupyterHub configuration into a new temporary directory, starts
JupyterHub (which starts configurable-http-proxy) on ``127.0.0.1:8000``, and
prints the URL and a login. Servers are jobs of the ``local`` backend (or of the
real Slurm with ``--backend slurm``) and open JupyterLab. Ctrl-C (SIGINT), SIGTERM
or closing the terminal (SIGHUP) stops the hub and the proxy, cancels every job of
the demo and removes the directory, also when its output went to a pipe that is
gone (``make demo | tee log``, Ctrl-C ends the ``tee`` first).

Run as root, the servers need a real Unix user: the demo creates ``hpcdemo``
(``useradd``) unless ``--user`` names another; it is kept afterwards. Run as an
ordinary user, that user logs in and runs the servers.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from .backends.local import default_program
from .hubprocess import API_PATH, HubError, HubProcess, free_port, hub_environment, log_tail
from .local_scheduler.store import ENV_MARKER, ProcessId, StateDir

__all__ = ["add_arguments", "run"]

DEMO_USER = "hpcdemo"

#: The hub's configuration: constant text, everything variable comes from the settings file.
CONFIG = r"""
import json, os
from jupyterhub_hpc.handlers import hub_template_paths
from jupyterhub_hpc.profiles.handlers import all_handlers

s = json.load(open(os.environ["JUPYTERHUB_HPC_DEMO_SETTINGS"]))
work = s["workdir"]
c.JupyterHub.bind_url = "http://%s:%d" % (s["ip"], s["port"])
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = s["hub_port"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%d" % s["proxy_api_port"]
c.ConfigurableHTTPProxy.pid_file = os.path.join(work, "jupyterhub-proxy.pid")
c.JupyterHub.db_url = "sqlite:///" + os.path.join(work, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(work, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(work, "jupyterhub.pid")
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = s["password"]
c.Authenticator.allowed_users = {s["user"]}
c.JupyterHub.extra_handlers = all_handlers
# the home page with the job card of each server
c.JupyterHub.template_paths = hub_template_paths
# JupyterHub's own setting: keep jobs when the hub stops (what a cluster wants); the demo
# itself cancels whatever is left when it stops
c.JupyterHub.cleanup_servers = False
c.JupyterHub.cleanup_proxy = True
# queued jobs are checked in the background; the hub serves at once
c.JupyterHub.init_spawners_timeout = 1
c.Spawner.default_url = "/lab"
c.HPCSpawner.job_name = s["job_name"]
if s["backend"] == "local":
    c.JupyterHub.spawner_class = "local-hpc"
    c.LocalHPCSpawner.local_state_dir = s["state_dir"]
    c.LocalHPCSpawner.local_max_running = s["max_servers"]
    c.HPCSpawner.job_output = os.path.join(s["log_dir"], "{username}-{job_id}.log")
else:
    c.JupyterHub.spawner_class = "slurm"
c.HPCSpawner.profile_list = s["profiles"]
if not s["root"]:
    c.HPCSpawner.submit_prefix = []
    c.HPCSpawner.cancel_prefix = []
    c.HPCSpawner.read_prefix = []
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8000, help="public port (default 8000)")
    parser.add_argument("--ip", default="127.0.0.1", help="public address (default 127.0.0.1)")
    parser.add_argument(
        "--backend",
        choices=["local", "slurm"],
        default="local",
        help="run servers as local jobs (default) or as jobs of the real Slurm",
    )
    parser.add_argument(
        "--user",
        default=None,
        help=f"the Unix user who logs in (root only; default {DEMO_USER}, created if missing)",
    )
    parser.add_argument("--password", default=None, help="the login password (default: a random one)")
    parser.add_argument(
        "--max-servers",
        type=int,
        default=4,
        help="local backend: servers that run at once; more wait in the queue (default 4)",
    )


def demo_profiles(backend: str) -> list[dict[str, Any]]:
    """Example profiles: what a site's ``profile_list`` looks like (see docs/profiles.md)."""
    small = {
        "display_name": "Small: 1 core, 1 GB, 1 hour",
        "slug": "small",
        "description": "For a quick look.",
        "default": True,
        "spawner_override": {"cpus": 1, "memory": "1G", "walltime": "01:00:00"},
    }
    custom: dict[str, Any] = {
        "display_name": "Custom",
        "slug": "custom",
        "description": "Choose cores, memory and time (the limits are enforced by the hub).",
        "profile_options": {
            "cpus": {
                "type": "integer",
                "display_name": "CPU cores",
                "job_field": "cpus",
                "min": 1,
                "max": 2,
                "default": 1,
            },
            "memory": {
                "type": "memory",
                "display_name": "Memory",
                "min": "256M",
                "max": "2G",
                "default": "1G",
            },
            "walltime": {
                "type": "walltime",
                "display_name": "Time limit",
                "max": "04:00:00",
                "default": "02:00:00",
            },
        },
    }
    if backend == "slurm":
        custom["profile_options"]["partition"] = {
            "type": "partition",
            "display_name": "Partition",
            "choices": {
                "debug": {"display_name": "debug", "default": True},
                "short": {"display_name": "short (5 minutes)"},
            },
        }
    return [small, custom]


#: a second Ctrl-C this long after the first stops the hub at once; one keypress that arrives
#: twice (the terminal's and a relaying parent's, such as sudo) does not
FORCE_AFTER = 1.0


def say(text: str, *, err: bool = False) -> None:
    """Print ``text``; a stream that cannot be written any more (its pipe's reader is gone:
    EPIPE, its terminal closed: EIO) is sent to /dev/null, so that stopping goes on."""
    stream = sys.stderr if err else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):
        _silence(stream)


def _silence(stream: Any) -> None:
    """Point ``stream``'s descriptor at /dev/null: what it still buffers and every later
    write (also the interpreter's last flush at exit) then succeeds."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
        stream.flush()


def _leftovers(state_dir: Path) -> list[int]:
    """Pids of what still runs of the jobs of ``state_dir``: every process whose command line
    names the directory (a supervisor, a ``submit`` still under way, also in the instant
    between its fork and exec of a supervisor) or that carries a job's marker."""
    named = str(state_dir).encode()
    marker = f"{ENV_MARKER}={state_dir}/".encode()
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        # a zombie has neither a command line nor an environment any more
        with contextlib.suppress(OSError):
            if named in Path(entry.path, "cmdline").read_bytes() or any(
                v.startswith(marker) for v in Path(entry.path, "environ").read_bytes().split(b"\0")
            ):
                found.append(int(entry.name))
    return found


def _check_port(ip: str, port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError as exc:
            raise SystemExit(
                f"jupyterhub-hpc demo: cannot use {ip}:{port} ({exc.strerror}); try --port"
            ) from None


def demo_user(requested: str | None) -> str:
    """The user who logs in: as root, ``requested`` or ``hpcdemo`` (created if missing);
    otherwise the current user."""
    if os.geteuid() != 0:
        me = getpass.getuser()
        if requested and requested != me:
            raise SystemExit("jupyterhub-hpc demo: --user needs root; without root you log in as yourself")
        return me
    name = requested or DEMO_USER
    try:
        pwd.getpwnam(name)
    except KeyError:
        if requested:
            raise SystemExit(f"jupyterhub-hpc demo: there is no user {name!r}") from None
        say(f"Creating the Unix user {name} for the demo's servers (remove it with: userdel -r {name})")
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", name], check=True)
    return name


class Demo:
    """One demo run: its directory, its hub, and its cleanup."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = os.geteuid() == 0
        self.user = demo_user(args.user)
        self.password = args.password or secrets.token_urlsafe(9)
        # without symbolic links: the output reader refuses a path through one
        self.workdir = Path(tempfile.mkdtemp(prefix="jupyterhub-hpc-demo-")).resolve()
        # users' jobs must reach their state and log directories, nothing else here
        os.chmod(self.workdir, 0o711)
        self.state_dir = self.workdir / "jobs"
        self.log_dir = self.workdir / "logs"
        for path in (self.state_dir, self.log_dir):
            path.mkdir()
            os.chmod(path, 0o1777)
        self.job_name = f"jhpc-demo-{secrets.token_hex(3)}"
        self.hub_log = self.workdir / "jupyterhub.log"
        self.hub: HubProcess | None = None
        self.proxy: ProcessId | None = None
        self.stopping = False
        self.force = False
        self.interrupted: float | None = None

    @property
    def host(self) -> str:
        """Where this machine reaches the hub's public address."""
        return "127.0.0.1" if self.args.ip in ("", "0.0.0.0", "::") else str(self.args.ip)

    @property
    def url(self) -> str:
        shown = socket.getfqdn() if self.args.ip in ("", "0.0.0.0", "::") else self.args.ip
        return f"http://{shown}:{self.args.port}/"

    def write_config(self) -> Path:
        settings: dict[str, Any] = {
            "workdir": str(self.workdir),
            "ip": self.args.ip,
            "port": self.args.port,
            "hub_port": free_port(),
            "proxy_api_port": free_port(),
            "user": self.user,
            "password": self.password,
            "backend": self.args.backend,
            "state_dir": str(self.state_dir),
            "log_dir": str(self.log_dir),
            "max_servers": self.args.max_servers,
            "job_name": self.job_name,
            "profiles": demo_profiles(self.args.backend),
            "root": self.root,
        }
        path = self.workdir / "settings.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(settings, f)
        (self.workdir / "jupyterhub_config.py").write_text(CONFIG)
        return path

    def start_hub(self) -> None:
        """Start ``python -m jupyterhub`` in a session of its own: Ctrl-C and a closed
        terminal reach the demo only, which stops the hub in order and then kills what is
        left of its process group."""
        settings = self.write_config()
        env = hub_environment(Path(sys.executable).parent, {"JUPYTERHUB_HPC_DEMO_SETTINGS": str(settings)})
        self.hub = HubProcess.start(
            self.workdir / "jupyterhub_config.py", log_path=self.hub_log, env=env, cwd=self.workdir
        )

    def wait_ready(self, timeout: float = 90.0) -> bool:
        """True once the hub answers through the proxy; False if it exits, does not answer
        in ``timeout`` seconds or the demo is stopped meanwhile."""
        assert self.hub is not None
        url = f"http://{self.host}:{self.args.port}{API_PATH}"
        try:
            ready = self.hub.wait_ready(url, timeout, interval=0.3, cancelled=lambda: self.stopping)
        except HubError:
            return False
        if ready:
            self.proxy = self.proxy_process()
        return ready

    def banner(self) -> str:
        where = "jobs of jupyterhub-hpc-local" if self.args.backend == "local" else "Slurm jobs"
        return "\n".join(
            [
                "",
                f"JupyterHub demo is running ({self.args.backend} backend):",
                f"    URL:      {self.url}",
                f"    user:     {self.user}",
                f"    password: {self.password}",
                f"Each server runs as {where}, as {self.user}, and opens JupyterLab.",
                "Profiles on the spawn page: "
                + "; ".join(p["display_name"] for p in demo_profiles(self.args.backend)),
                f"Files of this demo: {self.workdir} (hub log: {self.hub_log.name})",
                "Press Ctrl-C to stop the hub, its servers and their jobs.",
                "",
            ]
        )

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.hub_log, lines)

    # -- stopping --------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # only flags here: the main loop prints and stops (a print could be interrupted itself)
        if signum == signal.SIGINT:
            now = time.monotonic()
            if self.interrupted is None:
                self.interrupted = now
            elif now - self.interrupted >= FORCE_AFTER:
                self.force = True
        self.stopping = True

    def install_signals(self) -> None:
        """SIGINT, SIGTERM and SIGHUP stop the demo; SIGHUP stays ignored under ``nohup``.
        SIGPIPE stays ignored (Python's default): a dead pipe is an error to catch, not death."""
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if signum != signal.SIGHUP or signal.getsignal(signum) != signal.SIG_IGN:
                signal.signal(signum, self._on_signal)

    def hub_status(self) -> int | None:
        """None while the hub runs, else its exit status (negative: the signal). The hub is
        not reaped here: its pid, and with it its process group, stay ours until ``stop_hub``."""
        assert self.hub is not None
        return self.hub.status()

    def stop_hub(self, timeout: float = 90.0) -> None:
        """SIGTERM: the hub stops the proxy; SIGKILL after ``timeout`` (or at a second Ctrl-C).
        Then SIGKILL to its process group, which only it and the commands it runs are in."""
        if self.hub is None:
            return
        self.hub.stop(
            timeout,
            force=lambda: self.force,
            on_kill=lambda: say("Stopping the hub at once; its jobs are still cancelled."),
        )

    def proxy_process(self) -> ProcessId | None:
        """The proxy the hub started (its pid file), identified so that a reused pid is not it."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.workdir / "jupyterhub-proxy.pid").read_text().strip())
            if b"configurable-http-proxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return ProcessId.of(pid)
        return None

    def stop_proxy(self, timeout: float = 10.0) -> None:
        """The proxy runs in a session of its own: SIGTERM, then SIGKILL, to the one the hub
        started (or restarted) if it is still there."""
        proxies = {p for p in (self.proxy, self.proxy_process()) if p is not None and p.alive()}
        for proxy in proxies:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proxy.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(p.alive() for p in proxies) and time.monotonic() < deadline:
            time.sleep(0.1)
        for proxy in proxies:
            if proxy.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proxy.pid, signal.SIGKILL)

    def local_program(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [default_program(), f"--state-dir={self.state_dir}", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    def stop_jobs(self, timeout: float = 30.0) -> None:
        """Cancel every job that has not ended, until none is left: a job whose submission
        the hub still had under way gets its supervisor a moment later and is cancelled then.
        After ``timeout``, SIGKILL to whatever of the jobs still runs."""
        if self.args.backend == "slurm":
            subprocess.run(["scancel", f"--name={self.job_name}"], check=False, capture_output=True)
            return
        state = StateDir(self.state_dir)
        asked: set[tuple[str, ProcessId | None]] = set()
        deadline = time.monotonic() + timeout
        while True:
            jobs = [job for job in state.jobs() if not job.run.final]
            todo = [j.spec.job_id for j in jobs if (j.spec.job_id, j.run.supervisor) not in asked]
            if todo:
                if not asked:
                    say(f"Cancelling {len(todo)} job(s) the hub left: {' '.join(todo)}")
                self.local_program("cancel", *todo)
                asked |= {(j.spec.job_id, j.run.supervisor) for j in jobs}
            left = _leftovers(self.state_dir)
            if not left:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def cleanup(self) -> None:
        """Stop everything; each step runs even if one before it failed."""
        self.stopping = True
        say("Stopping JupyterHub and its servers...")
        failed = False
        for step in (self.stop_hub, self.stop_proxy, self.stop_jobs):
            try:
                step()
            except Exception as exc:
                failed = True
                say(f"jupyterhub-hpc demo: {step.__name__} failed: {exc!r}", err=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
        if not failed:
            say("Demo stopped; nothing of it is left running.")

    def run(self) -> int:
        _check_port(self.args.ip, self.args.port)
        self.install_signals()
        code = 0
        try:
            self.start_hub()
            if self.wait_ready():
                say(self.banner())
            elif not self.stopping:
                say(f"JupyterHub did not start; the end of its log:\n{self.log_tail()}", err=True)
                code = 1
            while code == 0 and not self.stopping and self.hub_status() is None:
                time.sleep(0.3)
            if code == 0 and not self.stopping:
                say(f"JupyterHub exited ({self.hub_status()}):\n{self.log_tail()}", err=True)
                code = 1
        finally:
            self.cleanup()
        return code


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C (or SIGTERM, or SIGHUP); the exit status."""
    return Demo(args).run()
