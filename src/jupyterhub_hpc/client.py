"""The scheduler client: every command the hub runs against one scheduler, in one place.

A :class:`SchedulerClient` is built from everything that decides how a scheduler command
runs: the backend (name, cluster, program names: ``scheduler_commands``), the prefixes
(``submit_prefix``, ``status_prefix``, ``cancel_prefix``, ``read_prefix``),
``scheduler_environment``, the SSH settings of a remote submit host and the command
timeout. Its :attr:`~SchedulerClient.key` identifies it; :func:`get_client` keeps one
client per key in the hub process, and the spawner, the shared queue watcher, the
limits cache and ``jupyterhub-hpc sudoers`` all use it:

- :meth:`~SchedulerClient.submit`, :meth:`~SchedulerClient.cancel`,
  :meth:`~SchedulerClient.read_output` (as the user, behind their prefix);
- :meth:`~SchedulerClient.status` and :meth:`~SchedulerClient.accounting` (the one
  batched query per interval, behind ``status_prefix``);
- :meth:`~SchedulerClient.limits` (partitions, node sizes, associations: the
  backend's argv builders and pure parsers, as the hub's own account);
- :meth:`~SchedulerClient.reservations` (maintenance windows, as the hub's own account).

:meth:`~SchedulerClient.command` is the one function that turns a backend's argv into
what runs (prefix, environment, SSH); :meth:`~SchedulerClient.run` runs it. On a
remote submit host (``ssh_host``) every command goes over SSH, so the limits are the
login node's, like the submit and the status query; secrets of a submit travel on
standard input, never on a command line (:func:`~jupyterhub_hpc.ssh.secrets_on_stdin`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .backends.base import Backend, QueryError
from .backends.limits import Associations, ClusterLimits
from .backends.reservations import ReservationSnapshot
from .commands import CommandError, CommandResult, expand_prefix, run_command, with_environment
from .ssh import SSHSettings, local_environment, remote_argv, secrets_on_stdin
from .states import JobStatus

__all__ = ["Command", "Prefixes", "SchedulerClient", "all_clients", "get_client"]

#: the kinds of command, each behind its own prefix
PREFIX_KINDS = ("submit", "status", "cancel", "read")


@dataclass(frozen=True)
class Prefixes:
    """argv put in front of each kind of command (``sudo -n -u {username} --``, or none).
    ``{username}`` is filled per element (:func:`~jupyterhub_hpc.commands.expand_prefix`)."""

    submit: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    cancel: tuple[str, ...] = ()
    read: tuple[str, ...] = ()

    def of(self, kind: str | None) -> tuple[str, ...]:
        if kind is None:
            return ()
        if kind not in PREFIX_KINDS:
            raise ValueError(f"unknown command kind {kind!r}")
        prefix: tuple[str, ...] = getattr(self, kind)
        return prefix


@dataclass(frozen=True)
class Command:
    """What runs for one scheduler command: the local argv, its environment (None: the
    hub's own) and its standard input."""

    argv: tuple[str, ...]
    env: Mapping[str, str] | None = None
    input: str | None = None


@dataclass(frozen=True)
class ClientSettings:
    """Everything but the backend that decides how a command runs (hashable: part of the key)."""

    prefixes: Prefixes = field(default_factory=Prefixes)
    environment: tuple[tuple[str, str], ...] = ()
    ssh: SSHSettings | None = None
    timeout: float = 30.0
    secret_env_names: tuple[str, ...] = ()


class SchedulerClient:
    """Every command of one scheduler (see the module docstring)."""

    def __init__(self, backend: Backend, settings: ClientSettings | None = None) -> None:
        self.backend = backend
        self.settings = settings or ClientSettings()
        #: commands run, by kind (``submit``, ``status``, ``limits``, ...), for the benchmarks and tests
        self.counts: dict[str, int] = {}

    @property
    def key(self) -> tuple[object, ...]:
        """Identifies what this client runs: backend key, prefixes, environment, SSH, timeout."""
        return (*self.backend.key(), self.settings)

    @property
    def environment(self) -> dict[str, str]:
        return dict(self.settings.environment)

    @property
    def remote(self) -> bool:
        return self.settings.ssh is not None

    def describe(self) -> str:
        """``slurm``, ``slurm (cluster c2)``, ``slurm on login.example.org``: for logs."""
        text = self.backend.name + (f" (cluster {self.backend.cluster})" if self.backend.cluster else "")
        return text + (f" on {self.settings.ssh.host}" if self.settings.ssh else "")

    # -- the one place an argv becomes a command ------------------------------------------
    def _prefix_and_environment(
        self, kind: str | None, username: str | None, asked: bool | None
    ) -> tuple[list[str], dict[str, str]]:
        """The prefix of ``kind`` filled for ``username``, and the variables the command gets:
        ``scheduler_environment`` for every command but the output reader (no scheduler
        program), unless the caller says otherwise (``asked``)."""
        prefix = expand_prefix(self.settings.prefixes.of(kind), username=username or "")
        wanted = kind != "read" if asked is None else asked
        return prefix, self.environment if wanted else {}

    def on_submit_host(
        self,
        argv: Sequence[str],
        *,
        kind: str | None = None,
        username: str | None = None,
        scheduler_environment: bool | None = None,
    ) -> list[str]:
        """The argv as it runs on the submit host (this one, or ``ssh_host``): the prefix
        of ``kind`` filled for ``username``, ``env NAME=value ...`` for
        ``scheduler_environment`` when there is a prefix (sudo resets the environment) or
        SSH (which forwards none), then ``argv``. What ``jupyterhub-hpc sudoers`` grants."""
        prefix, environment = self._prefix_and_environment(kind, username, scheduler_environment)
        return remote_argv(prefix, argv, environment)

    def command(
        self,
        argv: Sequence[str],
        *,
        kind: str | None = None,
        username: str | None = None,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        scheduler_environment: bool | None = None,
    ) -> Command:
        """``argv`` behind the prefix of ``kind`` (filled for ``username``), with
        ``scheduler_environment`` (unless told otherwise; the output reader is no
        scheduler program) and ``env`` (the process environment; over SSH only the
        ``secret_env_names`` of it travel, on standard input). Pure: nothing runs."""
        prefix, environment = self._prefix_and_environment(kind, username, scheduler_environment)
        ssh = self.settings.ssh
        if ssh is None:
            full, process_env = with_environment(prefix, argv, environment, env)
            return Command(tuple(full), process_env, input)
        secrets = {k: v for k, v in (env or {}).items() if k in self.settings.secret_env_names}
        remote, stdin = secrets_on_stdin(remote_argv(prefix, argv, environment), secrets, input)
        return Command(tuple(ssh.argv(remote)), local_environment(), stdin)

    async def run(
        self,
        argv: Sequence[str],
        *,
        kind: str | None = None,
        username: str | None = None,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        scheduler_environment: bool | None = None,
        umask: int = -1,
        count: str = "",
        timeout: float | None = None,
    ) -> CommandResult:
        """Run one command (:meth:`command`) within ``timeout`` (default: the client's); raises
        :class:`~jupyterhub_hpc.commands.CommandError` when it cannot run or times out."""
        command = self.command(
            argv,
            kind=kind,
            username=username,
            env=env,
            input=input,
            scheduler_environment=scheduler_environment,
        )
        if self.settings.ssh is not None:
            self.settings.ssh.ensure_control_dir()
        label = count or kind or "other"
        self.counts[label] = self.counts.get(label, 0) + 1
        return await run_command(
            command.argv,
            input=command.input,
            env=command.env,
            timeout=self.settings.timeout if timeout is None else timeout,
            umask=umask,
        )

    # -- the operations ------------------------------------------------------------------------
    async def submit(
        self, argv: Sequence[str], script: str, *, username: str, env: Mapping[str, str], umask: int
    ) -> CommandResult:
        """Submit as ``username``: the script (or submit description) on standard input."""
        return await self.run(argv, kind="submit", username=username, env=env, input=script, umask=umask)

    async def cancel(self, job_id: str, *, username: str) -> None:
        """Cancel one job as ``username``; "already gone" is no error (the backend decides)."""
        result = await self.run(self.backend.cancel_argv(job_id), kind="cancel", username=username)
        self.backend.parse_cancel(result)

    async def status(self, job_ids: Sequence[str], timeout: float | None = None) -> dict[str, JobStatus]:
        """One batched status query for ``job_ids``; raises CommandError or QueryError."""
        result = await self.run(self.backend.status_argv(job_ids), kind="status", timeout=timeout)
        return self.backend.parse_status(result, job_ids)

    def has_accounting(self) -> bool:
        return self.backend.accounting_argv(["0"]) is not None

    async def accounting(self, job_ids: Sequence[str], timeout: float | None = None) -> dict[str, JobStatus]:
        """What accounting says about jobs that left the live queue ({} without accounting)."""
        argv = self.backend.accounting_argv(job_ids)
        if argv is None:
            return {}
        result = await self.run(argv, kind="status", count="accounting", timeout=timeout)
        return self.backend.parse_accounting(result, job_ids)

    async def read_output(
        self, reader: Sequence[str], path: str, lines: int, *, username: str
    ) -> CommandResult:
        """The last ``lines`` of a job's output file, read as ``username`` by ``reader``."""
        argv = [*reader, "--lines", str(lines), path]
        return await self.run(argv, kind="read", username=username)

    async def limits(self, timeout: float | None = None) -> ClusterLimits:
        """Partitions and node sizes (and associations where the scheduler keeps them),
        queried as the hub's own account; ``live=False`` for a backend without such a
        query. Raises CommandError or QueryError when the partition query fails; a
        failing association query only leaves ``associations`` None."""
        argv = self.backend.limits_argv()
        if argv is None:
            return ClusterLimits(fetched_at=time.time())
        result = await self.run(argv, count="limits", timeout=timeout)
        if not result.ok:
            raise QueryError(result.stderr.strip() or f"{argv[0]} exited {result.returncode}")
        try:
            partitions = self.backend.parse_limits(result)
        except ValueError as exc:
            raise QueryError(str(exc)) from None
        associations: dict[str, Associations] | None = None
        accounts = self.backend.associations_argv()
        if accounts is not None:
            try:
                found = await self.run(accounts, count="associations", timeout=timeout)
                if found.ok:
                    associations = self.backend.parse_associations(found)
            except (CommandError, ValueError):
                associations = None
        return ClusterLimits(
            partitions=partitions, fetched_at=time.time(), live=True, error=None, associations=associations
        )

    async def reservations(self, timeout: float | None = None) -> ReservationSnapshot:
        """The scheduler's reservations, queried as the hub's own account, with the nodes of
        each partition (asked only when a maintenance reservation exists); ``live=False``
        for a backend without reservations. Raises CommandError or QueryError."""
        argv = self.backend.reservations_argv()
        if argv is None:
            return ReservationSnapshot(fetched_at=time.time())
        result = await self.run(argv, count="reservations", timeout=timeout)
        if not result.ok:
            raise QueryError(result.stderr.strip() or f"{argv[0]} exited {result.returncode}")
        try:
            found = tuple(self.backend.parse_reservations(result))
        except ValueError as exc:
            raise QueryError(str(exc)) from None
        partition_nodes: dict[str, frozenset[str]] = {}
        nodes_argv = self.backend.partition_nodes_argv()
        if nodes_argv is not None and any(r.maintenance for r in found):
            listed = await self.run(nodes_argv, count="partition_nodes", timeout=timeout)
            if not listed.ok:
                raise QueryError(listed.stderr.strip() or f"{nodes_argv[0]} exited {listed.returncode}")
            try:
                partition_nodes = self.backend.parse_partition_nodes(listed)
            except ValueError as exc:
                raise QueryError(str(exc)) from None
        return ReservationSnapshot(found, partition_nodes, fetched_at=time.time(), live=True)


_CLIENTS: dict[tuple[object, ...], SchedulerClient] = {}


def get_client(backend: Backend, settings: ClientSettings | None = None) -> SchedulerClient:
    """The one client for ``backend`` with ``settings`` in this process, created on first use."""
    client = SchedulerClient(backend, settings)
    return _CLIENTS.setdefault(client.key, client)


def all_clients() -> list[SchedulerClient]:
    """Every client of this process (:func:`get_client`'s registry)."""
    return list(_CLIENTS.values())
