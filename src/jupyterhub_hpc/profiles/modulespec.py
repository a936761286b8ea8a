"""The admin's keys of a ``modules`` profile option, and what a cluster offers (:class:`ModuleSource`).

A ``modules`` option (``type: "modules"``) lets the user pick software modules (Lmod or
Environment Modules) that the job loads before its server starts. Its keys, all optional:

- ``allow`` / ``deny``: shell-style patterns (:mod:`fnmatch`, case-sensitive) over full module
  names (``gcc/12``); a module is offered when it matches an ``allow`` pattern (every module
  when there is none) and no ``deny`` pattern;
- ``preset``: the modules selected when the user chooses nothing;
- ``sticky``: modules always loaded, first, that the user cannot remove (nor a kernel's purge);
- ``purge``: ``module purge`` before loading;
- ``max_modules``: how many modules a user may pick (besides the sticky ones);
- ``kernels``: the admin's kernel presets, each ``{name, display_name, modules, purge}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from ..modules import Catalogue, KernelPreset, Module, ModuleSystem, check_module_name

__all__ = ["ModuleSource", "ModulesFields", "offered"]

#: how many modules a user may pick unless ``max_modules`` says otherwise
DEFAULT_MAX_MODULES = 32
MODULE_KEYS = ("allow", "deny", "preset", "sticky", "purge", "max_modules", "kernels")
KERNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _names(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        name = check_module_name(value)
        if name not in out:
            out.append(name)
    return out


def _patterns(values: list[str]) -> list[str]:
    for value in values:
        if not value or any(ch.isspace() for ch in value) or len(value) > 200:
            raise ValueError(f"{value!r} is not a module name pattern (no blanks, 1-200 characters)")
    return values


class ModulesFields(BaseModel):
    """The keys of a ``modules`` option (mixed into :class:`~.model.Option`)."""

    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    preset: list[str] = Field(default_factory=list)
    sticky: list[str] = Field(default_factory=list)
    purge: bool = False
    max_modules: int = Field(default=DEFAULT_MAX_MODULES, ge=0, le=200)
    kernels: list[KernelPreset] = Field(default_factory=list)

    @field_validator("allow", "deny")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        return _patterns(value)

    @field_validator("preset", "sticky")
    @classmethod
    def _check_names(cls, value: list[str]) -> list[str]:
        return _names(value)

    @field_validator("kernels", mode="before")
    @classmethod
    def _kernel_presets(cls, value: Any) -> Any:
        if isinstance(value, list):
            for item in value:
                name = item.get("name") if isinstance(item, dict) else None
                if isinstance(name, str) and not KERNEL_NAME.match(name):
                    raise ValueError(f"kernel name {name!r}: lower-case letters, digits, '.', '_', '-'")
                if isinstance(item, dict):
                    _names(list(item.get("modules") or []))
        return value

    @model_validator(mode="after")
    def _only_for_modules(self) -> ModulesFields:
        kind = getattr(self, "type", "modules")
        given = [k for k in MODULE_KEYS if k in self.model_fields_set]
        if kind != "modules" and given:
            raise ValueError(f"{', '.join(given)}: only for an option of type modules")
        if kind == "modules":
            if getattr(self, "choices", None):
                raise ValueError("a modules option takes allow/deny/preset, not choices")
            if len(self.preset) > self.max_modules:
                raise ValueError(f"preset has more than max_modules ({self.max_modules}) modules")
        return self

    def permits(self, name: str) -> bool:
        """``allow`` (none: everything) and not ``deny``, on a full module name."""
        if self.allow and not any(fnmatchcase(name, p) for p in self.allow):
            return False
        return not any(fnmatchcase(name, p) for p in self.deny)


def offered(catalogue: Catalogue, allow: tuple[str, ...], deny: tuple[str, ...]) -> tuple[Module, ...]:
    """The modules of ``catalogue`` that ``allow``/``deny`` let through (see :class:`ModulesFields`)."""
    return tuple(
        m
        for m in catalogue.modules
        if (not allow or any(fnmatchcase(m.name, p) for p in allow))
        and not any(fnmatchcase(m.name, p) for p in deny)
    )


@dataclass
class ModuleSource:
    """A cluster's module system and its catalogue as the hub's cache holds it (``catalogue``
    None: never fetched successfully; ``error``: why the last refresh failed). The filtered
    views per ``allow``/``deny`` are computed once per catalogue (the cache makes a new source
    at each refresh), so a form with thousands of modules is filtered once, not per user."""

    system: ModuleSystem
    catalogue: Catalogue | None
    cluster: str = ""
    error: str = ""
    fetched_at: float = 0.0
    _views: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[Module, ...]] = field(
        default_factory=dict, repr=False
    )
    _by_name: dict[str, Module] = field(default_factory=dict, repr=False)

    def offered(self, allow: tuple[str, ...], deny: tuple[str, ...]) -> tuple[Module, ...]:
        if self.catalogue is None:
            return ()
        key = (allow, deny)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = offered(self.catalogue, allow, deny)
        return view

    def find(self, name: str) -> Module | None:
        """The catalogue's module for ``name`` (a package alone: its default version)."""
        if self.catalogue is None:
            return None
        if name not in self._by_name:
            found = self.catalogue.find(name)
            if found is None:
                return None
            self._by_name[name] = found
        return self._by_name[name]
