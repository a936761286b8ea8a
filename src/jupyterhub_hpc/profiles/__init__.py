"""Profiles: one typed schema for the spawn form, the REST API and validation.

Importing this package registers nothing and starts nothing. Public names:

* profiles are built into :class:`~jupyterhub_hpc.spawner.HPCSpawner` (and so into
  ``SlurmSpawner`` and every per-scheduler class); :class:`~.mixin.ProfilesMixin` adds
  them to spawners that are not ours, e.g. :class:`~.spawners.ProfilesLocalProcessSpawner`;
  the old ``Profiles*Spawner`` names are deprecated aliases (:mod:`.compat`);
* :func:`check_profiles`: validate the configuration at hub start;
* ``jupyterhub_hpc.profiles.handlers.all_handlers``: the discovery and dry-run API
  plus the job port endpoint, for ``c.JupyterHub.extra_handlers``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from ..startcheck import check_spawner_config
from .compat import upgrade_config, warn_once
from .limits import configured_partition_fields
from .model import ProfileConfigError, ignored_key_warnings, parse_profile_list
from .overrides import check_override_values

__all__ = ["ProfileConfigError", "check_profiles"]


def _spawner_class(value: Any) -> type:
    if isinstance(value, type):
        return value
    name = str(value)
    for ep in entry_points(group="jupyterhub.spawners"):
        if ep.name == name:
            return ep.load()  # type: ignore[no-any-return]
    module, _, attr = name.rpartition(".")
    if not module:
        raise ProfileConfigError("JupyterHub.spawner_class", f"cannot find spawner {name!r}")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def check_profiles(config: Any, spawner_class: Any = None) -> None:
    """Validate ``profile_list`` and ``partition_limits`` from a hub config now (hub start).

    Call at the end of ``jupyterhub_config.py``: ``check_profiles(c)``. Raises
    :class:`ProfileConfigError` naming the bad key; a callable ``profile_list`` is
    checked each time it is called instead. Then every configured value of the spawner
    goes through its trait (``memory``, ``walltime``, ``port_range`` are read into their
    units: :class:`~jupyterhub_hpc.startcheck.SpawnerConfigError` names the key), and
    every value in the profiles' overrides through the job request's field rules and
    the spawner's traits (:func:`~.overrides.check_override_values`).
    """

    cls = _spawner_class(spawner_class or config.JupyterHub.get("spawner_class"))
    config = upgrade_config(config, cls)
    values: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass.__name__ in config:
            section = config[klass.__name__]
            for key in ("profile_list", "partition_limits"):
                if key in section:
                    values[key] = section[key]
    trait_names = frozenset(getattr(cls, "class_trait_names", lambda: [])())
    if "profile_list" not in trait_names:
        raise ProfileConfigError("JupyterHub.spawner_class", f"{cls.__name__} has no profile_list")
    raw = values.get("profile_list")
    parsed = parse_profile_list(raw, trait_names) if raw and not callable(raw) else None
    for name, limits in (values.get("partition_limits") or {}).items():
        try:
            configured_partition_fields(str(name), limits)
        except (ValueError, TypeError) as exc:
            raise ProfileConfigError(f"partition_limits.{name}", str(exc)) from None
    spawner = check_spawner_config(config, cls)
    if parsed is not None:
        for text in ignored_key_warnings(parsed):
            warn_once(text, "profile_list: %s", text)  # once per key, also when the spawner parses it
        check_override_values(parsed, spawner)
