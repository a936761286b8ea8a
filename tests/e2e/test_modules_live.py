"""Software modules live: a real JupyterHub (as the unprivileged hub account, under its generated
sudoers file) on the real Slurm, Debian's Lmod and the unpacked Environment Modules 5.2 with the
test trees of ``scripts/modules.sh``, headless Chromium for the spawn form. One hub for the module:

* modules picked in the spawn form (search box, multi-select) are loaded in the job: a kernel
  started through the server's REST API prints ``LOADEDMODULES`` and runs the modules' tools
  (the fake ``gcc``, ``hpctool``), the sticky module included; the hub route
  ``/hub/api/hpc/modules/<user>/`` answers the server's own set, to the user's token;
* the profile's kernel preset end to end in the job: the server extension lists it (and the
  server's modules, from that hub route), its kernel loads its own set (a purge, the sticky
  module again, ``gcc/12``) while the server process (``/proc/<pid>/environ``) keeps the form's;
* a module that fails to load fails the spawn within seconds, with Lmod's own message in the
  progress stream and on the spawn page;
* REST starts with a module outside the profile's set, or with shell metacharacters, are 400s
  and submit nothing;
* the same catalogue through Environment Modules (a profile of its own), and a job loading
  through it.
"""

from __future__ import annotations

import asyncio
import json
import pwd
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

import module_systems
from browser import log_in
from conftest import nonroot_hubs
from hub import Hub
from slurm_cluster import SlurmCluster, selected_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser]

CLUSTER: SlurmCluster = selected_cluster()
USERS = ("hpcuser1", "hpcuser2", "hpcuser3")
FAST = {"memory": "400M", "status_interval": 2.0, "command_timeout": 20.0, "poll_interval": 3}
LMOD = module_systems.LMOD.model_dump(mode="json")
TMOD = module_systems.TMOD.model_dump(mode="json")
MODULES = {"type": "modules", "display_name": "Software modules", "sticky": ["hpctool/1.0"]}
PROFILES = [
    {
        "display_name": "Compilers",
        "slug": "mods",
        "default": True,
        "profile_options": {
            "modules": {
                **MODULES,
                "allow": ["gcc/*", "python/*"],
                "preset": ["gcc"],
                "kernels": [
                    {"name": "gcc12", "display_name": "GCC 12 only", "modules": ["gcc/12"], "purge": True}
                ],
            }
        },
    },
    {"display_name": "Anything", "slug": "any", "profile_options": {"modules": {**MODULES, "sticky": []}}},
    {
        "display_name": "Environment Modules",
        "slug": "tmod",
        "spawner_override": {"module_system": TMOD},
        "profile_options": {"modules": {**MODULES, "deny": ["broken/*"]}},
    },
]
#: what a kernel of the job prints: its modules and the output of the modules' tools
PROBE = (
    "import os, subprocess\n"
    "print('LOADED=' + os.environ.get('LOADEDMODULES', ''))\n"
    "print('CC=' + os.environ.get('CC', ''))\n"
    "for tool in ('gcc', 'hpctool'):\n"
    "    done = subprocess.run([tool, '--version'], capture_output=True, text=True)\n"
    "    print(tool.upper() + '=' + done.stdout.strip().splitlines()[0])\n"
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    CLUSTER.check_version()
    before = {user: set(CLUSTER.jobs(user)) for user in USERS}
    spawner = {**CLUSTER.spawner, **FAST, "profile_list": PROFILES, "module_system": LMOD}
    with nonroot_hubs(tmp_path_factory.mktemp("modules-hubs")) as make:
        hub = make(**spawner)
        hub.start()
        try:
            yield hub
        finally:
            for user in USERS:
                for job in set(CLUSTER.jobs(user)) - before[user]:
                    CLUSTER.run("scancel", job, check=False)


def body(options: dict[str, Any]) -> dict[str, Any]:
    return {"user_options": options}


def user_token(hub: Hub, user: str) -> str:
    scopes = [f"access:servers!user={user}", f"read:servers!user={user}"]
    r = hub.api("POST", f"/users/{user}/tokens", json={"scopes": scopes})
    r.raise_for_status()
    return str(r.json()["token"])


def kernel_prints(hub: Hub, user: str, token: str, code: str, kernel: str = "python3") -> str:
    """Start a kernel through the server's REST API, run ``code``, return what it printed."""
    base = f"{hub.url}/user/{user}/api/kernels"
    headers = {"Authorization": f"token {token}"}
    r = requests.post(base, headers=headers, json={"name": kernel}, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text[:300])
    ws_url = f"{base}/{r.json()['id']}/channels".replace("http://", "ws://", 1)

    async def run() -> str:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        conn = await websocket_connect(HTTPRequest(ws_url, headers=headers))
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": uuid.uuid4().hex,
            "username": user,
            "date": datetime.now(timezone.utc).isoformat(),
            "version": "5.3",
        }
        content = {"code": code, "silent": False, "store_history": False}
        await conn.write_message(
            json.dumps(
                {
                    "header": header,
                    "parent_header": {},
                    "metadata": {},
                    "content": content,
                    "channel": "shell",
                }
            )
        )
        printed = []
        while True:
            reply = await asyncio.wait_for(conn.read_message(), 60)
            assert reply is not None, "the kernel's websocket closed"
            data = json.loads(reply)
            if data.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if data["msg_type"] == "stream":
                printed.append(data["content"]["text"])
            elif data["msg_type"] == "error":
                raise AssertionError("\n".join(data["content"]["traceback"]))
            elif data["msg_type"] == "status" and data["content"]["execution_state"] == "idle":
                conn.close()
                return "".join(printed)

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's event loop
        return pool.submit(asyncio.run, run()).result()


