"""The job card live (issue 14, item 1): real JupyterHub and proxy, real Slurm, real jupyter-server.

One hub for the whole module (it runs as the unprivileged hub account, as in test_slurm_e2e.py);
hpcuser1's server runs through the tests in file order and the last test stops it through the
server extension. The card is compared with ``scontrol show job``; an admin's ``scontrol update
TimeLimit`` must reach the card within one watcher interval; card requests (the hub's and the
server extension's) must add no scheduler query (the watcher's own count in /hub/metrics and
slurmctld's RPC count for the hub's account, from ``sdiag``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from browser import chromium, log_in
from conftest import nonroot_hubs
from hub import Hub, wait_for
from jupyterhub_hpc.handlers import hub_template_paths
from slurm_cluster import SlurmCluster, selected_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER, OTHER, QUEUED = "hpcuser1", "hpcuser2", "hpcuser3"
INTERVAL = 3.0
FAST = {"memory": "400M", "status_interval": INTERVAL, "command_timeout": 20.0, "poll_interval": 3}
CLUSTER: SlurmCluster = selected_cluster()
#: users may reach the announcements service: so the server token gets that scope too
USER_ROLE = {"name": "user", "scopes": ["self", "access:services!service=hpc-announcements"]}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    CLUSTER.check_version()
    CLUSTER.cancel_all([USER, OTHER, QUEUED])
    config = {
        "JupyterHub": {
            "template_paths": hub_template_paths,
            "services": [{"name": "hpc-announcements"}],  # after the test's own (tests/hub.py)
            "load_roles": [USER_ROLE],
        }
    }
    with nonroot_hubs(tmp_path_factory.mktemp("card-logs")) as make:
        hub = make(config=config, **{**CLUSTER.spawner, **FAST})
        hub.start()
        try:
            hub.spawn(USER)
            hub.wait_ready(USER)
            hub.ensure_user(OTHER)
            yield hub
        finally:
            CLUSTER.cancel_all([USER, OTHER, QUEUED])


def token(hub: Hub, user: str, scopes: list[str] | None = None) -> str:
    r = hub.api("POST", f"/users/{user}/tokens", json={"scopes": scopes or [f"access:servers!user={user}"]})
    r.raise_for_status()
    return str(r.json()["token"])


def hub_card(hub: Hub, user: str, tok: str, server: str = "") -> requests.Response:
    return requests.get(
        f"{hub.url}/hub/api/hpc/card/{user}/{server}", headers={"Authorization": f"token {tok}"}, timeout=10
    )


def lab_get(hub: Hub, user: str, tok: str, route: str) -> requests.Response:
    return requests.get(
        f"{hub.url}/user/{user}/jupyterhub-hpc/{route}", headers={"Authorization": f"token {tok}"}, timeout=20
    )


def job_of(hub: Hub) -> str:
    return str(hub.user_model(USER)["servers"][""]["state"]["job_id"])


def scontrol(job: str) -> dict[str, str]:
    text = CLUSTER.run("scontrol", "show", "job", job).stdout
    return dict(re.findall(r"(?:^|\s)([A-Za-z:]+)=(\S*)", text))


def utc(slurm_time: str) -> str:
    local = datetime.strptime(slurm_time, "%Y-%m-%dT%H:%M:%S")
    return local.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def queries(hub: Hub) -> float:
    """The watcher's status queries so far (/hub/metrics)."""
    match = re.search(
        r"^jupyterhub_hpc_status_query_duration_seconds_count\{[^}]*\} (\S+)$", hub.metrics(), re.M
    )
    return float(match.group(1)) if match else 0.0


def hub_rpcs() -> int:
    """slurmctld's RPC count for the hub's account (sdiag, by user)."""
    text = CLUSTER.run("sdiag").stdout
    match = re.search(r"^\s*jupyterhub\s+\(\s*\d+\)\s+count:(\d+)", text, re.M)
    return int(match.group(1)) if match else 0


