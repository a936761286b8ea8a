"""The job's callback (``POST /hub/api/hpc/port``) through the real, unprivileged hub: only
``{"port": N}``, only from the token of the very server being started, once per job, within
``port_range``, only while the job lives. Every refused post leaves every spawner's state as
it was; the accepted one (the control) changes it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import secutil
from secutil import FAST, HOLD

from conftest import nonroot_hubs
from hub import Hub, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

RUNNING, STARTING = "hpcuser1", "hpcuser2"


def post(hub: Hub, token: str | None, body: Any, raw: bytes | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    data = raw if raw is not None else json.dumps(body).encode()
    return requests.post(f"{hub.url}/hub/api/hpc/port", data=data, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def hubs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    secutil.cancel_test_jobs()
    with nonroot_hubs(tmp_path_factory.mktemp("logs")) as make:
        hub = make(port_range="20000-20999", **FAST)
        hub.per_user({STARTING: HOLD})
        hub.start()
        hub.spawn(RUNNING)
        hub.wait_ready(RUNNING)
        hub.spawn(STARTING)
        job = secutil.pending_job(STARTING)
        wait_for(lambda: (secutil.server_state(hub, STARTING) or {}).get("job_id") == job, 30)
        yield {
            "hub": hub,
            "job": job,
            "starting_token": secutil.spool_token(job),
            "running_token": secutil.server_token(RUNNING, str(secutil.server_state(hub, RUNNING)["job_id"])),
            "user_token": hub.user_token(STARTING),
        }
        hub.stop_server(RUNNING)
    secutil.cancel_test_jobs()


def states(hub: Hub) -> dict[str, Any]:
    return {user: secutil.server_state(hub, user) for user in (RUNNING, STARTING)}


def refused(hubs: dict[str, Any], token: str | None, body: Any, status: int, raw: bytes | None = None) -> str:
    hub = hubs["hub"]
    before = states(hub)
    assert before[STARTING] is not None and before[STARTING]["port"] == 0
    r = post(hub, token, body, raw)
    assert r.status_code == status, (r.status_code, r.text)
    assert states(hub) == before
    return str(r.json().get("message", ""))


@pytest.mark.parametrize(
    "raw",
    [b"port=20001", b"{", b"", b"\x00\xff", b"[20001]", b"20001", b"null", b'"20001"'],
)
def test_a_body_that_is_not_a_json_object_is_refused(hubs: dict[str, Any], raw: bytes) -> None:
    refused(hubs, hubs["starting_token"], None, 400, raw=raw)


@pytest.mark.parametrize(
    "body",
    [
        {"port": 20001, "ip": "203.0.113.7"},
        {"port": 20001, "exec_prefix": ""},
        {"port": 20001, "batch_query_cmd": "id > /tmp/escalation_proof"},
        {"port": 20001, "job_host": "attacker.example"},
        {"ip": "203.0.113.7"},
        {},
    ],
)
def test_extra_or_missing_keys_are_refused(hubs: dict[str, Any], body: dict[str, Any]) -> None:
    refused(hubs, hubs["starting_token"], body, 400)


@pytest.mark.parametrize(
    "port", [80, 19999, 21000, 0, -1, 65536, 2**64, "20001", 20001.0, True, None, [20001]]
)
def test_a_port_outside_the_range_or_not_an_integer_is_refused(hubs: dict[str, Any], port: Any) -> None:
    refused(hubs, hubs["starting_token"], {"port": port}, 400)


def test_another_users_server_token_cannot_touch_this_server(hubs: dict[str, Any]) -> None:
    # RUNNING's own server already reported; STARTING's spawner is not even looked at
    message = refused(hubs, hubs["running_token"], {"port": 20001}, 400)
    assert "already reported" in message


@pytest.mark.parametrize("which", ["user_token", "admin_token", "none", "bogus"])
def test_tokens_that_are_not_a_servers_are_refused(hubs: dict[str, Any], which: str) -> None:
    token = {
        "user_token": hubs["user_token"],
        "admin_token": hubs["hub"].admin_token,
        "none": None,
        "bogus": "0" * 32,
    }[which]
    refused(hubs, token, {"port": 20001}, 403)


def test_the_server_token_is_accepted_once_then_refused_and_after_the_job_ended(hubs: dict[str, Any]) -> None:
    hub, job, token = hubs["hub"], hubs["job"], hubs["starting_token"]
    before = states(hub)
    r = post(hub, token, {"port": 20001})
    assert r.status_code == 200, r.text
    after = states(hub)
    assert after[STARTING]["port"] == 20001 and after[STARTING]["port_job"] == job
    assert after[RUNNING] == before[RUNNING]
    # once per job
    message = refused_after_accept(hub, token, {"port": 20002}, 400)
    assert "already reported" in message
    # the job ends (cancelled behind the hub's back): the spawn fails, the token is dead
    secutil.cancel_test_jobs_of(STARTING)
    secutil.wait_no_server(hub, STARTING)
    r = post(hub, token, {"port": 20003})
    assert r.status_code == 403, r.text
    assert hub.user_model(STARTING)["servers"] == {}
    assert secutil.server_state(hub, RUNNING) == before[RUNNING]


def refused_after_accept(hub: Hub, token: str, body: Any, status: int) -> str:
    before = states(hub)
    r = post(hub, token, body)
    assert r.status_code == status, r.text
    assert states(hub) == before
    return str(r.json().get("message", ""))
