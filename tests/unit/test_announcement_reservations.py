"""MAINT reservations as announcements: parsed from the hub cards of the reader's servers, one
announcement per reservation, merged into the reader's list, dismissed per user (a real SQLite)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from jupyterhub_hpc.announcements.auth import context_from_hub
from jupyterhub_hpc.announcements.model import ID_PATTERN, AnnouncementIn, Window
from jupyterhub_hpc.announcements.reservations import (
    announcement_id,
    merge,
    reservation_announcement,
    windows_of,
)
from jupyterhub_hpc.announcements.store import Store

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


def entry(name: str = "maint1", partitions: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "start": "2026-12-04T08:00:00Z",
        "end": "2026-12-04T12:00:00Z",
        "partitions": ["debug"] if partitions is None else partitions,
        "nodes": "n[1-3]",
        "crosses_job": True,
        **fields,
    }


def card(
    partition: str | None = "debug", cluster: str | None = "hpc", *entries: dict[str, Any]
) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "profile": "cpu",
        "job": {"partition": partition} if partition is not None else None,
        "maintenance": list(entries),
    }


def test_only_the_reservations_on_the_servers_partition_are_the_readers() -> None:
    windows = windows_of(
        card("debug", "hpc", entry(), entry("gpuwork", ["gpu"]), {"name": 3}, entry(end="?"))
    )
    assert windows == [
        Window(
            id="maint-hpc-maint1",
            name="maint1",
            cluster="hpc",
            partition="debug",
            start=datetime(2026, 12, 4, 8, tzinfo=timezone.utc),
            end=datetime(2026, 12, 4, 12, tzinfo=timezone.utc),
            nodes="n[1-3]",
            crosses_job=True,
        )
    ]
    # a card without a known partition lists the whole cluster's: not shown to this reader
    assert windows_of(card(None, "hpc", entry())) == []
    assert windows_of({"job": {"partition": "debug"}, "maintenance": None}) == []


def test_ids_are_stable_and_within_the_services_pattern() -> None:
    assert announcement_id("hpc", "maint1") == "maint-hpc-maint1"
    assert announcement_id(None, "maint1") == "maint-maint1"
    for name in ("Big Maint/2026", "x" * 200, "ünïcode"):
        assert re.match(ID_PATTERN, announcement_id("HPC", name))
    assert announcement_id("hpc", "A B") == announcement_id("hpc", "A B")


def test_the_announcement_of_a_reservation() -> None:
    [window] = windows_of(card("debug", "hpc", entry()))
    a = reservation_announcement([window], NOW)
    public = a.public()
    assert public == {
        "id": "maint-hpc-maint1",
        "title": "Maintenance maint1: 2026-12-04 08:00 to 2026-12-04 12:00 UTC (partition debug)",
        "body_html": public["body_html"],
        "severity": "warning",
        "starts": "2026-12-03T12:00:00Z",
        "ends": "2026-12-04T12:00:00Z",
        "dismissible": True,
        "required": False,
        "source": "reservation",
    }
    assert "<code>n[1-3]</code>" in public["body_html"]
    assert "still be running" in public["body_html"]
    # the title and body pass the stored announcements' own validation
    AnnouncementIn.model_validate({"title": a.title, "body": a.body, "severity": a.severity})
    [before] = windows_of(card("debug", "hpc", entry(crosses_job=False)))
    assert "ends before it starts" in reservation_announcement([before], NOW).body_html


def test_markup_in_a_reservation_name_stays_text() -> None:
    [window] = windows_of(card("debug", "hpc", entry("<script>alert(1)</script>*x*", nodes="`n1`<b>")))
    a = reservation_announcement([window], NOW)
    assert "<script" not in a.body_html and "<b>" not in a.body_html and "<em>" not in a.body_html
    assert "&lt;script&gt;" in a.body_html
    long = reservation_announcement(windows_of(card("debug", "hpc", entry("m" * 64))), NOW)
    assert len(long.title) <= 140


def test_merge_into_the_readers_list(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a.sqlite'}")
    # posted before NOW (NOW is a fixed time: an announcement starting at the real clock's now
    # would not be current at NOW once the real clock has passed it)
    before = NOW - timedelta(hours=1)
    everyone = store.create(AnnouncementIn.model_validate({"title": "hello", "starts": before}), "w")
    user = {"name": "alice", "groups": [], "servers": {"": {}, "b": {}, "c": {}}}
    cards = [
        card("debug", "hpc", entry(crosses_job=False)),
        card("long", "hpc", entry(partitions=["debug", "long"], crosses_job=True)),
        card(
            "gpu", "hpc", entry("gpuwork", ["gpu"], start="2026-12-05T08:00:00Z", end="2026-12-05T09:00:00Z")
        ),
    ]
    ctx = context_from_hub(user, cards)
    assert ctx.partitions == {"debug", "long", "gpu"} and len(ctx.maintenance) == 3
    stored = store.for_user(ctx, NOW)
    mine = merge(stored, ctx.maintenance, {}, store.dismissed("alice"), NOW)
    assert [a.id for a in mine] == [everyone.id, "maint-hpc-maint1", "maint-hpc-gpuwork"]
    # one announcement for a reservation on two of the reader's servers; crosses if either job does
    both = mine[1]
    assert both.title.endswith("(partitions debug, long)") and "still be running" in both.body_html
    # after the reservation's end it is gone
    later = datetime(2026, 12, 4, 12, tzinfo=timezone.utc)
    assert "maint-hpc-maint1" not in {a.id for a in merge(stored, ctx.maintenance, {}, set(), later)}
    # starts is when the service first saw it
    seen = {"maint-hpc-maint1": NOW - timedelta(hours=3)}
    assert merge([], ctx.maintenance, seen, set(), NOW)[0].starts == NOW - timedelta(hours=3)
    # a stored announcement with the reservation's id (a writer posted one) replaces it
    posted = store.create(
        AnnouncementIn.model_validate({"id": "maint-hpc-gpuwork", "title": "posted", "starts": before}), "w"
    )
    mine = merge(store.for_user(ctx, NOW), ctx.maintenance, {}, set(), NOW)
    assert [a.title for a in mine if a.id == posted.id] == ["posted"]
    # a reader whose servers are elsewhere sees none of them
    bob = context_from_hub(
        {"name": "bob", "servers": {"": {}}}, [card("other", "hpc", entry(), entry("gpuwork", ["gpu"]))]
    )
    assert bob.maintenance == () and merge([], bob.maintenance, {}, set(), NOW) == []
    store.close()


def test_dismissing_a_reservation_is_per_user_and_forgotten_after_its_end(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a.sqlite'}")
    ctx = context_from_hub({"name": "alice", "servers": {"": {}}}, [card("debug", "hpc", entry())])
    [a] = merge([], ctx.maintenance, {}, set(), NOW)
    store.dismiss_reservation(a.id, "alice", a.ends or NOW)
    store.dismiss_reservation(a.id, "alice", a.ends or NOW)  # twice: one row
    assert store.dismissed("alice") == {a.id}
    assert merge([], ctx.maintenance, {}, store.dismissed("alice"), NOW) == []
    assert store.dismissed("bob") == set()
    # a replica on the same database sees it; the dismissal of an ended reservation is dropped
    replica = Store(f"sqlite:///{tmp_path / 'a.sqlite'}")
    assert replica.dismissed("alice") == {a.id}
    replica.dismiss_reservation("maint-hpc-other", "bob", datetime(2000, 1, 1, tzinfo=timezone.utc))
    # the store forgets by the real clock: carol's reservations end tomorrow, really
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
    replica.dismiss_reservation("maint-hpc-x", "carol", tomorrow)
    # bob's (ended) was dropped by the next dismissal
    assert replica.dismissed("bob") == set()
    replica.dismiss_reservation("maint-hpc-y", "carol", tomorrow)
    assert json.dumps(sorted(replica.dismissed("carol"))) == '["maint-hpc-x", "maint-hpc-y"]'
    store.close()
    replica.close()
