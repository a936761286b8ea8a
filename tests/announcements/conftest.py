"""One real JupyterHub (with configurable-http-proxy) running the real announcements service,
shared by the tests of this directory: users in groups, a writer with the custom scope, an admin
without it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from hub import Hub, wait_for
from jupyterhub_hpc.announcements import announcements_service
from local.conftest import FAST, LocalQueue

SERVICE = "hpc-announcements"
ACCESS = f"access:services!service={SERVICE}"
WRITE = "custom:announcements:write"
#: alice and carol are in physics, bob is not; wendy writes (group announcers); boss is a hub
#: admin without the write scope; nora has no group at all
GROUPS = {"physics": {"users": ["alice", "carol"]}, "announcers": {"users": ["wendy"]}}
#: two profiles, so that the spawn page shows a form (and a server has a profile to target by)
PROFILES = [
    {"display_name": "Small", "slug": "small", "default": True, "spawner_override": {"cpus": 1}},
    {"display_name": "Large", "slug": "large", "spawner_override": {"cpus": 2}},
]


class Announcements:
    """The hub and its service, with a token per user (cached)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.base = f"{hub.url}/services/{SERVICE}/"
        self._tokens: dict[tuple[str, tuple[str, ...]], str] = {}
        self.queue: LocalQueue | None = None

    def token(self, user: str, *scopes: str) -> str:
        scopes = scopes or (ACCESS,)
        key = (user, scopes)
        if key not in self._tokens:
            self.hub.ensure_user(user)
            r = self.hub.api("POST", f"/users/{user}/tokens", json={"scopes": list(scopes), "note": "test"})
            assert r.status_code == 201, r.text
            self._tokens[key] = str(r.json()["token"])
        return self._tokens[key]

    def request(self, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"token {token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def writer(self) -> str:
        return self.token("wendy", ACCESS, WRITE)

    def post(self, payload: dict[str, Any], token: str | None = None) -> requests.Response:
        return self.request("POST", "api/v1/announcements", token or self.writer(), json=payload)

    def create(self, **payload: Any) -> dict[str, Any]:
        r = self.post(payload)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def visible(self, user: str) -> list[dict[str, Any]]:
        r = self.request("GET", "api/v1/announcements", self.token(user))
        assert r.status_code == 200, r.text
        return list(r.json()["announcements"])

    def titles(self, user: str) -> set[str]:
        return {a["title"] for a in self.visible(user)}


def hub_config(root: Path, args: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """``args``: the service's (``--AnnouncementsApp.db_url=...``)."""
    ann = announcements_service(
        port=_port(), writer_groups=["announcers"], cwd=str(root), python=sys.executable, args=args
    )
    return {
        "JupyterHub": {
            "services": ann["services"],  # after the test's own service and role (tests/hub.py)
            "load_roles": ann["load_roles"],
            "custom_scopes": ann["custom_scopes"],
            "template_vars": ann["template_vars"],
            "load_groups": GROUPS,
        },
        "Authenticator": {"admin_users": ["boss"]},
    }


def _port() -> int:
    from jupyterhub_hpc.hubprocess import free_port

    return free_port()


@pytest.fixture(scope="module")
def announcements(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Announcements]:
    root = tmp_path_factory.mktemp("announcements-hub")
    queue = LocalQueue()
    spawner = {
        **FAST,
        "local_state_dir": str(queue.state_dir),
        "job_output": str(queue.log_dir / "{username}-{job_id}.log"),
        "profile_list": PROFILES,
    }
    hub = Hub(root / "hub", spawner=spawner, spawner_class="local-hpc")
    hub.settings["config"] = hub_config(root / "hub")
    (hub.root / "settings.json").write_text(json.dumps(hub.settings))
    hub.start()
    service = Announcements(hub)
    service.queue = queue
    try:
        # the hub starts its service; it answers once it is listening
        wait_for(
            lambda: service.request("GET", "api/v1/announcements", service.token("nora")).status_code == 200,
            timeout=30,
            message=f"the service did not answer:\n{hub.log_tail()}",
        )
        yield service
    finally:
        for name, model in _users(hub).items():
            if model.get("servers"):
                hub.api("DELETE", f"/users/{name}/server")
        hub.kill_all()
        queue.cleanup()


def _users(hub: Hub) -> dict[str, dict[str, Any]]:
    r = hub.api("GET", "/users")
    return {u["name"]: u for u in r.json()} if r.ok else {}


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Titles unique to a test (the hub is shared by the module's tests)."""
    counter = iter(range(1_000_000))

    def make(prefix: str) -> str:
        return f"{prefix} {next(counter)} {id(counter) % 10_000}"

    return make
