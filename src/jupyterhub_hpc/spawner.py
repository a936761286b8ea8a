"""HPCSpawner: a Jupyter server as a batch job, following JupyterHub's Spawner contract.

``start`` validates a typed job request, renders the script, submits it as the
user, **persists the job id at once**, then waits (queue, node, launcher) and
returns the server URL. ``poll`` answers from the shared
:class:`~jupyterhub_hpc.watcher.QueueWatcher`; ``stop`` cancels and returns once
the scheduler confirms. After a hub restart, ``load_state`` + ``poll`` +
``get_url`` re-adopt running *and* queued jobs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import pwd
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from jupyterhub.spawner import Spawner
from sqlalchemy.orm import object_session
from tornado import web
from traitlets import default

from .backends import JobScript, SubmitError
from .backends.base import parse_exit_marker
from .cardoptions import JobCardOptions, announcements_environment
from .certs import SSL_KEY_ENV, SSL_PATH_ENVS, job_certificates
from .commands import CommandError
from .containers.options import ContainerOptions
from .containers.report import LINES_PER_JOB, hook_message
from .containers.runtimes import ContainerPlanError
from .identity import IdentityError
from .idle import IdlePolicy
from .jobcard import JobResources, resources_of
from .maintenance import MaintenanceOptions, keep_fresh, pending_note
from .module_access import ModuleOptions
from .profiles.compat import upgrade_config
from .profiles.mixin import ProfilesMixin
from .progress import end_message, failure_message, queue_message
from .refusal import OptionsRefused
from .request import JobRequest, RequestError
from .scheduler_access import SchedulerAccess
from .singleuser.read_output import MAX_LINES
from .states import JobState, JobStatus

__all__ = ["HPCSpawner", "HPCSpawnerBase", "SlurmSpawner", "token_digest"]

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: the umask jobs are submitted with (their output files are created private)
SUBMIT_UMASK = 0o077


class PortReportTooEarly(ValueError):
    """The job reported its port before the hub recorded the job id: ask it to retry."""


def token_digest(token: str) -> str:
    """What the spawner keeps of its server's token (to recognise the job's callback)."""
    return hashlib.sha256(token.encode()).hexdigest()


def refused_by_scheduler(exc: SubmitError) -> web.HTTPError:
    """HTTP 400 for a valid request the scheduler refused at submission (a time limit over
    the partition's, an unknown account...): the scheduler's own words, not a bare 500."""
    text = "".join(ch if " " <= ch <= "~" else " " for ch in str(exc))
    if len(text) > 500:  # the decisive line comes last (sbatch's, or ssh's after its banner)
        text = "..." + text[-500:]
    return web.HTTPError(400, "The scheduler refused the job: %s", text, reason="Refused by the scheduler")


def invalid_options(exc: RequestError) -> web.HTTPError:
    """HTTP 400 for a request that fails validation (JupyterHub relays an HTTPError
    raised by ``start`` to ``POST /users/:name/server``; an :class:`OptionsRefused` is
    logged without a traceback). The reason is user input: printable ASCII only and
    bounded, as it is also logged."""
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in str(exc))[:300]
    return OptionsRefused(400, "Invalid server options: %s", text, reason="Invalid server options")


class HPCSpawnerBase(
    SchedulerAccess, JobCardOptions, MaintenanceOptions, ModuleOptions, ContainerOptions, Spawner
):
    """The batch-job life cycle (start, poll, stop, state); :class:`HPCSpawner` adds profiles."""

    @default("start_timeout")
    def _default_start_timeout(self) -> int:
        # queue waits are normal on a cluster: five minutes before giving up
        return 300

    @default("http_timeout")
    def _default_http_timeout(self) -> int:
        return 120

    # -- state --------------------------------------------------------------------------
    job_id: str = ""
    job_host: str = ""
    job_port: int = 0
    job_backend: str = ""
    job_cluster: str = ""
    job_token_digest: str = ""
    #: what the job asked for and the profile it came from (the job card shows them)
    job_resources: JobResources | None = None
    job_profile: str = ""
    _port_job: str = ""
    #: the job id whose end the scheduler confirmed (stop() has nothing left to do)
    _ended_job: str = ""
    _events: list[dict[str, Any]]
    _event_signal: asyncio.Event | None = None
    _port_signal: asyncio.Event | None = None
    #: (job id, lines of its start hooks shown): a job's share is :data:`LINES_PER_JOB`
    _hook_lines: tuple[str, int] = ("", 0)
    _start_time: float = 0.0
    #: why the last running server's job ended (shown at the next spawn; kept by clear_state)
    _last_end: str = ""

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()
        if self.job_id:
            state.update(
                job_id=self.job_id,
                backend=self.job_backend or self.backend,
                cluster=self.job_cluster,
                host=self.job_host,
                port=self.job_port,
                token_digest=self.job_token_digest,
                port_job=self._port_job,
            )
            if self.job_resources is not None:
                state["resources"] = self.job_resources.as_state()
            if self.job_profile:
                state["profile"] = self.job_profile
        if self._last_end:
            state["last_end"] = self._last_end
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if state.get("job_id"):
            self.job_id = str(state["job_id"])
            self.job_backend = str(state.get("backend") or self.backend)
            self.job_cluster = str(state.get("cluster") or "")
            self.job_host = str(state.get("host") or "")
            self.job_port = int(state.get("port") or 0)
            self.job_token_digest = str(state.get("token_digest") or "")
            self._port_job = str(state.get("port_job") or "")
            self.job_resources = JobResources.from_state(state.get("resources"))
            self.job_profile = str(state.get("profile") or "")
        self._last_end = str(state.get("last_end") or "")

    def clear_state(self) -> None:
        # not _last_end: JupyterHub stores get_state() after clear_state, so the reason
        # a server ended reaches the next spawner of this server (after a restart too)
        super().clear_state()
        self.job_id = self.job_host = self.job_backend = self.job_cluster = ""
        self.job_token_digest = self._port_job = self.job_profile = ""
        self.job_port = 0
        self.job_resources = None

    def _persist_state(self) -> None:
        """Write the state to the hub database now (not only when start returns),
        so that a hub restart during the queue wait still knows the job."""
        if self.orm_spawner is None:
            return
        session = object_session(self.orm_spawner)
        self.orm_spawner.state = self.get_state()
        if session is not None:
            session.commit()

    def user_home(self) -> str:
        try:
            return pwd.getpwnam(self.user.name).pw_dir
        except KeyError:
            return f"/home/{self.user.name}"

    def _fill(self, pattern: str, job_id: str | None = None) -> str:
        text = pattern.replace("{home}", self.user_home()).replace("{username}", self.user.name)
        return self.scheduler.output_path(text, job_id)

    # -- the job request and script ---------------------------------------------------------
    def job_request(self) -> JobRequest:
        """The validated request for this spawn: the admin's settings plus the
        ``user_options`` keys listed in ``allowed_user_options``."""
        base: dict[str, Any] = {
            "job_name": self.job_name,
            "partition": self.partition or None,
            "account": self.account or None,
            "qos": self.qos or None,
            "reservation": self.reservation or None,
            "constraint": self.constraint or None,
            "cpus": self.cpus,
            "memory": self.memory,
            "walltime": self.walltime,
            "gpus": self.gpus,
            "gpu_type": self.gpu_type or None,
            "nodes": self.nodes,
            "ntasks": self.ntasks,
            "ntasks_per_node": self.ntasks_per_node,
            "gpus_per_task": self.gpus_per_task,
            "gres": list(self.gres),
            "workdir": self.workdir or None,
        }
        options = dict(self.user_options or {})
        for key, value in options.items():
            if key not in self.allowed_user_options:
                raise RequestError(key, "this option cannot be set by users")
            if value is None:
                raise RequestError(key, "null is not a value")
        return JobRequest.from_mapping({**base, **options})

    def validated_request(self) -> JobRequest:
        """``job_request()`` with every validation problem an HTTP 400: the one place
        where a :class:`RequestError` becomes a client error (subclasses override
        ``job_request``, not this)."""
        try:
            request = self.job_request()
            self.scheduler.check_request(request)
            return request
        except RequestError as exc:
            raise invalid_options(exc) from None

    def get_env(self) -> dict[str, str]:
        env: dict[str, str] = super().get_env()
        env.update(announcements_environment(self))
        env.update(self.module_environment())  # the job loads its modules before the server starts
        env.update(self.container_environment())  # the job's server in the user's container
        if self.internal_ssl and self.cert_paths:
            # the job cannot read the hub's certificate files: their contents travel with it
            if SSL_KEY_ENV not in self.secret_env_names:
                raise RuntimeError(f"internal_ssl needs {SSL_KEY_ENV} in secret_env_names")
            for name in SSL_PATH_ENVS:
                env.pop(name, None)
            env.update(job_certificates(self.cert_paths))
        return env

    def job_environment(self) -> tuple[dict[str, str], dict[str, str]]:
        """(environment written into the script, secrets passed to the submit process)."""
        env = self.get_env()
        secrets = {k: v for k, v in env.items() if k in self.secret_env_names}
        public = {
            k: v
            for k, v in env.items()
            if k not in self.secret_env_names and k != "PATH" and ENV_NAME.match(k)
        }
        dropped = sorted(k for k in env if not ENV_NAME.match(k))
        if dropped:
            self.log.warning("%s: not passing invalid environment names %s", self._log_name, dropped)
        return public, secrets

    def launcher_argv(self) -> list[str]:
        argv = list(self.launcher_command)
        if self.port_range is not None:
            argv += ["--port-range", str(self.port_range)]
        if self.server_bind:
            argv += ["--ip", self.server_bind]
        argv += ["--kernel-transport", self.kernel_transport.lower()]
        return [*argv, "--", *self.cmd, *self.get_args()]

    def job_script(self, request: JobRequest, environment: dict[str, str]) -> str:
        """What the submit command reads for ``request``: the job script (HTCondor: its
        submit description, then the script); ``environment`` is written as quoted exports."""
        job = JobScript(
            workdir=self._fill(request.workdir or self.job_workdir),
            output_path=self._fill(self.job_output),
            command=self.launcher_argv(),
            environment=environment,
            path_prepend=self.path_prepend,
            prologue=self.job_script_prologue,
            epilogue=self.job_script_epilogue,
            extra_directives=self.job_extra_directives,
            directives_skip=self.job_directives_skip,
            umask=self.job_umask,
        )
        return self.scheduler.submit_input(request, job, self.job_script_template or None)

    # -- progress -------------------------------------------------------------------
    def _emit(self, message: str, progress: int) -> None:
        events = getattr(self, "_events", None)
        if events is None:
            events = self._events = []
        if events and events[-1]["message"] == message:
            return
        self.log.info("%s: %s", self._log_name, message)
        events.append({"progress": progress, "message": message})
        if self._event_signal is not None:
            self._event_signal.set()

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """Yield the spawn's events as they happen (JupyterHub stops iterating when
        the spawn finishes)."""
        sent = 0
        while True:
            events = getattr(self, "_events", [])
            while sent < len(events):
                yield events[sent]
                sent += 1
            self._event_signal = signal = asyncio.Event()
            await signal.wait()

    # -- start ---------------------------------------------------------------------------
    #: the profile's notices (a fallback, a clipped walltime) go into this spawner's own
    #: event list at start(), so a progress stream opened before the options were applied
    #: (a REST client) shows them too; the mixin then does not yield them itself
    emits_profile_notices = True

    async def start(self) -> str:
        self._events = []
        self._start_time = time.monotonic()
        if self._last_end:
            self._emit(f"Your previous server stopped: {self._last_end}", 0)
            self._last_end = ""
        resolution = getattr(self, "profile_resolution", None)
        for notice in resolution.notices if resolution is not None else []:
            self._events.append({"progress": 5, "message": notice})  # logged when applied
        self.job_backend = self.backend
        self.job_cluster = self.cluster
        request = self.validated_request()
        await self._identity_and_container()
        self.job_resources = resources_of(request)
        resolution = getattr(self, "profile_resolution", None)
        self.job_profile = resolution.profile.slug if resolution is not None else ""
        public, secrets = self.job_environment()
        script = self.job_script(request, public)
        self.job_token_digest = token_digest(self.api_token) if self.api_token else ""
        argv = self.scheduler.submit_argv(request)
        submit_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **secrets}
        # before submitting: the job may start and report its port before sbatch returns
        self.job_id = self.job_host = self._port_job = self._ended_job = ""
        self.job_port = 0
        # umask 077: the scheduler creates the job's output file private (Slurm applies
        # the submitting umask); the script sets job_umask for the server itself
        result = await self.client.submit(
            argv, script, username=self.user.name, env=submit_env, umask=SUBMIT_UMASK
        )
        try:
            job_id = self.scheduler.parse_submit(result)
        except SubmitError as exc:
            self._emit(f"The scheduler refused the job: {exc}", 100)
            raise refused_by_scheduler(exc) from None
        placed = self.scheduler.parse_submit_cluster(result)
        if placed and placed != self.job_cluster:
            # job ids are per cluster: from now on every command about this job names it
            self.job_cluster = placed
        self.job_id = job_id
        self._persist_state()
        where = f" to partition {request.partition}" if request.partition else ""
        self._emit(f"Submitted job {job_id}{where}", 10)
        return await self._wait_for_server(timeout=None)

    async def _identity_and_container(self) -> None:
        """Resolve and show who the server runs as; check its container (issue 17)."""
        try:
            identity = await self.resolve_identity()
        except IdentityError as exc:
            self.job_identity = None
            if self.container_image or self.container_image_path:
                self._emit(f"Cannot start the container: the user's identity: {exc}", 100)
                raise web.HTTPError(500, f"the user's identity cannot be resolved ({exc})") from None
            self.log.warning("%s: the user's identity cannot be resolved: %s", self._log_name, exc)
            return
        self._emit(f"Starting as {identity.describe()}", 5)
        try:
            spec = self.container_spec()
        except ContainerPlanError as exc:
            self._emit(f"Cannot start the container: {exc}", 100)
            raise web.HTTPError(400, str(exc)) from None
        if spec is not None:
            shown = spec.image.location if self.container_image_path else spec.image.name
            self._emit(f"In container image {shown} ({spec.runtime.runtime})", 6)

    def _server_url(self) -> str:
        host = self.node_address.replace("{host}", self.job_host)
        return f"{'https' if self.internal_ssl else 'http'}://{host}:{self.job_port}"

    async def _wait_for_server(self, timeout: float | None) -> str:
        """Follow the job through queue and start-up until the launcher reported its
        port; raise with the job's own story when it ends first."""
        watcher = self.watcher
        watcher.register(self.job_id)
        if self._port_signal is None:
            self._port_signal = asyncio.Event()
        deadline = None if timeout is None else time.monotonic() + timeout
        said = ""

        def say(message: str, progress: int) -> None:
            # the job's state, once until it changes (start hooks' lines may come in between)
            nonlocal said
            if message != said:
                said = message
                self._emit(message, progress)

        with watcher.hurry():
            while True:
                status = await watcher.status(self.job_id)
                if status.state.is_final or status.state is JobState.NOT_FOUND:
                    await self._raise_failure(status)
                if status.state is JobState.PENDING:
                    await keep_fresh(self)  # one reservations query per cluster per TTL
                    behind = pending_note(self, status)  # a maintenance reservation, from the cache
                    message = queue_message(self.scheduler, status)
                    say(f"{message}; {behind}" if behind else message, 30)
                elif status.state is JobState.RUNNING and status.host:
                    self.job_host = status.host
                    say(f"Running on node {status.host}", 60)
                    if self.job_port:
                        self._emit("Starting Jupyter", 80)
                        self._persist_state()
                        await self._wait_listening()
                        return self._server_url()
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.job_id} did not start its server in time")
                port_wait = asyncio.ensure_future(self._port_signal.wait())
                try:
                    await asyncio.wait(
                        [port_wait, asyncio.ensure_future(watcher.wait_update(30))],
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    port_wait.cancel()
                if self._port_signal.is_set():
                    self._port_signal.clear()
                    watcher.refresh_soon()

    async def _wait_listening(self) -> None:
        """Return once the server accepts connections (checked every 0.1 s, for at most
        ``http_timeout``), so that JupyterHub's own readiness check, which backs off
        for seconds, succeeds at its first try. Returns early when the job ends (the
        caller's next status check reports it) and never fails by itself."""
        host = self.node_address.replace("{host}", self.job_host)
        deadline = time.monotonic() + self.http_timeout
        while time.monotonic() < deadline and not self.watcher.cached(self.job_id).state.is_final:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, self.job_port), 2)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return

    async def read_job_output(self) -> str:
        """The last lines of the job's output file, read as the user by ``output_reader``
        (which refuses symbolic links, ``..`` and files of others; '' if unreadable)."""
        path = self._fill(self.job_output, self.job_id)
        lines = min(max(self.log_tail_lines, 1) + 1, MAX_LINES)
        try:
            result = await self.client.read_output(self.output_reader, path, lines, username=self.user.name)
        except CommandError as exc:
            self.log.warning("cannot read %s: %s", path, exc)
            return ""
        if not result.ok:
            self.log.info("cannot read %s: %s", path, result.stderr.strip()[-300:])
            return ""
        return str(result.stdout)

    async def _final_exit_code(self, status: JobStatus, output: str) -> int | None:
        marker = parse_exit_marker(output)
        return status.exit_code if status.exit_code is not None else marker

    async def _raise_failure(self, status: JobStatus) -> None:
        output = await self.read_job_output()
        code = await self._final_exit_code(status, output)
        tail_lines = [ln for ln in output.splitlines() if not ln.startswith("jupyterhub-hpc-exit")]
        tail = "\n".join(tail_lines[-self.log_tail_lines :])
        self.watcher.unregister(self.job_id)
        self._ended_job = self.job_id
        message = failure_message(
            self.scheduler, self.job_id, status, code, self._fill(self.job_output, self.job_id), tail
        )
        self._emit(message, 100)
        raise RuntimeError(message)

    # -- the job's callback ---------------------------------------------------------------
    def matches_token(self, token: str) -> bool:
        """True when ``token`` is the API token of this spawner's current server."""
        return bool(self.job_token_digest) and hmac.compare_digest(self.job_token_digest, token_digest(token))

    def port_bounds(self) -> tuple[int, int]:
        """The ports a job may report: ``port_range`` (parsed when it was set), else 1024-65535."""
        if self.port_range is not None:
            return self.port_range.low, self.port_range.high
        return 1024, 65535

    def accept_port(self, port: int) -> None:
        """Record the port the job's launcher bound; once per job, only while it runs.
        Raises ``ValueError`` with the reason otherwise."""
        low, high = self.port_bounds()
        if not self.job_id:
            if self._spawn_pending:
                raise PortReportTooEarly("the hub is still recording this job; retry")
            raise ValueError("no job is starting for this server")
        if self._port_job == self.job_id:
            raise ValueError("the port of this job was already reported")
        if not low <= port <= high:
            raise ValueError(f"port must be between {low} and {high}")
        if self.watcher.cached(self.job_id).state.is_final:
            raise ValueError("the job has ended")
        self.job_port = port
        self._port_job = self.job_id
        self._persist_state()
        if self._port_signal is None:
            self._port_signal = asyncio.Event()
        self._port_signal.set()
        self.watcher.refresh_soon()

    def accept_hook_line(self, hook: object, line: object) -> None:
        """Show a line of a start hook in the spawn progress: the container's init reports them
        while the server starts (:mod:`.containers.report`). ``ValueError`` with the reason when
        no server is starting, its server already listens, or the job has sent its share."""
        if not self.job_id or not self._spawn_pending or self._port_job == self.job_id:
            raise ValueError("no server of this token is starting")
        message = hook_message(hook, line)
        job, shown = self._hook_lines
        shown = shown + 1 if job == self.job_id else 1
        if shown > LINES_PER_JOB:
            raise ValueError(f"a job shows at most {LINES_PER_JOB} lines of its start hooks")
        self._hook_lines = (self.job_id, shown)
        self._emit(message, 70)

    # -- poll, stop, get_url -----------------------------------------------------------------
    async def poll(self) -> int | None:
        if not self.job_id:
            return None if self._spawn_pending else 0
        status = await self.watcher.status(self.job_id)
        if status.state.is_active:
            await keep_fresh(self)  # the job card's maintenance list: one query per cluster per TTL
            return None
        output = await self.read_job_output() if status.exit_code is None else ""
        code = await self._final_exit_code(status, output)
        self.watcher.unregister(self.job_id)
        self._ended_job = self.job_id
        message = end_message(self.scheduler, self.job_id, status, code)
        if message != self._last_end:
            # once per job, whichever of JupyterHub's polls sees the end first
            self._last_end = message
            self.log.warning("%s: server stopped: %s", self._log_name, message)
        return 1 if code is None else code

    async def stop(self, now: bool = False) -> None:
        if not self.job_id or self._ended_job == self.job_id:
            return  # nothing to cancel: no job, or the scheduler already said it ended
        await self.client.cancel(self.job_id, username=self.user.name)
        watcher = self.watcher
        watcher.register(self.job_id)
        deadline = time.monotonic() + max(self.command_timeout, 30)
        with watcher.hurry():
            while time.monotonic() < deadline:
                await watcher.wait_update(5)
                state = watcher.cached(self.job_id).state
                if state.is_final or state is JobState.NOT_FOUND:
                    break
            else:
                self.log.warning("%s: job %s not confirmed ended after cancel", self._log_name, self.job_id)
        watcher.unregister(self.job_id)

    async def get_url(self) -> str:
        """After a hub restart: the URL of a running server, or, for a job that was
        still queued or starting, wait for it (bounded by ``start_timeout``).
        JupyterHub's start waits ``c.JupyterHub.init_spawners_timeout`` for this; set it
        to 1 so that the hub serves at once and queued jobs are checked in the background."""
        if self.job_port and self.job_host:
            return self._server_url()
        if not self.job_id:
            return str(self.server.url)
        self._events = []
        try:
            return await self._wait_for_server(timeout=self.start_timeout)
        except Exception as exc:
            self.log.warning("%s: job %s not re-adopted: %s", self._log_name, self.job_id, exc)
            return str(self.server.url)


