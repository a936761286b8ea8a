"""Scheduler backends, looked up by name (entry-point group ``jupyterhub_hpc.backends``)."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from .base import Backend, JobScript, QueryError, SubmitError

__all__ = ["BUILTIN", "Backend", "JobScript", "QueryError", "SubmitError", "backend_class"]

#: the backends of this package (also registered as entry points in pyproject.toml)
BUILTIN = {
    "slurm": "jupyterhub_hpc.backends.slurm:SlurmBackend",
    "local": "jupyterhub_hpc.backends.local:LocalBackend",
    "sge": "jupyterhub_hpc.backends.sge:SGEBackend",
    "pbs": "jupyterhub_hpc.backends.pbs:PBSBackend",
    "torque": "jupyterhub_hpc.backends.pbs:TorqueBackend",
    "lsf": "jupyterhub_hpc.backends.lsf:LSFBackend",
    "htcondor": "jupyterhub_hpc.backends.htcondor:HTCondorBackend",
    "oar": "jupyterhub_hpc.backends.oar:OARBackend",
}


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name`` (e.g. ``"slurm"``, ``"local"``)."""
    for ep in entry_points(group="jupyterhub_hpc.backends"):
        if ep.name == name:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Backend)):
                raise TypeError(f"entry point {name!r} is not a Backend class")
            return cls
    # fall back to the built-in ones when the package metadata is not installed
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        cls = getattr(import_module(module), attr)
        assert isinstance(cls, type) and issubclass(cls, Backend)
        return cls
    known = sorted({*BUILTIN, *(ep.name for ep in entry_points(group="jupyterhub_hpc.backends"))})
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(known)}")
