"""Every endpoint of the package on the real, unprivileged hub against hostile bodies and floods:
the job's port callback, discovery and dry run (also for another user). Malformed, oversized,
deeply nested or mistyped bodies get a short 4xx and leave no traceback in the hub log; an
oversized body is not buffered; discovery and dry run are rate-limited per caller (429 with
Retry-After, other callers unaffected); a start refused for its options is one log line."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jupyterhub
import pytest
import requests
import secutil
from secutil import FAST

from conftest import nonroot_hubs
from hub import Hub, wait_for
from profiles.hubs import PROFILES_CONFIG, login, options_body, token_for

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

#: hpcuser1 sends the malformed bodies, hpcuser2 floods, hpcuser3 is the bystander and starts
#: with invalid options, hpcuser4 has no profiles (HPCSpawner's own validation applies)
SENDER, FLOODER, BYSTANDER, PLAIN = "hpcuser1", "hpcuser2", "hpcuser3", "hpcuser4"
#: a burst of 40, then one request per 3 s: each caller's malformed bodies below stay under 40
RATE, WINDOW = 40, 120.0
PORT_LIMIT, VALIDATE_LIMIT, PROGRESS_LIMIT = 1024, 64 * 1024, 1024

PROFILES = [
    {
        "display_name": "CPU",
        "slug": "cpu",
        "default": True,
        "spawner_override": {"partition": "debug"},
        "profile_options": {
            "cpus": {"type": "integer", "display_name": "CPU cores", "job_field": "cpus", "min": 1, "max": 4},
        },
    }
]
#: PLAIN gets no profiles, so its start is validated by HPCSpawner (allowed_user_options)
PLAIN_CONFIG = f"""
_site_profiles = c.SlurmSpawner.profile_list
c.SlurmSpawner.profile_list = lambda spawner: [] if spawner.user.name == {PLAIN!r} else _site_profiles
"""
#: what an error message must never show: Python's internals
INTERNALS = re.compile(r"Traceback|(Recursion|Unicode\w*|JSONDecode|Value|Type|Key)Error|File \"|line \d+")


class LogWindow:
    """The hub log lines written since ``mark()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def lines(self) -> list[str]:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace").splitlines()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    secutil.cancel_test_jobs()
    config = {
        "SlurmSpawner": {
            "profile_list": PROFILES,
            "profile_api_rate_limit": RATE,
            "profile_api_rate_window": WINDOW,
        }
    }
    with nonroot_hubs(tmp_path_factory.mktemp("logs")) as make:
        hub = make(config=config, allowed_user_options=["cpus"], **FAST)
        hub.settings["spawner_class"] = "slurm"
        (hub.root / "settings.json").write_text(json.dumps(hub.settings))
        path = hub.root / "jupyterhub_config.py"
        path.write_text(path.read_text() + PROFILES_CONFIG + PLAIN_CONFIG)
        hub.start()
        for user in (SENDER, FLOODER, BYSTANDER, PLAIN):
            hub.ensure_user(user)
        yield hub
    secutil.cancel_test_jobs()


@pytest.fixture(scope="module")
def tokens(hub: Hub) -> dict[str, str]:
    return {user: token_for(hub, user) for user in (SENDER, FLOODER, BYSTANDER)}


@pytest.fixture
def log(hub: Hub) -> Iterator[LogWindow]:
    window = LogWindow(hub.log_path)
    window.mark()
    yield window
    lines = window.lines()
    assert not [line for line in lines if "Traceback" in line or "Uncaught exception" in line], "\n".join(
        lines[-80:]
    )


def call(hub: Hub, method: str, path: str, token: str, data: bytes | None = None) -> requests.Response:
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    return requests.request(method, f"{hub.url}/hub/api{path}", data=data, headers=headers, timeout=60)


