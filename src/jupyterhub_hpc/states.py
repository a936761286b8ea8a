"""Scheduler-neutral job states and the typed status every backend parser returns."""

from __future__ import annotations

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
    job and ``end_time`` the (expected) end of a running or ended job.
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

    def with_state(self, state: JobState) -> JobStatus:
        """A copy of this status in another state (the other fields are kept)."""
        return JobStatus(
            job_id=self.job_id,
            state=state,
            host=self.host,
            reason=self.reason,
            exit_code=self.exit_code,
            expected_start=self.expected_start,
            end_time=self.end_time,
            partition=self.partition,
            native_state=self.native_state,
        )
