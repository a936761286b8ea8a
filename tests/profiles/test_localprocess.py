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


def selected_values(html: str, slug: str) -> dict[str, str]:
    """The value each field of profile *slug* shows on the spawn page (what the browser posts),
    and under "checked profile" the profile whose radio button is checked."""
    from html.parser import HTMLParser

    prefix = f"profile-option-{slug}--"
    values: dict[str, str] = {}

    class Fields(HTMLParser):
        select = ""

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            name = a.get("name") or ""
            if tag == "select" and name.startswith(prefix):
                self.select = name[len(prefix) :]
            elif tag == "option" and self.select and "selected" in a:
                values[self.select] = a.get("value") or ""
            elif tag == "input" and name == "profile" and "checked" in a:
                values["checked profile"] = a.get("value") or ""
            elif tag == "input" and name.startswith(prefix):
                values[name[len(prefix) :]] = a.get("value") or ""

        def handle_endtag(self, tag: str) -> None:
            if tag == "select":
                self.select = ""

    Fields().feed(html)
    return values


def test_each_profile_remembers_its_own_choices_across_a_hub_restart(hub: Hub) -> None:
    hub.ensure_user(USER)
    for options in ({"profile": "small", "ui": "tree"}, {"profile": "large", "cores": 2}):
        r = hub.api("POST", f"/users/{USER}/server", json=options_body(options))
        assert r.status_code in (201, 202), r.text
        wait_ready(hub, USER, timeout=90)
        stop_all(hub, [USER])
    hub.stop()
    hub.start()

    doc = hub.api("GET", f"/hpc/users/{USER}/profiles").json()
    assert doc["remembered"] == {"profile": "large", "cores": 2}
    assert doc["remembered_by_profile"] == {
        "small": {"profile": "small", "ui": "tree"},
        "large": {"profile": "large", "cores": 2},
    }
    page = login(hub, USER).get(f"{hub.url}/hub/spawn", timeout=30).text
    # the last start's profile is selected; the other profile shows ITS last choice, not its default
    assert selected_values(page, "small") == {"checked profile": "large", "ui": "tree"}
    assert selected_values(page, "large") == {"checked profile": "large", "cores": "2"}

    # the admin retires the "tree" choice: the form falls back to the default with a notice
    hub.stop()
    lab_only = {
        **SMALL,
        "profile_options": {
            "ui": {
                **SMALL["profile_options"]["ui"],
                "choices": {"lab": SMALL["profile_options"]["ui"]["choices"]["lab"]},
            }
        },
    }
    reconfigure(hub, config([lab_only, LARGE]))
    hub.start()
    page = login(hub, USER).get(f"{hub.url}/hub/spawn", timeout=30).text
    assert selected_values(page, "small") == {"checked profile": "large", "ui": "lab"}
    assert "Small: Your last choice &#39;tree&#39; for &#39;ui&#39; is no longer valid" in page
    # a start of the other profile still works and remembers both
    r = hub.api("POST", f"/users/{USER}/server", json=options_body({"profile": "small"}))
    assert r.status_code in (201, 202), r.text
    wait_ready(hub, USER, timeout=90)
    stop_all(hub, [USER])
    doc = hub.api("GET", f"/hpc/users/{USER}/profiles").json()
    assert doc["remembered_by_profile"]["small"] == {"profile": "small", "ui": "lab"}
    assert doc["remembered_by_profile"]["large"] == {"profile": "large", "cores": 2}
    assert doc["notices"] == []


def test_a_new_named_server_starts_from_the_users_last_choices(tmp_path: Path) -> None:
    settings = config([SMALL, LARGE])
    settings["JupyterHub"] = {"allow_named_servers": True}
    hub = make_hub(tmp_path / "hub", "localprocess-profiles", settings)
    hub.start()
    try:
        hub.ensure_user(USER)
        for options in ({"profile": "large", "cores": 2}, {"profile": "small", "ui": "tree"}):
            r = hub.api("POST", f"/users/{USER}/server", json=options_body(options))
            assert r.status_code in (201, 202), r.text
            wait_ready(hub, USER, timeout=90)
            stop_all(hub, [USER])
        page = login(hub, USER).get(f"{hub.url}/hub/spawn/{USER}/second", timeout=30)
        assert page.status_code == 200
        # nothing was started on "second": the default profile is selected, and every profile
        # shows what the user last chose for it (on the default server)
        assert selected_values(page.text, "small") == {"checked profile": "small", "ui": "tree"}
        assert selected_values(page.text, "large")["cores"] == "2"
        assert "no longer" not in page.text
    finally:
        stop_all(hub, [USER])
        hub.kill_all()