def test_the_card_of_a_running_job_is_what_scontrol_shows(hub: Hub) -> None:
    job = job_of(hub)
    r = hub_card(hub, USER, token(hub, USER))
    assert r.status_code == 200, r.text
    card: dict[str, Any] = r.json()
    shown = scontrol(job)
    assert card["version"] == 1 and card["user"] == USER and card["server_name"] == ""
    assert card["backend"] == "slurm" and card["poll_seconds"] == int(INTERVAL)
    assert card["walltime"] == {"warn_seconds": [900, 300], "autosave_seconds": 120}
    assert card["idle"] is None and card["maintenance"] == []
    got = card["job"]
    assert got["id"] == job and got["state"] == "running" and got["native_state"] == shown["JobState"]
    assert got["partition"] == shown["Partition"]
    assert got["nodes"] == [shown["NodeList"]] and shown["NodeList"] == shown["BatchHost"]
    assert got["end_time"] == utc(shown["EndTime"])
    assert got["start_time"] == utc(shown["StartTime"])
    assert got["cores"] == int(shown["NumCPUs"]) and got["memory_bytes"] == 400 * 1024**2
    assert got["reason"] is None and got["expected_start"] is None


def test_an_admins_new_time_limit_reaches_the_card_within_one_interval(hub: Hub) -> None:
    job = job_of(hub)
    tok = token(hub, USER)
    before = hub_card(hub, USER, tok).json()["job"]
    limit = (before["time_limit_seconds"] or 8 * 3600) - 1800
    CLUSTER.run("scontrol", "update", f"JobId={job}", f"TimeLimit={limit // 60}")
    updated = time.monotonic()
    expected = utc(scontrol(job)["EndTime"])
    assert expected != before["end_time"]

    def changed() -> dict[str, Any] | None:
        got = hub_card(hub, USER, tok).json()["job"]
        return got if got["end_time"] == expected else None

    got = wait_for(changed, 3 * INTERVAL, interval=0.1, message="the card kept the old end time")
    took = time.monotonic() - updated
    assert took <= INTERVAL + 1.5, f"the new end time took {took:.1f} s (interval {INTERVAL} s)"
    assert got["time_limit_seconds"] == limit // 60 * 60


def test_the_server_extension_answers_with_the_card_through_the_proxy(hub: Hub) -> None:
    tok = token(hub, USER)
    r = lab_get(hub, USER, tok, "card")
    assert r.status_code == 200, r.text
    assert r.json()["job"]["id"] == job_of(hub) and r.json()["user"] == USER
    # no announcements service URL (the test's service has none): a JSON 404, not a hang
    r = lab_get(hub, USER, tok, "announcements")
    assert r.status_code == 404 and "announcements service" in r.json()["error"]
    # without a token of the user: the server refuses (redirect to login or 403)
    r = requests.get(f"{hub.url}/user/{USER}/jupyterhub-hpc/card", timeout=10, allow_redirects=False)
    assert r.status_code in (302, 403)


def test_open_labs_share_one_hub_request_per_half_interval(hub: Hub) -> None:
    tok = token(hub, USER)
    lab_get(hub, USER, tok, "card")
    seen = hub.log_path.read_text(errors="replace").count(f"GET /hub/api/hpc/card/{USER}/")
    t0 = time.monotonic()
    for _ in range(30):
        assert lab_get(hub, USER, tok, "card").status_code == 200
    elapsed = time.monotonic() - t0
    hub_requests = hub.log_path.read_text(errors="replace").count(f"GET /hub/api/hpc/card/{USER}/") - seen
    allowed = int(elapsed / (INTERVAL / 2)) + 1
    assert hub_requests <= allowed, (hub_requests, elapsed)


