"""One spawner class per scheduler, for ``c.JupyterHub.spawner_class = "<name>"``.

Each is :class:`~jupyterhub_hpc.spawner.HPCSpawner` with its ``backend`` default
set; everything else (options, life cycle, the shared queue watcher) is the same.
``SlurmSpawner`` lives in :mod:`jupyterhub_hpc.spawner`.
"""

from __future__ import annotations

from traitlets import default

from .spawner import HPCSpawner

__all__ = ["HTCondorSpawner", "LSFSpawner", "OARSpawner", "PBSSpawner", "SGESpawner", "TorqueSpawner"]


class SGESpawner(HPCSpawner):
    """Jupyter servers as Grid Engine jobs (``spawner_class = "sge"``)."""

    @default("backend")
    def _default_backend(self) -> str:
        return "sge"


class PBSSpawner(HPCSpawner):
    """Jupyter servers as PBS Professional / OpenPBS jobs (``spawner_class = "pbs"``)."""

    @default("backend")
    def _default_backend(self) -> str:
        return "pbs"


class TorqueSpawner(HPCSpawner):
    """Jupyter servers as Torque jobs (``spawner_class = "torque"``)."""

    @default("backend")
    def _default_backend(self) -> str:
        return "torque"


class LSFSpawner(HPCSpawner):
    """Jupyter servers as LSF jobs (``spawner_class = "lsf"``)."""

    @default("backend")
    def _default_backend(self) -> str:
        return "lsf"


class HTCondorSpawner(HPCSpawner):
    """Jupyter servers as HTCondor jobs (``spawner_class = "htcondor"``)."""

    @default("backend")
    def _default_backend(self) -> str:
        return "htcondor"


class OARSpawner(HPCSpawner):
    """Jupyter servers as OAR jobs (``spawner_class = "oar"``)."""

    @default("backend")
    def _default_backend(self) -> str:
        return "oar"
