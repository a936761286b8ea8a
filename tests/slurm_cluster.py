"""The live Slurm cluster the end-to-end suite (tests/e2e/test_slurm_e2e.py) runs against.

``JUPYTERHUB_HPC_TEST_SLURM`` selects it:

- ``22.05`` (default): Debian 12's Slurm, the single-node cluster of ``scripts/slurm.sh``, with the
  plain client commands on ``PATH`` and its config in the default place;
- ``24.11``: Debian 13's Slurm, the private cluster ``hpc24`` of ``scripts/slurm24.sh`` (daemons in a
  Debian 13 root, the hub's commands through that root's wrappers). Its hubs get the settings of
  ``tests/e2e/slurm24_hub.py`` (read from that file, which scripts/test-sudoers.sh also generates their
  sudo rules from): ``scheduler_commands``, ``scheduler_environment`` (``SLURM_CONF``) and
  ``path_prepend`` (the job's venv inside the root), and nothing else.

Any other value is an error, and so is a cluster that does not answer or runs another Slurm version:
the suite fails, it never skips.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traitlets.config.loader import PyFileConfigLoader

__all__ = ["CLUSTERS", "SELECT_ENV", "SlurmCluster", "selected_cluster"]

SELECT_ENV = "JUPYTERHUB_HPC_TEST_SLURM"
REPO = Path(__file__).resolve().parents[1]
SLURM24_HUB_CONFIG = REPO / "tests" / "e2e" / "slurm24_hub.py"


@dataclass(frozen=True)
class SlurmCluster:
    """One live cluster: how its commands run from the tests, and what a hub needs to use it."""

    version: str
    #: scripts/NAME: start|stop|status|stop-ctld|start-ctld
    control: str
    #: the program behind each client command name (``sbatch``, ``squeue``, ``scontrol``...)
    commands: dict[str, str] = field(default_factory=dict)
    #: the environment the client commands need (``SLURM_CONF``)
    environment: dict[str, str] = field(default_factory=dict)
    #: HPCSpawner settings of every hub that uses this cluster
    spawner: dict[str, Any] = field(default_factory=dict)

    def argv(self, name: str, *args: str) -> list[str]:
        return [self.commands.get(name, name), *args]

    def run(
        self, name: str, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """A client command of this cluster, as root."""
        return subprocess.run(
            self.argv(name, *args),
            env={**os.environ, **self.environment},
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def jobs(self, user: str) -> dict[str, str]:
        """{job id: state} of a user's jobs in the live queue (pending and running only)."""
        out = self.run(
            "squeue", "--noheader", f"--user={user}", "--states=PENDING,RUNNING,COMPLETING", "--format=%i|%T"
        ).stdout
        return dict(line.split("|", 1) for line in out.split())

    def cancel_all(self, users: list[str]) -> None:
        for user in users:
            self.run("scancel", f"--user={user}", check=False)

    def control_script(self, action: str) -> None:
        subprocess.run([str(REPO / "scripts" / self.control), action], check=True, cwd=REPO)

    def check_version(self) -> str:
        """The version the controller's clients report; an error unless it is this cluster's."""
        ping = self.run("scontrol", "ping", check=False)
        assert ping.returncode == 0 and "is UP" in ping.stdout, (
            f"Slurm {self.version} (scripts/{self.control}) does not answer: {ping.stdout}{ping.stderr}"
        )
        reported = self.run("sinfo", "--version").stdout.split()[-1]
        assert reported.startswith(self.version + "."), (
            f"expected Slurm {self.version}, the cluster runs {reported}"
        )
        return reported


def _slurm24() -> SlurmCluster:
    spawner = PyFileConfigLoader(SLURM24_HUB_CONFIG.name, path=str(SLURM24_HUB_CONFIG.parent)).load_config()
    settings = {key: spawner.HPCSpawner[key] for key in spawner.HPCSpawner}
    commands = dict(settings["scheduler_commands"])
    scontrol = str(Path(commands["sbatch"]).with_name("scontrol"))
    return SlurmCluster(
        version="24.11",
        control="slurm24.sh",
        commands={**commands, "scontrol": scontrol},
        environment=dict(settings["scheduler_environment"]),
        spawner=settings,
    )


CLUSTERS = {"22.05": lambda: SlurmCluster(version="22.05", control="slurm.sh"), "24.11": _slurm24}


def selected_cluster() -> SlurmCluster:
    """The cluster ``JUPYTERHUB_HPC_TEST_SLURM`` names (22.05 when unset)."""
    name = os.environ.get(SELECT_ENV, "22.05")
    if name not in CLUSTERS:
        raise ValueError(f"{SELECT_ENV}={name!r}: not one of {sorted(CLUSTERS)}")
    return CLUSTERS[name]()
