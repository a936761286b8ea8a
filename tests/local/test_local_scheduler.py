"""The local scheduler's command line (``jupyterhub-hpc-local``), through real processes,
and the ``local`` backend's argv builders and parsers against what it really prints."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

import pytest

from jupyterhub_hpc.backends import JobScript, backend_class
from jupyterhub_hpc.backends.local import LocalBackend
from jupyterhub_hpc.commands import run_command
from jupyterhub_hpc.request import JobRequest
from jupyterhub_hpc.states import JobState

from .conftest import LOCAL, LocalQueue


def script(body: str, *directives: str) -> str:
    lines = ["#!/bin/bash", *(f"#LOCAL {d}" for d in directives), body, ""]
    return "\n".join(lines)


def test_a_job_runs_and_its_end_is_kept(queue: LocalQueue) -> None:
    out = queue.log_dir / "hello-%j.txt"
    job = queue.submit(script("echo hello from $JUPYTERHUB_HPC_JOB_ID; sleep 1", f"--output={out}"))
    running = queue.wait_state(job, "RUNNING", timeout=5)
    assert running["host"] and running["started"] and running["exit_code"] is None
    assert running["ended"] == pytest.approx(running["started"] + 86400)  # the default walltime
    done = queue.wait_state(job, "COMPLETED", "FAILED", timeout=10)
    assert done["state"] == "COMPLETED" and done["exit_code"] == 0, done
    assert (queue.log_dir / f"hello-{job}.txt").read_text() == f"hello from {job}\n"
    # a later, separate status call still knows how it ended
    assert queue.status(job)[job]["state"] == "COMPLETED"
    assert queue.status("999") == {}


def test_exit_status_and_failure(queue: LocalQueue) -> None:
    job = queue.submit(script("echo boom; exit 3", f"--output={queue.log_dir}/f-%j"))
    done = queue.wait_state(job, "COMPLETED", "FAILED", timeout=10)
    assert (done["state"], done["exit_code"], done["reason"]) == ("FAILED", 3, "NonZeroExitCode")


def test_walltime_terminates_then_kills(queue: LocalQueue) -> None:
    # the job ignores SIGTERM: it gets SIGKILL after --kill-wait
    body = "trap 'echo got TERM' TERM\nwhile true; do sleep 0.1; done"
    t0 = time.monotonic()
    job = queue.submit(script(body, "--walltime=2", "--kill-wait=1", f"--output={queue.log_dir}/w-%j"))
    done = queue.wait_state(job, "TIMEOUT", "COMPLETED", "FAILED", "CANCELLED", timeout=15)
    elapsed = time.monotonic() - t0
    assert (done["state"], done["reason"], done["exit_code"]) == ("TIMEOUT", "TimeLimit", 128 + 9), done
    assert 2.5 < elapsed < 8, elapsed
    assert 2.9 < done["ended"] - done["started"] < 5
    assert "got TERM" in (queue.log_dir / f"w-{job}").read_text()
    assert queue.processes(job) == []


def test_walltime_with_a_job_that_obeys_sigterm(queue: LocalQueue) -> None:
    job = queue.submit(script("exec sleep 300", "--walltime=00:00:01", f"--output={queue.log_dir}/t-%j"))
    done = queue.wait_state(job, "TIMEOUT", "COMPLETED", "FAILED", timeout=10)
    assert (done["state"], done["exit_code"]) == ("TIMEOUT", 128 + 15), done


def test_concurrency_limit_queues_in_order_and_cancel(queue: LocalQueue) -> None:
    opts = ["--max-running=1", f"--output={queue.log_dir}/q-%j"]
    first = queue.submit(script("sleep 300"), *opts)
    second = queue.submit(script("echo second ran; sleep 300"), *opts)
    third = queue.submit(script("sleep 300"), *opts)
    queue.wait_state(first, "RUNNING", timeout=5)
    assert queue.wait_state(second, "PENDING")["reason"] == "JobLimit"
    time.sleep(1)  # several turns of the queue: still waiting
    states = queue.status(first, second, third)
    assert [states[j]["state"] for j in (first, second, third)] == ["RUNNING", "PENDING", "PENDING"]
    assert not (queue.log_dir / f"q-{second}").exists()

    # cancelling a pending job: it never runs
    assert queue.run("cancel", third).returncode == 0
    assert queue.wait_state(third, "CANCELLED", timeout=5)["started"] is None
    # cancelling the running one frees its slot for the next in line
    assert queue.run("cancel", first).returncode == 0
    cancelled = queue.wait_state(first, "CANCELLED", timeout=10)
    assert cancelled["exit_code"] == 128 + 15
    queue.wait_state(second, "RUNNING", timeout=5)
    assert queue.processes(first) == []
    # cancel of an ended job is harmless; of an unknown job an error
    again = queue.run("cancel", first)
    assert again.returncode == 0 and "already ended" in again.stderr
    unknown = queue.run("cancel", "4242")
    assert unknown.returncode == 1 and "unknown job 4242" in unknown.stderr


def test_command_line_options_win_over_directives(queue: LocalQueue, tmp_path: Path) -> None:
    job = queue.submit(
        script("pwd; sleep 30", "--walltime=2", "--job-name=from-script", f"--output={queue.log_dir}/d-%j"),
        "--job-name=from-cli",
        "--chdir=/usr",
    )
    record = queue.status(job)[job]
    assert record["name"] == "from-cli" and record["walltime"] == 2
    done = queue.wait_state(job, "TIMEOUT", timeout=15)
    assert (queue.log_dir / f"d-{job}").read_text().splitlines()[0] == "/usr", done
    bad = queue.run("submit", input=script("true", "--walltime=soon"))
    assert bad.returncode != 0 and "bad #LOCAL line" in bad.stderr


def test_stragglers_in_other_sessions_are_killed_with_the_job(queue: LocalQueue) -> None:
    # like a Jupyter kernel: a process in a new session, left behind when the job's shell ends
    job = queue.submit(script("setsid sleep 300 & sleep 0.5", f"--output={queue.log_dir}/s-%j"))
    queue.wait_state(job, "COMPLETED", timeout=10)
    assert queue.processes(job) == []


def test_a_killed_supervisor_is_reported_and_cancel_cleans_up(queue: LocalQueue) -> None:
    job = queue.submit(script("sleep 300", f"--output={queue.log_dir}/k-%j"))
    queue.wait_state(job, "RUNNING", timeout=5)
    supervisor = json.loads((queue.state_dir / job / "state.json").read_text())["supervisor"]["pid"]
    os.kill(supervisor, signal.SIGKILL)
    lost = queue.wait_state(job, "FAILED", timeout=5)
    assert lost["reason"] == "SupervisorLost"
    assert queue.processes(job), "the job itself still runs"
    assert queue.run("cancel", job).returncode == 0
    assert queue.processes(job) == []


def test_jobs_of_other_users(queue: LocalQueue) -> None:
    opts = [f"--output={queue.log_dir}/u-%j", "--chdir=/tmp"]
    job = queue.submit(script("id -un; sleep 300"), *opts, user="hpcuser1")
    record = queue.wait_state(job, "RUNNING", timeout=5)
    assert record["user"] == "hpcuser1"
    assert (queue.state_dir / job).stat().st_uid == pwd.getpwnam("hpcuser1").pw_uid
    time.sleep(0.3)
    assert (queue.log_dir / f"u-{job}").read_text().startswith("hpcuser1\n")
    refused = queue.run("cancel", job, user="hpcuser2")
    assert refused.returncode == 1 and "belongs to hpcuser1" in refused.stderr
    assert queue.run("cancel", job, user="hpcuser1").returncode == 0
    queue.wait_state(job, "CANCELLED", timeout=10)


def test_an_unsafe_state_directory_is_refused(tmp_path: Path) -> None:
    unsafe = tmp_path / "unsafe"
    unsafe.mkdir()
    os.chmod(unsafe, 0o777)
    for args, stdin in ((["submit"], script("true")), (["status"], None)):
        result = subprocess.run(
            [LOCAL, f"--state-dir={unsafe}", *args], input=stdin, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 1 and "not sticky" in result.stderr, result
    assert list(unsafe.iterdir()) == []


def test_backend_round_trip_through_the_real_program(queue: LocalQueue) -> None:
    """The backend's argv and script, run for real, parsed by the backend's own parsers."""
    assert backend_class("local") is LocalBackend
    backend = LocalBackend(state_dir=str(queue.state_dir), max_running=2, kill_wait=1)
    request = JobRequest.from_mapping({"job_name": "roundtrip", "walltime": "00:01:00"})
    job = JobScript(
        workdir="/tmp",
        output_path=str(queue.log_dir / "r-%j.log"),
        command=["/bin/sh", "-c", "echo started; sleep 300"],
        environment={"GREETING": "it's quoted"},
        prologue="echo $GREETING",
    )
    text = backend.render(request, job)
    assert "#LOCAL --walltime=60" in text and "#LOCAL --max-running=2" in text

    async def go() -> None:
        submitted = await run_command(backend.submit_argv(request), input=text)
        job_id = backend.parse_submit(submitted)
        deadline = time.monotonic() + 10
        while True:
            statuses = backend.parse_status(
                await run_command(backend.status_argv([job_id, "777"])), [job_id, "777"]
            )
            if statuses[job_id].state is JobState.RUNNING or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert statuses[job_id].state is JobState.RUNNING and statuses[job_id].host
        assert statuses["777"].state is JobState.NOT_FOUND
        running = statuses[job_id]
        assert running.end_time is not None and running.expected_start is not None
        # what the job card shows: started, its limit, and the end the walltime sets
        assert running.time_limit_seconds == 60
        assert abs((running.end_time - running.expected_start).total_seconds() - 60) < 0.01
        backend.parse_cancel(await run_command(backend.cancel_argv(job_id)))
        backend.parse_cancel(await run_command(backend.cancel_argv("777")))  # gone already: fine
        queue.wait_state(job_id, "CANCELLED", timeout=5)
        final = backend.parse_status(await run_command(backend.status_argv([job_id])), [job_id])[job_id]
        assert final.state is JobState.CANCELLED and final.exit_code == 128 + 15
        log = (queue.log_dir / f"r-{job_id}.log").read_text()
        assert log.startswith("it's quoted\nstarted\n"), log

    asyncio.run(go())
