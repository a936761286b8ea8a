"""The hub-start check of a spawner's configuration: every configured value, through its trait.

JupyterHub builds a spawner only when a user needs one, so a configured value that its
trait refuses (``c.SlurmSpawner.memory = "4gigs"``, ``port_range = "9000"``) would
otherwise surface at every user's start instead of once at hub start.
:func:`check_spawner_config` builds the spawner from the configuration the way
JupyterHub does (``cls(config=c)``, no user) and, when a value is refused, names the
config key as the admin wrote it: ``c.HPCSpawner.memory: not a memory size: '4gigs' ...``.

``check_profiles(c)`` (:mod:`jupyterhub_hpc.profiles`), the last line of
``jupyterhub_config.py``, calls it: an error there stops the hub before it serves anyone
(JupyterHub raises errors of its config file).
"""

from __future__ import annotations

from typing import Any

from traitlets import TraitError
from traitlets.config import Config

from .units import UnitTraitError

__all__ = ["SpawnerConfigError", "check_spawner_config"]


class SpawnerConfigError(ValueError):
    """A configured spawner value is invalid; ``key`` is ``c.Section.trait`` as written."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def _reason(exc: TraitError) -> str:
    return exc.reason if isinstance(exc, UnitTraitError) else str(exc)


def _culprit(config: Config, cls: type) -> tuple[str, TraitError] | None:
    """The configured ``Section.key`` whose value alone fails to build the spawner, with
    its error. Per trait, the section that wins is the one traitlets applies: the most
    derived class of the MRO that sets it (``c.SlurmSpawner`` over ``c.HPCSpawner``)."""
    traits = cls.class_traits(config=True)  # type: ignore[attr-defined]
    effective: dict[str, tuple[str, Any]] = {}
    for klass in reversed(cls.__mro__):
        section = klass.__name__
        if section in config:
            for key, value in config[section].items():
                if key in traits:
                    effective[key] = (section, value)
    for key, (section, value) in effective.items():
        try:
            cls(config=Config({section: {key: value}}))
        except TraitError as exc:
            return f"{section}.{key}", exc
    return None


def check_spawner_config(config: Config, cls: type) -> Any:
    """Build ``cls`` from ``config`` as JupyterHub would for a user (without one) and
    return it; a value a trait refuses raises :class:`SpawnerConfigError` naming the
    config key and the value."""
    try:
        return cls(config=config)
    except TraitError as exc:
        found = _culprit(config, cls)
        if found is not None:
            key, error = found
            raise SpawnerConfigError(f"c.{key}", _reason(error)) from None
        if isinstance(exc, UnitTraitError):
            raise SpawnerConfigError(f"c.{exc.trait}", exc.reason) from None
        raise SpawnerConfigError(f"c.{cls.__name__}", str(exc)) from None
