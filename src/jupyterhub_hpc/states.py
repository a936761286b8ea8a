"""Scheduler-neutral job states and the typed status every backend parser returns."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime


class JobState(str, enum.Enum):
    """The life cycle of a batch job, as far as the hub needs to know it.

    ``UNKNOWN`` means "the scheduler did not answer"; it is never taken as
    "the job is gone". ``NOT_FOUND`` means the scheduler answered and does not
    know the job (any more): the caller then looks for an exit status elsewhere.
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    UNKNOWN = "UNKNOWN"
    NOT_FOUND = "NOT_FOUND"

    @property
    def is_active(self) -> bool:
        """True while the job may still be (or become) a running server."""
        return self in _ACTIVE

    @property
    def is_final(self) -> bool:
        """True once the scheduler has confirmed the job ended."""
        return self in _FINAL


_ACTIVE = frozenset({JobState.PENDING, JobState.RUNNING, JobState.COMPLETING, JobState.UNKNOWN})
_FINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT})


@dataclass(frozen=True)
class JobStatus:
    """One job's status as parsed from one scheduler answer.

    ``host`` is the (first) execution host, ``reason`` the scheduler's own
    reason code for a pending or ended job, ``exit_code`` the job script's exit
    status once known, ``expected_start`` the scheduler's estimate for a pending
    job and ``end_time`` the (expected) end of a running or ended job. Where the scheduler
    reports them (Slurm), ``nodes`` lists every node of the job (expanded, in order) and
    ``time_limit_seconds`` is its current time limit (None: unlimited or not reported); for
    a running or ended job ``expected_start`` is the time it started.
    """

    job_id: str
    state: JobState
    host: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    expected_start: datetime | None = None
    end_time: datetime | None = None
    partition: str | None = None
    native_state: str | None = None
    nodes: tuple[str, ...] = ()
    time_limit_seconds: int | None = None

    def with_state(self, state: JobState) -> JobStatus:
        """A copy of this status in another state (the other fields are kept)."""
        return dataclasses.replace(self, state=state)
