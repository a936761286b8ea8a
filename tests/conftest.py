"""Shared fixtures. Real-scheduler tests need the services `make test` starts
(scripts/slurm.sh, scripts/test-users.sh); they fail, never skip, without them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hub import Hub


def slurm_jobs(user: str) -> dict[str, str]:
    """{job id: state} of a user's jobs in the live queue (pending and running only)."""
    out = subprocess.run(
        ["squeue", "--noheader", f"--user={user}", "--states=PENDING,RUNNING,COMPLETING", "--format=%i|%T"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("|", 1) for line in out.split())


def cancel_all(users: list[str]) -> None:
    subprocess.run(["scancel", *[f"--user={u}" for u in users][:1]], check=False)
    for u in users:
        subprocess.run(["scancel", f"--user={u}"], check=False)


@pytest.fixture
def hub_factory(tmp_path: Path) -> Iterator[object]:
    hubs: list[Hub] = []

    def make(**spawner: object) -> Hub:
        hub = Hub(tmp_path / f"hub{len(hubs)}", spawner=dict(spawner))
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.kill_all()
