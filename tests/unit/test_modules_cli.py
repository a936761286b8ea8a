"""``jupyterhub-hpc modules``: the catalogue and a test load through the real Lmod and Tmod."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyterhub_hpc.cli import main
from module_systems import LMOD, TMOD


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(["modules", *argv])
    return int(done.value.code or 0), capsys.readouterr().out


def test_catalogue_from_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"c.SlurmSpawner.module_system = {json.loads(TMOD.to_env())!r}\n")
    code, out = run(capsys, "--config", str(config))
    assert code == 0
    assert out.splitlines()[0].startswith("tmod: 6 modules offered")
    assert "  gcc/12 (default)  GNU compilers 12 (test)" in out.splitlines()
    assert "  gcc/11  GNU compilers 11 (test)" in out.splitlines() and "secret" not in out


def test_load_shows_what_changed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--system", LMOD.to_env(), "--load", "gcc", "execmod")
    assert code == 0
    assert "module load gcc execmod: LOADEDMODULES=gcc/12:execmod/1.0" in out
    assert "  HPC_EXECUTED=yes" in out.splitlines() and "  CC=gcc" in out.splitlines()


def test_a_failing_load_prints_the_tools_message(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--system", LMOD.to_env(), "--load", "broken")
    assert code == 1 and "its licence server is down" in out


def test_the_catalogue_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--system", LMOD.to_env(), "--json")
    assert code == 0
    assert [m["name"] for m in json.loads(out)["modules"]][:3] == ["broken/1.0", "execmod/1.0", "gcc/11"]


@pytest.mark.parametrize(
    "argv",
    [["--system", '{"kind": "tmod"}'], ["--system", "not json"], ["--config", "/nonexistent/config.py"]],
)
def test_bad_settings_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert run(capsys, *argv)[0] == 2
