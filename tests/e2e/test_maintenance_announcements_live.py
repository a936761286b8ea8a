"""Maintenance reservations and audiences by partition, live, through the real announcements service
(``python -m jupyterhub_hpc.announcements``, hub-managed) on the private multi-node Slurm
(scripts/slurm-multinode.sh; never the main cluster, where other jobs run).

One hub (as the unprivileged account) with the service, two real servers: ``USER``'s on partition
``debug`` (cpu[1-3]), ``OTHER``'s on ``gpu`` (gpu1). A ``Flags=MAINT`` reservation on debug's nodes,
created here and always deleted, becomes an announcement for ``USER`` only: in the service's REST API
as that user and in the route JupyterLab reads (``{server}jupyterhub-hpc/announcements`` of the
user's jupyterhub-singleuser, the server extension); ``OTHER`` sees it in neither. Admin-written
announcements (``custom:announcements:write``) for ``partitions: [debug]`` / ``[gpu]`` reach exactly
the users whose servers are on that partition.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from announcements.conftest import ACCESS, GROUPS, WRITE, Announcements
from conftest import nonroot_hubs
from hub import Hub, wait_for
from jupyterhub_hpc.announcements import announcements_service
from jupyterhub_hpc.hubprocess import free_port
from multinode_slurm import SLURM_CONF, maint_reservation, slurm

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "hpcuser4"  # server on debug, the reserved partition
OTHER = "hpcuser3"  # server on gpu
RESERVATION = "hubtest_maint_ann"
LEAD = timedelta(minutes=20)
PROFILES = [
    # the cluster named (Slurm's --clusters=multi): the card says "cluster": "multi"; the gpu profile
    # names none (the cluster's default, "cluster": null)
    {
        "display_name": "CPU",
        "slug": "cpu",
        "default": True,
        "spawner_override": {"partition": "debug", "cluster": "multi"},
    },
    {"display_name": "GPU node", "slug": "gpu", "spawner_override": {"partition": "gpu"}},
]
SETTINGS: dict[str, Any] = {
    "scheduler_environment": {"SLURM_CONF": SLURM_CONF},
    "memory": "400M",
    "walltime": "00:10:00",
    "status_interval": 2.0,
    "command_timeout": 20.0,
    "poll_interval": 2,
    "maintenance_ttl": 1.0,
}


def cleanup_jobs() -> None:
    for user in (USER, OTHER):
        slurm("scancel", f"--user={user}", check=False)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Announcements]:
    """The hub with the service, and both servers running (USER on debug, OTHER on gpu)."""
    assert "is UP" in slurm("scontrol", "ping")
    cleanup_jobs()
    with nonroot_hubs(tmp_path_factory.mktemp("maint-ann-logs")) as make:
        hub: Hub = make(**SETTINGS, config={"SlurmSpawner": {"profile_list": PROFILES}})
        ann = announcements_service(
            port=free_port(),
            writer_groups=["announcers"],
            cwd=str(hub.root),
            python=sys.executable,
            # the service asks the hub again for a reader's servers after 1 s (default 10 s)
            args=["--AnnouncementsApp.context_cache_seconds=1"],
        )
        hub.settings["config"]["JupyterHub"] = {
            "services": ann["services"],  # after the test's own service and role (tests/hub.py)
            "load_roles": ann["load_roles"],
            "custom_scopes": ann["custom_scopes"],
            "load_groups": GROUPS,
        }
        hub.settings["config"]["Authenticator"] = {"admin_users": ["boss"]}
        (hub.root / "settings.json").write_text(json.dumps(hub.settings))
        hub._own(hub.root / "settings.json")
        hub.start()
        svc = Announcements(hub)
        try:
            wait_for(
                lambda: svc.request("GET", "api/v1/announcements", svc.token("nora")).status_code == 200,
                timeout=30,
                message=f"the service did not answer:\n{hub.log_tail()}",
            )
            for user, profile in ((USER, "cpu"), (OTHER, "gpu")):
                hub.ensure_user(user)
                body = {"user_options": {"profile": profile}}
                r = hub.api("POST", f"/users/{user}/server", json=body)
                assert r.status_code in (201, 202), r.text
            for user, partition in ((USER, "debug"), (OTHER, "gpu")):
                hub.wait_ready(user, timeout=120)
                card = hub.api("GET", f"/hpc/card/{user}/")
                assert card.status_code == 200, card.text
                assert card.json()["job"]["partition"] == partition, card.json()
            assert hub.api("GET", f"/hpc/card/{USER}/").json()["cluster"] == "multi"
            assert hub.api("GET", f"/hpc/card/{OTHER}/").json()["cluster"] is None
            yield svc
        finally:
            for user in (USER, OTHER):
                try:
                    hub.api("DELETE", f"/users/{user}/server")
                except requests.RequestException:
                    pass
            cleanup_jobs()


@pytest.fixture(scope="module")
def reservation(service: Announcements) -> Iterator[datetime]:
    """A MAINT reservation on debug's nodes, starting in LEAD; its start (local time, as Slurm's)."""
    with maint_reservation(RESERVATION, LEAD) as start:
        yield start


def lab(service: Announcements, user: str) -> list[dict[str, Any]]:
    """What JupyterLab reads: the server extension's route of the user's own server, which asks the
    service with the server's token."""
    url = f"{service.hub.url}/user/{user}/jupyterhub-hpc/announcements"
    r = requests.get(url, headers={"Authorization": f"token {lab_token(service, user)}"}, timeout=30)
    assert r.status_code == 200, r.text
    return list(r.json()["announcements"])


