"""Scheduler backends, looked up by name (entry-point group ``jupyterhub_hpc.backends``)."""

from __future__ import annotations

from importlib.metadata import entry_points

from .base import Backend, JobScript, QueryError, SubmitError

__all__ = ["Backend", "JobScript", "QueryError", "SubmitError", "backend_class"]


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name`` (e.g. ``"slurm"``, ``"local"``)."""
    for ep in entry_points(group="jupyterhub_hpc.backends"):
        if ep.name == name:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Backend)):
                raise TypeError(f"entry point {name!r} is not a Backend class")
            return cls
    # fall back to the built-in ones when the package metadata is not installed
    if name == "slurm":
        from .slurm import SlurmBackend

        return SlurmBackend
    if name == "local":
        from .local import LocalBackend

        return LocalBackend
    known = sorted(ep.name for ep in entry_points(group="jupyterhub_hpc.backends"))
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(known) or 'slurm, local'}")
