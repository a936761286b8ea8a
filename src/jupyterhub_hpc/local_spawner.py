"""LocalHPCSpawner: HPCSpawner on the ``local`` backend, with defaults for one machine.

``c.JupyterHub.spawner_class = "local-hpc"`` runs every Jupyter server as a job
of ``jupyterhub-hpc-local`` on the hub's own machine, through the same spawner,
watcher and subprocess path as a batch scheduler. A root hub submits as each
user through ``sudo``; a hub that is not root runs every server as its own user.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping

from traitlets import Float, Integer, Unicode, default

from .backends import Backend, backend_class
from .backends.local import LocalBackend
from .local_scheduler.store import DEFAULT_STATE_DIR, StateDir, StateDirError
from .options import SUDO_AS_USER
from .spawner import HPCSpawner

__all__ = ["LocalHPCSpawner"]


def _hub_is_root() -> bool:
    return os.geteuid() == 0


def _hub_home() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        return os.path.expanduser("~")


class LocalHPCSpawner(HPCSpawner):
    """Jupyter servers as local jobs with a batch job's life cycle (``"local-hpc"``)."""

    local_state_dir = Unicode(
        DEFAULT_STATE_DIR,
        help="""
        State directory of the local scheduler: one sub-directory per job with
        its request, its state and its exit status, kept after the job ended so
        that the hub can tell how it ended, also after a restart. The hub creates
        it (mode 1777 and sticky, like ``/tmp``, so that a root hub's users, who
        submit through ``sudo``, can each add their own jobs). Hubs that should
        not share a queue need different directories.
        """,
    ).tag(config=True)

    local_max_running = Integer(
        4,
        help="""
        How many jobs of the state directory run at once. A server requested
        beyond that waits in the queue (PENDING, with the reason shown on the
        spawn page) until another one stops.
        """,
    ).tag(config=True)

    local_kill_wait = Float(
        10.0,
        help="""
        Seconds a job gets between SIGTERM and SIGKILL when it is cancelled or
        reaches its walltime.
        """,
    ).tag(config=True)

    @default("backend")
    def _default_backend(self) -> str:
        return "local"

    @default("submit_prefix")
    def _default_submit_prefix(self) -> list[str]:
        # the token travels in the environment; root may keep it through sudo without a sudoers rule
        if not _hub_is_root():
            return []
        keep = ",".join(self.secret_env_names)
        return ["sudo", "-n", f"--preserve-env={keep}", "-u", "{username}", "--"]

    @default("cancel_prefix")
    def _default_cancel_prefix(self) -> list[str]:
        return list(SUDO_AS_USER) if _hub_is_root() else []

    @default("read_prefix")
    def _default_read_prefix(self) -> list[str]:
        return list(SUDO_AS_USER) if _hub_is_root() else []

    @default("job_workdir")
    def _default_job_workdir(self) -> str:
        # without root every server runs as the hub's user, in that user's home
        return "{home}" if _hub_is_root() else _hub_home()

    @default("job_output")
    def _default_job_output(self) -> str:
        if _hub_is_root():
            return "{home}/.jupyterhub-hpc-local-{job_id}.log"
        return os.path.join(_hub_home(), ".jupyterhub-hpc-local-{username}-{job_id}.log")

    @default("server_bind")
    def _default_server_bind(self) -> str:
        return "127.0.0.1"

    @default("node_address")
    def _default_node_address(self) -> str:
        return "127.0.0.1"

    @default("status_interval")
    def _default_status_interval(self) -> float:
        # a local status query reads a few small files
        return 5.0

    def make_backend(
        self, name: str | None = None, cluster: str | None = None, commands: Mapping[str, str] | None = None
    ) -> Backend:
        cls = backend_class(name or self.job_backend or self.backend)
        if not issubclass(cls, LocalBackend):
            return super().make_backend(name, cluster, commands)
        try:
            # created by the hub, not by the first user who submits
            StateDir(self.local_state_dir).ensure()
        except (OSError, StateDirError) as exc:
            self.log.error("local scheduler state directory %s: %s", self.local_state_dir, exc)
        return cls(
            cluster=self.cluster if cluster is None else cluster,
            commands=self.scheduler_commands if commands is None else commands,
            state_dir=self.local_state_dir,
            max_running=self.local_max_running,
            kill_wait=self.local_kill_wait,
        )