def test_a_queued_job_says_why_in_words_and_when_it_should_start(hub: Hub) -> None:
    hub.per_user({QUEUED: {"job_extra_directives": ["--begin=now+600"]}})
    try:
        assert hub.spawn(QUEUED).status_code in (201, 202)
        job = wait_for(lambda: next(iter(CLUSTER.jobs(QUEUED)), None), 60, message="no queued job")
        tok = token(hub, QUEUED)

        def pending() -> dict[str, Any] | None:
            got = hub_card(hub, QUEUED, tok).json()["job"]
            return got if got and got["state"] == "pending" and got["reason"] else None

        got = wait_for(pending, 30, message="the card never showed the pending job")
        shown = scontrol(job)
        assert got["id"] == job and got["native_state"] == "PENDING" == shown["JobState"]
        assert got["reason"] == shown["Reason"] == "BeginTime"
        assert got["reason_text"] == "the job's start time has not been reached"
        assert got["expected_start"] == utc(shown["StartTime"])
        assert got["start_time"] is None and got["end_time"] is None and got["nodes"] == []
        # the home page says it in words too, with the expected start
        text = home_card_text(hub, QUEUED, job)
        assert job in text and "the job's start time has not been reached" in text, text
        assert "Expected start" in text and "unknown" not in text, text
    finally:
        hub.per_user({})
        hub.api("DELETE", f"/users/{QUEUED}/server")
        wait_for(lambda: not CLUSTER.jobs(QUEUED), 60, message="the queued job was not cancelled")


def test_another_users_token_gets_403_and_unknown_servers_404(hub: Hub) -> None:
    other = token(hub, OTHER)
    assert hub_card(hub, USER, other).status_code == 403
    assert hub_card(hub, USER, other, "nope").status_code == 403
    assert hub_card(hub, OTHER, other).status_code == 200  # its own (no server: no job)
    assert hub_card(hub, OTHER, other).json()["job"] is None
    assert hub_card(hub, USER, token(hub, USER), "nope").status_code == 404
    assert hub_card(hub, "nosuchuser", hub.admin_token).status_code == 404
    assert hub_card(hub, USER, "not-a-token").status_code == 403
    # read:servers is enough; a token without either scope is refused
    assert hub_card(hub, USER, token(hub, USER, [f"read:servers!user={USER}"])).status_code == 200
    assert hub_card(hub, USER, token(hub, USER, [f"read:users!user={USER}"])).status_code == 403
    # an admin's token with access:servers on every server
    assert hub_card(hub, USER, hub.admin_token).status_code == 200


def test_the_server_token_has_exactly_the_default_scopes_and_ours(hub: Hub) -> None:
    tokens = hub.api("GET", f"/users/{USER}/tokens").json()["api_tokens"]
    server = [t for t in tokens if (t.get("note") or "").startswith("Server at ")]
    assert len(server) == 1, tokens
    # JupyterHub stores them expanded: the server role's two scopes, servers!server (stop, start,
    # read of this server) and the announcements service, nothing else
    default = {
        f"users:activity!user={USER}",
        f"read:users:activity!user={USER}",
        f"access:servers!server={USER}/",
    }
    ours = {
        f"servers!server={USER}/",
        f"read:servers!server={USER}/",
        f"start:servers!server={USER}/",
        f"delete:servers!server={USER}/",
        f"read:users:name!user={USER}",
        f"read:users:groups!user={USER}",
        "access:services!service=hpc-announcements",
    }
    assert set(server[0]["scopes"]) == default | ours


def window(hub: Hub, seconds: float, work: Callable[[], None] = lambda: None) -> tuple[float, int, float]:
    """(watcher status queries, hub RPCs in slurmctld, seconds) over ``work`` and at least ``seconds``."""
    q0, rpc0, t0 = queries(hub), hub_rpcs(), time.monotonic()
    work()
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    return queries(hub) - q0, hub_rpcs() - rpc0, time.monotonic() - t0


