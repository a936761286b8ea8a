"""jupyterhub_hpc.lab.modules without a Jupyter server: the hub's modules answer cached per TTL,
the names checked against it, a hub without a catalogue said as such, kernelspec names (the
routes in a real server: tests/lab/test_modules_routes.py)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tornado import httpserver, web

from jupyterhub_hpc.lab.hub import HubClient, HubSettings
from jupyterhub_hpc.lab.modules import CATALOGUE_TTL, ModulesState, slugify
from jupyterhub_hpc.modules import ServerModules

MODULE = {
    "name": "gcc/12",
    "package": "gcc",
    "version": "12",
    "default": True,
    "description": "",
    "family": None,
}


class Hub:
    def __init__(self) -> None:
        self.hits = 0
        self.body: dict[str, Any] = {
            "system": "lmod",
            "cluster": "hpc",
            "catalogue": [MODULE],
            "catalogue_error": None,
            "server": {"modules": [], "sticky": [], "purge": False},
            "kernels": [],
        }


class Route(web.RequestHandler):
    def initialize(self, hub: Hub) -> None:
        self.hub = hub

    def get(self, user: str, server: str) -> None:
        self.hub.hits += 1
        self.finish(json.dumps(self.hub.body))


@pytest.fixture
async def hub() -> AsyncIterator[tuple[str, Hub]]:
    state = Hub()
    app = web.Application([(r"/hub/api/hpc/modules/([^/]+)/([^/]*)", Route, {"hub": state})])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server = httpserver.HTTPServer(app)
    server.add_sockets([sock])
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hub/api", state
    finally:
        server.stop()


def modules_state(url: str, tmp_path: Path, now: list[float]) -> ModulesState:
    settings = HubSettings.from_environ(
        {"JUPYTERHUB_API_TOKEN": "t", "JUPYTERHUB_API_URL": url, "JUPYTERHUB_USER": "alice"}
    )
    assert settings is not None
    return ModulesState(
        client=HubClient(settings, timeout=2),
        server=ServerModules(),
        presets_dir=tmp_path / "presets",
        data_dir=tmp_path / "data",
        clock=lambda: now[0],
    )


async def test_the_catalogue_is_cached_and_names_checked_against_it(
    hub: tuple[str, Hub], tmp_path: Path
) -> None:
    url, state = hub
    now = [0.0]
    modules = modules_state(url, tmp_path, now)
    assert await modules.check_modules(["gcc/12", "gcc", "gcc/12"]) == ["gcc/12", "gcc"]
    with pytest.raises(web.HTTPError) as refused:
        await modules.check_modules(["gcc/11"])
    assert refused.value.status_code == 400 and "gcc/11" in str(refused.value.log_message)
    assert state.hits == 1
    now[0] += CATALOGUE_TTL + 1
    await modules.hub_modules()
    assert state.hits == 2


async def test_a_hub_without_a_catalogue_is_a_502_not_an_unknown_name(
    hub: tuple[str, Hub], tmp_path: Path
) -> None:
    url, state = hub
    state.body.update(catalogue=[], catalogue_error="spider timed out after 30 s")
    with pytest.raises(web.HTTPError) as failed:
        await modules_state(url, tmp_path, [0.0]).check_modules(["gcc/12"])
    assert failed.value.status_code == 502 and "spider timed out" in str(failed.value.log_message)


async def test_outside_a_hub(tmp_path: Path) -> None:
    modules = ModulesState(client=None, server=ServerModules(), presets_dir=tmp_path, data_dir=tmp_path)
    assert (await modules.hub_modules()).status == 404
    with pytest.raises(web.HTTPError) as failed:
        await modules.check_modules(["gcc/12"])
    assert failed.value.status_code == 409


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Python 3.11 + PyTorch 2.5", "python-3-11-pytorch-2-5"),
        ("  ", "kernel"),
        ("Ünïcode; rm -rf /", "n-code-rm-rf"),
        ("x" * 80, "x" * 40),
    ],
)
def test_kernel_slugs(text: str, slug: str) -> None:
    assert slugify(text) == slug
