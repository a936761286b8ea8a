"""The server extension's hub side (jupyterhub_hpc.lab.hub): against a real HTTP server in this
process standing in for the hub's API (the live hub: tests/e2e/test_jobcard_e2e.py)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest
from tornado import httpserver, web

from jupyterhub_hpc.lab.handlers import can_stop
from jupyterhub_hpc.lab.hub import CardCache, HubClient, HubSettings

TOKEN = "secret-token-value"


class Hits:
    def __init__(self) -> None:
        self.card = 0
        self.auth: list[str] = []


class CardHandler(web.RequestHandler):
    def initialize(self, hits: Hits) -> None:
        self.hits = hits

    async def get(self, user: str, server: str) -> None:
        self.hits.card += 1
        self.hits.auth.append(self.request.headers.get("Authorization", ""))
        await asyncio.sleep(0.05)
        self.finish(json.dumps({"version": 1, "user": user, "server_name": server, "poll_seconds": 2}))


class SlowHandler(web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(5)
        self.finish("{}")


class TextHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_status(500)
        self.finish("<html>oops</html>")


@pytest.fixture
async def hub() -> AsyncIterator[tuple[str, Hits]]:
    hits = Hits()
    app = web.Application(
        [
            (r"/hub/api/hpc/card/([^/]+)/([^/]*)", CardHandler, {"hits": hits}),
            (r"/hub/api/slow", SlowHandler),
            (r"/hub/api/text", TextHandler),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    server = httpserver.HTTPServer(app)
    server.add_sockets([sock])
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hub/api", hits
    finally:
        server.stop()


def settings(api_url: str, server_name: str = "") -> HubSettings:
    env = {
        "JUPYTERHUB_API_TOKEN": TOKEN,
        "JUPYTERHUB_API_URL": api_url + "/",
        "JUPYTERHUB_USER": "alice",
        "JUPYTERHUB_SERVER_NAME": server_name,
    }
    found = HubSettings.from_environ(env)
    assert found is not None
    return found


def test_settings_from_the_environment() -> None:
    assert HubSettings.from_environ({}) is None
    assert (
        HubSettings.from_environ({"JUPYTERHUB_API_URL": "http://h/hub/api", "JUPYTERHUB_USER": "a"}) is None
    )
    s = settings("http://hub:8081/hub/api", "gpu 1")
    assert s.card_url == "http://hub:8081/hub/api/hpc/card/alice/gpu%201"
    assert s.server_url == "http://hub:8081/hub/api/users/alice/servers/gpu%201"
    assert settings("http://hub:8081/hub/api").server_url == "http://hub:8081/hub/api/users/alice/server"
    assert TOKEN not in repr(s)  # never in a log line made of the settings


async def test_the_card_is_cached_for_half_its_poll_and_shared_by_concurrent_tabs(
    hub: tuple[str, Hits],
) -> None:
    url, hits = hub
    now = [100.0]
    cache = CardCache(HubClient(settings(url)), clock=lambda: now[0])
    replies = await asyncio.gather(*(cache.get() for _ in range(50)))
    assert all(r.status == 200 and r.body["user"] == "alice" for r in replies)
    assert hits.card == 1 and hits.auth == [f"token {TOKEN}"]
    now[0] += 0.9  # poll_seconds 2: kept 1 s
    await cache.get()
    assert hits.card == 1
    now[0] += 0.2
    await cache.get()
    assert hits.card == 2 and cache.hub_requests == 2


async def test_timeouts_unreachable_hubs_and_non_json_are_json_errors(hub: tuple[str, Hits]) -> None:
    url, _ = hub
    client = HubClient(settings(url), timeout=0.5)
    reply = await asyncio.wait_for(client.request("GET", f"{url}/slow"), 3)
    assert reply.status == 504 and "did not answer" in reply.body["error"]
    reply = await client.request("GET", f"{url}/text")
    assert reply.status == 500 and "without JSON" in reply.body["error"]
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed = free.getsockname()[1]
    reply = await client.request("GET", f"http://127.0.0.1:{closed}/hub/api/x")
    assert reply.status == 502 and "unreachable" in reply.body["error"]
    assert TOKEN not in json.dumps(reply.body)


async def test_errors_are_kept_briefly_not_for_half_an_interval(hub: tuple[str, Hits]) -> None:
    url, _ = hub
    now = [0.0]
    cache = CardCache(HubClient(settings(url + "/nothing-here"), timeout=1), clock=lambda: now[0])
    assert (await cache.get()).status == 404
    now[0] += 1.0
    await cache.get()
    assert cache.hub_requests == 1
    now[0] += 1.5
    await cache.get()
    assert cache.hub_requests == 2


def test_who_may_stop() -> None:
    assert can_stop(["delete:servers!server=alice/"], "alice", "")
    assert can_stop(["delete:servers!user=alice"], "alice", "gpu")
    assert not can_stop(["delete:servers!server=alice/gpu"], "alice", "")
    assert not can_stop(["access:servers!server=alice/"], "alice", "")
    assert not can_stop(None, "alice", "")
