"""Batch kernels within the site's profiles (issue 16), through a real JupyterHub on the real Slurm:
the user's server (a job of the hub's SlurmSpawner with the site profiles of conftest.py) asks its
hub, with its own token, which profiles a batch kernel may use, and has the hub check the dialog's
values (``POST /user/<name>/jupyterhub-hpc/kernels/specs`` with a ``profile``): a kernel within
the profile is written with the profile's fixed fields filled in; a value over the profile's limit,
a field the profile does not offer and a profile the user cannot see are 400s, and nothing is
written. In headless Chromium, the "New batch kernel…" dialog of that server offers the profiles
and says per field what the chosen one allows."""

from __future__ import annotations

import json
import pwd
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from browser import log_in, run_command
from hub import Hub

from .conftest import SITE_PROFILES
from .hubs import FAST, cancel, make_hub, stop_all, wait_ready

pytestmark = [pytest.mark.slurm, pytest.mark.hub, pytest.mark.browser]

USER = "hpcuser1"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root: Path = tmp_path_factory.mktemp("kernel-profiles")
    config = {"SlurmSpawner": {"profile_list": SITE_PROFILES, "profile_limits_ttl": 30.0}}
    hub = make_hub(root, "slurm", config, **FAST)
    hub.start()
    try:
        hub.ensure_user(USER)
        assert hub.spawn(USER).status_code in (201, 202)
        wait_ready(hub, USER)
        yield hub
    finally:
        cancel(stop_all(hub, [USER]))
        hub.kill_all()


@pytest.fixture
def kernels_dir() -> Iterator[Path]:
    """The user's own kernelspecs (where the route writes), emptied of batch kernels after."""
    path = Path(pwd.getpwnam(USER).pw_dir) / ".local" / "share" / "jupyter" / "kernels"
    before = set(path.glob("hpc-batch-*")) if path.exists() else set()
    yield path
    for made in set(path.glob("hpc-batch-*")) - before:
        shutil.rmtree(made, ignore_errors=True)


def server(hub: Hub, method: str, route: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"token {hub.user_token(USER)}"}
    url = f"{hub.url}/user/{USER}/jupyterhub-hpc/kernels/{route}"
    return requests.request(method, url, headers=headers, timeout=60, **kwargs)


def test_the_server_lists_the_profiles_its_user_sees(hub: Hub) -> None:
    reply = server(hub, "GET", "profiles")
    assert reply.status_code == 200, reply.text
    profiles = {p["slug"]: p for p in reply.json()["profiles"]}
    visible = [p["slug"] for p in SITE_PROFILES if not p.get("allowed_groups") and not p.get("allowed_users")]
    assert sorted(profiles) == sorted(visible), profiles
    cpu = profiles["cpu"]
    assert cpu["default"] is True and cpu["fields"]["partition"] == {"fixed": "debug"}
    assert cpu["fields"]["cpus"]["min"] == 1 and cpu["fields"]["cpus"]["max"] == 4


def test_a_kernel_within_its_profile_is_written_with_the_profiles_fields(hub: Hub, kernels_dir: Path) -> None:
    body = {"display_name": "Small CPU kernel", "profile": "cpu", "cpus": "2", "walltime": "00:30:00"}
    reply = server(hub, "POST", "specs", json=body)
    assert reply.status_code == 201, reply.text
    name = reply.json()["name"]
    spec = json.loads((kernels_dir / name / "kernel.json").read_text())
    resources = spec["metadata"]["kernel_provisioner"]["config"]["resources"]
    assert resources["partition"] == "debug" and str(resources["cpus"]) == "2", resources


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"profile": "cpu", "cpus": "8"}, "cpus"),  # over the profile's max of 4
        ({"profile": "cpu", "partition": "gpu"}, "partition"),  # fixed by the profile
        ({"profile": "bigmem", "cpus": "2"}, "cpus"),  # not offered by that profile
        ({"profile": "staff"}, "profile"),  # for the hpc-staff group only
        ({"profile": "no-such-profile"}, "profile"),
    ],
)
def test_values_outside_the_profile_are_refused_and_nothing_is_written(
    hub: Hub, kernels_dir: Path, body: dict[str, str], field: str
) -> None:
    before = set(kernels_dir.glob("hpc-batch-*")) if kernels_dir.exists() else set()
    reply = server(hub, "POST", "specs", json={"display_name": f"Refused {field}", **body})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"].startswith(f"{field}: "), reply.text
    after = set(kernels_dir.glob("hpc-batch-*")) if kernels_dir.exists() else set()
    assert after == before


