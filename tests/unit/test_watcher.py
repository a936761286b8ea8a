"""The shared queue watcher against a fake ``squeue`` (``tests/fakes/squeue``), run as a real
subprocess. Every invocation of the fake is logged, so the tests count scheduler calls."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jupyterhub_hpc.backends.slurm import SlurmBackend
from jupyterhub_hpc.client import ClientSettings, Prefixes, SchedulerClient, get_client
from jupyterhub_hpc.ssh import SSHSettings
from jupyterhub_hpc.states import JobState
from jupyterhub_hpc.watcher import (
    QUERY_DURATION_BOUNDS,
    QueueWatcher,
    WatcherSettings,
    all_snapshots,
    all_watchers,
    get_watcher,
)

FAKES = Path(__file__).resolve().parents[1] / "fakes"
OUTAGE = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"


@dataclass(frozen=True)
class Call:
    prog: str
    argv: list[str]
    time: float
    pid: int
    mode: str

    @property
    def job_ids(self) -> list[str]:
        value = next(a for a in self.argv if a.startswith("--jobs="))
        return value.removeprefix("--jobs=").split(",")


class FakeSlurm:
    """The state file the fake squeue/sacct read, and the log they write."""

    def __init__(self, directory: Path) -> None:
        self.state_path = directory / "slurm-state.json"
        self.log_path = directory / "slurm-state.json.log"
        self.state: dict[str, Any] = {"jobs": {}}
        self.save()

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.state_path)

    def set_job(self, job_id: str, state: str = "RUNNING", **fields: str) -> None:
        self.state["jobs"][job_id] = {"State": state, **fields}
        self.save()

    def remove_job(self, job_id: str) -> None:
        del self.state["jobs"][job_id]
        self.save()

    def set(self, **options: Any) -> None:
        """``fail=True`` (controller outage), ``hang=seconds``, ``delay=seconds``, ``accounting={...}``;
        ``None`` clears an option."""
        for key, value in options.items():
            if key == "fail" and value is True:
                value = {"stderr": OUTAGE, "returncode": 1}
            if value is None:
                self.state.pop(key, None)
            else:
                self.state[key] = value
        self.save()

    def calls(self, prog: str = "squeue") -> list[Call]:
        if not self.log_path.exists():
            return []
        calls = [Call(**json.loads(line)) for line in self.log_path.read_text().splitlines()]
        return [c for c in calls if c.prog == prog]

    def backend(self, cluster: str = "") -> SlurmBackend:
        return SlurmBackend(
            cluster=cluster, commands={"squeue": str(FAKES / "squeue"), "sacct": str(FAKES / "sacct")}
        )


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
    slurm = FakeSlurm(tmp_path)
    monkeypatch.setenv("FAKE_SLURM_STATE", str(slurm.state_path))
    monkeypatch.delenv("FAKE_SLURM_LOG", raising=False)
    # the fakes say "#!/usr/bin/env python3": find this interpreter first, not a slow shim
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return slurm


@pytest.fixture
async def make_watcher(fake: FakeSlurm) -> AsyncIterator[Callable[..., QueueWatcher]]:
    made: list[QueueWatcher] = []

    def make(**settings: float) -> QueueWatcher:
        values: dict[str, float] = {"interval": 30.0, "fast_interval": 30.0, "timeout": 5.0, "coalesce": 0.01}
        values.update(settings)
        watcher = QueueWatcher(SchedulerClient(fake.backend()), settings=WatcherSettings(**values))
        made.append(watcher)
        return watcher

    yield make
    for watcher in made:
        watcher.stop()
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if pending:
        await asyncio.wait(pending, timeout=5)
    # a query cancelled mid-flight had its process killed: let the loop reap it and close
    # its pipes, or the transport is finalised after the loop is closed
    await asyncio.sleep(0.05)


def gaps(calls: list[Call]) -> list[float]:
    return [b.time - a.time for a, b in itertools.pairwise(calls)]


async def until(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> float:
    """Wait until ``condition()`` holds; return the seconds it took, fail after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)
    return time.monotonic() - started


