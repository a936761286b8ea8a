"""How a spawner reaches its scheduler: the backend, the hub's shared client and the shared watcher.

:class:`SchedulerAccess` is the part of :class:`~jupyterhub_hpc.spawner.HPCSpawnerBase` that turns
its settings (``backend``, ``cluster``, ``scheduler_commands``, the prefixes, the submit host,
``command_timeout``, the status intervals) into the objects every scheduler call goes through: one
:class:`~jupyterhub_hpc.client.SchedulerClient` per key for the whole hub, and one
:class:`~jupyterhub_hpc.watcher.QueueWatcher` per client. The job's own backend and cluster
(``job_backend``, ``job_cluster``, kept in the spawner's state) win over the configured ones, so a
re-adopted job is followed where it was submitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import metrics
from .backends import Backend, backend_class
from .client import ClientSettings, Prefixes, SchedulerClient, get_client
from .options import HPCSpawnerOptions
from .ssh import SubmitHostOptions
from .watcher import QueueWatcher, WatcherSettings, get_watcher

__all__ = ["SchedulerAccess"]


class SchedulerAccess(HPCSpawnerOptions, SubmitHostOptions):
    """The scheduler side of a spawner (a mixin of :class:`~jupyterhub_hpc.spawner.HPCSpawnerBase`)."""

    #: set by the spawner when it submits (and by ``load_state``): where its job is
    job_backend: str
    job_cluster: str
    #: the spawner's logger (``Spawner.log``)
    log: Any

    def make_backend(
        self, name: str | None = None, cluster: str | None = None, commands: Mapping[str, str] | None = None
    ) -> Backend:
        cls = backend_class(name or self.job_backend or self.backend)
        return cls(
            cluster=self.cluster if cluster is None else cluster,
            commands=self.scheduler_commands if commands is None else commands,
        )

    def client_settings(self, environment: Mapping[str, str] | None = None) -> ClientSettings:
        """How this spawner's scheduler commands run: prefixes, ``scheduler_environment``
        (or ``environment``), the submit host's SSH settings, ``command_timeout``."""
        return ClientSettings(
            prefixes=Prefixes(
                submit=tuple(self.submit_prefix),
                status=tuple(self.status_prefix),
                cancel=tuple(self.cancel_prefix),
                read=tuple(self.read_prefix),
            ),
            environment=tuple(
                sorted((self.scheduler_environment if environment is None else environment).items())
            ),
            ssh=self.ssh_settings() if self.ssh_host else None,
            timeout=float(self.command_timeout),
            secret_env_names=tuple(self.secret_env_names),
        )

    def scheduler_client(
        self,
        backend: str | None = None,
        cluster: str | None = None,
        commands: Mapping[str, str] | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> SchedulerClient:
        """The hub's one client of a scheduler (this spawner's by default; a profile's
        ``backend``/``cluster`` with its own commands and environment otherwise),
        shared with every spawner, the watcher and the limits cache of the same key."""
        return get_client(self.make_backend(backend, cluster, commands), self.client_settings(environment))

    @property
    def client(self) -> SchedulerClient:
        """The scheduler client of this spawner's job (or of its next one): rebuilt when
        what it is built from changes (a profile may set backend, cluster, commands)."""
        built_from = (
            self.job_backend or self.backend,
            self.job_cluster or self.cluster,
            dict(self.scheduler_commands),
            self.client_settings(),
        )
        cached: tuple[Any, SchedulerClient] | None = getattr(self, "_client_cache", None)
        if cached is None or cached[0] != built_from:
            cached = (built_from, self.scheduler_client(cluster=self.job_cluster or None))
            self._client_cache = cached
        return cached[1]

    @property
    def scheduler(self) -> Backend:
        """The scheduler backend of this spawner's job: its argv builders and parsers."""
        return self.client.backend

    @property
    def watcher(self) -> QueueWatcher:
        metrics.ensure_registered()  # /hub/metrics reads the watchers from now on
        return get_watcher(
            self.client,
            settings=WatcherSettings(
                interval=self.status_interval,
                fast_interval=self.status_fast_interval,
                timeout=self.command_timeout,
                max_backoff=self.status_max_backoff,
            ),
            log=self.log,
        )
