"""``jupyterhub-hpc migrate`` run as a site runs it: the real CLI in a subprocess of this venv's Python,
importing the package from this checkout's ``src``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

__all__ = ["run_migrate"]


def run_migrate(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m jupyterhub_hpc.cli migrate ARGS...``; never raises on a non-zero exit."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "jupyterhub_hpc.cli", "migrate", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
