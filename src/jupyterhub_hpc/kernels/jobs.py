"""Plain words for a kernel job's end, and the environment a kernel job is submitted with."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from ..backends.base import EXIT_MARKER
from ..states import JobState, JobStatus

__all__ = ["SECRET_NAMES", "clean_environment", "describe_end", "iso_time", "tail"]

#: variables a kernel job never gets: the server's credentials
SECRET_NAMES = frozenset(
    {"JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTERHUB_OAUTH_CLIENT_SECRET", "JUPYTERHUB_COOKIE_SECRET"}
)
#: the server's own job's variables (it may itself be a job): the kernel job gets its own
_JOB_VARIABLE = re.compile(r"^(SLURM_(?!CONF$)|SBATCH_|SGE_TASK|JOB_ID$|OAR_JOB|PBS_JOBID$)")


def clean_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment a kernel job is submitted with: the kernel's, without the server's
    credentials and without the variables of the job the server itself may run in."""
    return {k: v for k, v in env.items() if k not in SECRET_NAMES and not _JOB_VARIABLE.match(k)}


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` of a kernel job's output, without the exit marker ('' if unreadable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if not line.startswith(EXIT_MARKER)]
    return "\n".join(kept[-lines:])


def describe_end(backend: str, status: JobStatus, why: str, output: str) -> str:
    """One message for a kernel job that ended or never started a kernel: the job, its state
    and exit code in the scheduler's words, the reason, then the tail of its output."""
    text = f"kernel job {status.job_id} ({backend})"
    if status.state.is_final:
        text += f" {status.native_state or status.state.value}"
    if status.exit_code is not None:
        text += f", exit code {status.exit_code}"
    if status.reason and status.reason not in ("None", "(null)"):
        text += f", reason {status.reason}"
    if status.state is JobState.TIMEOUT:
        text += ": killed at its walltime"
    if why:
        text += f": {why}"
    if output.strip():
        text += f"\n--- last lines of its output ---\n{output.strip()}"
    return text


def iso_time(when: datetime | None) -> str | None:
    """ISO 8601 with the UTC offset (the schedulers' times are the node's local time), so that
    the browser counts down to the right moment in any time zone."""
    return when.astimezone().isoformat() if when else None
