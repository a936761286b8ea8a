"""ProfilesMixin on JupyterHub's own LocalProcessSpawner, through a real hub: overrides reach the
server process and are undone after it stops; a remembered profile that the admin removed falls
back to the default with a notice (an option-less start), while asking for it explicitly is a 400."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub import Hub

from .hubs import login, make_hub, options_body, reconfigure, stop_all, wait_ready

pytestmark = [pytest.mark.hub]

USER = "hpcuser2"

SMALL = {
    "display_name": "Small",
    "slug": "small",
    "default": True,
    "spawner_override": {"environment": {"HPC_PROFILE": "small"}},
    "profile_options": {
        "ui": {
            "display_name": "Interface",
            "choices": {
                "lab": {"display_name": "JupyterLab", "spawner_override": {"default_url": "/lab"}},
                "tree": {"display_name": "Classic", "spawner_override": {"default_url": "/tree"}},
            },
        }
    },
}
LARGE = {
    "display_name": "Large",
    "slug": "large",
    "spawner_override": {"mem_limit": "2G", "environment": {"HPC_PROFILE": "large", "EXTRA": "1"}},
    "profile_options": {
        "cores": {
            "type": "integer",
            "display_name": "Cores",
            "min": 1,
            "max": 2,
            "spawner_override": {"cpu_limit": "{value}"},
        },
    },
}


def config(profiles: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {"ProfilesLocalProcessSpawner": {"profile_list": profiles}}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    hub = make_hub(tmp_path / "hub", "localprocess-profiles", config([SMALL, LARGE]))
    hub.start()
    try:
        yield hub
    finally:
        stop_all(hub, [USER])
        hub.kill_all()


def server_environ(hub: Hub) -> dict[str, str]:
    pid = hub.user_model(USER)["servers"][""]["state"]["pid"]
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_local_process_profiles_apply_undo_and_fall_back(hub: Hub) -> None:
    hub.ensure_user(USER)
    r = hub.api("POST", f"/users/{USER}/server", json=options_body({"profile": "large", "cores": 2}))
    assert r.status_code in (201, 202), r.text
    wait_ready(hub, USER, timeout=90)
    env = server_environ(hub)
    assert (env["HPC_PROFILE"], env["EXTRA"], env["MEM_LIMIT"], env["CPU_LIMIT"]) == (
        "large",
        "1",
        str(2**31),
        "2.0",
    )
    stop_all(hub, [USER])

    r = hub.api("POST", f"/users/{USER}/server", json=options_body({"profile": "small", "ui": "tree"}))
    assert r.status_code in (201, 202), r.text
    server = wait_ready(hub, USER, timeout=90)
    env = server_environ(hub)
    # nothing of the previous start leaks into this one (dict traits merged, then undone)
    assert env["HPC_PROFILE"] == "small" and "EXTRA" not in env and "MEM_LIMIT" not in env
    assert "CPU_LIMIT" not in env and env["JUPYTERHUB_DEFAULT_URL"] == "/tree"
    assert server["user_options"] == {"profile": "small", "ui": "tree"}
    stop_all(hub, [USER])

    # the user's last choice is "large"; the admin removes that profile and restarts the hub
    r = hub.api("POST", f"/users/{USER}/server", json=options_body({"profile": "large", "cores": 1}))
    assert r.status_code in (201, 202), r.text
    wait_ready(hub, USER, timeout=90)
    stop_all(hub, [USER])
    hub.stop()
    reconfigure(hub, config([SMALL]))
    hub.start()

    page = login(hub, USER).get(f"{hub.url}/hub/spawn", timeout=30)
    assert page.status_code == 200
    assert "The profile &#39;large&#39; you used last is no longer available" in page.text

    explicit = hub.api("POST", f"/users/{USER}/server", json=options_body({"profile": "large"}))
    assert explicit.status_code == 400
    assert "Invalid option 'profile'" in explicit.json()["message"]

    # a start without options (as the admin panel does) reuses the remembered ones: they fall back
    r = hub.api("POST", f"/users/{USER}/server")
    assert r.status_code in (201, 202), r.text
    server = wait_ready(hub, USER, timeout=90)
    assert server["user_options"] == {"profile": "small", "ui": "lab"}
    assert server_environ(hub)["HPC_PROFILE"] == "small"
    log = hub.log_tail(400)
    assert "no longer available" in log
