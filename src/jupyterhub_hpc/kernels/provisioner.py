"""``hpc-provisioner``: each kernel is a batch job of its own, on any of the project's backends.

A kernelspec names it in ``metadata.kernel_provisioner``::

    {"provisioner_name": "hpc-provisioner",
     "config": {"backend": "slurm", "resources": {"partition": "gpu", "cpus": 4, "gpus": 1,
                                                  "walltime": "02:00:00"}}}

``resources`` is validated into the spawner's own :class:`~jupyterhub_hpc.request.JobRequest`
(no free scheduler flags) and rendered by the backend's template; the job is submitted by the
user's own server, as the user, with argv only, through the project's scheduler client, and
every kernel job of the server is followed by **one** batched status query per interval (the
process's :class:`~jupyterhub_hpc.watcher.QueueWatcher` for that scheduler).

In the job, :mod:`.node` binds the kernel's ports on the compute node. The connection file (HMAC
key, CurveZMQ key pair) is written 0600 in the kernel directory (shared with the compute nodes,
0700) and never appears on a
command line; CurveZMQ is **required** by default (``encryption``), refused with a clear message
for a kernel that does not declare it. Interrupts are messages (the kernelspec's
``interrupt_mode: "message"``); other signals go to the kernel process through the job.

A restart keeps the allocation: the kernel process is restarted in the same job. The job is
cancelled only when the kernel is shut down (``cleanup(restart=False)``, whose ``restart`` flag
jupyter_client passes on, unlike ``kill``'s: jupyter_client #1061). When the job itself has ended
(walltime, a failure) the automatic restarter does not submit a new one; the kernel is reported
dead with the job's state, exit code and the tail of its output (:attr:`HPCProvisioner.ended`),
and a restart the user asks for submits a new job. ``get_provisioner_info`` /
``load_provisioner_info`` carry the job across a server restart.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, cast

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from traitlets import Dict, Enum, Float, List, Unicode, default

from ..backends import JobScript, SubmitError, backend_class
from ..client import ClientSettings, SchedulerClient, get_client
from ..request import JobRequest, RequestError, check_workdir, walltime_text
from ..states import JobState, JobStatus
from ..watcher import QueueWatcher, WatcherSettings, get_watcher
from .files import (
    PORT_NAMES,
    NodeRequest,
    NodeState,
    default_kernel_directory,
    forget,
    log_path,
    ports_bound,
    read_json,
    read_model,
    remember,
    request_path,
    state_path,
    write_private,
)
from .jobs import clean_environment, describe_end, iso_time, tail

__all__ = ["KERNEL_JOBS", "HPCProvisioner", "KernelJobError"]


#: kernel id -> the provisioner of every kernel job of this server process (what JupyterLab reads)
KERNEL_JOBS: dict[str, HPCProvisioner] = {}

#: seconds a failed start, or a kernel whose job ended by itself, stays in KERNEL_JOBS (for
#: JupyterLab's error notification)
FAILED_KEPT = 600.0

#: node states after which this generation's kernel is gone
ENDED = ("failed", "exited", "stopped")


def _gone(status: JobStatus) -> bool:
    """The scheduler confirmed the job ended, or no longer knows it."""
    return status.state.is_final or status.state is JobState.NOT_FOUND


class KernelJobError(RuntimeError):
    """The kernel job could not start a kernel; the message says why in the scheduler's words."""


