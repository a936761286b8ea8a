"""The prebuilt Lab extension ships in the wheel: in the venv of sys.executable (where `make venv`
pip-installed the package, no Node involved) JupyterLab lists it enabled and OK, and the files it
serves are the ones the wheel installed, with the same version as labextension/package.json."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

NAME = "@jupyterhub-hpc/labextension"
SOURCE = Path(__file__).parents[2] / "labextension" / "package.json"


def test_jupyter_labextension_list_shows_it_enabled_and_ok() -> None:
    jupyter = Path(sys.executable).parent / "jupyter"
    out = subprocess.run(
        [str(jupyter), "labextension", "list"], capture_output=True, text=True, check=True, timeout=120
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)  # no colours
    version = json.loads(SOURCE.read_text())["version"]
    line = next((ln for ln in text.splitlines() if NAME in ln), None)
    assert line is not None, text
    assert re.search(
        rf"{re.escape(NAME)} v{re.escape(version)} enabled\s+OK \(python, jupyterhub-hpc\)", line
    ), line


def test_the_wheel_installed_the_built_bundle() -> None:
    installed = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / NAME
    meta = json.loads((installed / "package.json").read_text())
    assert meta["name"] == NAME
    entry = meta["jupyterlab"]["_build"]["load"]  # written by the builder, not in the source package.json
    assert (installed / entry).is_file()
    assert json.loads((installed / "install.json").read_text())["packageName"] == "jupyterhub-hpc"
