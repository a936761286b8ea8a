"""Profiles for JupyterHub's ``LocalProcessSpawner``, and the deprecated profile spawner names.

Every spawner of this package has ``profile_list`` built in (:class:`~..spawner.HPCSpawner`
and its per-scheduler classes). The names ``ProfilesSlurmSpawner``, ``ProfilesHPCSpawner``
and ``ProfilesLocalHPCSpawner`` (``spawner_class = "slurm-profiles"``, ``"hpc-profiles"``,
``"local-hpc-profiles"``) still work: they resolve to those same classes and log one
warning each. ``ProfilesMixin`` stays for spawners that are not ours:
:class:`ProfilesLocalProcessSpawner` is JupyterHub's ``LocalProcessSpawner`` with it.
"""

from __future__ import annotations

import importlib
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner

from ..cardoptions import JobCardOptions
from .compat import DEPRECATED_NAMES, warn_once
from .mixin import ProfilesMixin

__all__ = ["ProfilesLocalProcessSpawner"]


class ProfilesLocalProcessSpawner(ProfilesMixin, JobCardOptions, LocalProcessSpawner):
    """JupyterHub's ``LocalProcessSpawner`` with profiles (overrides of its traits only), the job
    card's options and server token scopes (its card has no job)."""


def __getattr__(name: str) -> Any:
    """A deprecated name: the class it now is, with one warning in the hub's log."""
    if name not in DEPRECATED_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, cls, entry = DEPRECATED_NAMES[name]
    warn_once(
        name,
        '%s is deprecated: profiles are built into %s; use c.JupyterHub.spawner_class = "%s" '
        "and configure c.%s (or c.HPCSpawner)",
        name,
        cls,
        entry,
        cls,
    )
    return getattr(importlib.import_module(module), cls)
