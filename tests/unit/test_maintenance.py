"""Maintenance reservations: the Slurm parsers on real 22.05 and 24.11 recordings
(tests/data/slurm/*/reservations*.txt, made by ../data/slurm/record_reservations.py), the
walltime arithmetic, the cache (real processes as the scheduler's scontrol) and the
profiles' clip / refuse / --time-min policies."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from jupyterhub_hpc.backends.limits import ClusterLimits
from jupyterhub_hpc.backends.reservations import Reservation, ReservationSnapshot, walltime_cap
from jupyterhub_hpc.backends.slurm import SlurmBackend
from jupyterhub_hpc.backends.slurm_limits import parse_sinfo_nodes
from jupyterhub_hpc.backends.slurm_reservations import (
    expand_hostlist,
    parse_scontrol_partitions,
    parse_scontrol_reservations,
)
from jupyterhub_hpc.client import SchedulerClient
from jupyterhub_hpc.commands import CommandResult
from jupyterhub_hpc.maintenance import ReservationCache, capped_limits
from jupyterhub_hpc.profiles.model import parse_profile_list
from jupyterhub_hpc.profiles.validate import Context, reconcile, resolve
from jupyterhub_hpc.progress import queue_message
from jupyterhub_hpc.request import RequestError
from jupyterhub_hpc.states import JobState

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"
VERSIONS = ["22.05", "24.11"]
#: per version: (all cpu nodes, the node of the active reservation, its partition, the daily user)
NODES = {
    "22.05": (("cpu1", "cpu2", "cpu3"), "gpu1", "gpu", "hpcuser4"),
    "24.11": (("s24n1", "s24n2"), "s24n2", "short", "hpcuser1"),
}


def recorded(version: str, name: str) -> str:
    return (DATA / version / name).read_text()


def result(stdout: str, returncode: int = 0, stderr: str = "") -> CommandResult:
    return CommandResult(
        argv=("scontrol",), returncode=returncode, stdout=stdout, stderr=stderr, duration=0.0
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_no_reservations_is_an_empty_list(version: str) -> None:
    text = recorded(version, "reservations-none.txt")
    assert text.strip() == "No reservations in the system"
    assert SlurmBackend().parse_reservations(result(text)) == []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["reservations.txt", "reservations-as-user.txt"])
def test_reservations_parse_to_typed_values(version: str, name: str) -> None:
    all_nodes, active_node, active_partition, user = NODES[version]
    found = {r.name: r for r in SlurmBackend().parse_reservations(result(recorded(version, name)))}
    assert sorted(found) == ["rec_daily", "rec_maint", "rec_maint_now"]
    maint = found["rec_maint"]
    assert maint.maintenance and maint.flags == {"MAINT", "IGNORE_JOBS", "SPEC_NODES"}
    assert maint.nodes == all_nodes and maint.partition is None and maint.state == "INACTIVE"
    assert maint.end - maint.start == timedelta(hours=1) and maint.users == ("root",)
    assert maint.accounts == () and maint.groups == ()
    now = found["rec_maint_now"]
    assert now.maintenance and now.state == "ACTIVE" and now.partition == active_partition
    assert now.nodes == (active_node,) and now.active(now.start + timedelta(seconds=1))
    daily = found["rec_daily"]
    assert not daily.maintenance and "DAILY" in daily.flags and daily.users == (user, "root")


@pytest.mark.parametrize("version", VERSIONS)
def test_the_multiline_form_is_refused_not_misread(version: str) -> None:
    """Without --oneliner a record spans lines: the parser says so instead of losing nodes."""
    with pytest.raises(ValueError, match="unexpected scontrol reservation line"):
        parse_scontrol_reservations(recorded(version, "reservations-multiline.txt"))


@pytest.mark.parametrize("version", VERSIONS)
def test_partition_nodes_and_which_partitions_a_reservation_affects(version: str) -> None:
    all_nodes, active_node, active_partition, _ = NODES[version]
    parts = parse_scontrol_partitions(recorded(version, "scontrol-show-partition-oneliner.txt"))
    assert parts["debug"] == frozenset(all_nodes)
    found = {r.name: r for r in parse_scontrol_reservations(recorded(version, "reservations.txt"))}
    snap = ReservationSnapshot(tuple(found.values()), parts, live=True)
    start = found["rec_maint"].start - timedelta(minutes=30)
    assert [r.name for r in snap.maintenance(start)] == ["rec_maint_now", "rec_maint"]  # daily is not MAINT
    assert [r.name for r in snap.next_for("debug", start)] == (
        ["rec_maint_now", "rec_maint"] if active_node in all_nodes else ["rec_maint"]
    )
    assert "rec_maint_now" in [r.name for r in snap.next_for(active_partition, start)]
    on_node = [n for n in ("rec_maint_now", "rec_maint") if active_node in found[n].nodes]
    assert [r.name for r in snap.next_for("nosuch", start, [active_node])] == on_node
    assert found["rec_maint"].partitions(parts)[0] in parts


@pytest.mark.parametrize("version", VERSIONS)
def test_a_job_pending_behind_maintenance_is_told_in_words(version: str) -> None:
    backend = SlurmBackend()
    text = recorded(version, "squeue-format-pending-maintenance.txt")
    job_id = text.split("|", 1)[0]
    status = backend.parse_status(result(text), [job_id])[job_id]
    assert status.state is JobState.PENDING and status.reason == "ReqNodeNotAvail, Reserved for maintenance"
    assert "reserved for maintenance" in queue_message(backend, status)
    assert "ReqNodeNotAvail" not in queue_message(backend, status)
    shown = recorded(version, "scontrol-show-job-pending-maintenance.txt")
    assert "Reason=ReqNodeNotAvail,_Reserved_for_maintenance" in shown
    assert backend.describe_reason("ReqNodeNotAvail,_Reserved_for_maintenance") == (
        "the nodes it needs are reserved for maintenance"
    )


def test_argv_is_one_line_per_record_and_names_the_cluster() -> None:
    assert SlurmBackend().reservations_argv() == ["scontrol", "--oneliner", "show", "reservation"]
    assert SlurmBackend(cluster="c2").partition_nodes_argv() == [
        "scontrol",
        "--oneliner",
        "--clusters=c2",
        "show",
        "partition",
    ]


def test_hostlists() -> None:
    assert expand_hostlist("cpu[1-3],gpu1") == ("cpu1", "cpu2", "cpu3", "gpu1")
    assert expand_hostlist("n[098-101]") == ("n098", "n099", "n100", "n101")
    assert expand_hostlist("") == ()


T0 = datetime(2026, 12, 3, 7, 0, 0)
MAINT = Reservation("m1", T0 + timedelta(minutes=30), T0 + timedelta(hours=2), frozenset({"MAINT"}), ("vm",))


def test_the_cap_is_whole_minutes_before_the_start_minus_the_margin() -> None:
    cap = walltime_cap([MAINT], T0 + timedelta(seconds=1), 60)
    assert cap is not None and cap.seconds == 28 * 60 and cap.reservation is MAINT
    assert "m1" in cap.describe() and "2026-12-03 07:30:00 UTC" in cap.describe()
    assert walltime_cap([MAINT], T0 + timedelta(minutes=40), 60) is None  # in progress: no clip
    assert walltime_cap([MAINT], T0 + timedelta(hours=3), 60) is None  # over
    assert walltime_cap([], T0, 60) is None


SLURM_LINES = "\n".join(
    f"{p}|{p}{'*' if p == 'debug' else ''}|up|vm|idle|8|0/8/0/8|8000|0|(null)|(null)|{t}|n/a"
    for p, t in (("debug", "infinite"), ("short", "5:00"))
)
PROFILES = parse_profile_list(
    [
        {
            "slug": "cpu",
            "display_name": "CPU",
            "spawner_override": {"partition": "debug"},
            "profile_options": {"walltime": {"type": "walltime", "max": "08:00:00", "default": "01:00:00"}},
        },
        {"slug": "fixed", "display_name": "Fixed", "spawner_override": {"partition": "debug"}},
    ]
)
BASE = {"job_name": "j", "cpus": 1, "memory": "1G", "walltime": "08:00:00", "partition": None}


def context(policy: str, time_min: bool = False) -> Context:
    cap = walltime_cap([MAINT], T0, 60)
    assert cap is not None and cap.seconds == 29 * 60
    limits = ClusterLimits(partitions=parse_sinfo_nodes(SLURM_LINES), live=True, fetched_at=1.0)
    caps = {"debug": cap}
    if policy == "refuse" or (policy == "clip" and not time_min):
        limits = capped_limits(limits, caps)
    return Context(
        user="u",
        base_job=BASE,
        base_backend="slurm",
        limits={"slurm/": limits},
        walltime_caps={"slurm/": caps},
        maintenance_policy=policy,
        maintenance_time_min=time_min,
    )


def test_clip_shortens_a_request_and_says_why() -> None:
    res = resolve(PROFILES, {"profile": "cpu", "walltime": "02:00:00"}, context("clip"))
    assert res.job_request().walltime == 29 * 60 and res.user_options["walltime"] == "00:29:00"
    assert res.notices == [
        "Walltime shortened from 02:00:00 to 00:29:00: maintenance reservation m1 starts "
        "2026-12-03 07:30:00 UTC (until 2026-12-03 09:00:00 UTC)."
    ]
    # the default follows the clipped maximum without a notice; a walltime that fits is left alone
    default = resolve(PROFILES, {"profile": "cpu"}, context("clip"))
    assert default.job_request().walltime == 29 * 60 and default.notices == []
    fits = resolve(PROFILES, {"profile": "cpu", "walltime": "00:10:00"}, context("clip"))
    assert fits.job_request().walltime == 600 and fits.notices == []


def test_refuse_names_the_reservation_and_its_start() -> None:
    with pytest.raises(RequestError) as info:
        resolve(PROFILES, {"profile": "cpu", "walltime": "02:00:00"}, context("refuse"))
    assert info.value.field == "walltime"
    assert "maintenance reservation m1 starts 2026-12-03 07:30:00 UTC" in info.value.reason
    assert "at most 00:29:00 fits" in info.value.reason
    # a walltime the user could not choose is clipped, not refused; remembered options fall back
    fixed = resolve(PROFILES, {"profile": "fixed"}, context("refuse"))
    assert fixed.job_request().walltime == 29 * 60
    res, notices = reconcile(PROFILES, {"profile": "cpu", "walltime": "02:00:00"}, context("refuse"))
    assert res.job_request().walltime == 29 * 60 and "m1" in notices[0]


def test_time_min_keeps_the_asked_walltime_and_off_changes_nothing() -> None:
    res = resolve(PROFILES, {"profile": "cpu", "walltime": "02:00:00"}, context("clip", time_min=True))
    assert res.job_request().walltime == 7200 and res.time_min == 29 * 60
    off = resolve(PROFILES, {"profile": "cpu", "walltime": "02:00:00"}, context("off"))
    assert off.job_request().walltime == 7200 and off.time_min is None and off.notices == []


DOWN = "slurm_load_reservations error: Unable to contact slurm controller"


def script_client(tmp_path: Path, name: str = "scontrol") -> tuple[SchedulerClient, Path]:
    """A client whose scontrol is a real program: it prints a recording, or fails while
    ``fail`` exists (the scheduler being down)."""
    program = tmp_path / name
    fail = tmp_path / "fail"
    reservations = DATA / "22.05" / "reservations.txt"
    partitions = DATA / "22.05" / "scontrol-show-partition-oneliner.txt"
    program.write_text(
        "#!/bin/sh\n"
        f'[ -e {fail} ] && {{ echo "{DOWN}" >&2; exit 1; }}\n'
        f'case "$*" in *reservation*) cat {reservations};; *) cat {partitions};; esac\n'
    )
    program.chmod(0o755)
    return SchedulerClient(SlurmBackend(commands={"scontrol": str(program)})), fail


async def test_one_query_per_ttl_and_a_failure_keeps_the_last_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client, fail = script_client(tmp_path)
    cache = ReservationCache(client)
    first = await cache.get(60, 10)
    assert first.live and len(first.reservations) == 3 and first.partition_nodes["gpu"] == {"gpu1"}
    assert client.counts == {"reservations": 1, "partition_nodes": 1}
    for _ in range(5):
        assert await cache.get(60, 10) is first
        assert cache.peek() is first
    assert cache.queries == 1
    fail.touch()
    caplog.set_level(logging.WARNING, "jupyterhub_hpc.maintenance")
    for _ in range(3):
        await cache._fetch(10)
    kept = cache.peek()
    assert kept.reservations == first.reservations and kept.error and "Unable to contact" in kept.error
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1  # logged once
    fail.unlink()
    await cache._fetch(10)
    assert cache.current is not None and cache.current.error is None and not cache.failing


async def test_peek_never_queries_and_concurrent_callers_share_one_query(tmp_path: Path) -> None:
    client, _ = script_client(tmp_path)
    cache = ReservationCache(client)
    assert cache.peek() == ReservationSnapshot() and cache.queries == 0 and client.counts == {}
    answers = await asyncio.gather(*(cache.get(60, 10) for _ in range(10)))
    assert all(a is answers[0] for a in answers) and len(answers[0].reservations) == 3
    assert cache.queries == 1 and client.counts == {"reservations": 1, "partition_nodes": 1}
    assert cache.peek() is answers[0]


async def test_a_backend_without_reservations_has_none_and_runs_nothing() -> None:
    from jupyterhub_hpc.backends.sge import SGEBackend

    client = SchedulerClient(SGEBackend())
    snap = await client.reservations()
    assert snap.reservations == () and not snap.live and client.counts == {}


def recorded_start(name: str) -> datetime:
    found = {r.name: r for r in parse_scontrol_reservations(recorded("22.05", "reservations.txt"))}
    return found[name].start


async def test_the_card_section_the_pending_note_and_the_announcements(tmp_path: Path) -> None:
    """A real SlurmSpawner whose scontrol prints the 22.05 recording: its card lists the MAINT
    reservations of its partition (not the gpu one, not the DAILY one), from the cache alone."""
    from types import SimpleNamespace

    from jupyterhub_hpc.maintenance import (
        announcement_payloads,
        card_section,
        get_reservation_cache,
        keep_fresh,
        pending_note,
    )
    from jupyterhub_hpc.spawner import SlurmSpawner
    from jupyterhub_hpc.states import JobStatus

    client, _ = script_client(tmp_path)
    spawner = SlurmSpawner(
        user=SimpleNamespace(name="u", groups=[], url="/user/u/"),
        scheduler_commands={"scontrol": client.backend.cmd("scontrol")},
        partition="debug",
        walltime="02:00:00",
    )
    start = recorded_start("rec_maint")
    before = start - timedelta(minutes=30)
    assert card_section(spawner, before) == []  # nothing cached yet (the card never queries)
    assert get_reservation_cache(spawner.client).queries == 0
    await keep_fresh(spawner)  # what every running server's poll() awaits
    snapshot = get_reservation_cache(spawner.client).peek()
    section = card_section(spawner, before)
    assert [s["name"] for s in section] == ["rec_maint"]
    assert section[0]["partitions"] == ["debug", "short"] and section[0]["nodes"] == "cpu[1-3]"
    assert section[0]["start"].endswith("Z") and section[0]["crosses_job"] is False  # no job yet
    spawner.maintenance_reservations = False
    assert card_section(spawner, before) == []
    spawner.maintenance_reservations = True

    pending = JobStatus(
        "7", JobState.PENDING, reason="ReqNodeNotAvail, Reserved for maintenance", partition="debug"
    )
    note = pending_note(spawner, pending, before)
    assert note is not None and note.startswith("maintenance reservation rec_maint (nodes cpu[1-3]) from ")
    assert note.endswith(" UTC")
    short = JobStatus("7", JobState.PENDING, reason="Priority", partition="debug")
    spawner.walltime = "00:10:00"
    assert pending_note(spawner, short, before) is None  # 10 minutes do not cross it
    assert pending_note(spawner, JobStatus("7", JobState.RUNNING, partition="debug"), before) is None

    payloads = announcement_payloads(snapshot, before, cluster="hpc")
    assert [p["id"] for p in payloads] == ["maint-hpc-rec_maint_now", "maint-hpc-rec_maint"]
    maint = payloads[1]
    assert maint["source"] == "reservation" and maint["severity"] == "warning"
    assert maint["audience"] == {"partitions": ["debug", "short"]} and len(maint["title"]) <= 140
    assert maint["ends"].endswith("Z") and "**rec_maint**" in maint["body"]
