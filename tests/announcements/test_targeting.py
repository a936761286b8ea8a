"""Audiences by profile, resolved on the server side from the hub's job card of the user's running
server (``GET /hub/api/hpc/card/{user}/{server}``, the card part of issue 14): a real server of the
local backend started with the "large" profile; the service reads the card with its own token
(``read:servers``) and never trusts the reader for it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hub import wait_for
from profiles.hubs import options_body

from .conftest import Announcements

pytestmark = [pytest.mark.hub]

USER = "hpcuser1"
OTHER = "hpcuser2"


def test_a_profile_announcement_reaches_the_users_of_that_profile(
    announcements: Announcements, unique: Callable[[str], str]
) -> None:
    hub = announcements.hub
    title = unique("Large-profile users")
    announcements.create(title=title, audience={"profiles": ["large"]}, severity="warning")
    assert title not in announcements.titles(USER)  # no server yet: no profile

    hub.ensure_user(USER)
    r = hub.api("POST", f"/users/{USER}/server", json=options_body({"profile": "large"}))
    assert r.status_code in (201, 202), r.text
    try:
        hub.wait_ready(USER, timeout=120)
        card = hub.api("GET", f"/hpc/card/{USER}/")
        assert card.status_code == 200, card.text
        assert card.json()["profile"] == "large"
        # the service caches a user's hub view for context_cache_seconds (10 s by default)
        wait_for(lambda: title in announcements.titles(USER), timeout=20, interval=1)
        assert title not in announcements.titles(OTHER)
        # another profile's announcement does not reach them
        small = unique("Small-profile users")
        announcements.create(title=small, audience={"profiles": ["small"]})
        assert small not in announcements.titles(USER)
    finally:
        hub.stop_server(USER, timeout=60)