class HPCSpawner(ProfilesMixin, IdlePolicy, HPCSpawnerBase):
    """Run each Jupyter server as a batch job; the scheduler is chosen by ``backend``.

    Profiles are built in, as in KubeSpawner: with a ``profile_list`` the spawn form
    and the REST API offer the admin's profiles, and the chosen profile's overrides
    and options make the job request; an empty ``profile_list`` means no form, and
    the configured values (``c.HPCSpawner.*``, ``c.SlurmSpawner.*``, ...) apply with
    the ``user_options`` listed in ``allowed_user_options``.
    """

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("config") is not None:
            # c.ProfilesSlurmSpawner.* (the deprecated class names) apply as c.SlurmSpawner.*
            kwargs["config"] = upgrade_config(kwargs["config"], type(self))
        super().__init__(**kwargs)

    def profile_base_job(self) -> dict[str, Any]:
        """Every job-request field that is also a trait of this spawner, as configured
        (before a profile's overrides): what a profile starts from."""
        base: dict[str, Any] = {}
        for name in JobRequest.model_fields:
            if self.has_trait(name):
                value = self._base_trait(name)
                base[name] = None if value == "" else value
        return base

    def job_request(self) -> JobRequest:
        """The chosen profile's request (validated when JupyterHub applied the user's
        options), else the admin's settings plus the allowed ``user_options``."""
        if self.profile_resolution is not None and self.profile_resolution.request is not None:
            return self.profile_resolution.request
        return super().job_request()


class SlurmSpawner(HPCSpawner):
    """Jupyter servers as Slurm jobs (``c.JupyterHub.spawner_class = "slurm"``)."""

    @default("backend")
    def _default_backend(self) -> str:
        return "slurm"
