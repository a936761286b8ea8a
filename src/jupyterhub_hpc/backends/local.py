"""The local backend: Jupyter servers as jobs of this machine's own small scheduler.

The scheduler is ``jupyterhub-hpc-local`` (:mod:`jupyterhub_hpc.local_scheduler`),
driven exactly like Slurm: the script on standard input of ``submit``, one
batched ``status`` call for every job of the hub (JSON lines), ``cancel``. Jobs
queue beyond ``max_running``, the walltime is enforced, and the final state and
exit status stay on disk, so ``poll`` after the job ended, or after a hub
restart, gives the right answer. Only the walltime is enforced; CPU, memory and
GPU requests are accepted and not limited.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ..commands import CommandResult
from ..local_scheduler.store import DEFAULT_STATE_DIR
from ..request import JobRequest
from ..states import JobState, JobStatus
from .base import Backend, JobScript, QueryError, SubmitError

__all__ = ["LocalBackend", "default_program"]

PROGRAM = "jupyterhub-hpc-local"

LOCAL_STATES: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
}

LOCAL_REASONS: dict[str, str] = {
    "Submitting": "the job is being handed to its supervisor",
    "JobLimit": "this machine already runs as many Jupyter servers as it allows",
    "Priority": "servers requested earlier start first",
    "TimeLimit": "the job reached its time limit",
    "NonZeroExitCode": "the job exited with an error",
    "SupervisorLost": "the process supervising the job was killed",
    "NeverStarted": "the job's supervisor never started",
    "OutputUnwritable": "its output file cannot be written",
    "LaunchFailed": "the job script could not be started",
}


def default_program() -> str:
    """``jupyterhub-hpc-local`` beside the running Python (sudo's ``secure_path``
    does not include a virtualenv), or the bare name when it is not there."""
    candidate = os.path.join(os.path.dirname(sys.executable), PROGRAM)
    return candidate if os.access(candidate, os.X_OK) else PROGRAM


def _time(value: Any) -> datetime | None:
    return datetime.fromtimestamp(float(value)) if isinstance(value, (int, float)) else None


class LocalBackend(Backend):
    """Local processes with a batch job's life cycle (see the module docstring).

    ``state_dir`` is the scheduler's state directory, ``max_running`` the number
    of jobs that run at once (later ones wait, PENDING), ``kill_wait`` the
    seconds between SIGTERM and SIGKILL. ``cluster`` is not used.
    """

    name = "local"
    template = "local.sh.j2"
    directive_prefix = "#LOCAL"
    state_map = LOCAL_STATES
    reasons = LOCAL_REASONS
    job_id_placeholder = "%j"
    script_changes_directory = False  # --chdir
    default_commands = {PROGRAM: default_program()}
    cancel_gone_markers = ("unknown job",)
    lacks = {
        "nodes": "it runs every job as a process on this machine",
        "partition": "it has no partitions",
        "ntasks": "it runs one process per job",
        "ntasks_per_node": "it runs one process per job",
        "gpus_per_task": "it allocates no GPUs",
        "gres": "it allocates no resources",
    }

    def __init__(
        self,
        *,
        cluster: str = "",
        commands: Mapping[str, str] | None = None,
        state_dir: str = DEFAULT_STATE_DIR,
        max_running: int = 4,
        kill_wait: float = 10.0,
    ) -> None:
        super().__init__(cluster=cluster, commands=commands)
        self.state_dir = state_dir
        self.max_running = max_running
        self.kill_wait = kill_wait

    def key(self) -> tuple[str, ...]:
        return (*super().key(), f"state_dir={self.state_dir}")

    def _program(self) -> list[str]:
        return [self.cmd(PROGRAM), f"--state-dir={self.state_dir}"]

    def submit_argv(self, request: JobRequest) -> list[str]:
        return [*self._program(), "submit"]

    def parse_submit(self, result: CommandResult) -> str:
        job_id = result.stdout.strip().splitlines()[-1].strip() if result.stdout.strip() else ""
        if not result.ok or not job_id.isdigit():
            raise SubmitError(result.stderr.strip() or f"{PROGRAM} submit printed no job id")
        return job_id

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        return [*self._program(), "status", *job_ids]

    def parse_status(self, result: CommandResult, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if not result.ok:
            raise QueryError(result.stderr.strip() or f"{PROGRAM} status exited {result.returncode}")
        found: dict[str, JobStatus] = {}
        for line in result.stdout.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                job_id, native = str(record["id"]), str(record["state"])
            except (ValueError, KeyError, TypeError):
                raise QueryError(f"unexpected {PROGRAM} status line: {line!r}") from None
            state = self.map_state(native)
            exit_code = record.get("exit_code")
            walltime = record.get("walltime")
            found[job_id] = JobStatus(
                job_id=job_id,
                state=state,
                host=record.get("host") or None,
                reason=record.get("reason") or None,
                exit_code=exit_code if state.is_final and isinstance(exit_code, int) else None,
                # for a running or ended job, the time it started (as Slurm's StartTime)
                expected_start=_time(record.get("started")),
                end_time=_time(record.get("ended")),
                native_state=native,
                time_limit_seconds=walltime if isinstance(walltime, int) and walltime > 0 else None,
            )
        return {j: found.get(j, JobStatus(job_id=j, state=JobState.NOT_FOUND)) for j in job_ids}

    def cancel_argv(self, job_id: str) -> list[str]:
        return [*self._program(), "cancel", job_id]

    def directives(self, request: JobRequest, job: JobScript) -> list[str]:
        return [
            f"--job-name={request.job_name}",
            f"--output={shlex.quote(job.output_path)}",
            f"--chdir={shlex.quote(job.workdir)}",
            f"--walltime={request.walltime}",
            f"--max-running={self.max_running}",
            f"--kill-wait={self.kill_wait:g}",
        ]
