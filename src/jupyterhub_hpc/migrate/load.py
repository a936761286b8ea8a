"""Read an admin's ``jupyterhub_config.py`` as data, without the spawners it configures.

The file is executed by traitlets' own loader, as JupyterHub does, with ``c`` a plain
:class:`~traitlets.config.Config`: ``c.ProfilesSpawner.profiles = [...]`` and
``c.SlurmSpawner.req_memory = "4G"`` become data whether or not batchspawner,
wrapspawner or jupyterhub_moss are installed. A file that *imports* one of them (``import
batchspawner``, ``jupyterhub_moss.set_config(c)``) needs it installed; when it is not,
:class:`~.model.MigrateError` says so, naming the module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitlets.config import Config
from traitlets.config.loader import ConfigFileNotFound, LazyConfigValue, PyFileConfigLoader

from .model import MigrateError, NotCarried, Sections

__all__ = ["load_config_file", "sections_of"]


def load_config_file(path: str | Path) -> Config:
    """Execute ``path`` with traitlets' config loader and return its ``c``."""
    file = Path(path).resolve()
    if not file.is_file():
        raise MigrateError(f"{path}: no such file")
    loader = PyFileConfigLoader(file.name, path=str(file.parent))
    try:
        return loader.load_config()
    except ConfigFileNotFound:
        raise MigrateError(f"{path}: cannot be read") from None
    except ModuleNotFoundError as exc:
        raise MigrateError(
            f"{path} imports {exc.name!r}, which is not installed here. The migration reads the "
            "configuration as data and needs none of batchspawner, wrapspawner or jupyterhub_moss: "
            "install the module for this run, or remove the import (for example by writing the "
            "class as a string, c.JupyterHub.spawner_class = 'batchspawner.SlurmSpawner')"
        ) from None
    except Exception as exc:  # the admin's own code failed: say where
        raise MigrateError(f"{path}: running it failed: {type(exc).__name__}: {exc}") from None


def sections_of(config: Config) -> tuple[Sections, list[NotCarried]]:
    """The configuration as plain data: ``{section: {trait: value}}``.

    Values changed in place in the file (``c.Spawner.environment.update(...)``) arrive as
    traitlets' lazy values; those that resolve on an empty value are resolved, others are
    listed as not carried over.
    """
    sections: Sections = {}
    dropped: list[NotCarried] = []
    for name, section in config.items():
        if not isinstance(section, Config):
            continue
        values: dict[str, Any] = {}
        for key, value in section.items():
            if isinstance(value, Config):
                continue  # a nested section (c.A.B.x): not a trait value
            if isinstance(value, LazyConfigValue):
                resolved = _resolve_lazy(value)
                if resolved is None:
                    dropped.append(
                        NotCarried(
                            f"c.{name}.{key}", "changed in place (.update/.append) without a base value"
                        )
                    )
                    continue
                value = resolved
            values[str(key)] = value
        sections[str(name)] = values
    return sections, dropped


def _resolve_lazy(value: LazyConfigValue) -> Any:
    starts: tuple[Any, ...] = ({}, [])
    for start in starts:
        try:
            return value.get_value(start)
        except Exception:
            continue
    return None
