"""`jupyterhub-hpc sudoers --alias`: a second generated file (here: the multi-node cluster's, selected
with SLURM_CONF behind `env`) can sit next to the first in /etc/sudoers.d. sudo refuses an alias
defined twice, so without distinct alias names the two files break sudo altogether."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jupyterhub_hpc.sudoers import SudoersError, check_with_visudo, render_sudoers

CLI = [str(Path(sys.executable).parent / "jupyterhub-hpc"), "sudoers", "--group", "jupyterhub-users"]
MULTI_CONFIG = Path(__file__).resolve().parents[1] / "e2e" / "slurm_multinode_hub.py"
CONF = "/var/lib/jupyterhub-hpc-slurm-multi/etc/slurm.conf"


def generate(*args: str) -> str:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def rules(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def test_two_generated_files_need_distinct_aliases() -> None:
    default = generate()
    multi_same_alias = generate("--config", str(MULTI_CONFIG))
    with pytest.raises(SudoersError, match="visudo refused"):
        check_with_visudo(default + multi_same_alias)
    multi = generate("--config", str(MULTI_CONFIG), "--alias", "JUPYTERHUB_HPC_MULTI", "--check")
    check_with_visudo(default + multi)
    submit = next(r for r in rules(multi) if r.startswith("Cmnd_Alias JUPYTERHUB_HPC_MULTI_SUBMIT"))
    assert submit.endswith(
        f"= /usr/bin/env ^SLURM_CONF={CONF.replace('.', chr(92) + '.')} sbatch --parsable$"
    )
    assert 'Defaults!JUPYTERHUB_HPC_MULTI_SUBMIT env_keep += "' in multi
    assert not any("JUPYTERHUB_HPC_" in r and "MULTI" not in r for r in rules(multi))


def test_the_multinode_argv_is_matched_exactly() -> None:
    multi = generate("--config", str(MULTI_CONFIG), "--alias", "JUPYTERHUB_HPC_MULTI")
    submit = next(r for r in rules(multi) if r.startswith("Cmnd_Alias JUPYTERHUB_HPC_MULTI_SUBMIT"))
    regex = submit.split(" /usr/bin/env ", 1)[1]

    def matches(args: str) -> bool:
        found = subprocess.run(["grep", "-Eq", "--", regex], input=args + "\n", text=True, check=False)
        return found.returncode == 0

    assert matches(f"SLURM_CONF={CONF} sbatch --parsable")
    for other in (
        "SLURM_CONF=/tmp/evil.conf sbatch --parsable",
        f"SLURM_CONF={CONF} sbatch --parsable --wrap=id",
        f"SLURM_CONF={CONF} LD_PRELOAD=/tmp/x.so sbatch --parsable",
        f"SLURM_CONF={CONF} sh -c id",
        "sbatch --parsable",
    ):
        assert not matches(other), other


@pytest.mark.parametrize("alias", ["", "lower", "1ABC", "A-B", "A B", "A" * 49, "X=Y"])
def test_alias_names_sudo_would_misread_are_refused(alias: str) -> None:
    with pytest.raises(SudoersError, match="alias"):
        render_sudoers("jupyterhub", "jupyterhub-users", [], alias=alias)
