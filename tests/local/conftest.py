"""Fixtures of the local-backend tests: a scheduler state directory the test users can
reach, the scheduler's own command line, and hubs that use ``spawner_class = "local-hpc"``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub import VENV_BIN, Hub
from jupyterhub_hpc.local_scheduler.store import StateDir, job_processes

LOCAL = str(VENV_BIN / "jupyterhub-hpc-local")
USERS = ["hpcuser1", "hpcuser2", "hpcuser3"]


class LocalQueue:
    """One state directory of the local scheduler, driven through its real command line."""

    def __init__(self) -> None:
        # not under pytest's tmp_path (mode 0700): the test users' jobs must reach it
        self.root = Path(tempfile.mkdtemp(prefix="jhpc-local-test-"))
        os.chmod(self.root, 0o711)
        self.state_dir = self.root / "jobs"
        self.log_dir = self.root / "logs"
        for path in (self.state_dir, self.log_dir):
            path.mkdir()
            os.chmod(path, 0o1777)

    def run(
        self, *args: str, user: str | None = None, input: str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        prefix = ["sudo", "-n", "-u", user, "--"] if user else []
        return subprocess.run(
            [*prefix, LOCAL, f"--state-dir={self.state_dir}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
            cwd="/tmp",
        )

    def submit(self, script: str, *options: str, user: str | None = None) -> str:
        result = self.run("submit", *options, user=user, input=script)
        assert result.returncode == 0, result.stderr
        job_id = result.stdout.strip()
        assert job_id.isdigit(), result.stdout
        return job_id

    def status(self, *job_ids: str) -> dict[str, dict[str, Any]]:
        result = self.run("status", *job_ids, check=True)
        records = [json.loads(line) for line in result.stdout.splitlines()]
        return {r["id"]: r for r in records}

    def wait_state(self, job_id: str, *states: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            record = self.status(job_id).get(job_id, {})
            if record.get("state") in states:
                return record
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} not {states} in {timeout} s: {record}")
            time.sleep(0.1)

    def processes(self, job_id: str) -> list[int]:
        """Live processes of the job (they carry its environment marker)."""
        return job_processes(StateDir(self.state_dir).marker(job_id))

    def cleanup(self) -> None:
        active = [j for j, r in self.status().items() if r["state"] in ("PENDING", "RUNNING")]
        if active:
            self.run("cancel", *active)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(
                r["state"] in ("PENDING", "RUNNING") for r in self.status(*active).values()
            ):
                time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def queue() -> Iterator[LocalQueue]:
    q = LocalQueue()
    yield q
    q.cleanup()


#: quick status and poll intervals; a short grace between SIGTERM and SIGKILL
FAST: dict[str, Any] = {
    "status_interval": 2.0,
    "command_timeout": 20.0,
    "poll_interval": 3,
    "local_kill_wait": 3.0,
}


@pytest.fixture
def local_hub_factory(queue: LocalQueue, tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    # the hubs' own files (tokens, database) stay private, next to the queue rather than in
    # tmp_path, which a concurrent pytest session may prune; their logs are copied there at the end
    private = queue.root / "hubs"
    private.mkdir(mode=0o700)
    hubs: list[Hub] = []

    def make(**spawner: Any) -> Hub:
        settings = {
            **FAST,
            "local_state_dir": str(queue.state_dir),
            # job ids restart with every queue: keep the logs out of the users' homes
            "job_output": str(queue.log_dir / "{username}-{job_id}.log"),
            **spawner,
        }
        hub = Hub(private / f"hub{len(hubs)}", spawner=settings, spawner_class="local-hpc")
        hubs.append(hub)
        return hub

    yield make
    for n, hub in enumerate(hubs):
        hub.kill_all()
        with contextlib.suppress(OSError):
            shutil.copy(hub.log_path, tmp_path / f"hub{n}.log")
