"""Maintenance reservations live, on the private multi-node Slurm (scripts/slurm-multinode.sh; never
the main cluster, where other jobs run): a ``Flags=MAINT,IGNORE_JOBS`` reservation on the nodes of
partition ``debug`` (cpu[1-3]) starting in ~20 minutes, created here and always deleted.

- the spawn form (real hub, headless Chromium) shows the maintenance of the chosen partition only,
  and its walltime default and maximum are clipped to what ends before it;
- a REST start asking for more is clipped (default policy): ``scontrol show job`` has the clipped
  TimeLimit and the progress says why; with ``maintenance_walltime = "refuse"`` the same request
  gets a 400 naming the reservation and its start;
- a job forced to cross it (``maintenance_walltime = "off"``) pends with ``ReqNodeNotAvail, Reserved
  for maintenance`` and the progress names the reservation with its start and end;
- the job card's section (:func:`jupyterhub_hpc.maintenance.card_section`) lists it for a spawner
  whose job runs on the affected partition, from the cache alone.

The hubs run as the unprivileged account (tests/e2e/test_slurm_multinode.py's setting, user hpcuser4).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import jupyterhub
import pytest
from playwright.sync_api import expect

from browser import chromium, log_in
from hub import Hub, wait_for
from jupyterhub_hpc.maintenance import card_section, keep_fresh
from jupyterhub_hpc.spawner import SlurmSpawner
from multinode_slurm import SLURM_CONF, maint_reservation, slurm

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "hpcuser4"
RESERVATION = "hubtest_maint"
LEAD = timedelta(minutes=20)
PROFILES = [
    {
        "display_name": "CPU",
        "slug": "cpu",
        "default": True,
        "spawner_override": {"partition": "debug"},
        "profile_options": {
            "walltime": {
                "type": "walltime",
                "display_name": "Time limit",
                "max": "08:00:00",
                "default": "02:00:00",
            }
        },
    },
    {
        "display_name": "GPU node",
        "slug": "gpu",
        "spawner_override": {"partition": "gpu"},
        "profile_options": {
            "walltime": {
                "type": "walltime",
                "display_name": "Time limit",
                "max": "04:00:00",
                "default": "01:00:00",
            }
        },
    },
]
SETTINGS: dict[str, Any] = {
    "scheduler_environment": {"SLURM_CONF": SLURM_CONF},
    "memory": "400M",
    "status_interval": 3.0,
    "command_timeout": 20.0,
    "poll_interval": 3,
    "maintenance_ttl": 2.0,
}


def show_job(job: str) -> dict[str, str]:
    return dict(t.split("=", 1) for t in slurm("scontrol", "-o", "show", "job", job).split() if "=" in t)


@pytest.fixture(scope="module")
def reservation() -> Iterator[datetime]:
    """The MAINT reservation on debug's nodes; its start (local time, as Slurm's)."""
    assert "is UP" in slurm("scontrol", "ping")
    try:
        with maint_reservation(RESERVATION, LEAD) as start:
            yield start
    finally:
        slurm("scancel", f"--user={USER}", check=False)


@pytest.fixture
def hubs(nonroot_hub_factory: Callable[..., Hub]) -> Iterator[Callable[..., Hub]]:
    started: list[Hub] = []

    def make(policy: str, **more: Any) -> Hub:
        spawner = {"profile_list": PROFILES, "maintenance_walltime": policy, **more}
        hub = nonroot_hub_factory(**SETTINGS, config={"SlurmSpawner": spawner})
        hub.start()
        started.append(hub)
        return hub

    yield make
    for hub in started:
        try:
            hub.api("DELETE", f"/users/{USER}/server")
        except Exception:
            pass
    slurm("scancel", f"--user={USER}", check=False)


def utc(local: datetime) -> datetime:
    """A Slurm time (naive, local) in UTC, as the hub shows it."""
    return local.astimezone(timezone.utc)


def fits_minutes(start: datetime) -> int:
    """What the hub computes: whole minutes ending 60 s before the start."""
    return (int((start - datetime.now()).total_seconds()) - 60) // 60


def body(options: dict[str, Any]) -> dict[str, Any]:
    return {"user_options": options} if jupyterhub.version_info >= (6,) else options


def spawn_events(hub: Hub, options: dict[str, Any], until: Callable[[list[str]], bool]) -> list[str]:
    """Start with ``options`` and read the progress stream until ``until(messages)``."""
    hub.ensure_user(USER)
    with ThreadPoolExecutor(1) as pool:
        posted = pool.submit(hub.api, "POST", f"/users/{USER}/server", json=body(options))
        wait_for(lambda: hub.user_model(USER)["servers"], 30, message="no spawn started")
        messages: list[str] = []
        with hub.api("GET", f"/users/{USER}/server/progress", stream=True) as r:
            deadline = time.monotonic() + 90
            for line in r.iter_lines():
                if line.startswith(b"data:"):
                    event = json.loads(line[5:])
                    messages.append(str(event.get("message", "")))
                    if until(messages) or event.get("failed") or event.get("ready"):
                        break
                if time.monotonic() > deadline:
                    break
        assert posted.result().status_code in (201, 202)
    return messages


def test_form_shows_the_maintenance_and_clips_default_and_maximum(
    reservation: datetime, hubs: Callable[..., Hub]
) -> None:
    hub = hubs("clip")
    fit = fits_minutes(reservation)
    with chromium() as browser:
        page = browser.new_page()
        log_in(page, hub.url, USER, hub.password)
        page.goto(f"{hub.url}/hub/spawn")
        note = page.locator('.hpc-maintenance [data-partition="debug"]')
        expect(note).to_be_visible()
        expect(note).to_contain_text(f"Maintenance on partition debug: reservation {RESERVATION} from")
        expect(note).to_contain_text("with a walltime of at most 00:")
        walltime = page.locator("#hpc-cpu-walltime")
        value = walltime.input_value()
        minutes = int(value.split(":")[0]) * 60 + int(value.split(":")[1])
        assert minutes in (fit, fit - 1), (value, fit)  # the default (02:00:00) is clipped
        expect(page.locator("#hpc-cpu-walltime-help")).to_contain_text(f"up to {value}")
        page.screenshot(path="/tmp/maint-form-cpu.png", full_page=True)
        walltime.fill("02:00:00")
        expect(page.locator("#hpc-cpu-walltime-error")).to_have_text(f"At most {value} on partition debug.")
        # the gpu partition's nodes are not reserved: no note, no clip
        page.get_by_role("radio", name="GPU node").check()
        expect(note).to_be_hidden()
        expect(page.locator(".hpc-maintenance")).to_be_hidden()
        expect(page.locator("#hpc-gpu-walltime")).to_have_value("01:00:00")
        page.screenshot(path="/tmp/maint-form.png", full_page=True)


def test_a_longer_rest_request_is_clipped_and_the_card_lists_it(
    reservation: datetime, hubs: Callable[..., Hub]
) -> None:
    hub = hubs("clip")
    fit = fits_minutes(reservation)
    messages = spawn_events(hub, {"profile": "cpu", "walltime": "02:00:00"}, lambda m: False)
    shortened = [m for m in messages if m.startswith("Walltime shortened from 02:00:00 to ")]
    assert shortened and f"maintenance reservation {RESERVATION} starts" in shortened[0], messages
    server = hub.user_model(USER)["servers"][""]
    assert server["ready"], messages
    job = str(server["state"]["job_id"])
    info = show_job(job)
    limit = info["TimeLimit"].split(":")
    assert info["JobState"] == "RUNNING" and info["Partition"] == "debug"
    assert int(limit[0]) * 60 + int(limit[1]) in (fit, fit - 1), (info["TimeLimit"], fit)
    assert server["user_options"]["walltime"] == info["TimeLimit"]
    # the job card's maintenance section, from a spawner of that job reading the cache only
    spawner = SlurmSpawner(
        user=SimpleNamespace(name=USER, groups=[], url=f"/user/{USER}/"),
        scheduler_environment={"SLURM_CONF": SLURM_CONF},
    )
    spawner.job_id = job

    async def card() -> list[dict[str, Any]]:
        await spawner.watcher.status(job)  # what the hub's watcher would have seen
        assert card_section(spawner) == []  # the card reads the cache only: empty before a poll
        await keep_fresh(spawner)  # what each running server's poll() awaits
        return card_section(spawner, datetime.now(timezone.utc))

    section = asyncio.run(card())
    mine = [s for s in section if s["name"] == RESERVATION]
    assert len(mine) == 1, section
    assert "debug" in mine[0]["partitions"] and "gpu" not in mine[0]["partitions"]
    assert mine[0]["nodes"] == "cpu[1-3]" and mine[0]["crosses_job"] is False
    assert mine[0]["start"] == f"{utc(reservation):%Y-%m-%dT%H:%M:%S}Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", mine[0]["end"])
    hub.api("DELETE", f"/users/{USER}/server")


def test_refuse_names_the_reservation_and_its_start(reservation: datetime, hubs: Callable[..., Hub]) -> None:
    hub = hubs("refuse")
    hub.ensure_user(USER)
    r = hub.api("POST", f"/users/{USER}/server", json=body({"profile": "cpu", "walltime": "02:00:00"}))
    assert r.status_code == 400, r.text
    text = r.json()["message"]
    assert f"maintenance reservation {RESERVATION} starts {utc(reservation):%Y-%m-%d %H:%M:%S} UTC" in text, (
        text
    )
    assert "02:00:00 would not end before" in text and "fits" in text
    assert hub.user_model(USER)["servers"] == {}


def test_a_crossing_job_pends_and_the_progress_says_why(
    reservation: datetime, hubs: Callable[..., Hub]
) -> None:
    hub = hubs("off")
    wanted = "; maintenance reservation"
    messages = spawn_events(hub, {"profile": "cpu", "walltime": "02:00:00"}, lambda m: wanted in m[-1])
    pending = [m for m in messages if wanted in m]
    assert pending, messages
    start, end = utc(reservation), utc(reservation + timedelta(minutes=30))
    assert (
        f"; maintenance reservation {RESERVATION} (nodes cpu[1-3]) "
        f"from {start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC"
    ) in pending[0], pending
    assert pending[0].startswith("Waiting in queue: the nodes it needs are reserved for maintenance"), pending
    job = str(hub.user_model(USER)["servers"][""]["state"]["job_id"])
    info = show_job(job)
    assert info["JobState"] == "PENDING" and info["TimeLimit"] == "02:00:00"
    assert info["Reason"] == "ReqNodeNotAvail,_Reserved_for_maintenance", info["Reason"]
    hub.api("DELETE", f"/users/{USER}/server")


def test_time_min_lets_slurm_shorten_the_asked_walltime(
    reservation: datetime, hubs: Callable[..., Hub]
) -> None:
    """``maintenance_time_min``: the asked 2 h go to Slurm with ``--time-min=<fit>``; Slurm's backfill
    starts the job now with exactly that limit (measured: it clips to TimeMin, not to what fits)."""
    hub = hubs("clip", maintenance_time_min=True)
    fit = fits_minutes(reservation)
    messages = spawn_events(hub, {"profile": "cpu", "walltime": "02:00:00"}, lambda m: False)
    assert any(m.startswith("The scheduler may shorten the walltime 02:00:00 to 00:") for m in messages), (
        messages
    )
    server = hub.user_model(USER)["servers"][""]
    assert server["ready"], messages
    info = show_job(str(server["state"]["job_id"]))
    limit, least = info["TimeLimit"].split(":"), info["TimeMin"].split(":")
    assert int(least[0]) * 60 + int(least[1]) in (fit, fit - 1), (info["TimeMin"], fit)
    assert info["TimeLimit"] == info["TimeMin"], (info["TimeLimit"], info["TimeMin"])
    assert int(limit[0]) * 60 + int(limit[1]) < 120
    hub.api("DELETE", f"/users/{USER}/server")


@pytest.fixture
def slurm24_reservation() -> Iterator[tuple[Any, datetime]]:
    """A MAINT reservation on both nodes of the Slurm 24.11 cluster (scripts/slurm24.sh), always deleted."""
    from slurm_cluster import CLUSTERS

    cluster = CLUSTERS["24.11"]()
    cluster.check_version()
    cluster.run("scontrol", "delete", f"ReservationName={RESERVATION}", check=False)
    start = (datetime.now() + LEAD).replace(microsecond=0)
    cluster.run(
        "scontrol",
        "create",
        "reservation",
        f"ReservationName={RESERVATION}",
        f"StartTime={start:%Y-%m-%dT%H:%M:%S}",
        "Duration=00:30:00",
        "Nodes=s24n[1-2]",
        "Users=root",
        "Flags=MAINT,IGNORE_JOBS",
    )
    try:
        yield cluster, start
    finally:
        cluster.cancel_all(["hpcuser1", USER])
        cluster.run("scontrol", "delete", f"ReservationName={RESERVATION}", check=False)
        assert RESERVATION not in cluster.run("scontrol", "-o", "show", "reservation").stdout


def test_slurm_24_11_through_the_hubs_client_and_a_rest_clip(
    slurm24_reservation: tuple[Any, datetime], nonroot_hub_factory: Callable[..., Hub]
) -> None:
    """The same query through a 24.11 hub's scheduler client (its wrappers and SLURM_CONF), then a
    real hub on that cluster clips a REST start of 2 h and Slurm 24.11 runs it with that limit."""
    from jupyterhub_hpc.backends.slurm import SlurmBackend
    from jupyterhub_hpc.client import ClientSettings, SchedulerClient

    cluster, start = slurm24_reservation
    settings = cluster.spawner
    client = SchedulerClient(
        SlurmBackend(commands=settings["scheduler_commands"]),
        ClientSettings(environment=tuple(sorted(settings["scheduler_environment"].items()))),
    )
    snapshot = asyncio.run(client.reservations(20))
    found = [r for r in snapshot.reservations if r.name == RESERVATION]
    assert len(found) == 1 and found[0].maintenance and found[0].nodes == ("s24n1", "s24n2")
    assert found[0].start == start and snapshot.partition_nodes["debug"] == {"s24n1", "s24n2"}
    assert client.counts == {"reservations": 1, "partition_nodes": 1}

    user = "hpcuser1"  # the 24.11 root's test user
    spawner = {
        **settings,
        "memory": "400M",
        "status_interval": 3.0,
        "command_timeout": 20.0,
        "poll_interval": 3,
    }
    hub = nonroot_hub_factory(
        **spawner, config={"SlurmSpawner": {"profile_list": PROFILES[:1], "maintenance_ttl": 2.0}}
    )
    hub.start()
    fit = fits_minutes(start)
    hub.ensure_user(user)
    r = hub.api("POST", f"/users/{user}/server", json=body({"profile": "cpu", "walltime": "02:00:00"}))
    assert r.status_code in (201, 202), r.text
    server = wait_for(
        lambda: (hub.user_model(user)["servers"].get("") or {}).get("state", {}).get("job_id"),
        60,
        0.5,
        "no job submitted",
    )
    info = dict(
        t.split("=", 1)
        for t in cluster.run("scontrol", "-o", "show", "job", str(server)).stdout.split()
        if "=" in t
    )
    limit = info["TimeLimit"].split(":")
    assert int(limit[0]) * 60 + int(limit[1]) in (fit, fit - 1), (info["TimeLimit"], fit)
    assert info["Partition"] == "debug"
    hub.api("DELETE", f"/users/{user}/server")
