"""The result of a migration: what the new configuration says, and what it could not say."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["MigrateError", "Migration", "NotCarried", "Sections"]

#: A configuration as data: section (``"SlurmSpawner"``) -> trait name -> value.
Sections = dict[str, dict[str, Any]]


class MigrateError(ValueError):
    """The configuration cannot be read or translated at all (the message says why)."""


@dataclass(frozen=True)
class NotCarried:
    """One setting of the original that the new configuration does not carry over, and why."""

    setting: str
    why: str


@dataclass
class Migration:
    """An equivalent jupyterhub-hpc configuration.

    ``spawner_class`` is the entry-point name (``"slurm"``, ``"hpc"``); ``section`` the
    class whose traits ``traits`` are (``"SlurmSpawner"``); ``spawner_traits`` are
    JupyterHub's own ``c.Spawner.*`` values, kept as they were.
    """

    spawner_class: str
    section: str
    traits: dict[str, Any] = field(default_factory=dict)
    spawner_traits: dict[str, Any] = field(default_factory=dict)
    profile_list: list[dict[str, Any]] = field(default_factory=list)
    partition_limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: job-script templates translated from inline ``batch_script`` values: path -> text
    templates: dict[str, str] = field(default_factory=dict)
    not_carried: list[NotCarried] = field(default_factory=list)
    #: the original's spawner, as its configuration names it (for the printed header)
    original: str = ""
