"""docs/migrating.md's worked migration is what the command prints, and it loads.

The input was written for the docs; the test runs the real CLI on it and compares the
printed configuration with the page, then loads it (``check_profiles``) and resolves the
profiles' default starts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from traitlets.config.loader import PyFileConfigLoader

from jupyterhub_hpc.profiles.model import parse_profile_list
from jupyterhub_hpc.profiles.validate import Context, resolve
from jupyterhub_hpc.spawner import HPCSpawner

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "migrating.md"


def worked_example() -> tuple[str, str]:
    section = DOC.read_text().split("## A worked migration", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    return blocks[0], blocks[1]


def test_the_worked_migration_is_what_the_command_prints(tmp_path: Path) -> None:
    source, printed = worked_example()
    (tmp_path / "jupyterhub_config.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyterhub_hpc.cli",
            "migrate",
            "jupyterhub_config.py",
            "--template-dir",
            "/etc/jupyterhub",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == printed

    out = tmp_path / "out" / "jupyterhub_config.py"
    out.parent.mkdir()
    out.write_text(printed)
    c = PyFileConfigLoader(out.name, path=str(out.parent)).load_config()  # ends in check_profiles(c)
    assert c.JupyterHub.spawner_class == "hpc"
    spawner = HPCSpawner(config=c, user=SimpleNamespace(name="alice", groups=[], url="/user/alice/"))
    profiles = parse_profile_list(spawner.profile_list, frozenset(spawner.trait_names()))
    ctx = Context(user="alice", base_job=spawner.profile_base_job(), base_backend="slurm")
    gpu = resolve(profiles, {"profile": "gpu"}, ctx).job_request()
    assert (gpu.partition, gpu.cpus, gpu.memory, gpu.walltime, gpu.gpus, gpu.gpu_type) == (
        "gpu",
        8,
        32 * 1024,
        8 * 3600,
        1,
        "a100",
    )
    compute = resolve(profiles, {"profile": "compute"}, ctx).job_request()
    assert (compute.partition, compute.cpus, compute.memory, compute.walltime) == (
        "compute",
        16,
        65536,
        86400,
    )
    assert [p.slug for p in profiles.profiles] == ["interactive", "compute", "gpu", "local"]
