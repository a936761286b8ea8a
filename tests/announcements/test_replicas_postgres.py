"""Several hubs, one announcements database: two real JupyterHubs (each with its own proxy, hub
database and hub-managed ``python -m jupyterhub_hpc.announcements``) whose services share one
PostgreSQL database (scripts/postgres.sh).

How this models "several hub replicas": JupyterHub itself runs as one active process per hub
database, so replicas of a site are separate hubs (per login node, per cluster front end, an old
and a new hub during a migration) that authenticate the same user names; each runs its own
announcements service, and what they share is the announcements database. Both hubs start at
the same moment on an empty database (the services create the schema concurrently); what is
written, dismissed, edited or deleted through one hub's service is what the other one serves.

Two hubs starting together seldom create the schema within the same milliseconds (without the
store's advisory lock these tests passed 3 times of 3); the collision itself is forced in
test_store_postgres.py (eight processes behind a barrier), which fails without the lock."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub import Hub, wait_for
from local.conftest import FAST, LocalQueue

from .conftest import Announcements, hub_config
from .postgres import fresh_database

pytestmark = [pytest.mark.hub]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Announcements, Announcements]]:
    root = tmp_path_factory.mktemp("announcement-replicas")
    queue = LocalQueue()
    spawner = {**FAST, "local_state_dir": str(queue.state_dir), "job_output": str(queue.log_dir / "x.log")}
    hubs: list[Hub] = []
    with fresh_database("jhhpc_replicas") as db_url:
        try:
            for name in ("hub-a", "hub-b"):
                hub = Hub(root / name, spawner=spawner, spawner_class="local-hpc")
                hub.settings["config"] = hub_config(hub.root, args=[f"--AnnouncementsApp.db_url={db_url}"])
                (hub.root / "settings.json").write_text(json.dumps(hub.settings))
                hubs.append(hub)
            # both at once: each hub starts its service as it comes up, on the same empty database
            errors: list[BaseException] = []

            def start(hub: Hub) -> None:
                try:
                    hub.start()
                except BaseException as e:
                    errors.append(e)

            threads = [threading.Thread(target=start, args=(hub,)) for hub in hubs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
            services = tuple(Announcements(hub) for hub in hubs)
            for service in services:
                wait_for(
                    lambda s=service: (
                        s.request("GET", "api/v1/announcements", s.token("nora")).status_code == 200
                    ),
                    timeout=30,
                    message=f"a service did not answer:\n{service.hub.log_tail()}",
                )
            a, b = services
            yield a, b
        finally:
            for hub in hubs:
                hub.kill_all()
            queue.cleanup()


def _service_log(hub: Hub) -> str:
    return Path(hub.log_path).read_text(errors="replace")


def test_both_services_started_on_the_empty_database(replicas: tuple[Announcements, Announcements]) -> None:
    for service in replicas:
        log = _service_log(service.hub)
        assert "Starting managed service hpc-announcements" in log, service.hub.log_tail()
        # neither service failed creating the schema (the hub would restart a service that exited)
        assert "Traceback" not in log and "exited with status" not in log, service.hub.log_tail(120)


def test_what_one_replica_writes_the_other_serves(replicas: tuple[Announcements, Announcements]) -> None:
    a, b = replicas
    created = a.create(title="Shared news", body="From hub **A**.", audience={"groups": ["physics"]})
    # listed by the other hub's service, for its own users of the audience only
    on_b = {x["id"]: x for x in b.visible("alice")}
    assert on_b[created["id"]]["title"] == "Shared news"
    assert on_b[created["id"]]["body_html"] == "<p>From hub <strong>A</strong>.</p>"
    assert created["id"] not in {x["id"] for x in b.visible("bob")}
    listed = b.request("GET", "api/v1/announcements?all=1", b.writer()).json()["announcements"]
    assert {x["id"]: x["created_by"] for x in listed}[created["id"]] == "wendy"

    # a dismissal through one is honoured by the other (per user name)
    r = a.request("POST", f"api/v1/announcements/{created['id']}/dismissal", a.token("alice"))
    assert r.status_code == 204, r.text
    assert created["id"] not in {x["id"] for x in b.visible("alice")}
    assert created["id"] in {x["id"] for x in b.visible("carol")}
    # for the other one it is no longer alice's to dismiss, as on one hub
    r = b.request("POST", f"api/v1/announcements/{created['id']}/dismissal", b.token("alice"))
    assert r.status_code == 404, r.text

    # an edit on one is seen on the other
    path = f"api/v1/announcements/{created['id']}"
    r = b.request("PATCH", path, b.writer(), json={"title": "Shared news, edited", "severity": "warning"})
    assert r.status_code == 200, r.text
    on_a = {x["id"]: x for x in a.visible("carol")}
    assert on_a[created["id"]]["title"] == "Shared news, edited"
    assert on_a[created["id"]]["severity"] == "warning"

    # a delete on one is gone on the other, for writers and readers
    assert a.request("DELETE", path, a.writer()).status_code == 204
    assert created["id"] not in {x["id"] for x in b.visible("carol")}
    assert b.request("GET", path, b.writer()).status_code == 404
    assert b.request("DELETE", path, b.writer()).status_code == 404


def test_an_id_is_unique_across_replicas(replicas: tuple[Announcements, Announcements]) -> None:
    a, b = replicas
    a.create(id="maint-shared-r1", title="Reservation r1", source="reservation")
    assert b.post({"id": "maint-shared-r1", "title": "again"}).status_code == 409
    assert b.request("DELETE", "api/v1/announcements/maint-shared-r1", b.writer()).status_code == 204