def short_error(r: requests.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    message = str(body["message"])
    assert body["status"] == status
    assert message.isprintable() and len(message) <= 120 and not INTERNALS.search(message), message
    return message


#: (endpoint, which caller's token, its body limit)
ENDPOINTS = {
    "port": ("/hpc/port", SENDER, PORT_LIMIT),
    "progress": ("/hpc/progress", SENDER, PROGRESS_LIMIT),
    "validate": ("/hpc/profiles/validate", SENDER, VALIDATE_LIMIT),
    "validate-for-user": (f"/hpc/users/{SENDER}/profiles/validate", "admin", VALIDATE_LIMIT),
}
MALFORMED = {
    "nested-100000": b"[" * 100_000,
    "nested-1000": b"[" * 1000,
    "nested-objects": b'{"a":' * 150 + b"1" + b"}" * 150,
    "huge-string": b'{"profile": "cpu", "x": "' + b"a" * 70_000 + b'"}',
    "over-a-kib": b'{"port": 20001, "pad": [' + b"0," * 600 + b"0]}",
    "form-encoded": b"port=20001&profile=cpu",
    "truncated": b'{"port": 20001',
    "not-utf8": b"\xff\xfe{\x00}\x00",
    "latin-1": b'{"profile": "caf\xe9"}',
    "nan": b'{"port": NaN, "cpus": NaN}',
    "array": b"[20001]",
    "string": b'"cpu"',
    "number": b"20001",
    "null": b"null",
    "bool": b"true",
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_bodies_get_a_short_4xx_and_no_traceback(
    hub: Hub, tokens: dict[str, str], log: LogWindow, endpoint: str, name: str
) -> None:
    path, caller, limit = ENDPOINTS[endpoint]
    raw = MALFORMED[name]
    r = call(hub, "POST", path, hub.admin_token if caller == "admin" else tokens[caller], raw)
    expected = 413 if len(raw) > limit else 400
    message = short_error(r, expected)
    if expected == 413:
        assert f"at most {limit} bytes" in message
    elif name.startswith("nested"):
        assert "nests deeper than" in message


@pytest.mark.parametrize(
    "raw", [b'{"user_options": [1]}', b'{"user_options": "cpu"}', b'{"user_options": {"cpus": [[[[]]]]}}']
)
def test_dry_run_options_of_the_wrong_type_are_a_400(
    hub: Hub, tokens: dict[str, str], log: LogWindow, raw: bytes
) -> None:
    r = call(hub, "POST", f"/hpc/users/{SENDER}/profiles/validate", hub.admin_token, raw)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == 400 and not INTERNALS.search(r.text)


def test_a_well_formed_body_still_reaches_each_endpoint(
    hub: Hub, tokens: dict[str, str], log: LogWindow
) -> None:
    # the control: the same requests with good bodies pass the reader
    r = call(hub, "POST", "/hpc/port", tokens[SENDER], b'{"port": 20001}')
    assert short_error(r, 403) == "this token belongs to no starting server"
    r = call(hub, "POST", "/hpc/progress", tokens[SENDER], b'{"hook": "10-x", "line": "hello"}')
    assert short_error(r, 403) == "this token belongs to no starting server"
    r = call(hub, "POST", "/hpc/progress", tokens[SENDER], b'{"hook": "10-x", "line": "hi", "html": "<b>"}')
    assert short_error(r, 400).startswith("the body must be exactly")
    r = call(hub, "POST", "/hpc/profiles/validate", tokens[SENDER], b'{"profile": "cpu", "cpus": 2}')
    assert r.status_code == 200 and r.json()["job"]["cpus"] == 2, r.text
    r = call(hub, "POST", "/hpc/profiles/validate", tokens[SENDER], b"")
    assert r.status_code == 200 and r.json()["profile"] == "cpu", r.text


def test_discovery_ignores_a_body_even_a_hostile_one(
    hub: Hub, tokens: dict[str, str], log: LogWindow
) -> None:
    r = call(hub, "GET", "/hpc/profiles", tokens[SENDER], b"[" * 100_000)
    assert r.status_code == 200 and [p["slug"] for p in r.json()["profiles"]] == ["cpu"], r.text[:300]
    r = call(hub, "GET", f"/hpc/users/{SENDER}/profiles", hub.admin_token, b"\xff" * 3_000_000)
    assert r.status_code == 200, r.text[:300]


def peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]


@pytest.mark.parametrize("endpoint", ["port", "validate-for-user"])
def test_an_oversized_body_is_refused_without_being_buffered(
    hub: Hub, tokens: dict[str, str], log: LogWindow, endpoint: str
) -> None:
    path, caller, limit = ENDPOINTS[endpoint]
    assert hub.proc is not None and limit < 1024 * 1024
    before = peak_rss_kib(hub.proc.pid)
    body = b'{"port": "' + b"9" * (48 * 1024 * 1024) + b'"}'  # 48 MiB, under tornado's own 100 MiB cap
    r = call(hub, "POST", path, hub.admin_token if caller == "admin" else tokens[caller], body)
    short_error(r, 413)
    # buffered, the body alone would have raised the hub's peak memory by 48 MiB (96 joined)
    assert peak_rss_kib(hub.proc.pid) - before < 16 * 1024


def test_discovery_and_dry_run_are_rate_limited_per_caller(
    hub: Hub, tokens: dict[str, str], log: LogWindow
) -> None:
    token = tokens[FLOODER]
    started = time.monotonic()
    passed, refused = 0, None
    for n in range(RATE * 3):
        if n % 2:
            r = call(hub, "GET", "/hpc/profiles", token)
        else:
            r = call(hub, "POST", "/hpc/profiles/validate", token, b'{"profile": "cpu"}')
        if r.status_code == 429:
            refused = r
            break
        assert r.status_code == 200, r.text[:300]
        passed += 1
    elapsed = time.monotonic() - started
    assert refused is not None, f"{passed} requests in {elapsed:.1f} s and no 429"
    # the burst, plus what refilled meanwhile (one request per WINDOW / RATE seconds)
    assert RATE <= passed <= RATE + elapsed / (WINDOW / RATE) + 1, (passed, elapsed)
    retry_after = refused.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= WINDOW / RATE + 1, retry_after
    assert "too many" in short_error(refused, 429)
    assert call(hub, "POST", "/hpc/profiles/validate", token, b'{"profile": "cpu"}').status_code == 429
    # other callers have their own allowance: another user, and an admin looking at this one
    assert call(hub, "GET", "/hpc/profiles", tokens[BYSTANDER]).status_code == 200
    assert call(hub, "GET", f"/hpc/users/{FLOODER}/profiles", hub.admin_token).status_code == 200
    # the port callback is not rate-limited (a starting job must always get through)
    assert call(hub, "POST", "/hpc/port", token, b'{"port": 20001}').status_code == 403
    # after Retry-After, the next request passes
    time.sleep(int(refused.headers["Retry-After"]) + 0.5)
    assert call(hub, "GET", "/hpc/profiles", token).status_code == 200


def reason_lines(log: LogWindow, reason: str, expected: int) -> list[str]:
    """The hub log lines since the mark that mention ``reason`` (waiting for ``expected``)."""
    wait_for(lambda: len([x for x in log.lines() if reason in x]) >= expected, 10, message=reason)
    time.sleep(0.5)  # anything logged after the answer
    return [line for line in log.lines() if reason in line]


@pytest.mark.parametrize(
    ("user", "options", "reason"),
    [
        (BYSTANDER, {"profile": "cpu", "cpus": 99}, "Invalid option 'cpus': must be at most 4 (got 99)"),
        (PLAIN, {"colour": "blue"}, "this option cannot be set by users"),
    ],
    ids=["profiles", "hpcspawner"],
)
def test_a_rest_start_refused_for_its_options_is_one_log_line(
    hub: Hub, log: LogWindow, user: str, options: dict[str, Any], reason: str
) -> None:
    r = hub.api("POST", f"/users/{user}/server", json=options_body(options))
    assert r.status_code == 400 and reason in r.json()["message"], r.text
    lines = reason_lines(log, reason, 2)
    # JupyterHub's line about the failed start; the other is tornado's line of the HTTP request
    errors = [x for x in lines if x.startswith("[E")]
    assert len(errors) == 1 and f"starting {user}'s server" in errors[0], "\n".join(log.lines())
    request_lines = [x for x in lines if x.startswith("[W") and f"400 POST /hub/api/users/{user}/server" in x]
    assert len(request_lines) == 1 and len(lines) == 2, "\n".join(lines)
    assert hub.user_model(user)["servers"] == {}  # nothing was submitted


def test_a_form_start_refused_for_its_options_has_no_traceback(hub: Hub, log: LogWindow) -> None:
    session = login(hub, SENDER)
    page = session.get(f"{hub.url}/hub/spawn", timeout=30)
    action = re.search(r'<form[^>]*\saction="([^"]+)"', page.text)
    assert page.status_code == 200 and action, page.text[:500]
    # the form's action carries the XSRF token (JupyterHub 5.3 and 6)
    r = session.post(
        f"{hub.url}{html.unescape(action.group(1))}",
        data={"profile": "cpu", "profile-option-cpu--cpus": "99"},
        timeout=60,
    )
    reason = "Invalid option 'cpus': must be at most 4 (got 99)"
    # the form again, with the reason (JupyterHub 5.3 answers it with 200)
    assert "must be at most 4" in r.text, r.text[:500]
    assert r.status_code == (400 if jupyterhub.version_info >= (6,) else 200)
    # JupyterHub's own lines about it (User.spawn's, the form handler's), none with a traceback
    # (which the log fixture checks); 5.3 logs the same two without one only thanks to the filter
    lines = reason_lines(log, reason, 1)
    assert 1 <= len(lines) <= 2 and all(x.startswith("[E") for x in lines), "\n".join(lines)
    assert hub.user_model(SENDER)["servers"] == {}