def test_card_requests_add_no_scheduler_query(hub: Hub) -> None:
    tok = token(hub, USER)
    hub_card(hub, USER, tok)

    def cards() -> None:
        for n in range(50):
            assert hub_card(hub, USER, tok).status_code == 200
            if n % 10 == 0:
                assert lab_get(hub, USER, tok, "card").status_code == 200

    quiet_q, quiet_rpc, _ = window(hub, 2 * INTERVAL + 0.5)
    busy_q, busy_rpc, elapsed = window(hub, 2 * INTERVAL + 0.5, cards)
    print(
        f"quiet: {quiet_q:.0f} queries, {quiet_rpc} RPCs; "
        f"50 cards in {elapsed:.1f} s: {busy_q:.0f}, {busy_rpc}"
    )
    # the counters count the watcher's own queries (squeue makes a few RPCs each)
    assert quiet_q >= 1 and quiet_rpc >= quiet_q
    per_query = -(-quiet_rpc // int(quiet_q))
    # one status query per interval whatever the card requests, and no RPC beyond those queries'
    assert busy_q <= int(elapsed / INTERVAL) + 1, (busy_q, elapsed)
    assert busy_rpc <= per_query * busy_q, (busy_rpc, busy_q, per_query)


def home_card_text(hub: Hub, user: str, job: str) -> str:
    """The text of the job card of ``job`` on ``user``'s hub home page, in headless Chromium."""
    with chromium() as browser:
        page = browser.new_page()
        log_in(page, hub.url, user, hub.password)
        page.goto(f"{hub.url}/hub/home")
        card = page.locator(f'.hpc-job-card[data-job-id="{job}"]')
        card.wait_for(timeout=15000)
        return card.inner_text()


def test_the_home_page_shows_the_job_card(hub: Hub) -> None:
    job = job_of(hub)
    node = scontrol(job)["NodeList"]
    text = home_card_text(hub, USER, job)
    assert job in text and node in text and "Time remaining" in text and "Ends" in text, text


def test_stop_through_the_server_extension_ends_the_job(hub: Hub) -> None:
    job = job_of(hub)
    tok = token(hub, USER)
    r = requests.post(
        f"{hub.url}/user/{USER}/jupyterhub-hpc/stop", headers={"Authorization": f"token {tok}"}, timeout=20
    )
    assert r.status_code == 202, r.text
    wait_for(lambda: not hub.user_model(USER)["servers"], 60, message="the server did not stop")
    wait_for(lambda: job not in CLUSTER.jobs(USER), 30, message=f"job {job} is still in the queue")
    assert hub_card(hub, USER, tok).json()["job"] is None


def test_the_server_extension_reaches_an_internal_ssl_hub(tmp_path: Path) -> None:
    """With internal_ssl the extension calls the hub's API over TLS with the server's own certificate
    and the internal CA (the launcher's files): the card comes through, and so does the stop."""
    CLUSTER.cancel_all([OTHER])
    config = {"JupyterHub": {"internal_ssl": True}, "Spawner": {"ssl_alt_names": ["DNS:vm"]}}
    with nonroot_hubs(tmp_path) as make:
        hub = make(config=config, **{**CLUSTER.spawner, **FAST})
        hub.start()
        try:
            hub.spawn(OTHER)
            hub.wait_ready(OTHER)
            job = str(hub.user_model(OTHER)["servers"][""]["state"]["job_id"])
            tok = token(hub, OTHER)
            r = lab_get(hub, OTHER, tok, "card")
            assert r.status_code == 200, r.text
            assert r.json()["job"]["id"] == job and r.json()["job"]["state"] == "running"
            assert (
                hub.settings["config"]["JupyterHub"]["internal_ssl"]
                and "https://" in hub.log_path.read_text()
            )
            r = requests.post(
                f"{hub.url}/user/{OTHER}/jupyterhub-hpc/stop",
                headers={"Authorization": f"token {tok}"},
                timeout=20,
            )
            assert r.status_code == 202, r.text
            wait_for(lambda: job not in CLUSTER.jobs(OTHER), 60, message=f"job {job} is still in the queue")
        finally:
            CLUSTER.cancel_all([OTHER])
