"""Progress messages a scientist understands, built from a :class:`JobStatus`."""

from __future__ import annotations

from datetime import datetime

from .backends.base import Backend
from .states import JobState, JobStatus


def queue_message(backend: Backend, status: JobStatus) -> str:
    """ "Waiting in queue: other jobs have priority, expected start 14:05"."""
    text = "Waiting in queue"
    reason = backend.describe_reason(status.reason)
    if reason:
        text += f": {reason}"
    if status.expected_start and status.expected_start > datetime.now():
        start = status.expected_start
        fmt = "%H:%M" if start.date() == datetime.now().date() else "%Y-%m-%d %H:%M"
        text += f", expected start {start.strftime(fmt)}"
    return text


def failure_message(
    backend: Backend,
    job_id: str,
    status: JobStatus,
    exit_code: int | None,
    log_path: str,
    log_tail: str,
) -> str:
    """The whole story of a job that ended before its server was up."""
    if status.state is JobState.NOT_FOUND:
        what = f"Job {job_id} ended"
    else:
        what = f"Job {job_id} {status.state.value.lower()}"
    if exit_code is not None:
        what += f" with exit code {exit_code}"
    reason = backend.describe_reason(status.reason)
    if reason and status.state is not JobState.COMPLETED:
        what += f" ({reason})"
    what += " before Jupyter started."
    if log_tail.strip():
        what += f"\nLast lines of {log_path}:\n{log_tail.rstrip()}"
    else:
        what += f"\nIts output file {log_path} is empty or unreadable."
    return what


#: what an ended job's state means when the scheduler gives no reason
_END_STATES = {
    JobState.TIMEOUT: "the job reached its time limit",
    JobState.CANCELLED: "cancelled outside JupyterHub",
    JobState.NOT_FOUND: "the scheduler no longer knows the job",
}


def end_message(backend: Backend, job_id: str, status: JobStatus, exit_code: int | None) -> str:
    """Why the job of a server that was running ended: "Job 12 ended at 14:05 (TIMEOUT:
    the job reached its time limit)". For the hub log and the user's next spawn."""
    what = f"Job {job_id} ended"
    if status.end_time is not None:
        fmt = "%H:%M" if status.end_time.date() == datetime.now().date() else "%Y-%m-%d %H:%M"
        what += f" at {status.end_time.strftime(fmt)}"
    if exit_code is not None and status.state not in (JobState.TIMEOUT, JobState.CANCELLED):
        what += f" with exit code {exit_code}"
    details = [] if status.state is JobState.NOT_FOUND else [status.native_state or status.state.value]
    reason = backend.describe_reason(status.reason) or _END_STATES.get(status.state)
    if reason:
        details.append(reason)
    return f"{what} ({': '.join(details)})." if details else f"{what}."
