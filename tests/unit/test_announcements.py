"""The announcements service's pure parts: validation, the sanitised body, audience matching, the
store (a real SQLite file), the admin form, the context built from the hub's JSON, the hub config."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pydantic import ValidationError

from jupyterhub_hpc.announcements import announcements_service
from jupyterhub_hpc.announcements.auth import WRITE_SCOPE, can_write, context_from_hub
from jupyterhub_hpc.announcements.forms import FormError, announcement_from_form, form_values
from jupyterhub_hpc.announcements.model import (
    AnnouncementIn,
    AnnouncementPatch,
    Audience,
    UserContext,
    render_body,
)
from jupyterhub_hpc.announcements.store import Store

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(html)
    return parser.tags


# -- validation ---------------------------------------------------------------------------------


def test_a_minimal_announcement_is_for_everyone_from_now_and_dismissible() -> None:
    a = AnnouncementIn.model_validate_json('{"title": "Hello"}')
    assert a.audience.everyone and a.dismissible and not a.required
    assert a.severity == "info" and a.source == "admin" and a.starts is None and a.ends is None


@pytest.mark.parametrize(
    "payload",
    [
        {"title": ""},
        {"title": "x" * 141},
        {"title": "two\nlines"},
        {"title": "t", "severity": "critical"},
        {"title": "t", "created_by": "mallory"},  # server-side fields are not the payload's
        {"title": "t", "__class__": "x"},
        {"title": "t", "dismissible": "yes"},  # strict: a JSON boolean
        {"title": "t", "starts": "2026-12-03T12:00:00"},  # naive: which zone?
        {"title": "t", "starts": "2026-12-03T12:00:00Z", "ends": "2026-12-03T11:00:00Z"},
        {"title": "t", "audience": {}},
        {"title": "t", "audience": {"everyone": True, "groups": ["physics"]}},
        {"title": "t", "audience": {"groups": ["<b>"]}},
        {"title": "t", "audience": {"groups": "physics"}},
        {"title": "t", "audience": {"teams": ["physics"]}},
        {"title": "t", "body": "x" * 20_001},
        {"title": "t", "id": "Has Spaces"},
        {"title": "t", "source": "mail"},
    ],
)
def test_invalid_payloads_are_refused(payload: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AnnouncementIn.model_validate_json(json.dumps(payload))


def test_times_are_utc_and_required_is_never_dismissible() -> None:
    a = AnnouncementIn.model_validate_json(
        '{"title": "t", "starts": "2026-12-03T13:00:00+01:00", "required": true, "dismissible": true}'
    )
    assert a.starts == NOW and a.starts.tzinfo == timezone.utc
    assert a.required and not a.dismissible


def test_a_patch_knows_which_fields_it_names() -> None:
    patch = AnnouncementPatch.model_validate_json('{"ends": null, "title": "new"}')
    assert patch.changes() == {"ends": None, "title": "new"}
    with pytest.raises(ValidationError):
        AnnouncementPatch.model_validate_json('{"id": "other"}')


# -- the body -------------------------------------------------------------------------------------


def test_markdown_is_rendered() -> None:
    html = render_body("**bold** and [a link](https://example.org) and `code`\n\n- one\n- two")
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html and "<li>one</li>" in html
    assert '<a href="https://example.org" rel="noopener noreferrer">a link</a>' in html


@pytest.mark.parametrize(
    "body",
    [
        "<script>window.__x=1</script>",
        '<img src=x onerror="window.__x=1">',
        '<a href="javascript:window.__x=1">click</a>',
        "[click](javascript:window.__x=1)",
        '<div onclick="window.__x=1">hi</div>',
        "<iframe src=https://example.org></iframe>",
        "<style>body{display:none}</style>",
        "<svg><script>window.__x=1</script></svg>",
        '<a href="https://example.org" onmouseover="window.__x=1">x</a>',
        "<p>ok</p><!-- <script>window.__x=1</script> -->",
        '<form action="https://example.org"><input name=a></form>',
    ],
)
def test_nothing_that_runs_or_loads_survives(body: str) -> None:
    html = render_body(body)
    for tag, attrs in elements(html):
        assert tag not in ("script", "img", "iframe", "style", "svg", "form", "input")
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert not (attrs.get("href") or "").lower().startswith("javascript"), attrs
    assert "<script" not in html and "onerror" not in html


# -- audience -----------------------------------------------------------------------------------


def test_audience_matches_any_of_its_targets() -> None:
    alice = UserContext("alice", groups=frozenset({"physics"}), partitions=frozenset({"gpu"}))
    bob = UserContext("bob", profiles=frozenset({"big"}), clusters=frozenset({"hpc2"}))
    carol = UserContext("carol")
    assert Audience(everyone=True).matches(carol)
    assert Audience(groups=["physics"]).matches(alice) and not Audience(groups=["physics"]).matches(bob)
    assert Audience(users=["carol"]).matches(carol) and not Audience(users=["carol"]).matches(alice)
    assert Audience(partitions=["gpu"]).matches(alice) and not Audience(partitions=["gpu"]).matches(bob)
    assert Audience(profiles=["big"]).matches(bob) and Audience(clusters=["hpc2"]).matches(bob)
    union = Audience(groups=["chemistry"], clusters=["hpc2"])
    assert union.matches(bob) and not union.matches(alice) and not union.matches(carol)


def test_context_from_the_hub_model_and_cards() -> None:
    user = {"name": "alice", "groups": ["physics", "staff"], "servers": {"": {}, "gpu": {}}}
    cards = [
        {"profile": "cpu", "cluster": None, "job": {"partition": "debug"}},
        {"profile": "gpu", "cluster": "hpc", "job": None},
        {"profile": None, "cluster": "", "job": {"partition": None}},
    ]
    ctx = context_from_hub(user, cards)
    assert ctx == UserContext(
        "alice",
        groups=frozenset({"physics", "staff"}),
        profiles=frozenset({"cpu", "gpu"}),
        clusters=frozenset({"hpc"}),
        partitions=frozenset({"debug"}),
    )


def test_write_needs_the_scope_not_the_admin_bit() -> None:
    assert can_write({"name": "w", "scopes": [WRITE_SCOPE, "access:services"]})
    assert not can_write({"name": "root", "admin": True, "scopes": ["admin:users", "access:services"]})
    assert not can_write({"name": "x"})


# -- store ----------------------------------------------------------------------------------------


def announcement(**fields: object) -> AnnouncementIn:
    return AnnouncementIn.model_validate_json(json.dumps({"title": "t", **fields}))


def test_store_filters_by_time_audience_and_dismissal(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a.sqlite'}")
    past = NOW - timedelta(hours=1)
    physics = store.create(
        announcement(title="physics", starts=past.isoformat(), audience={"groups": ["physics"]}), "w"
    )
    future = store.create(announcement(title="later", starts=(NOW + timedelta(hours=1)).isoformat()), "w")
    ended = store.create(
        announcement(title="ended", starts=(NOW - timedelta(hours=2)).isoformat(), ends=past.isoformat()), "w"
    )
    required = store.create(announcement(title="req", starts=past.isoformat(), required=True), "w")
    alice = UserContext("alice", groups=frozenset({"physics"}))
    bob = UserContext("bob")
    assert {a.id for a in store.for_user(alice, NOW)} == {physics.id, required.id}
    assert {a.id for a in store.for_user(bob, NOW)} == {required.id}
    assert {a.id for a in store.for_user(bob, NOW + timedelta(hours=2))} == {future.id, required.id}
    assert ended.id in {a.id for a in store.for_user(bob, NOW - timedelta(minutes=90))}
    # dismissals are per user; required ones stay
    store.dismiss(physics.id, "alice")
    store.dismiss(physics.id, "alice")  # twice: still one row
    store.dismiss(required.id, "alice")
    assert {a.id for a in store.for_user(alice, NOW)} == {required.id}
    carol = UserContext("carol", groups=frozenset({"physics"}))
    assert physics.id in {a.id for a in store.for_user(carol, NOW)}
    # a second store on the same database (a replica) sees the same
    replica = Store(f"sqlite:///{tmp_path / 'a.sqlite'}")
    assert {a.id for a in replica.for_user(alice, NOW)} == {required.id}
    assert replica.delete(physics.id) and not replica.delete(physics.id)
    assert store.get(physics.id) is None


def test_store_update_revalidates_and_keeps_markdown_only(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a.sqlite'}")
    a = store.create(announcement(body="<script>x</script>\n\n**hi**", ends="2027-01-01T00:00:00Z"), "writer")
    assert (
        a.full()["body"] == "<script>x</script>\n\n**hi**"
        and a.public()["body_html"] == "<p><strong>hi</strong></p>"
    )
    updated = store.update(a.id, AnnouncementPatch.model_validate_json('{"severity": "error", "ends": null}'))
    assert updated is not None and updated.severity == "error" and updated.ends is None
    with pytest.raises(ValidationError):
        store.update(
            a.id,
            AnnouncementPatch.model_validate_json(
                '{"starts": "2028-01-01T00:00:00Z", "ends": "2027-01-01T00:00:00Z"}'
            ),
        )
    assert store.update("nope", AnnouncementPatch()) is None
    assert a.public()["starts"].endswith("Z") and a.full()["created_by"] == "writer"


# -- the admin form -----------------------------------------------------------------------------


def test_form_round_trip() -> None:
    fields = {
        "title": "Maintenance",
        "body": "line one\r\nline two",
        "severity": "warning",
        "starts": "2026-12-03T12:00",
        "ends": "",
        "audience_kind": "targets",
        "groups": "physics, chemistry",
        "partitions": "gpu",
        "dismissible": "on",
    }
    data = announcement_from_form(fields)
    assert data.starts == NOW and data.ends is None and data.body == "line one\nline two"
    assert data.audience == Audience(groups=["chemistry", "physics"], partitions=["gpu"])
    with pytest.raises(FormError):
        announcement_from_form({**fields, "starts": "tomorrow"})
    with pytest.raises(ValidationError):
        announcement_from_form({**fields, "groups": "", "partitions": ""})
    assert form_values(None)["audience_kind"] == "everyone"


# -- the hub's configuration ---------------------------------------------------------------------


def test_hub_config_names_the_scope_roles_and_pages() -> None:
    ann = announcements_service(port=10111, base_url="/jhub/", writer_groups=["staff"])
    (service,) = ann["services"]
    assert service["name"] == "hpc-announcements" and service["url"] == "http://127.0.0.1:10111"
    assert service["command"][1:3] == ["-m", "jupyterhub_hpc.announcements"]
    assert service["oauth_client_allowed_scopes"] == [WRITE_SCOPE]
    assert WRITE_SCOPE in ann["custom_scopes"]
    roles = {r["name"]: r for r in ann["load_roles"]}
    assert set(roles["hpc-announcements-service"]["scopes"]) == {"read:users:groups", "read:servers"}
    assert "access:services!service=hpc-announcements" in roles["user"]["scopes"]
    assert roles["hpc-announcements-writers"]["groups"] == ["staff"]
    assert WRITE_SCOPE in roles["hpc-announcements-writers"]["scopes"]
    assert 'src="/jhub/services/hpc-announcements/embed"' in ann["template_vars"]["announcement_home"]
    kept = announcements_service(existing_announcements={"announcement_home": "<b>site</b>"})
    assert kept["template_vars"]["announcement_home"].startswith("<b>site</b><iframe")
