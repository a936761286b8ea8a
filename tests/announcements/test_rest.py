"""The announcements REST API against a real hub and the real service: audiences resolved by the
hub, the write scope (not the admin bit), dismissals per user, start times."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from hub import wait_for

from .conftest import WRITE, Announcements

pytestmark = [pytest.mark.hub]


def test_a_group_announcement_reaches_its_members_only(
    announcements: Announcements, unique: Callable[[str], str]
) -> None:
    title = unique("Physics cluster news")
    created = announcements.create(title=title, body="New **GPU** nodes.", audience={"groups": ["physics"]})
    assert created["created_by"] == "wendy" and created["source"] == "admin"
    assert created["body_html"] == "<p>New <strong>GPU</strong> nodes.</p>"
    alice = {a["title"]: a for a in announcements.visible("alice")}
    assert alice[title]["body_html"] == "<p>New <strong>GPU</strong> nodes.</p>"
    assert set(alice[title]) == {
        "id", "title", "body_html", "severity", "starts", "ends", "dismissible", "required", "source",
    }  # fmt: skip
    assert title in announcements.titles("carol")
    assert title not in announcements.titles("bob")
    assert title not in announcements.titles("nora")
    # a user cannot widen their audience: the query string and headers do not count
    r = announcements.request("GET", "api/v1/announcements?groups=physics", announcements.token("bob"))
    assert title not in {a["title"] for a in r.json()["announcements"]}
    # by user name
    named = unique("For bob")
    announcements.create(title=named, audience={"users": ["bob"]})
    assert named in announcements.titles("bob") and named not in announcements.titles("alice")


def test_writing_needs_the_scope_not_the_admin_bit(
    announcements: Announcements, unique: Callable[[str], str]
) -> None:
    existing = announcements.create(title=unique("Existing"))
    # a user with access to the service but without the scope
    plain = announcements.token("bob")
    # a hub admin, with every scope of the admin role, but not custom:announcements:write
    admin = announcements.token(
        "boss", "admin:users", "admin:servers", "admin:groups", "tokens", "access:services", "read:hub"
    )
    assert announcements.hub.user_model("boss")["admin"] is True
    for token in (plain, admin):
        assert announcements.post({"title": "nope"}, token=token).status_code == 403
        path = f"api/v1/announcements/{existing['id']}"
        assert announcements.request("PATCH", path, token, json={"title": "x"}).status_code == 403
        assert announcements.request("DELETE", path, token).status_code == 403
        assert announcements.request("GET", "api/v1/announcements?all=1", token).status_code == 403
        assert announcements.request("GET", "", token).status_code == 403  # the admin page
    # the scope alone is not enough without access to the service, and no token is nothing
    write_only = announcements.token("wendy", WRITE)
    assert announcements.post({"title": "nope"}, token=write_only).status_code == 403
    assert announcements.request("GET", "api/v1/announcements", "not-a-token").status_code == 403
    # the writer can
    r = announcements.request("PATCH", f"api/v1/announcements/{existing['id']}", announcements.writer(),
                              json={"severity": "warning"})  # fmt: skip
    assert r.status_code == 200 and r.json()["severity"] == "warning"
    listed = announcements.request("GET", "api/v1/announcements?all=1", announcements.writer()).json()
    assert existing["id"] in {a["id"] for a in listed["announcements"]}
    assert (
        announcements.request(
            "DELETE", f"api/v1/announcements/{existing['id']}", announcements.writer()
        ).status_code
        == 204
    )
    assert existing["title"] not in announcements.titles("nora")


def test_payloads_are_validated_and_bounded(announcements: Announcements) -> None:
    bad = [
        {"title": "t", "created_by": "mallory"},
        {"title": "t", "audience": {"everyone": True, "groups": ["physics"]}},
        {"title": "x" * 141},
        {"title": "t", "starts": "2026-12-03T12:00:00"},
    ]
    for payload in bad:
        r = announcements.post(payload)
        assert r.status_code == 400, (payload, r.text)
        assert r.json()["errors"]
    r = announcements.request(
        "POST",
        "api/v1/announcements",
        announcements.writer(),
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400
    r = announcements.request(
        "POST", "api/v1/announcements", announcements.writer(), data=b"title=t",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert r.status_code == 415
    big = b'{"title": "t", "body": "' + b"x" * (70 * 1024) + b'"}'
    r = announcements.request(
        "POST",
        "api/v1/announcements",
        announcements.writer(),
        data=big,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413, r.text  # refused before parsing
    first = announcements.create(id="maint-r1", title="Reservation r1", source="reservation")
    assert first["id"] == "maint-r1" and first["source"] == "reservation"
    assert announcements.post({"id": "maint-r1", "title": "again"}).status_code == 409


def test_dismissals_are_per_user_and_required_ones_stay(
    announcements: Announcements, unique: Callable[[str], str]
) -> None:
    optional = announcements.create(title=unique("Dismiss me"), audience={"groups": ["physics"]})
    required = announcements.create(title=unique("Required"), audience={"groups": ["physics"]}, required=True)
    assert required["dismissible"] is False and required["required"] is True
    alice = announcements.token("alice")
    r = announcements.request("POST", f"api/v1/announcements/{optional['id']}/dismissal", alice)
    assert r.status_code == 204, r.text
    assert optional["title"] not in announcements.titles("alice")
    assert optional["title"] in announcements.titles("carol")  # another member still sees it
    r = announcements.request("POST", f"api/v1/announcements/{required['id']}/dismissal", alice)
    assert r.status_code == 409
    assert required["title"] in announcements.titles("alice")
    # bob cannot dismiss (or learn of) what is not for him
    r = announcements.request(
        "POST", f"api/v1/announcements/{optional['id']}/dismissal", announcements.token("bob")
    )
    assert r.status_code == 404
    # dismissing is not deleting: the writers' list still has it
    listed = announcements.request("GET", "api/v1/announcements?all=1", announcements.writer()).json()
    assert optional["id"] in {a["id"] for a in listed["announcements"]}


def test_an_announcement_is_shown_from_its_start_until_its_end(
    announcements: Announcements, unique: Callable[[str], str]
) -> None:
    now = datetime.now(timezone.utc)
    title = unique("Soon")
    starts = now + timedelta(seconds=4)
    ends = starts + timedelta(seconds=4)
    announcements.create(title=title, starts=starts.isoformat(), ends=ends.isoformat())
    assert title not in announcements.titles("nora")
    # the service caches the hub's view of a user, never the announcements: visible right at `starts`
    wait_for(lambda: title in announcements.titles("nora"), timeout=10, interval=0.5)
    assert datetime.now(timezone.utc) >= starts
    wait_for(lambda: title not in announcements.titles("nora"), timeout=10, interval=0.5)
    assert datetime.now(timezone.utc) >= ends


def test_readers_need_access_to_the_service(announcements: Announcements) -> None:
    # a token of alice that may not access the service (only her own servers)
    token = announcements.token("alice", "access:servers!user=alice")
    assert announcements.request("GET", "api/v1/announcements", token).status_code == 403
