"""The deprecated profile spawner names and their config sections.

Profiles are built into :class:`~jupyterhub_hpc.spawner.HPCSpawner` and every class
derived from it. The old classes ``ProfilesSlurmSpawner``, ``ProfilesHPCSpawner`` and
``ProfilesLocalHPCSpawner`` are now those classes (see :mod:`.spawners`); a config
written for them (``c.ProfilesSlurmSpawner.profile_list = ...``) still applies, as
the new class's section, with one warning. Values set under the new name win.
"""

from __future__ import annotations

import logging
from typing import Any

from traitlets.config import Config

__all__ = ["DEPRECATED_NAMES", "upgrade_config", "warn_once"]

#: deprecated class name -> (module, class, spawner_class entry point to use instead)
DEPRECATED_NAMES: dict[str, tuple[str, str, str]] = {
    "ProfilesHPCSpawner": ("jupyterhub_hpc.spawner", "HPCSpawner", "hpc"),
    "ProfilesSlurmSpawner": ("jupyterhub_hpc.spawner", "SlurmSpawner", "slurm"),
    "ProfilesLocalHPCSpawner": ("jupyterhub_hpc.local_spawner", "LocalHPCSpawner", "local-hpc"),
}
_warned: set[str] = set()


def warn_once(key: str, message: str, *args: Any) -> None:
    """One warning per ``key`` in the hub's log, for the life of the process. The key is
    the deprecated name: its class and its config section share one warning."""
    if key not in _warned:
        _warned.add(key)
        logging.getLogger("JupyterHub").warning(message, *args)


def upgrade_config(config: Config, cls: type) -> Config:
    """``config`` with each deprecated section that names a class of ``cls``'s MRO
    merged under that class's own name (below what that section sets itself)."""
    names = {klass.__name__ for klass in cls.__mro__}
    found = [(old, new) for old, (_, new, _e) in DEPRECATED_NAMES.items() if old in config and new in names]
    if not found:
        return config
    upgraded = Config(config)
    for old, new in found:
        section = Config(config[old])
        section.merge(config[new] if new in config else Config())
        upgraded[new] = section
        entry = DEPRECATED_NAMES[old][2]
        warn_once(
            old,
            "c.%s is deprecated: applied as c.%s (profiles are built into %s); rename the section, "
            'and use c.JupyterHub.spawner_class = "%s"',
            old,
            new,
            new,
            entry,
        )
    return upgraded