class HPCProvisioner(KernelProvisionerBase):
    """A kernel as a batch job (see the module docstring)."""

    backend = Unicode("slurm", config=True, help="The scheduler backend: slurm, sge, oar, pbs, lsf, ...")
    cluster = Unicode("", config=True, help="The scheduler's cluster name, for multi-cluster Slurm.")
    scheduler_commands = Dict(
        value_trait=Unicode(),
        config=True,
        help="Program names or paths of the scheduler commands ({'sbatch': '/opt/slurm/bin/sbatch'}).",
    )
    scheduler_environment = Dict(
        value_trait=Unicode(),
        config=True,
        help="Variables every scheduler command gets (SLURM_CONF, SGE_ROOT), on top of the server's.",
    )
    resources = Dict(
        config=True,
        help="""The kernel job's resources, as the spawner's job request: partition, account,
        qos, reservation, constraint, nodes, cpus, memory ("4G"), walltime ("02:00:00"), gpus,
        gpu_type, gres, workdir. Validated when the kernel starts; a value outside the rules is
        a start failure naming the field, nothing is submitted.""",
    )
    job_name = Unicode("jupyter-kernel", config=True, help="The kernel jobs' name in the queue.")
    job_extra_directives = List(
        Unicode(), config=True, help="Admin-written scheduler directives added to every kernel job."
    )
    job_directives_skip = List(
        Unicode(), config=True, help="Directives (by their start) left out of the kernel job script."
    )
    job_script_prologue = Unicode(
        "", config=True, help="Admin-written shell text run in the kernel job before the kernel."
    )
    node_python = Unicode(
        sys.executable,
        config=True,
        help="The Python on the compute node that runs jupyterhub_hpc.kernels.node (default: the server's).",
    )
    kernel_address = Unicode(
        "",
        config=True,
        help="The address the kernel binds on the node (default: the address of the node's host name).",
    )
    encryption = Enum(
        ["required", "auto", "disabled"],
        "required",
        config=True,
        help="""CurveZMQ for the kernel's traffic. 'required' (default) refuses a kernel whose
        kernelspec does not declare metadata.supported_encryption ["curve"]; 'auto' encrypts
        when it does; 'disabled' never (only the HMAC signature then protects the messages).""",
    )
    poll_interval = Float(
        15.0, config=True, help="Seconds between the batched status queries of all kernel jobs of the server."
    )
    queue_timeout = Float(
        4 * 3600.0,
        config=True,
        help="How long a kernel job may wait in the queue before it is cancelled and its start given up.",
    )
    start_timeout = Float(
        120.0,
        config=True,
        help="How long a running kernel job may take to bind its ports before its start is given up.",
    )
    restart_linger = Float(
        120.0,
        config=True,
        help="How long the job keeps its allocation after its kernel exited, waiting for a restart.",
    )
    command_timeout = Float(30.0, config=True, help="Timeout of each scheduler command (seconds).")
    kernel_directory = Unicode(
        config=True,
        help="""Where the connection files and the job's files of kernel jobs are written (0700):
        a directory the compute nodes share with the server, like the home directory (default:
        ~/.local/share/jupyter/hpc-kernels/<JupyterHub server name, or default>). A restarted
        server takes kernel jobs back from the directory its own configuration names.""",
    )

    @default("kernel_directory")
    def _default_kernel_directory(self) -> str:
        return default_kernel_directory()

    job_id: str = ""
    generation: int = 0
    #: why the job ended, in plain words; '' while it runs
    ended: str = ""
    _restart_asked = False
    _cwd = ""
    _submitted = 0.0
    _start_seconds = 0.0
    _end_logged = False
    #: why the start is given up at the user's request (:meth:`cancel_queued`); "" otherwise
    _cancelled = ""
    #: the kernel is being shut down (not restarted): its job's end is no news
    _stop_asked = False
    _signal_seq = 0

    # -- the scheduler ---------------------------------------------------------------
    _client: SchedulerClient | None = None

    @property
    def client(self) -> SchedulerClient:
        """The process's scheduler client for this configuration (looked up once: ``poll()`` and
        the start loop ask for it often)."""
        if self._client is None:
            backend = backend_class(self.backend)(
                cluster=self.cluster, commands=dict(self.scheduler_commands)
            )
            settings = ClientSettings(
                environment=tuple(sorted(self.scheduler_environment.items())), timeout=self.command_timeout
            )
            self._client = get_client(backend, settings)
        return self._client

    @property
    def watcher(self) -> QueueWatcher:
        settings = WatcherSettings(interval=self.poll_interval, timeout=self.command_timeout)
        return get_watcher(self.client, settings=settings, log=self.log)

    def status(self) -> JobStatus:
        return self.watcher.cached(self.job_id)

    def _job_ended(self) -> bool:
        return _gone(self.status())

    def _node(self) -> NodeState | None:
        """What the job says of the kernel of this generation; None before it said anything."""
        node = read_model(self.state_file, NodeState) if self.job_id else None
        return node if node is not None and node.generation == self.generation else None

    def _allocation_gone(self) -> bool:
        """The job ended, or is ending: its supervisor said the scheduler stopped it (the
        watcher's cache may not know yet)."""
        node = self._node()
        return self._job_ended() or (node is not None and node.state == "stopped")

    @property
    def km(self) -> Any:
        """The kernel manager this provisioner belongs to."""
        return self.parent

    def _output(self) -> str:
        return tail(log_path(self.connection_file, self.job_id))

    def describe(self) -> dict[str, Any]:
        """What JupyterLab shows of this kernel job: state, reason, expected start, end, node."""
        if self.ended:
            self._note_end()  # the scheduler may have confirmed the end since (once only)
        status = self.status()
        node = self._node()
        return {
            "kernel_id": self.kernel_id,
            "job_id": self.job_id,
            "backend": self.backend,
            "state": status.state.value,
            "reason": self.client.backend.describe_reason(status.reason),
            "expected_start": iso_time(status.expected_start),
            "end_time": iso_time(status.end_time),
            "node": status.host,
            "generation": self.generation,
            #: this generation's kernel has bound its ports (RUNNING comes a moment before)
            "ready": node is not None and node.state == "ready",
            #: why the job ended, once the scheduler confirmed it (its state and exit code are
            #: known then); "" while all is well or the end is not confirmed yet
            "ended": self.ended if self._end_logged else "",
        }

    @property
    def connection_file(self) -> str:
        """``kernel-<id>.json`` in :attr:`kernel_directory` (not the server's runtime directory,
        which may be private to the server's node)."""
        km = self.km
        wanted = os.path.join(self.kernel_directory, f"kernel-{self.kernel_id}.json")
        if km.connection_file != wanted:
            km.connection_file = wanted
        return wanted

    def request(self) -> JobRequest:
        try:
            request = JobRequest.from_mapping({"job_name": self.job_name, **self.resources})
            self.client.backend.check_request(request)
        except RequestError as exc:
            raise KernelJobError(f"kernel job resources: {exc}") from None
        return request

    # -- launching ---------------------------------------------------------------------
    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        km = self.km
        self.request()  # refuse bad resources before anything else
        supports = "curve" in (self.kernel_spec.metadata or {}).get("supported_encryption", [])
        if self.encryption == "required" and not supports:
            raise KernelJobError(
                f"kernel {self.kernel_spec.display_name!r} does not declare CurveZMQ support "
                '(kernelspec metadata.supported_encryption: ["curve"]), so its traffic to the compute '
                "node would not be encrypted; an admin can allow that with encryption 'auto' or "
                "'disabled' in the provisioner config"
            )
        if self.encryption != "disabled" and supports and km.curve_publickey is None:
            import zmq

            km.curve_publickey, km.curve_secretkey = zmq.curve_keypair()
        km.ip = "0.0.0.0"
        for name in PORT_NAMES:
            setattr(km, name, 0)
        directory = os.path.dirname(self.connection_file)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        info = {**km.get_connection_info(session=False), "key": km.session.key.decode()}
        info["kernel_name"] = km.kernel_name
        write_private(Path(self.connection_file), info)
        kwargs.pop("extra_arguments", None)
        self._cwd = kwargs.pop("cwd", None) or os.getcwd()
        cmd = km.format_kernel_cmd()
        return await super().pre_launch(cmd=cmd, **kwargs)

    @property
    def state_file(self) -> Path:
        return state_path(self.connection_file)

    @property
    def request_file(self) -> Path:
        return request_path(self.connection_file)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        if self.job_id and not self._allocation_gone():
            # a restart: the next kernel process in the same allocation
            self.generation += 1
            self._write_request()
            self.log.info(
                "kernel %s: restarting in job %s (generation %d)",
                self.kernel_id,
                self.job_id,
                self.generation,
            )
        elif self.job_id and not self._restart_asked:
            # the restarter after the job ended: nothing is resubmitted; the kernel stays dead
            self._note_end()
            self.log.warning("kernel %s: not restarting: its job %s ended", self.kernel_id, self.job_id)
            return self.connection_info
        else:
            await self._submit(cmd, kwargs.get("env"))
        self._restart_asked = False
        await self._wait_ready()
        # a restarted server takes the job back from this record (.adopt)
        remember(self.connection_file, self.km.kernel_name, self._cwd, await self.get_provisioner_info())
        return self.connection_info

    def _write_request(self, **changes: Any) -> None:
        current = read_model(self.request_file, NodeRequest) or NodeRequest()
        values = {**current.model_dump(), "generation": self.generation, **changes}
        write_private(self.request_file, NodeRequest.model_validate(values))

    async def _submit(self, cmd: list[str], env: dict[str, str] | None) -> None:
        if self.job_id:  # a restart the user asked for after the job ended: a new job
            self.watcher.unregister(self.job_id)
        request = self.request()
        backend = self.client.backend
        cf = self.connection_file
        directory = os.path.dirname(cf)
        try:
            check_workdir(directory)
        except ValueError as exc:
            raise KernelJobError(
                f"the kernel directory {directory!r} cannot be named in a job: {exc}"
            ) from None
        self.generation = 1
        self.ended = ""
        self._end_logged = False
        self._cancelled = ""
        self._signal_seq = 0
        for stale in (self.state_file, self.request_file):
            stale.unlink(missing_ok=True)
        self._write_request()
        node = [self.node_python, "-m", "jupyterhub_hpc.kernels.node", "--connection-file", cf]
        node += ["--linger", str(int(self.restart_linger)), "--cwd", self._cwd]
        if self.kernel_address:
            node += ["--address", self.kernel_address]
        job = JobScript(
            workdir=request.workdir or os.path.expanduser("~"),
            output_path=backend.output_path(str(log_path(cf))),
            command=[*node, "--", *cmd],
            prologue=self.job_script_prologue,
            extra_directives=list(self.job_extra_directives),
            directives_skip=list(self.job_directives_skip),
            umask="0077",
        )
        script = backend.submit_input(request, job)
        result = await self.client.submit(
            backend.submit_argv(request),
            script,
            username=getpass.getuser(),
            env=clean_environment(env if env is not None else dict(os.environ)),
            umask=0o077,
        )
        try:
            self.job_id = backend.parse_submit(result)
        except SubmitError as exc:
            raise KernelJobError(f"the scheduler refused the kernel job: {exc}") from None
        self._submitted = time.monotonic()
        self.watcher.register(self.job_id)
        KERNEL_JOBS[self.kernel_id] = self
        self.log.info(
            "kernel %s: submitted %s job %s (%s, %d CPU, %s)",
            self.kernel_id,
            backend.name,
            self.job_id,
            request.partition or "default partition",
            request.cpus,
            walltime_text(request.walltime),
        )

    async def _wait_ready(self) -> None:
        """Until this generation's kernel has bound its ports; raises KernelJobError when the job
        ends first, stays queued past ``queue_timeout`` or does not bind within ``start_timeout``."""
        started_running: float | None = None
        with self.watcher.hurry():
            while True:
                if self._cancelled:
                    await self._give_up(self._cancelled)
                node = self._node()
                if node is not None:
                    info = read_json(Path(self.connection_file))
                    if node.state == "ready" and ports_bound(info):
                        assert info is not None
                        connection = {**info, "key": str(info["key"]).encode()}
                        self.connection_info = cast(KernelConnectionInfo, connection)
                        self._start_seconds = time.monotonic() - self._submitted
                        # the manager's own copy: it had ports 0 and no node address
                        self.km.load_connection_info(self.connection_info)
                        return
                    if node.state in ENDED:
                        await self._give_up(
                            node.message or f"the kernel exited with status {node.returncode}"
                        )
                status = self.status()
                if _gone(status):
                    await self._give_up("")
                now = time.monotonic()
                if status.state is JobState.RUNNING or node is not None:
                    started_running = started_running or now
                    if now - started_running > self.start_timeout:
                        await self._give_up(
                            f"the kernel did not bind its ports within {self.start_timeout:.0f} s"
                        )
                elif now - self._submitted > self.queue_timeout:
                    await self._give_up(f"still queued after {self.queue_timeout:.0f} s")
                await asyncio.sleep(0.1)

    async def _give_up(self, why: str) -> None:
        status = self.status()
        if not _gone(status):
            self._write_request(stop=True)
            await self._cancel()
            status = JobStatus(job_id=self.job_id, state=JobState.NOT_FOUND)
        self.ended = describe_end(self.client.backend.name, status, why, self._output())
        self._end_logged = True
        # a failed start is never cleaned up by jupyter_client: JupyterLab may still ask why for a
        # while, then the entry goes
        asyncio.get_running_loop().call_later(FAILED_KEPT, self._forget_job, self.job_id)
        raise KernelJobError(self.ended)

    def cancel_queued(self, why: str = "cancelled at the user's request while it was queued") -> bool:
        """Give up this kernel's start while its job has not bound a kernel yet (JupyterLab's
        "Cancel job" on a queued kernel): the start fails with ``why`` and the job is cancelled,
        as for ``queue_timeout``. False once the kernel is ready, the start has already failed,
        or nothing was submitted: a running kernel is shut down instead."""
        node = self._node()
        if not self.job_id or self.ended or (node is not None and node.state == "ready"):
            return False
        self._cancelled = why
        self.log.info("kernel %s: job %s %s", self.kernel_id, self.job_id, why)
        return True

    def _forget_job(self, job_id: str) -> None:
        """The job out of the list, the watcher and the kernel directory (its output), unless a
        later start submitted another job meanwhile."""
        if job_id != self.job_id:
            return
        if KERNEL_JOBS.get(self.kernel_id) is self:
            del KERNEL_JOBS[self.kernel_id]
        self.watcher.unregister(self.job_id)
        log_path(self.connection_file, self.job_id).unlink(missing_ok=True)

    async def _cancel(self) -> None:
        try:
            await self.client.cancel(self.job_id, username=getpass.getuser())
        except (SubmitError, OSError) as exc:
            self.log.warning("kernel %s: cancelling job %s failed: %s", self.kernel_id, self.job_id, exc)

    # -- the running kernel --------------------------------------------------------------
    @property
    def has_process(self) -> bool:
        return bool(self.job_id)

    async def poll(self) -> int | None:
        if not self.job_id:
            return 0
        node = self._node()
        if self._allocation_gone():
            self._note_end()
            if node is not None and node.returncode not in (None, 0):
                return node.returncode
            code = self.status().exit_code
            return code if code not in (None, 0) else 1
        if node is not None and node.state in ENDED:
            return node.returncode if node.returncode is not None else 1
        return None

    def _note_end(self) -> None:
        """Why the job ended, in the scheduler's words (:attr:`ended`), logged once the scheduler
        has confirmed the end; until then the watcher is asked to look again soon."""
        if self._end_logged:
            return
        status = self.status()
        final = _gone(status)
        why = "" if final else "the scheduler is ending the job"
        self.ended = describe_end(self.client.backend.name, status, why, self._output())
        if final:
            self._end_logged = True
            self.log.warning("kernel %s: %s", self.kernel_id, self.ended)
        else:
            self.watcher.refresh_soon()

    async def wait(self) -> int | None:
        while (code := await self.poll()) is None:
            await asyncio.sleep(0.2)
        return code

    async def send_signal(self, signum: int) -> None:
        if signum == 0 or not self.job_id:
            return
        node = read_model(self.state_file, NodeState)
        if node is None:
            # still queued: there is no kernel process to signal; ending it ends the job
            if signum in (signal.SIGKILL, signal.SIGTERM):
                await self._cancel()
            return
        self._signal_seq = (
            max(self._signal_seq, (read_model(self.request_file, NodeRequest) or NodeRequest()).signal_seq)
            + 1
        )
        self._write_request(signal_seq=self._signal_seq, signum=int(signum))

    async def kill(self, restart: bool = False) -> None:
        # only the kernel process: whether the job goes too is cleanup()'s decision, which is
        # told about restarts (kill() is not: jupyter_client #1061)
        await self.send_signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGTERM)

    async def shutdown_requested(self, restart: bool = False) -> None:
        self._restart_asked = restart
        self._stop_asked = not restart
        if not restart and self.job_id:
            self._write_request(stop=True)

    async def cleanup(self, restart: bool = False) -> None:
        if restart or not self.job_id:
            return
        if not self._job_ended():
            await self._cancel()
        forget(self.connection_file)
        # the connection file (it holds the keys) and the job's files: jupyter_client removes only
        # the connection files it wrote itself
        for path in (Path(self.connection_file), self.state_file, self.request_file):
            path.unlink(missing_ok=True)
        if self.ended and not self._stop_asked and KERNEL_JOBS.get(self.kernel_id) is self:
            # the job ended by itself (walltime, scancel): JupyterLab may still ask why for a
            # while, and the scheduler may not have confirmed the end yet (the watcher goes on)
            asyncio.get_running_loop().call_later(FAILED_KEPT, self._forget_job, self.job_id)
            return
        self._forget_job(self.job_id)
        self.job_id = ""

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return max(recommended, 5.0)

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        """The queue wait is part of a start: ``recommended`` plus the time the last start took
        from submit to ready (the restarter asks once a kernel runs)."""
        return recommended + self._start_seconds

    # -- persistence (a server restart) ---------------------------------------------------
    async def get_provisioner_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await super().get_provisioner_info()
        connection: dict[str, Any] = dict(self.connection_info)
        if isinstance(connection.get("key"), bytes):
            connection["key"] = connection["key"].decode()
        info.update(
            connection_info=connection,
            job_id=self.job_id,
            generation=self.generation,
            backend=self.backend,
            cluster=self.cluster,
            connection_file=self.connection_file,
        )
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        await super().load_provisioner_info(provisioner_info)
        connection: dict[str, Any] = dict(self.connection_info)
        if isinstance(connection.get("key"), str):
            connection["key"] = connection["key"].encode()
        self.connection_info = cast(KernelConnectionInfo, connection)
        self.job_id = str(provisioner_info.get("job_id", ""))
        self.generation = int(provisioner_info.get("generation", 1))
        if provisioner_info.get("connection_file"):
            self.kernel_directory = os.path.dirname(str(provisioner_info["connection_file"]))
        self._submitted = time.monotonic()
        if self.job_id:
            self.watcher.register(self.job_id)
            KERNEL_JOBS[self.kernel_id] = self
            await self.watcher.status(self.job_id)
