"""The module system core: parsers on recorded outputs of the real tools, names, and loading
through the real Lmod 8.6 and Environment Modules 5.2 that scripts/modules.sh installs (they
fail, never skip, without it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyterhub_hpc.modules import (
    MODULE_SYSTEM_ENV,
    SERVER_MODULES_ENV,
    Catalogue,
    KernelPreset,
    ModuleLoadError,
    ModuleSystem,
    ServerModules,
    check_module_name,
    kernelspec,
    load_environment,
    parse_lmod_spider_json,
    parse_tmod_avail_json,
    status_path,
)
from module_systems import EXPECTED, LMOD, PATHS, TMOD

DATA = Path(__file__).resolve().parents[1] / "data" / "modules"

SYSTEMS = pytest.mark.parametrize("system", [LMOD, TMOD], ids=["lmod", "tmod"])


@pytest.mark.parametrize(
    "name", ["gcc", "gcc/12", "python/3.11", "py-numpy/1.26+mkl", "a_b/c.d/e-f", "Core/gcc/12", "_x"]
)
def test_module_names_accepted(name: str) -> None:
    assert check_module_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", " gcc", "gcc 12", "gcc;id", "$(id)", "`id`", "gcc|x", "a&b", "-gcc", "/gcc", "gcc/", "gcc//12",
     "../x", "gcc/..", "gcc/./12", "gcc\n", "a'b", 'a"b', "x>y", "*", "g?c", "é", "a" * 201, 12, None],
)  # fmt: skip
def test_module_names_refused(name: object) -> None:
    with pytest.raises(ValueError):
        check_module_name(name)


def test_lmod_spider_json_recorded() -> None:
    catalogue = parse_lmod_spider_json((DATA / "lmod-8.6.19-spider.json").read_text())
    assert catalogue.system == "lmod"
    assert catalogue.names() == EXPECTED  # secret/.1.0 (hidden) is not offered
    gcc12 = catalogue.find("gcc")
    assert gcc12 is not None and gcc12.name == "gcc/12" and gcc12.default  # marked by ^ in wV
    assert catalogue.find("gcc/11") is not None and not catalogue.find("gcc/11").default  # type: ignore[union-attr]
    python = catalogue.find("python/3.11")
    assert python is not None and python.family == "python" and python.description == "Python 3.11 (test)"
    assert catalogue.find("secret/.1.0") is None and catalogue.find("nosuch") is None
    assert Catalogue.from_json(json.loads(json.dumps(catalogue.to_json()))) == catalogue


def test_tmod_avail_and_whatis_json_recorded() -> None:
    catalogue = parse_tmod_avail_json((DATA / "tmod-5.2.0-avail-whatis.json").read_text())
    assert catalogue.system == "tmod" and catalogue.names() == EXPECTED
    gcc = catalogue.find("gcc")
    assert gcc is not None and gcc.name == "gcc/12" and gcc.description == "GNU compilers 12 (test)"


def test_without_a_marked_default_the_highest_version_is_the_default() -> None:
    text = json.dumps({"/m": {n: {"name": n, "type": "modulefile", "symbols": [], "tags": []}
                              for n in ("py/3.9", "py/3.10", "py/3.10.1", "x/.hidden", "al/1")}})  # fmt: skip
    catalogue = parse_tmod_avail_json(text)
    assert catalogue.find("py") == catalogue.find("py/3.10.1")
    assert catalogue.names() == ["al/1", "py/3.9", "py/3.10", "py/3.10.1"]


def test_tmod_hidden_tag_and_aliases_are_not_offered() -> None:
    text = json.dumps({"/m": {"a/1": {"name": "a/1", "type": "modulefile", "tags": ["hidden"]},
                              "b/1": {"name": "b/1", "type": "alias"},
                              "c/1": {"name": "c/1", "type": "modulefile", "tags": []}}})  # fmt: skip
    assert parse_tmod_avail_json(text).names() == ["c/1"]


def test_catalogue_names_a_tool_would_misread_are_dropped() -> None:
    text = json.dumps({"x": {"/m/x.lua": {"fullName": "x;rm -rf", "Version": "", "hidden": False},
                             "/m/y.lua": {"fullName": "y/1", "Version": "1", "hidden": False}}})  # fmt: skip
    assert parse_lmod_spider_json(text).names() == ["y/1"]


@SYSTEMS
def test_catalogue_from_the_real_tool(system: ModuleSystem) -> None:
    done = subprocess.run(system.catalogue_argv(), capture_output=True, text=True, timeout=60, check=True)
    assert system.parse_catalogue(done.stdout).names() == EXPECTED


@SYSTEMS
def test_load_runs_the_tool_in_a_child_shell(system: ModuleSystem) -> None:
    before = dict(os.environ)
    env = load_environment(
        system, ["gcc", "python/3.11", "execmod", "hpctool"], env={"PATH": "/usr/bin:/bin"}
    )
    assert env["LOADEDMODULES"] == "gcc/12:python/3.11:execmod/1.0:hpctool/1.0"
    assert env["HPC_EXECUTED"] == "yes"  # execute{} / puts stdout ran (a Python-shell exec() drops it)
    assert env["CC"] == "gcc" and env["HPC_TEST_PYTHON"] == "3.11"
    tool = subprocess.run(["hpctool", "x"], env=env, capture_output=True, text=True, check=True)
    assert tool.stdout.strip() == "hpctool-1.0-ran x"
    assert "_" not in env and "SHLVL" not in env
    assert dict(os.environ) == before  # this process is untouched


@SYSTEMS
def test_purge_then_load(system: ModuleSystem) -> None:
    loaded = load_environment(system, ["gcc/11"], env={"PATH": "/usr/bin:/bin"})
    again = load_environment(system, ["hpctool"], purge=True, env=loaded)
    assert again["LOADEDMODULES"] == "hpctool/1.0" and "CC" not in again


@SYSTEMS
@pytest.mark.parametrize(
    ("modules", "words"),
    [(["broken/1.0"], "its licence server is down"), (["gcc", "nosuch/9"], "nosuch")],
)
def test_a_failed_load_raises_with_the_tools_message(
    system: ModuleSystem, modules: list[str], words: str
) -> None:
    with pytest.raises(ModuleLoadError) as failed:
        load_environment(system, modules, env={"PATH": "/usr/bin:/bin"})
    assert words in str(failed.value)
    assert failed.value.modules == tuple(modules)


def test_tmod_exits_0_on_a_failed_load_and_the_loader_still_says_so() -> None:
    """The fact the explicit check is for: Environment Modules 5.2 exits 0 on a failed load."""
    done = subprocess.run(
        [*TMOD.command, "bash", "load", "nosuch/9"],
        env={"PATH": "/usr/bin:/bin", "MODULEPATH": PATHS["TMOD_MODULEPATH"]},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "Unable to locate" in done.stderr
    with pytest.raises(ModuleLoadError, match="Unable to locate a modulefile for 'nosuch/9'"):
        load_environment(TMOD, ["nosuch/9"], env={"PATH": "/usr/bin:/bin"})


def test_the_explicit_check_catches_a_load_the_tool_calls_a_success() -> None:
    """A module command that exits 0 and loads nothing (what a Tmod without its status code
    would look like): the module is not in LOADEDMODULES, so the load failed."""
    silent = ModuleSystem(kind="tmod", command=("/bin/true",))
    with pytest.raises(ModuleLoadError, match="gcc not loaded"):
        load_environment(silent, ["gcc"], env={"PATH": "/usr/bin:/bin"})


def test_names_are_checked_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(ValueError):
        load_environment(LMOD, [f"gcc;touch {marker}"])
    with pytest.raises(ValueError):
        LMOD.loader_argv(["$(touch x)"], purge=False)
    assert not marker.exists()


def test_module_system_config() -> None:
    assert ModuleSystem(kind="lmod").shell_init == "/usr/share/lmod/lmod/init/bash"
    assert ModuleSystem.from_env(TMOD.to_env()) == TMOD
    for bad in ({"kind": "tmod"}, {"kind": "lmod", "init": "relative/init"}, {"kind": "x"},
                {"kind": "lmod", "modulepath": ["/a:/b"]}, {"kind": "lmod", "extra": 1}):  # fmt: skip
        with pytest.raises(ValueError):
            ModuleSystem.model_validate(bad)


def test_server_modules_round_trip_and_checks() -> None:
    server = ServerModules(
        modules=("gcc/12",), sticky=("python/3.11",), kernels=(KernelPreset(name="torch", display_name="T"),)
    )
    assert ServerModules.from_env(server.to_env()) == server
    assert server.to_load() == ["python/3.11", "gcc/12"]
    with pytest.raises(ValueError):
        ServerModules(modules=("gcc;id",))
    with pytest.raises(ValueError):
        KernelPreset(name="Bad Name", display_name="x")


def _launch(
    tmp_path: Path, modules: list[str], env: dict[str, str], *, purge: bool = False
) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    connection = tmp_path / "kernel-abc.json"
    names = ("LOADEDMODULES", "HPC_EXECUTED", "CC")
    show = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {names!r}}}))"
    spec = kernelspec("K", modules, purge=purge, kernel_argv=[sys.executable, "-c", show])
    argv = [a.replace("{connection_file}", str(connection)) for a in spec["argv"]]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    status = json.loads(status_path(connection).read_text())
    assert status_path(connection).stat().st_mode & 0o777 == 0o600
    return done, status


@SYSTEMS
def test_kernel_launcher_loads_and_execs(system: ModuleSystem, tmp_path: Path) -> None:
    server = ServerModules(sticky=("hpctool/1.0",))
    env = {"PATH": "/usr/bin:/bin", MODULE_SYSTEM_ENV: system.to_env(), SERVER_MODULES_ENV: server.to_env()}
    done, status = _launch(tmp_path, ["gcc/11", "execmod"], env, purge=True)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {"LOADEDMODULES": "hpctool/1.0:gcc/11:execmod/1.0", "HPC_EXECUTED": "yes", "CC": "gcc-11"}
    assert status["ok"] is True and status["modules"] == ["gcc/11", "execmod"]


@SYSTEMS
def test_kernel_launcher_failure_leaves_the_tools_message(system: ModuleSystem, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", MODULE_SYSTEM_ENV: system.to_env()}
    done, status = _launch(tmp_path, ["broken/1.0"], env)
    assert done.returncode == 3 and done.stdout == ""
    assert status["ok"] is False and "its licence server is down" in str(status["message"])
    assert "its licence server is down" in done.stderr


def test_kernel_launcher_without_a_module_system(tmp_path: Path) -> None:
    done, status = _launch(tmp_path, ["gcc"], {"PATH": "/usr/bin:/bin"})
    assert done.returncode == 3 and "has no module system" in str(status["message"])


def test_kernelspec_records_the_module_set() -> None:
    spec = kernelspec("Py + GCC", ["gcc/12", "python/3.11"], purge=True, python="/v/bin/python")
    assert spec["argv"] == ["/v/bin/python", "-m", "jupyterhub_hpc.modules.launch", "--module", "gcc/12",
        "--module", "python/3.11", "--purge", "--connection-file", "{connection_file}", "--",
        "/v/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]  # fmt: skip
    assert spec["metadata"]["jupyterhub_hpc"] == {"modules": ["gcc/12", "python/3.11"], "purge": True}
    with pytest.raises(ValueError):
        kernelspec("x", ["a b"])