def fields(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def stop(hub: Hub, user: str) -> None:
    if hub.user_model(user)["servers"]:
        hub.stop_server(user)


def test_modules_picked_in_the_form_are_loaded_in_the_job(hub: Hub, page: Page) -> None:
    user = "hpcuser1"
    hub.ensure_user(user)
    log_in(page, hub.url, user, hub.password)
    page.goto(f"{hub.url}/hub/spawn")
    select = page.locator("#hpc-mods-modules")
    expect(select.locator('option[value="hpctool/1.0"]')).to_be_disabled()
    expect(select.locator('option[value="gcc/12"]')).to_have_text("gcc/12 (default)")
    assert select.locator('option[value="broken/1.0"]').count() == 0  # not in allow
    page.locator("#hpc-mods-modules-search").fill("gcc")
    expect(select.locator('option[value="python/3.11"]')).to_be_hidden()
    page.locator("#hpc-mods-modules-search").fill("")
    select.select_option(["gcc/11", "python/3.11"])
    expect(page.locator(".hpc-modules-status").first).to_contain_text("2 picked: gcc/11, python/3.11")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(r".*/(spawn-pending|user)/.*"), timeout=60_000)
    server = hub.wait_ready(user, timeout=90)
    assert server["user_options"] == {"profile": "mods", "modules": ["gcc/11", "python/3.11"]}
    token = user_token(hub, user)
    seen = fields(kernel_prints(hub, user, token, PROBE))
    assert seen["LOADED"].split(":") == ["hpctool/1.0", "gcc/11", "python/3.11"], seen
    assert seen["CC"] == "gcc-11" and "11" in seen["GCC"] and seen["HPCTOOL"], seen
    # the hub route the JupyterLab side reads, to the user's own token
    r = requests.get(
        f"{hub.url}/hub/api/hpc/modules/{user}/", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    document = r.json()
    assert document["system"] == "lmod"
    assert document["server"] == {
        "modules": ["gcc/11", "python/3.11"],
        "sticky": ["hpctool/1.0"],
        "purge": False,
    }
    assert {m["name"] for m in document["catalogue"]} == {"gcc/11", "gcc/12", "python/3.11"}  # allow
    other = requests.get(
        f"{hub.url}/hub/api/hpc/modules/hpcuser2/", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert other.status_code == 403
    preset_kernel_in_the_job(hub, user, token)
    stop(hub, user)


def server_environ(user: str) -> dict[str, str]:
    """The environment of the user's jupyterhub-singleuser process (the single-node cluster: here)."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.stat().st_uid != pwd.getpwnam(user).pw_uid:
                continue
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"jupyterhub-singleuser") for a in argv[:2]):
            raw = (proc / "environ").read_bytes()
            return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
    raise AssertionError(f"no jupyterhub-singleuser process of {user}")


def preset_kernel_in_the_job(hub: Hub, user: str, token: str) -> None:
    """The profile's kernel preset, end to end: the server extension in the job lists it (and the
    server's modules, from the real hub route); its kernel has its own set (purge, the sticky
    module again, gcc/12), the server process keeps the form's set."""
    headers = {"Authorization": f"token {token}"}
    lab = requests.get(f"{hub.url}/user/{user}/jupyterhub-hpc/modules", headers=headers, timeout=30)
    assert lab.status_code == 200, lab.text[:300]
    listed = lab.json()
    assert listed["available"] and listed["system"] == "lmod", listed
    assert listed["server"]["modules"] == ["gcc/11", "python/3.11"]
    assert [(k["name"], k["modules"], k["kind"]) for k in listed["kernelspecs"]] == [
        ("gcc12", ["gcc/12"], "preset")
    ]
    specs = requests.get(f"{hub.url}/user/{user}/api/kernelspecs", headers=headers, timeout=30).json()
    assert "gcc12" in specs["kernelspecs"]
    seen = fields(kernel_prints(hub, user, token, PROBE, kernel="gcc12"))
    assert seen["LOADED"].split(":") == ["hpctool/1.0", "gcc/12"], seen
    assert seen["CC"] == "gcc" and "12" in seen["GCC"], seen
    environ = server_environ(user)
    assert environ["LOADEDMODULES"].split(":") == ["hpctool/1.0", "gcc/11", "python/3.11"]
    assert environ["CC"] == "gcc-11"


def test_a_failing_module_fails_the_spawn_within_seconds_with_lmods_message(hub: Hub, page: Page) -> None:
    user = "hpcuser2"
    hub.ensure_user(user)
    log_in(page, hub.url, user, hub.password)
    page.goto(f"{hub.url}/hub/spawn")
    page.get_by_role("radio", name="Anything").check()
    page.locator("#hpc-any-modules").select_option(["broken/1.0"])
    t0 = time.monotonic()
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(r".*/spawn-pending/.*"), timeout=30_000)
    said = (
        "loading modules broken/1.0 failed: "
        "Lmod has detected the following error: broken/1.0 cannot be loaded: its licence server is down"
    )
    # the pending page's event log is fed by the progress stream: the failed event has Lmod's words
    expect(page.locator("#progress-log")).to_contain_text(said, timeout=30_000)
    took = time.monotonic() - t0
    assert took < 20, took
    expect(page.locator("#progress-message")).to_contain_text("Spawn failed")
    assert hub.user_model(user)["servers"] == {}
    # the same start through REST: it fails before the request returns (JupyterHub's bare 500);
    # the progress stream's failed event says why
    r = hub.spawn(user, body({"profile": "any", "modules": ["broken/1.0"]}))
    assert r.status_code == 500, r.text[:300]
    events = hub.progress_events(user, timeout=30)
    assert events and events[-1].get("failed") and said in events[-1]["message"], events


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"profile": "mods", "modules": ["hpctool/1.0", "broken/1.0"]}, "'broken/1.0' is not offered"),
        ({"profile": "mods", "modules": ["nosuch/2"]}, "'nosuch/2' is not a module"),
        ({"profile": "mods", "modules": ["gcc/12;id"]}, "is not a module name"),
        ({"profile": "mods", "modules": ["$(id)"]}, "is not a module name"),
        ({"profile": "mods", "modules": "gcc/12 && id"}, "is not a module name"),
        ({"profile": "tmod", "modules": ["broken/1.0"]}, "'broken/1.0' is not offered"),
    ],
)
def test_rest_starts_outside_the_set_or_with_metacharacters_are_400(
    hub: Hub, options: dict[str, Any], says: str
) -> None:
    user = "hpcuser3"
    jobs = set(CLUSTER.jobs(user))
    r = hub.spawn(user, body(options))
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert says in r.json()["message"] and "'modules'" in r.json()["message"], r.text
    assert set(CLUSTER.jobs(user)) == jobs and hub.user_model(user)["servers"] == {}


def test_the_same_catalogue_and_loading_through_environment_modules(hub: Hub) -> None:
    user = "hpcuser3"
    token = user_token(hub, user)
    assert hub.spawn(user, body({"profile": "tmod", "modules": ["gcc"]})).status_code in (201, 202)
    server = hub.wait_ready(user, timeout=90)
    assert server["user_options"] == {"profile": "tmod", "modules": ["gcc/12"]}  # Tmod's default
    seen = fields(kernel_prints(hub, user, token, PROBE))
    assert seen["LOADED"].split(":") == ["hpctool/1.0", "gcc/12"], seen
    assert "12" in seen["GCC"] and seen["HPCTOOL"], seen
    r = requests.get(
        f"{hub.url}/hub/api/hpc/modules/{user}/", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    document = r.json()
    assert document["system"] == "tmod"
    names = {m["name"] for m in document["catalogue"]}
    assert names == {
        "gcc/11",
        "gcc/12",
        "python/3.11",
        "hpctool/1.0",
        "execmod/1.0",
    }  # Lmod's, less the denied
    assert [m["name"] for m in document["catalogue"] if m["default"] and m["package"] == "gcc"] == ["gcc/12"]
    stop(hub, user)