# -- one command per interval ----------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 10, 50])
async def test_one_command_per_interval_for_all_jobs(
    count: int, fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    ids = [str(1000 + i) for i in range(count)]
    for i, job_id in enumerate(ids):
        fake.set_job(job_id, "RUNNING", BatchHost=f"c{i:03d}")
    watcher = make_watcher(interval=0.25, fast_interval=0.05)

    statuses = await asyncio.gather(*(watcher.status(j) for j in ids))
    assert [s.state for s in statuses] == [JobState.RUNNING] * count
    assert [s.host for s in statuses] == [f"c{i:03d}" for i in range(count)]
    assert len(fake.calls()) == 1, "the first load of every job is one command"

    before = len(fake.calls())
    await asyncio.sleep(1.3)
    window = fake.calls()[before:]
    # at most one command per interval started in the window (fewer when the machine is slow)
    assert 2 <= len(window) <= 1.3 / 0.25 + 1, [c.time for c in window]
    assert all(sorted(c.job_ids) == sorted(ids) for c in window)


async def test_hurry_uses_the_fast_cadence_still_one_command(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    ids = ["1", "2", "3"]
    for job_id in ids:
        fake.set_job(job_id, "PENDING", Reason="Priority")
    watcher = make_watcher(interval=30, fast_interval=0.1)
    await asyncio.gather(*(watcher.status(j) for j in ids))
    await asyncio.sleep(0.5)
    assert len(fake.calls()) == 1, "no query within the slow interval"

    before = len(fake.calls())
    with watcher.hurry(), watcher.hurry():  # two spawns waiting at once
        await asyncio.sleep(1.0)
    fast = fake.calls()[before:]
    assert 4 <= len(fast) <= 1.0 / 0.1 + 1, [c.time for c in fast]
    assert all(sorted(c.job_ids) == ids for c in fast)

    after = len(fake.calls())
    await asyncio.sleep(0.8)
    assert len(fake.calls()) - after <= 1, "back to the slow interval once no spawn waits"


# -- outages -----------------------------------------------------------------------------------------


async def test_failing_command_gives_unknown_with_exponential_backoff(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    fake.set_job("7", "RUNNING", BatchHost="c042")
    watcher = make_watcher(interval=0.2, fast_interval=0.05, max_backoff=100)
    assert (await watcher.status("7")).state is JobState.RUNNING

    fake.set(fail=True)
    seen: set[JobState] = set()

    def outage_calls() -> list[Call]:
        seen.add(watcher.cached("7").state)
        return [c for c in fake.calls() if c.mode == "fail"]

    await until(lambda: len(outage_calls()) >= 3, timeout=10)
    status = watcher.cached("7")
    assert status.state is JobState.UNKNOWN
    assert status.host == "c042", "what was known before the outage is kept"
    assert seen <= {JobState.RUNNING, JobState.UNKNOWN}
    first, second = gaps(outage_calls()[:3])
    # no retry at the 0.2 s interval: 2 s, then 4 s (process start-up jitter allowed)
    assert 1.7 <= first <= 3.0, first
    assert 3.5 <= second <= 5.5 and second >= 1.5 * first, (first, second)


async def test_hanging_command_is_killed_and_gives_unknown(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    fake.set_job("7", "RUNNING", BatchHost="c042")
    watcher = make_watcher(interval=0.2, fast_interval=0.05, timeout=0.3)
    assert (await watcher.status("7")).state is JobState.RUNNING

    fake.set(hang=60)
    took = await until(lambda: watcher.cached("7").state is not JobState.RUNNING, timeout=3)
    assert took < 1.5
    assert watcher.cached("7").state is JobState.UNKNOWN
    hung = [c for c in fake.calls() if c.mode == "hang"]
    assert hung
    await until(lambda: not Path(f"/proc/{hung[0].pid}").exists(), timeout=2)


async def test_recovery_after_an_outage(fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]) -> None:
    fake.set_job("7", "PENDING", Reason="Priority")
    watcher = make_watcher(interval=0.2, fast_interval=0.05, max_backoff=0.4)
    assert (await watcher.status("7")).state is JobState.PENDING

    seen: set[JobState] = set()

    def watch(condition: Callable[[], bool]) -> Callable[[], bool]:
        def check() -> bool:
            seen.add(watcher.cached("7").state)
            return condition()

        return check

    fake.set(fail=True)
    await until(watch(lambda: len([c for c in fake.calls() if c.mode == "fail"]) >= 2), timeout=5)
    assert watcher.cached("7").state is JobState.UNKNOWN
    fake.set_job("7", "RUNNING", BatchHost="c007")  # the job started during the outage
    fake.set(fail=None)
    await until(watch(lambda: watcher.cached("7").state is JobState.RUNNING), timeout=3)
    assert watcher.cached("7").host == "c007"
    assert watcher.failures == 0
    assert seen <= {JobState.PENDING, JobState.UNKNOWN, JobState.RUNNING}


async def test_first_load_gate_is_bounded_by_the_timeout(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    fake.set_job("7", "RUNNING")
    fake.set(hang=60)
    watcher = make_watcher(timeout=0.3)
    started = time.monotonic()
    status = await watcher.status("7")
    assert status.state is JobState.UNKNOWN
    assert time.monotonic() - started < 2


# -- NOT_FOUND ----------------------------------------------------------------------------------------


async def test_not_found_only_after_two_answers_without_the_job(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    fake.set_job("1", "RUNNING")
    fake.set_job("2", "RUNNING")
    watcher = make_watcher()  # 30 s intervals: the test drives every query itself
    watcher.register("2")
    assert (await watcher.status("1")).state is JobState.RUNNING
    assert watcher.cached("2").state is JobState.RUNNING

    fake.remove_job("2")
    await watcher.refresh()
    assert watcher.cached("2").state is JobState.RUNNING, "one answer without the job is not enough"
    assert fake.calls("sacct") == []
    await watcher.refresh()
    assert watcher.cached("2").state is JobState.NOT_FOUND
    assert watcher.cached("1").state is JobState.RUNNING
    assert [c.job_ids for c in fake.calls("sacct")] == [["2"]], "accounting is asked once, about that job"


async def test_absences_must_be_consecutive(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    fake.set_job("1", "RUNNING")
    fake.set_job("2", "RUNNING")
    watcher = make_watcher()
    watcher.register("2")
    await watcher.status("1")
    for _ in range(3):
        fake.remove_job("2")
        await watcher.refresh()
        fake.set_job("2", "RUNNING")
        await watcher.refresh()
        assert watcher.cached("2").state is JobState.RUNNING


async def test_failed_queries_never_make_a_job_not_found(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    fake.set_job("1", "RUNNING")
    watcher = make_watcher()
    await watcher.status("1")
    fake.set(fail=True)
    for _ in range(4):
        await watcher.refresh()
        assert watcher.cached("1").state is JobState.UNKNOWN
    assert fake.calls("sacct") == []


async def test_single_unknown_id_answer_counts_as_not_found(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    """squeue exits 1 with 'Invalid job id specified' when its only id is unknown (recorded)."""
    fake.set_job("5", "RUNNING")
    watcher = make_watcher()
    await watcher.status("5")
    fake.remove_job("5")
    await watcher.refresh()
    assert watcher.cached("5").state is JobState.RUNNING
    await watcher.refresh()
    assert watcher.cached("5").state is JobState.NOT_FOUND
    assert watcher.failures == 0


async def test_accounting_gives_the_final_state(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    fake.set_job("1", "RUNNING")
    fake.set_job("2", "RUNNING")
    fake.set(accounting={"2": "FAILED|3:0|c042|2026-11-26T01:25:14"})
    watcher = make_watcher()
    watcher.register("2")
    await watcher.status("1")
    fake.remove_job("2")
    await watcher.refresh()
    await watcher.refresh()
    status = watcher.cached("2")
    assert (status.state, status.exit_code, status.host) == (JobState.FAILED, 3, "c042")


async def test_accounting_is_not_asked_again_once_disabled(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    for job_id in ["1", "2", "3"]:
        fake.set_job(job_id, "RUNNING")
    watcher = make_watcher()
    watcher.register("2")
    watcher.register("3")
    await watcher.status("1")
    for gone in ["2", "3"]:
        fake.remove_job(gone)
        await watcher.refresh()
        await watcher.refresh()
        assert watcher.cached(gone).state is JobState.NOT_FOUND
    assert len(fake.calls("sacct")) == 1


# -- first load, changes, registration ------------------------------------------------------------------


async def test_first_load_gate_waits_for_the_first_answer(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    fake.set_job("7", "RUNNING", BatchHost="c042")
    fake.set(delay=0.6)
    watcher = make_watcher()
    assert watcher.cached("7").state is JobState.UNKNOWN
    started = time.monotonic()
    status = await watcher.status("7")
    assert time.monotonic() - started >= 0.55
    assert (status.state, status.host) == (JobState.RUNNING, "c042")
    assert len(fake.calls()) == 1


async def test_state_change_is_visible_after_the_next_refresh(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    fake.set_job("7", "PENDING", Reason="Resources")
    watcher = make_watcher(interval=0.2, fast_interval=0.05)
    first = await watcher.status("7")
    assert (first.state, first.reason, first.host) == (JobState.PENDING, "Resources", None)

    before = len(fake.calls())
    fake.set_job("7", "RUNNING", BatchHost="c009")
    await until(lambda: watcher.cached("7").state is JobState.RUNNING, timeout=2)
    assert len(fake.calls()) > before
    assert watcher.cached("7").host == "c009"
    assert watcher.cached("7").reason is None

    fake.set_job("7", "COMPLETED", exit_code="0")
    await until(lambda: watcher.cached("7").state.is_final, timeout=2)
    assert (watcher.cached("7").state, watcher.cached("7").exit_code) == (JobState.COMPLETED, 0)


async def test_wait_update_returns_after_a_query(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    fake.set_job("7", "RUNNING")
    watcher = make_watcher(interval=0.3, fast_interval=0.05)
    await watcher.status("7")
    before = len(fake.calls())
    started = time.monotonic()
    await watcher.wait_update(5)
    assert time.monotonic() - started < 1.5
    assert len(fake.calls()) == before + 1


async def test_unregistered_jobs_leave_the_query(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    fake.set_job("1", "RUNNING")
    fake.set_job("2", "RUNNING")
    watcher = make_watcher()
    watcher.register("2")
    await watcher.status("1")
    assert sorted(fake.calls()[-1].job_ids) == ["1", "2"]
    watcher.unregister("2")
    assert watcher.job_ids == ["1"]
    await watcher.refresh()
    assert fake.calls()[-1].job_ids == ["1"]
    assert watcher.cached("2").state is JobState.UNKNOWN


async def test_no_command_without_jobs(fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]) -> None:
    fake.set_job("1", "RUNNING")
    watcher = make_watcher(interval=0.1, fast_interval=0.05)
    await watcher.status("1")
    watcher.unregister("1")
    before = len(fake.calls())
    await asyncio.sleep(0.5)
    assert len(fake.calls()) - before <= 1


# -- the snapshot others read ---------------------------------------------------------------------------


async def test_snapshot_tells_states_queries_failures_and_waiting_spawns(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    fake.set_job("1", "RUNNING", BatchHost="c001")
    fake.set_job("2", "PENDING", Reason="Priority")
    # hurry() below wakes the loop, which then waits out the fast interval before it
    # queries: 20 s keeps that query out of the counts this test reads (0.5 s did not
    # on a loaded machine: the two refreshes below took longer and the loop's query
    # made it four)
    watcher = make_watcher(interval=30, fast_interval=20, max_backoff=1000)
    empty = watcher.snapshot()
    assert (empty.registered, empty.queries, empty.last_success) == (0, 0, None)
    assert empty.query_duration_counts == (0,) * len(QUERY_DURATION_BOUNDS)
    assert set(empty.jobs_by_state.values()) == {0} and set(empty.jobs_by_state) == set(JobState)

    before = time.time()
    await asyncio.gather(watcher.status("1"), watcher.status("2"))
    healthy = watcher.snapshot()
    assert (healthy.backend, healthy.cluster, healthy.status_prefix) == ("slurm", "", ())
    assert healthy.registered == 2 and healthy.waiting == 0 and healthy.interval == 30
    assert healthy.jobs_by_state[JobState.RUNNING] == healthy.jobs_by_state[JobState.PENDING] == 1
    assert sum(healthy.jobs_by_state.values()) == 2
    assert healthy.queries == 1 and healthy.query_failures == 0
    assert (healthy.consecutive_failures, healthy.backoff) == (0, 0.0)
    assert healthy.last_success is not None and healthy.last_success >= before
    # the fake is a real subprocess: the query took some time, counted in its class
    assert 0 < healthy.last_query_seconds == healthy.query_seconds_total
    assert list(healthy.query_duration_counts) == [
        int(healthy.last_query_seconds <= bound) for bound in QUERY_DURATION_BOUNDS
    ]

    with watcher.hurry(), watcher.hurry():
        hurried = watcher.snapshot()
    assert (hurried.waiting, hurried.interval) == (2, 20)

    fake.set(fail=True)
    await watcher.refresh()
    await watcher.refresh()
    failing = watcher.snapshot()
    assert (failing.queries, failing.query_failures, failing.consecutive_failures) == (3, 2, 2)
    assert failing.backoff == 30 * 2**2, "the delay before the next try while backing off"
    assert failing.jobs_by_state[JobState.UNKNOWN] == 2
    assert failing.last_success == healthy.last_success
    assert failing.query_seconds_total > healthy.query_seconds_total
    assert failing.query_duration_counts[-1] <= failing.queries

    # immutable, and not a view: the earlier snapshot still says what was true then
    assert healthy.jobs_by_state[JobState.RUNNING] == 1 and healthy.queries == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        healthy.queries = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        healthy.jobs_by_state[JobState.RUNNING] = 5  # type: ignore[index]

    fake.set(fail=None)
    await watcher.refresh()
    recovered = watcher.snapshot()
    assert (recovered.consecutive_failures, recovered.backoff, recovered.query_failures) == (0, 0.0, 2)


# -- one watcher per scheduler -------------------------------------------------------------------------


@pytest.fixture
def forget_watchers() -> Iterator[None]:
    before = {id(w) for w in all_watchers()}
    yield
    for watcher in all_watchers():
        if id(watcher) not in before:
            watcher.stop()


@pytest.mark.usefixtures("forget_watchers")
def test_get_watcher_is_shared_per_scheduler(tmp_path: Path) -> None:
    commands = {"squeue": str(tmp_path / "squeue")}
    first = get_watcher(get_client(SlurmBackend(commands=commands)), settings=WatcherSettings(interval=7))
    again = get_watcher(
        get_client(SlurmBackend(commands=dict(commands))), settings=WatcherSettings(interval=99)
    )
    assert again is first
    assert first.settings.interval == 7, "the first caller's settings win"
    assert first in all_watchers()
    assert first.snapshot() in all_snapshots()
    assert get_watcher(get_client(SlurmBackend(cluster="other", commands=commands))) is not first
    assert (
        get_watcher(get_client(SlurmBackend(commands={"squeue": str(tmp_path / "elsewhere")}))) is not first
    )
    sudo = ClientSettings(prefixes=Prefixes(status=("sudo", "-n")))
    with_prefix = get_watcher(get_client(SlurmBackend(commands=commands), sudo))
    assert with_prefix is not first
    assert with_prefix.snapshot().status_prefix == ("sudo", "-n")
    assert get_watcher(get_client(SlurmBackend(commands=commands), sudo)) is with_prefix
    remote = ClientSettings(ssh=SSHSettings(host="login1"))
    over_ssh = get_watcher(get_client(SlurmBackend(commands=commands), remote))
    assert over_ssh is not first and over_ssh.client.remote


# -- cancellation ---------------------------------------------------------------------------------------


async def test_a_cancelled_loop_ends_even_when_woken_in_the_same_step(
    fake: FakeSlurm, make_watcher: Callable[..., QueueWatcher]
) -> None:
    """``asyncio.run`` cancels what is left once, at exit: Python 3.11's ``wait_for`` returned the
    wake-up instead of the cancellation when both came in one step, and the loop ran on (a kernel
    driver hung at exit, seen live on Grid Engine)."""
    fake.set_job("1", "RUNNING")
    watcher = make_watcher(interval=30.0, fast_interval=30.0)
    await watcher.status("1")
    await asyncio.sleep(0.05)  # the loop waits for its interval, or a wake-up
    task = watcher._task
    assert task is not None and not task.done()
    watcher.refresh_soon()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done and task.cancelled()
