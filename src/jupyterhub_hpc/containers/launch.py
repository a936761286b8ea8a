"""The job's server in a container (issue 17), the launcher's side.

When the spawner chose a container image, the job's environment holds its
:class:`~jupyterhub_hpc.containers.runtimes.ContainerSpec` (``JUPYTERHUB_HPC_CONTAINER``) and the
user's identity (``JUPYTERHUB_HPC_IDENTITY``). The launcher then stays outside the container (it
picks the port, proves the listener and reports it, as always) and starts only the server command
inside, through :func:`~jupyterhub_hpc.containers.runtimes.container_command`:

* the job's private directory is bound at its own path, so the server's runtime files and
  kernel sockets stay where only the user can reach them;
* every variable of the server's environment is passed in by name (podman ``--env NAME``,
  Apptainer ``APPTAINERENV_NAME``), never by value in the argv, except those that describe the
  container's own system (``PATH``, ``HOME``, ``LD_*``, ...);
* the start hooks, when ``hook_dir`` is a bind, are checked on the host (:func:`host_hook_problems`:
  root's or the user's, writable by nobody else), where their owners are still visible;
* the init inside is given :data:`~jupyterhub_hpc.containers.report.PROGRESS_ENV`, so the admin's
  start hooks' lines show in the spawn progress;
* podman writes the container process's pid into the private directory (``--pidfile``): its
  process is not a descendant of the launcher (conmon starts it), so the listener proof takes it
  as one more root of the server's process tree;
* podman keeps this job's state (its storage root, run and tmp directories, and its own
  ``XDG_RUNTIME_DIR``) inside the private directory and reads the image from the user's (or the
  site's) image store as an additional, read-only store. So the pause process that rootless podman
  leaves behind is this job's alone, and :meth:`ContainerLaunch.cleanup` ends it when the server
  has ended (measured: otherwise it outlives the Slurm job, and every job of the user shares it).

Imported by the launcher (:mod:`jupyterhub_hpc.singleuser.launcher`) only when a container is
asked for: it needs pydantic, which the site environment has as a JupyterHub dependency; without
a container, the launcher stays standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping

from ..identity import IDENTITY_ENV, IdentityError, UserIdentity
from ..singleuser.listeners import own_processes, process_tree
from ..singleuser.private import PrivateDir
from .report import PROGRESS_ENV, progress_url
from .runtimes import CONTAINER_ENV, Bind, ContainerPlanError, ContainerSpec, container_command

__all__ = ["ContainerLaunch", "container_launch", "host_hook_problems"]

#: the container's own: never passed in from the job's environment
KEEP_OUT = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "_",
        "TERM",
        "TMPDIR",
        "XDG_RUNTIME_DIR",
    }
)
KEEP_OUT_PREFIXES = ("LD_", "BASH_FUNC_", "SLURM_SPANK_")


class ContainerLaunch:
    """One job's container: the argv of each server attempt, its process, its cleanup."""

    def __init__(self, spec: ContainerSpec, identity: UserIdentity, private: PrivateDir) -> None:
        if identity.uid != os.getuid():
            raise ContainerPlanError(
                f"the job runs as uid {os.getuid()}, the hub resolved {identity.describe()}: "
                "the node's and the hub's user databases disagree"
            )
        self.spec = spec
        self.identity = identity
        self.private = private
        self.pidfile = self.conmon_pidfile = self.podman_state = self.podman_runtime = ""
        if spec.runtime.runtime == "podman":
            self.pidfile = os.path.join(private.path, "container.pid")
            self.conmon_pidfile = os.path.join(private.path, "conmon.pid")
            self.podman_state = private.subdir("podman")
            self.podman_runtime = os.path.join(self.podman_state, "xdg")
            os.mkdir(self.podman_runtime, 0o700)

    def command(self, command: list[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """(argv, environment) of one server attempt; ``env`` is the server's environment. The
        init inside is told where to report its hooks' lines (:data:`~.report.PROGRESS_ENV`)."""
        if env.get("JUPYTERHUB_API_URL"):
            env = {**env, PROGRESS_ENV: progress_url(env["JUPYTERHUB_API_URL"])}
        names = sorted(k for k in env if k not in KEEP_OUT and not k.startswith(KEEP_OUT_PREFIXES))
        made = container_command(
            self.spec.image,
            self.spec.runtime,
            self.identity,
            command,
            init=self.spec.runtime.init,
            env_names=names,
            environment=env,
            binds=[Bind(source=self.private.path, writable=True)],
            pidfile=self.pidfile,
            conmon_pidfile=self.conmon_pidfile,
            state_dir=self.podman_state,
        )
        environment = {**env, **made.env}
        if self.podman_runtime:
            environment["XDG_RUNTIME_DIR"] = self.podman_runtime
            for stale in (self.pidfile, self.conmon_pidfile):  # an earlier attempt's
                if os.path.exists(stale):
                    os.unlink(stale)
        return made.argv, environment

    def server_pids(self) -> set[int]:
        """The container's own process (podman), to be counted as the server's."""
        pid = _pid_in(self.pidfile)
        return set() if pid is None else {pid}

    def cleanup(self, grace: float = 3.0) -> list[str]:
        """End what the runtime left running for this job; what was done. For podman: its
        conmon (which runs ``podman container cleanup`` once the container has exited) is given
        ``grace`` seconds to finish, then it and what it started are killed; then the job's
        pause process. Called once the server has ended, before the private directory goes."""
        done: list[str] = []
        if not self.podman_runtime:
            return done
        deadline = time.monotonic() + grace
        conmon = _pid_in(self.conmon_pidfile)
        if conmon is not None and _owned_by_me(conmon):
            while _owned_by_me(conmon) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _owned_by_me(conmon):
                left = sorted(process_tree(conmon))
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                done.append(f"killed podman's conmon {conmon} and what it ran ({len(left)} processes)")
        # conmon's exit command (``podman --root=<this job's state> container cleanup``) outlives it
        while (helpers := _using(f"--root={self.podman_state}/root")) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in helpers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if helpers:
            done.append(f"killed {len(helpers)} podman processes of this job still running")
        pause = _pid_in(os.path.join(self.podman_state, "tmp", "pause.pid"))
        if pause is not None and _owned_by_me(pause):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pause, signal.SIGKILL)
                done.append(f"ended podman's pause process {pause}")
        return done


def _using(argument: str) -> list[int]:
    """The pids of this uid's processes with ``argument`` in their command line."""
    found = []
    for pid in own_processes():
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                words = handle.read().split(b"\0")
        except OSError:
            continue
        if argument.encode() in words:
            found.append(pid)
    return found


def _pid_in(path: str) -> int | None:
    if not path:
        return None
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def _owned_by_me(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}").st_uid == os.getuid()
    except OSError:
        return False


def host_hook_problems(spec: ContainerSpec, uid: int) -> list[str]:
    """What is wrong with the start hooks as the host sees them: each hook owned by neither root
    nor ``uid``, or writable by others. Inside the container's user namespace every owner but the
    user shows as the kernel's overflow uid, so the init cannot tell root's hooks from another
    user's; the launcher checks them here, on the host, when ``hook_dir`` is (under) a bind."""
    hook_dir = spec.runtime.hook_dir
    host = ""
    for bind in spec.runtime.binds:
        if hook_dir == bind.destination or hook_dir.startswith(bind.destination.rstrip("/") + "/"):
            host = bind.source + hook_dir[len(bind.destination.rstrip("/")) :]
    if not host:
        return []  # in the image itself: the admin's listed image (see ``audit --image``)
    problems = []
    try:
        names = sorted(os.listdir(host))
    except OSError:
        return []  # the init says it cannot read the directory
    for name in names:
        try:
            info = os.stat(os.path.join(host, name))
        except OSError:
            continue
        if info.st_uid not in (0, uid):
            problems.append(f"{host}/{name} is owned by uid {info.st_uid}, neither the user nor root")
        elif info.st_mode & 0o022:
            problems.append(f"{host}/{name} is writable by others than its owner")
    return problems


def container_launch(env: Mapping[str, str], private: PrivateDir) -> ContainerLaunch | None:
    """The job's container, or None when its server runs without one; SystemExit with the reason
    when the job's description of it cannot be used."""
    text = env.get(CONTAINER_ENV)
    if not text:
        return None
    try:
        spec = ContainerSpec.from_env(text)
        identity = UserIdentity.from_env(env.get(IDENTITY_ENV, ""))
        launch = ContainerLaunch(spec, identity, private)
    except (ValueError, IdentityError) as exc:  # pydantic's ValidationError is a ValueError
        raise SystemExit(f"jupyterhub-hpc-singleuser: cannot start the container: {exc}") from None
    problems = host_hook_problems(spec, os.getuid())
    if problems:
        raise SystemExit(
            "jupyterhub-hpc-singleuser: cannot start the container: a start hook could run code "
            f"another user may change: {'; '.join(problems)}"
        )
    return launch
