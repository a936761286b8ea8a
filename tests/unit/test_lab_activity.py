"""The server extension's use reports (jupyterhub_hpc.lab.activity): throttled to one per interval,
at once after a quiet interval, monotonic, against a real HTTP server in this process standing in
for the hub's ``POST /hub/api/hpc/use`` (the live hub: tests/local/test_idle_lab.py)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest
from tornado import httpserver, web

from jupyterhub_hpc.lab.activity import UseReporter, report_interval
from jupyterhub_hpc.lab.hub import HubClient, HubSettings

UTC = timezone.utc


class UseHandler(web.RequestHandler):
    def initialize(self, bodies: list[dict[str, str]], status: list[int]) -> None:
        self.bodies = bodies
        self.status = status

    def post(self) -> None:
        assert self.request.headers["Authorization"] == "token t0ken"
        self.bodies.append(json.loads(self.request.body))
        self.set_status(self.status[0])
        self.finish("{}")


@pytest.fixture
async def hub() -> AsyncIterator[tuple[HubClient, list[dict[str, str]], list[int]]]:
    bodies: list[dict[str, str]] = []
    status = [200]
    app = web.Application([(r"/hub/api/hpc/use", UseHandler, {"bodies": bodies, "status": status})])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server = httpserver.HTTPServer(app)
    server.add_sockets([sock])
    env = {
        "JUPYTERHUB_API_TOKEN": "t0ken",
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{sock.getsockname()[1]}/hub/api",
        "JUPYTERHUB_USER": "alice",
    }
    settings = HubSettings.from_environ(env)
    assert settings is not None
    try:
        yield HubClient(settings, timeout=5), bodies, status
    finally:
        server.stop()


async def settle(reporter: UseReporter) -> None:
    for _ in range(100):
        if reporter._inflight is None or reporter._inflight.done():
            return
        await asyncio.sleep(0.01)


async def test_reports_are_throttled_and_sent_at_once_after_a_quiet_interval(
    hub: tuple[HubClient, list[dict[str, str]], list[int]],
) -> None:
    client, bodies, _ = hub
    now = [1000.0]
    reporter = UseReporter(client, 60.0, clock=lambda: now[0])
    reporter.flush()  # at start: the server's start is its first use
    await settle(reporter)
    assert len(bodies) == 1
    t1 = datetime.now(UTC)
    now[0] += 10
    reporter.note(t1)  # within the interval: kept, not sent
    reporter.note(t1 - timedelta(seconds=5))  # older: changes nothing
    await settle(reporter)
    assert len(bodies) == 1 and reporter.last_use == t1
    reporter.flush()  # the periodic flush sends the newer use
    await settle(reporter)
    assert [datetime.fromisoformat(b["last_use"].replace("Z", "+00:00")) for b in bodies][-1] == t1
    reporter.flush()  # nothing new: nothing sent
    await settle(reporter)
    assert len(bodies) == 2
    now[0] += 61  # a quiet interval: the next use goes at once
    reporter.note(t1 + timedelta(seconds=70))
    await settle(reporter)
    assert len(bodies) == 3 and reporter.reported == t1 + timedelta(seconds=70)


async def test_a_refused_report_is_sent_again_and_nothing_without_a_policy(
    hub: tuple[HubClient, list[dict[str, str]], list[int]],
) -> None:
    client, bodies, status = hub
    status[0] = 403
    reporter = UseReporter(client, 1.0)
    reporter.flush()
    await settle(reporter)
    assert reporter.refused == 1 and reporter.reported is None
    status[0] = 200
    reporter.flush()
    await settle(reporter)
    assert reporter.reported == reporter.last_use and len(bodies) == 2

    silent = UseReporter(client, None)  # no idle timeout: nothing is reported
    silent.note()
    silent.flush()
    await settle(silent)
    assert len(bodies) == 2 and silent.browser_interval == 60.0


@pytest.mark.parametrize(
    ("value", "expected"), [("5", 5.0), ("0.2", 1.0), ("", None), ("0", None), ("nan", None), ("x", None)]
)
def test_report_interval(value: str, expected: float | None) -> None:
    assert report_interval({"JUPYTERHUB_HPC_IDLE_REPORT_SECONDS": value}) == expected
