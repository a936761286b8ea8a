"""The server extension's modules routes (jupyterhub_hpc.lab.modules) in a real Jupyter server with
the package's extension, the real Lmod tree of scripts/modules.sh and the hub's modules route
answered in-process (tests/lab/modules_lab.py). Real kernels start through the real launcher: the
preset's kernel sees its module, an edited kernel restarts with its new set, a failing module's
status file reaches the route with the tool's own message."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from module_systems import EXPECTED

from .conftest import Lab
from .modules_lab import BROKEN_MESSAGE, ModulesHub, modules_lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, ModulesHub, Path]]:
    base = tmp_path_factory.mktemp("modules-routes")
    server, hub = modules_lab(base)
    try:
        yield server, hub, base / "jupyter-data"
    finally:
        for kernel in server.api("GET", "/api/kernels").json():
            server.api("DELETE", f"/api/kernels/{kernel['id']}")
        server.stop()
        hub.stop()


def modules(lab: Lab) -> dict[str, Any]:
    r = lab.api("GET", "/jupyterhub-hpc/modules")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_for(check: Any, timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(message)


def start_kernel(lab: Lab, name: str) -> str:
    r = lab.api("POST", "/api/kernels", json={"name": name})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def kernel_status(lab: Lab, kernel_id: str) -> dict[str, Any] | None:
    running = lab.api("GET", "/jupyterhub-hpc/modules/status").json()["running"]
    return next((k for k in running if k["id"] == kernel_id and k["ok"] is not None), None)


def test_presets_catalogue_and_cache(lab: tuple[Lab, ModulesHub, Path]) -> None:
    server, hub, data = lab
    before = len(hub.requests)
    body = modules(server)
    modules(server)
    assert len(hub.requests) - before <= 1  # cached
    assert body["available"] and body["system"] == "lmod"
    names = [m["name"] for m in body["catalogue"]]
    assert names == EXPECTED  # the real spider's catalogue of the tree, the hidden one left out
    assert body["server"]["sticky"] == ["gcc/12"]
    preset = next(s for s in body["kernelspecs"] if s["name"] == "hpc-tool")
    assert preset == {
        "name": "hpc-tool",
        "display_name": "HPC tool 1.0",
        "modules": ["hpctool/1.0"],
        "purge": False,
        "kind": "preset",
    }
    # on the server's kernel search path, not in the user's (shared) Jupyter data dir
    specs = server.api("GET", "/api/kernelspecs").json()["kernelspecs"]
    assert specs["hpc-tool"]["spec"]["metadata"]["jupyterhub_hpc"]["modules"] == ["hpctool/1.0"]
    assert not (data / "kernels" / "hpc-tool").exists()
    # the preset's kernel sees its module (the launcher's status file)
    kid = start_kernel(server, "hpc-tool")
    status = wait_for(lambda: kernel_status(server, kid), 30, "the preset kernel reported nothing")
    assert status["ok"] is True and status["modules"] == ["hpctool/1.0"]
    assert "hpctool/1.0" in status["loaded"]
    server.api("DELETE", f"/api/kernels/{kid}")


@pytest.mark.parametrize(
    "bad",
    [
        ["gcc; rm -rf /"],
        ["$(id)"],
        ["`id`"],
        ["gcc/12 hpctool/1.0"],
        ["../etc/passwd"],
        ["-x"],
        ["/abs"],
        ["gcc/12\nid"],
        ["nonexistent/1.0"],
        ["secret/.1.0"],
        [],
        "gcc/12",
        [12],
        ["a" * 300],
    ],
)
def test_bad_module_names_are_400_and_write_nothing(lab: tuple[Lab, ModulesHub, Path], bad: Any) -> None:
    server, _, data = lab
    before = sorted(p.name for p in (data / "kernels").glob("*")) if (data / "kernels").exists() else []
    r = server.api("POST", "/jupyterhub-hpc/modules/kernels", json={"display_name": "Bad", "modules": bad})
    assert r.status_code == 400, (bad, r.status_code, r.text)
    assert "error" in r.json()
    r = server.api("PUT", "/jupyterhub-hpc/modules/collections/bad", json={"modules": bad})
    assert r.status_code == 400, (bad, r.status_code, r.text)
    after = sorted(p.name for p in (data / "kernels").glob("*")) if (data / "kernels").exists() else []
    assert after == before


def test_other_bad_requests(lab: tuple[Lab, ModulesHub, Path]) -> None:
    server, _, _ = lab
    post = "/jupyterhub-hpc/modules/kernels"
    for body in (
        {"display_name": "", "modules": ["gcc/12"]},
        {"display_name": "x\u0000y", "modules": ["gcc/12"]},
        {"display_name": "ok", "modules": ["gcc/12"], "purge": "yes"},
    ):
        assert server.api("POST", post, json=body).status_code == 400, body
    assert server.api("POST", post, data=b"not json").status_code == 400
    assert server.api("POST", post, json=["gcc/12"]).status_code == 400
    # presets and foreign kernelspecs cannot be changed or deleted
    for name in ("hpc-tool", "python3", "hpc-modules-nothing"):
        assert server.api("DELETE", f"{post}/{name}").status_code == 404
        assert server.api("PUT", f"{post}/{name}", json={"modules": ["gcc/12"]}).status_code == 404
    assert (
        server.api(
            "PUT", "/jupyterhub-hpc/modules/collections/..%2Fx", json={"modules": ["gcc/12"]}
        ).status_code
        == 400
    )
    # without the server's token: Jupyter Server's own authentication
    import requests

    assert requests.get(server.url + "/jupyterhub-hpc/modules", timeout=10).status_code in (302, 403)


def test_user_kernel_create_edit_restart_delete(lab: tuple[Lab, ModulesHub, Path]) -> None:
    server, _, data = lab
    r = server.api(
        "POST",
        "/jupyterhub-hpc/modules/kernels",
        json={"display_name": "GCC 11 + Python", "modules": ["gcc/11", "python/3.11"]},
    )
    assert r.status_code == 201, r.text
    spec = r.json()
    name = spec["name"]
    assert name == "hpc-modules-gcc-11-python"
    path = data / "kernels" / name / "kernel.json"
    kernel_json = json.loads(path.read_text())
    assert kernel_json["argv"][1:3] == ["-m", "jupyterhub_hpc.modules.launch"]
    assert kernel_json["metadata"]["jupyterhub_hpc"]["modules"] == ["gcc/11", "python/3.11"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert name in server.api("GET", "/api/kernelspecs").json()["kernelspecs"]
    # the same display name again: a second kernelspec, not an overwrite
    again = server.api(
        "POST",
        "/jupyterhub-hpc/modules/kernels",
        json={"display_name": "GCC 11 + Python", "modules": ["gcc/11"]},
    ).json()
    assert again["name"] == f"{name}-2"
    assert server.api("DELETE", f"/jupyterhub-hpc/modules/kernels/{again['name']}").status_code == 204

    kid = start_kernel(server, name)
    first = wait_for(lambda: kernel_status(server, kid), 30, "no status of the user's kernel")
    assert first["modules"] == ["gcc/11", "python/3.11"] and first["ok"] is True
    # a new module set: the running kernel of that kernelspec restarts with it
    r = server.api("PUT", f"/jupyterhub-hpc/modules/kernels/{name}", json={"modules": ["hpctool/1.0"]})
    assert r.status_code == 200, r.text
    assert r.json()["restarted"] == [kid]
    assert r.json()["display_name"] == "GCC 11 + Python"
    second = wait_for(
        lambda: (s := kernel_status(server, kid)) and s["modules"] == ["hpctool/1.0"] and s,
        30,
        "the restarted kernel did not load the new set",
    )
    assert "hpctool/1.0" in second["loaded"] and "gcc/11" not in second["loaded"]
    # the same set again restarts nothing
    r = server.api(
        "PUT",
        f"/jupyterhub-hpc/modules/kernels/{name}",
        json={"modules": ["hpctool/1.0"], "display_name": "T"},
    )
    assert r.json()["restarted"] == []
    server.api("DELETE", f"/api/kernels/{kid}")
    assert server.api("DELETE", f"/jupyterhub-hpc/modules/kernels/{name}").status_code == 204
    assert not path.parent.exists()


def test_collections_are_saved_private_and_restored(lab: tuple[Lab, ModulesHub, Path]) -> None:
    server, _, data = lab
    url = "/jupyterhub-hpc/modules/collections/my%20stack"
    r = server.api("PUT", url, json={"modules": ["gcc/11", "python/3.11"], "purge": True})
    assert r.status_code == 200, r.text
    saved = data / "jupyterhub-hpc-module-collections.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text())["collections"]["my stack"] == {
        "modules": ["gcc/11", "python/3.11"],
        "purge": True,
    }
    assert server.api("GET", url).json() == {"modules": ["gcc/11", "python/3.11"], "purge": True}
    assert modules(server)["collections"]["my stack"]["modules"] == ["gcc/11", "python/3.11"]
    assert server.api("DELETE", url).status_code == 204
    assert server.api("GET", url).status_code == 404
    assert "my stack" not in modules(server)["collections"]


def test_a_failed_load_is_reported_with_the_tools_message(lab: tuple[Lab, ModulesHub, Path]) -> None:
    server, _, _ = lab
    r = server.api(
        "POST", "/jupyterhub-hpc/modules/kernels", json={"display_name": "Broken", "modules": ["broken/1.0"]}
    )
    assert r.status_code == 201, r.text
    kid = start_kernel(server, r.json()["name"])

    def failure() -> dict[str, Any] | None:
        failures = server.api("GET", "/jupyterhub-hpc/modules/status").json()["failures"]
        return next((f for f in failures if f["kernel_id"] == kid), None)

    found = wait_for(failure, 30, "no failure reported")
    assert BROKEN_MESSAGE in found["message"], found
    assert found["modules"] == ["broken/1.0"]
    assert any(f["kernel_id"] == kid for f in modules(server)["failures"])
    server.api("DELETE", f"/api/kernels/{kid}")