def test_the_dialog_offers_the_profiles_and_the_hub_checks_the_kernel(
    hub: Hub, kernels_dir: Path, page: Page
) -> None:
    log_in(page, hub.url, USER, hub.password)
    page.goto(f"{hub.url}/user/{USER}/lab")
    expect(page.locator(".jp-Launcher")).to_be_visible(timeout=60_000)
    run_command(page, "New batch kernel")
    form = page.locator(".jp-hpc-batch-kernel-form")
    field = {name: form.locator(f'input[name="{name}"]') for name in ("partition", "cpus", "memory", "gpus")}
    select = form.locator('select[name="profile"]')
    # the profiles this user sees (not the staff one), the site's default chosen
    visible = [p for p in SITE_PROFILES if not p.get("allowed_groups") and not p.get("allowed_users")]
    expect(select.locator("option")).to_have_count(len(visible))
    options = [o.strip() for o in select.locator("option").all_inner_texts()]
    assert [o.removesuffix(" (not available now)") for o in options] == [p["display_name"] for p in visible]
    expect(select).to_have_value("cpu")
    # per field what the profile allows; what it sets or does not offer is locked
    expect(field["partition"]).to_be_disabled()
    expect(field["partition"]).to_have_value("debug")
    expect(field["cpus"]).to_be_enabled()
    expect(field["cpus"]).to_have_attribute("placeholder", "1\u20134 (default 1)")  # an en dash
    expect(field["memory"]).to_have_attribute("placeholder", re.compile(r"256M.2G \(default 400M\)"))
    expect(field["gpus"]).to_be_disabled()
    expect(field["gpus"]).to_have_value("0")
    expect(field["gpus"]).to_have_attribute("placeholder", "set by the profile")
    # another profile: its own partition, no CPU field
    select.select_option("bigmem")
    expect(field["partition"]).to_have_value("short")
    expect(field["cpus"]).to_be_disabled()
    select.select_option("cpu")
    form.locator('input[name="display_name"]').fill("Profile kernel")
    field["cpus"].fill("8")
    form.locator('input[name="walltime"]').fill("00:05:00")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    # over the profile's limit: refused by the hub, the dialog again with the values kept
    expect(form.locator(".jp-hpc-batch-kernel-error")).to_contain_text("cpus: ")
    expect(form.locator('select[name="profile"]')).to_have_value("cpu")
    expect(form.locator('input[name="walltime"]')).to_have_value("00:05:00")
    assert not list(kernels_dir.glob("hpc-batch-profile-kernel*"))
    form.locator('input[name="cpus"]').fill("2")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    created = page.locator(".Toastify__toast", has_text="Batch kernel “Profile kernel” created")
    expect(created).to_be_visible(timeout=30_000)
    spec = json.loads((kernels_dir / "hpc-batch-profile-kernel" / "kernel.json").read_text())
    resources = spec["metadata"]["kernel_provisioner"]["config"]["resources"]
    assert resources["partition"] == "debug" and str(resources["cpus"]) == "2", resources
    assert spec["metadata"]["jupyterhub_hpc"]["profile"] == "cpu"
    expect(page.locator(".jp-LauncherCard", has_text="Profile kernel").first).to_be_visible()