_lab_tokens: dict[str, str] = {}


def lab_token(service: Announcements, user: str) -> str:
    if user not in _lab_tokens:
        _lab_tokens[user] = service.hub.user_token(user)
    return _lab_tokens[user]


def from_reservation(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in items if a["source"] == "reservation" and RESERVATION in a["title"]]


def test_a_maint_reservation_is_an_announcement_for_the_users_of_its_partition_only(
    service: Announcements, reservation: datetime
) -> None:
    start = reservation.astimezone(timezone.utc)
    end = (reservation + timedelta(minutes=30)).astimezone(timezone.utc)
    # the card (the hub's watcher, the maintenance cache) lists it for USER's server
    wait_for(
        lambda: any(
            m["name"] == RESERVATION
            for m in service.hub.api("GET", f"/hpc/card/{USER}/").json()["maintenance"]
        ),
        timeout=20,
        interval=0.5,
        message="the job card never listed the reservation",
    )
    mine = wait_for(lambda: from_reservation(service.visible(USER)), timeout=20, interval=0.5)
    assert len(mine) == 1, mine
    a = mine[0]
    assert (
        a["title"]
        == f"Maintenance {RESERVATION}: {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC (partition debug)"
    )
    assert a["severity"] == "warning" and a["dismissible"] is True and a["required"] is False
    assert a["ends"] == f"{end:%Y-%m-%dT%H:%M:%S}Z", a
    assert "cpu[1-3]" in a["body_html"] and "ends before it starts" in a["body_html"], a["body_html"]
    # JupyterLab's route of USER's server shows the same announcement
    in_lab = from_reservation(lab(service, USER))
    assert [x["id"] for x in in_lab] == [a["id"]], in_lab
    # OTHER's server is on gpu: neither the API nor their Lab shows it (their card has it not either)
    assert service.hub.api("GET", f"/hpc/card/{OTHER}/").json()["maintenance"] == []
    assert from_reservation(service.visible(OTHER)) == []
    assert from_reservation(lab(service, OTHER)) == []
    # dismissed in the Lab (the extension's route forwards it to the service): gone for USER
    url = f"{service.hub.url}/user/{USER}/jupyterhub-hpc/announcements/{a['id']}/dismiss"
    r = requests.post(url, headers={"Authorization": f"token {lab_token(service, USER)}"}, timeout=30)
    assert r.status_code in (200, 204), r.text
    assert from_reservation(service.visible(USER)) == [] and from_reservation(lab(service, USER)) == []


def test_partition_audiences_reach_exactly_the_users_on_that_partition(service: Announcements) -> None:
    writer = service.token("wendy", ACCESS, WRITE)
    stamp = datetime.now().strftime("%H%M%S%f")
    debug = service.create(title=f"debug users {stamp}", audience={"partitions": ["debug"]})
    gpu = service.create(title=f"gpu users {stamp}", audience={"partitions": ["gpu", "short"]})
    try:
        for user, wanted, unwanted in ((USER, debug, gpu), (OTHER, gpu, debug)):
            api = {x["id"] for x in service.visible(user)}
            in_lab = {x["id"] for x in lab(service, user)}
            assert wanted["id"] in api and unwanted["id"] not in api, (user, api)
            assert wanted["id"] in in_lab and unwanted["id"] not in in_lab, (user, in_lab)
        # a user without a server is on no partition
        assert not {debug["id"], gpu["id"]} & {x["id"] for x in service.visible("nora")}
    finally:
        for made in (debug, gpu):
            service.request("DELETE", f"api/v1/announcements/{made['id']}", writer)


def test_cluster_audiences_reach_exactly_the_users_on_that_cluster(service: Announcements) -> None:
    """USER's server is on cluster ``multi`` (named), OTHER's names no cluster."""
    writer = service.token("wendy", ACCESS, WRITE)
    stamp = datetime.now().strftime("%H%M%S%f")
    multi = service.create(title=f"multi users {stamp}", audience={"clusters": ["multi"]})
    elsewhere = service.create(title=f"elsewhere users {stamp}", audience={"clusters": ["elsewhere"]})
    try:
        for user, seen in ((USER, {multi["id"]}), (OTHER, set()), ("nora", set())):
            api = {x["id"] for x in service.visible(user)} & {multi["id"], elsewhere["id"]}
            assert api == seen, (user, api)
            if user != "nora":
                in_lab = {x["id"] for x in lab(service, user)} & {multi["id"], elsewhere["id"]}
                assert in_lab == seen, (user, in_lab)
    finally:
        for made in (multi, elsewhere):
            service.request("DELETE", f"api/v1/announcements/{made['id']}", writer)
