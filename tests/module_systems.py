"""The test module systems of scripts/modules.sh (Debian's Lmod 8.6, Environment Modules 5.2
unpacked), as :class:`~jupyterhub_hpc.modules.ModuleSystem` values. Tests that use them fail,
never skip, when ``scripts/modules.sh install`` has not run (``make services`` runs it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from jupyterhub_hpc.modules import ModuleSystem

__all__ = ["EXPECTED", "LMOD", "PATHS", "TMOD"]

ROOT = Path(__file__).resolve().parents[1]


def _paths() -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "scripts" / "modules.sh"), "paths"], capture_output=True, text=True, check=True
    )
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


PATHS = _paths()
LMOD = ModuleSystem(kind="lmod", modulepath=(PATHS["LMOD_MODULEPATH"],))
TMOD = ModuleSystem(
    kind="tmod", modulepath=(PATHS["TMOD_MODULEPATH"],), command=("tclsh", PATHS["TMOD_MODULECMD"])
)
#: the catalogue of both trees (secret/.1.0 is hidden)
EXPECTED = ["broken/1.0", "execmod/1.0", "gcc/11", "gcc/12", "hpctool/1.0", "python/3.11"]
