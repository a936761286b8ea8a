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
