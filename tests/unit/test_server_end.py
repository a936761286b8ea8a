"""Why a running server ended: the message built from the scheduler's final status, logged once
by ``poll``, kept in the spawner state across ``clear_state`` (JupyterHub stores ``get_state()``
after it) and shown as the first progress event of the next spawn. The live walltime kill is in
tests/e2e/test_slurm_multinode.py."""

from __future__ import annotations

import logging
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from jupyterhub_hpc.backends.slurm import SlurmBackend
from jupyterhub_hpc.progress import end_message
from jupyterhub_hpc.spawner import SlurmSpawner
from jupyterhub_hpc.states import JobState, JobStatus

TODAY_14_05 = datetime.now().replace(hour=14, minute=5, second=0, microsecond=0)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (
            JobStatus(
                "12", JobState.TIMEOUT, reason="TimeLimit", native_state="TIMEOUT", end_time=TODAY_14_05
            ),
            143,
            "Job 12 ended at 14:05 (TIMEOUT: the job reached its time limit).",
        ),
        (  # no reason from the scheduler: the state still says it
            JobStatus("12", JobState.TIMEOUT, native_state="DEADLINE"),
            None,
            "Job 12 ended (DEADLINE: the job reached its time limit).",
        ),
        (
            JobStatus("7", JobState.CANCELLED, native_state="CANCELLED"),
            143,
            "Job 7 ended (CANCELLED: cancelled outside JupyterHub).",
        ),
        (
            JobStatus("8", JobState.FAILED, reason="OutOfMemory", native_state="OUT_OF_MEMORY"),
            137,
            "Job 8 ended with exit code 137 (OUT_OF_MEMORY: the job ran out of memory).",
        ),
        (
            JobStatus("9", JobState.COMPLETED, native_state="COMPLETED"),
            0,
            "Job 9 ended with exit code 0 (COMPLETED).",
        ),
        (
            JobStatus("10", JobState.NOT_FOUND),
            3,
            "Job 10 ended with exit code 3 (the scheduler no longer knows the job).",
        ),
    ],
)
def test_end_message(status: JobStatus, code: int | None, expected: str) -> None:
    assert end_message(SlurmBackend(), status.job_id, status, code) == expected


class StubWatcher:
    def __init__(self, status: JobStatus) -> None:
        self.answer = status
        self.unregistered: list[str] = []

    async def status(self, job_id: str) -> JobStatus:
        return self.answer

    def unregister(self, job_id: str) -> None:
        self.unregistered.append(job_id)


def make_spawner(monkeypatch: pytest.MonkeyPatch, status: JobStatus) -> SlurmSpawner:
    watcher = StubWatcher(status)
    monkeypatch.setattr(SlurmSpawner, "watcher", property(lambda self: watcher))
    spawner = SlurmSpawner()
    spawner.user = SimpleNamespace(name="alice")
    spawner.load_state({"job_id": "12", "backend": "slurm", "host": "gpu1", "port": 8888})
    return spawner


async def test_poll_logs_the_end_once_and_the_state_keeps_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    status = JobStatus("12", JobState.TIMEOUT, reason="TimeLimit", native_state="TIMEOUT", exit_code=143)
    spawner = make_spawner(monkeypatch, status)
    spawner.log = logging.getLogger("test-server-end")
    with caplog.at_level(logging.INFO, logger="test-server-end"):
        # JupyterHub polls several times once the server is gone (poll callback, user_stopped, stop)
        assert await spawner.poll() == 143
        assert await spawner.poll() == 143
    logged = [r.getMessage() for r in caplog.records if "server stopped" in r.getMessage()]
    assert logged == ["alice: server stopped: Job 12 ended (TIMEOUT: the job reached its time limit)."]
    assert logged[0].endswith(spawner._last_end)

    # what User.stop does next: clear_state, then store get_state() in the database
    spawner.clear_state()
    stored: dict[str, Any] = spawner.get_state()
    assert "job_id" not in stored
    assert stored["last_end"] == "Job 12 ended (TIMEOUT: the job reached its time limit)."

    # the next spawn is a new Spawner object that loads the stored state
    following = SlurmSpawner()
    following.load_state(stored)
    assert following._last_end == stored["last_end"]


async def test_the_next_start_shows_it_first_then_forgets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    spawner = make_spawner(monkeypatch, JobStatus("12", JobState.RUNNING))
    spawner.load_state({"last_end": "Job 12 ended (TIMEOUT: the job reached its time limit)."})

    class Stop(Exception):
        pass

    def stop_before_submitting() -> None:
        raise Stop

    monkeypatch.setattr(spawner, "validated_request", stop_before_submitting)
    with pytest.raises(Stop):
        await spawner.start()
    assert spawner._events[0] == {
        "progress": 0,
        "message": "Your previous server stopped: Job 12 ended (TIMEOUT: the job reached its time limit).",
    }
    assert "last_end" not in spawner.get_state()


async def test_a_running_job_records_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    spawner = make_spawner(monkeypatch, JobStatus("12", JobState.RUNNING, host="gpu1"))
    assert await spawner.poll() is None
    assert spawner._last_end == ""
    assert "last_end" not in spawner.get_state()
