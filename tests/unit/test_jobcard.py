"""The job card (jupyterhub_hpc.jobcard): the contract's JSON from typed values, the Slurm status
as the watcher keeps it, the spawner's state round trip, and the server token's scopes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from jupyterhub_hpc.backends.slurm import SlurmBackend
from jupyterhub_hpc.cardoptions import DEFAULT_SERVER_SCOPES, hpc_server_token_scopes
from jupyterhub_hpc.jobcard import (
    CardSettings,
    JobResources,
    build_card,
    card_state,
    iso_utc,
    resources_of,
)
from jupyterhub_hpc.request import JobRequest
from jupyterhub_hpc.spawner import SlurmSpawner
from jupyterhub_hpc.states import JobState, JobStatus

NOW = datetime(2026, 12, 3, 7, 30, tzinfo=timezone.utc)
SLURM = SlurmBackend()
RESOURCES = JobResources(
    partition="debug", cores=2, memory_mib=2048, gpus=0, nodes=1, time_limit_seconds=3600
)


def card(status: JobStatus | None, job_id: str | None = "123", **kwargs: object) -> dict[str, object]:
    values: dict[str, object] = {
        "now": NOW,
        "user": "alice",
        "server_name": "",
        "backend": "slurm",
        "cluster": "",
        "profile": "gpu",
        "job_id": job_id,
        "resources": RESOURCES,
        "status": status,
        "describe_reason": SLURM.describe_reason,
        "settings": CardSettings(),
    }
    values.update(kwargs)
    return build_card(**values)  # type: ignore[arg-type]


def test_a_running_job() -> None:
    start = NOW - timedelta(minutes=10)
    status = JobStatus(
        job_id="123",
        state=JobState.RUNNING,
        host="n1",
        expected_start=start,
        end_time=start + timedelta(hours=1),
        partition="debug",
        native_state="RUNNING",
        nodes=("n1", "n2"),
        time_limit_seconds=3600,
    )
    got = card(status)
    assert got["version"] == 1 and got["now"] == "2026-12-03T07:30:00Z" and got["poll_seconds"] == 30
    assert (got["user"], got["server_name"], got["backend"], got["cluster"], got["profile"]) == (
        "alice",
        "",
        "slurm",
        None,
        "gpu",
    )
    assert got["job"] == {
        "id": "123",
        "state": "running",
        "native_state": "RUNNING",
        "reason": None,
        "reason_text": None,
        "expected_start": None,
        "start_time": "2026-12-03T07:20:00Z",
        "end_time": "2026-12-03T08:20:00Z",
        "time_limit_seconds": 3600,
        "partition": "debug",
        "nodes": ["n1", "n2"],
        "cores": 2,
        "memory_bytes": 2 * 1024**3,
        "gpus": 0,
    }
    assert got["walltime"] == {"warn_seconds": [900, 300], "autosave_seconds": 120}
    assert got["idle"] is None and got["maintenance"] == []
    json.dumps(got)  # JSON as it is


def test_a_queued_job_says_why_in_words() -> None:
    status = JobStatus(
        job_id="123",
        state=JobState.PENDING,
        reason="Priority",
        expected_start=NOW + timedelta(hours=2),
        end_time=NOW + timedelta(hours=3),
        native_state="PENDING",
    )
    job = card(status)["job"]
    assert isinstance(job, dict)
    assert job["state"] == "pending" and job["reason"] == "Priority"
    # the words of the spawn page's table (SlurmBackend.reasons), not a copy
    assert job["reason_text"] == SLURM.describe_reason("Priority") == "other jobs have priority"
    assert job["expected_start"] == "2026-12-03T09:30:00Z"
    assert job["start_time"] is None and job["end_time"] is None and job["nodes"] == []
    assert job["partition"] == "debug"  # from the request until the scheduler says
    assert job["time_limit_seconds"] == 3600


def test_unknown_reasons_pass_through_and_none_is_null() -> None:
    status = JobStatus(job_id="123", state=JobState.PENDING, reason="SomethingNew")
    job = card(status)["job"]
    assert isinstance(job, dict) and job["reason_text"] == "SomethingNew"
    job = card(JobStatus(job_id="123", state=JobState.PENDING, reason="None"))["job"]
    assert isinstance(job, dict) and job["reason"] is None and job["reason_text"] is None


def test_an_admins_new_time_limit_wins_over_the_request() -> None:
    end = NOW + timedelta(hours=5)
    status = JobStatus(
        job_id="123", state=JobState.RUNNING, host="n1", end_time=end, time_limit_seconds=6 * 3600
    )
    job = card(status)["job"]
    assert isinstance(job, dict)
    assert job["end_time"] == iso_utc(end) and job["time_limit_seconds"] == 6 * 3600
    assert job["nodes"] == ["n1"]  # a backend without a node list: the host


def test_no_status_yet_and_no_job() -> None:
    job = card(None)["job"]
    assert isinstance(job, dict) and job["state"] == "unknown" and job["cores"] == 2
    assert card(None, job_id=None)["job"] is None
    assert card(None, job_id="")["job"] is None


def test_settings_and_sections() -> None:
    got = card(
        None,
        settings=CardSettings(poll_seconds=3, warn_seconds=(60, 20), autosave_seconds=0),
        idle={"timeout_seconds": 1800},
        maintenance=[{"name": "m1"}],
    )
    assert got["poll_seconds"] == 3
    assert got["walltime"] == {"warn_seconds": [60, 20], "autosave_seconds": None}
    assert got["idle"] == {"timeout_seconds": 1800} and got["maintenance"] == [{"name": "m1"}]


@pytest.mark.parametrize(
    ("state", "coarse"),
    [
        (JobState.PENDING, "pending"),
        (JobState.RUNNING, "running"),
        (JobState.COMPLETING, "ended"),
        (JobState.TIMEOUT, "ended"),
        (JobState.NOT_FOUND, "ended"),
        (JobState.UNKNOWN, "unknown"),
    ],
)
def test_states(state: JobState, coarse: str) -> None:
    assert card_state(state) == coarse


def test_times_are_utc_with_z() -> None:
    naive_local = datetime(2026, 12, 3, 8, 0, 0)
    assert iso_utc(naive_local) == naive_local.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert iso_utc(datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))) == "2026-01-01T00:00:00Z"
    assert iso_utc(None) is None


def test_resources_of_a_request_and_the_state_round_trip() -> None:
    request = JobRequest.from_mapping(
        {"partition": "gpu", "cpus": 4, "memory": "8G", "gpus": 1, "nodes": 2, "walltime": "02:00:00"}
    )
    res = resources_of(request)
    assert res == JobResources(
        partition="gpu", cores=8, memory_mib=8192, gpus=1, nodes=2, time_limit_seconds=7200
    )
    assert JobResources.from_state(json.loads(json.dumps(res.as_state()))) == res
    assert JobResources.from_state(None) is None
    assert JobResources.from_state({"cores": "8", "gpus": True}) == JobResources()


def test_the_spawner_keeps_resources_and_profile_in_its_state() -> None:
    spawner = SlurmSpawner()
    spawner.job_id = "77"
    spawner.job_resources = RESOURCES
    spawner.job_profile = "gpu"
    state = spawner.get_state()
    assert state["resources"] == RESOURCES.as_state() and state["profile"] == "gpu"
    other = SlurmSpawner()
    other.load_state(json.loads(json.dumps(state)))
    assert (other.job_resources, other.job_profile) == (RESOURCES, "gpu")
    other.clear_state()
    assert (other.job_resources, other.job_profile) == (None, "")


def test_card_traits_defaults_and_validation() -> None:
    spawner = SlurmSpawner()
    assert spawner.walltime_warnings == [900, 300] and spawner.walltime_autosave == 120
    assert spawner.announcements_service == "hpc-announcements"
    spawner.walltime_warnings = [60, 600, 60]
    assert spawner.walltime_warnings == [600, 60]
    with pytest.raises(Exception, match="positive"):
        spawner.walltime_warnings = [0]
    with pytest.raises(Exception, match="off"):
        spawner.walltime_autosave = -1


def test_server_token_scopes_keep_the_defaults_and_add_stop_and_announcements() -> None:
    spawner = SlurmSpawner()
    assert spawner.server_token_scopes is hpc_server_token_scopes
    # no hub database here: JupyterHub's built-in server role
    assert hpc_server_token_scopes(spawner) == [
        *DEFAULT_SERVER_SCOPES,
        "servers!server",
        "access:services!service=hpc-announcements",
    ]
    spawner.announcements_service = ""
    assert hpc_server_token_scopes(spawner) == [*DEFAULT_SERVER_SCOPES, "servers!server"]
    # duck-typed: any object with the trait
    assert hpc_server_token_scopes(SimpleNamespace()) == [*DEFAULT_SERVER_SCOPES, "servers!server"]


async def test_a_profile_sets_its_own_walltime_thresholds_and_the_card_shows_them() -> None:
    from jupyterhub_hpc.jobcard import spawner_card

    gpu = {
        "display_name": "GPU",
        "slug": "gpu",
        "spawner_override": {"walltime_warnings": [600, 60], "walltime_autosave": 0},
    }
    spawner = SlurmSpawner(
        user=SimpleNamespace(name="alice"),
        profile_list=[{"display_name": "CPU", "slug": "cpu"}, gpu],
        profile_live_limits=False,
        status_interval=12.5,
    )
    await spawner.apply_profile({"profile": "gpu"})
    got = spawner_card(spawner, NOW)
    assert got["profile"] == "gpu" and got["poll_seconds"] == 13 and got["job"] is None
    assert got["walltime"] == {"warn_seconds": [600, 60], "autosave_seconds": None}
    assert got["user"] == "alice" and got["now"] == "2026-12-03T07:30:00Z"
