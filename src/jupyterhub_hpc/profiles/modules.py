"""The ``modules`` option type: validation, form view and schema (keys: :mod:`.modulespec`).

``user_options[key]`` is a list of module names (the REST API), or one string of names
separated by commas (a spawn link: ``?opt-modules=gcc/12,python/3.11``; the form posts
one value per selected module). Every name goes through
:func:`~jupyterhub_hpc.modules.check_module_name` (no blanks, no shell metacharacters, no
``..``), must be in the cluster's catalogue (:meth:`~jupyterhub_hpc.modules.Catalogue.find`:
``gcc`` is the package's default version) and within the option's ``allow``/``deny``; two
versions of one package, or two modules of one family, are refused. Anything else is a
:class:`~jupyterhub_hpc.request.RequestError` (HTTP 400). The normalised value is the list of
full names (``gcc`` becomes ``gcc/12``), the sticky modules left out (they are always loaded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..modules import Module, ServerModules, check_module_name
from ..request import RequestError, shown
from .model import Option, Profile
from .modulespec import ModuleSource

__all__ = ["module_list", "modules_schema", "modules_view", "parse_modules"]


def module_list(key: str, raw: Any) -> list[str] | None:
    """The names given for a ``modules`` option (None: not given), each a module name."""
    if raw is None:
        return None
    if isinstance(raw, str):
        items: list[Any] = raw.split(",") if raw else []
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:
        raise RequestError(key, f"must be a list of module names (got {shown(raw)})")
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise RequestError(key, f"must be a list of module names (got {shown(item)})")
        try:
            name = check_module_name(item)
        except ValueError as exc:
            raise RequestError(key, str(exc)) from None
        if name not in names:
            names.append(name)
    return names


def _where(source: ModuleSource) -> str:
    return f"cluster {source.cluster}" if source.cluster else "this cluster"


def _checked(key: str, option: Option, names: list[str], source: ModuleSource) -> list[Module]:
    """The catalogue's modules for ``names``, each offered by ``option``."""
    found: list[Module] = []
    for name in names:
        module = source.find(name)
        if module is None:
            raise RequestError(key, f"{name!r} is not a module on {_where(source)}")
        if not option.permits(module.name):
            raise RequestError(key, f"{module.name!r} is not offered by this profile")
        for other in found:
            if other.package == module.package:
                raise RequestError(
                    key, f"{other.name} and {module.name} are two versions of {module.package}"
                )
            if module.family and other.family == module.family:
                raise RequestError(
                    key, f"{other.name} and {module.name} are both of the family {module.family!r}: pick one"
                )
        found.append(module)
    return found


def parse_modules(
    key: str, option: Option, raw: Any, source: ModuleSource | None
) -> tuple[dict[str, Any], str, ServerModules]:
    """(``user_options`` part, the value for ``when`` conditions, what the job loads)."""
    given = module_list(key, raw)
    names = list(option.preset) if given is None else given
    names = [n for n in names if n not in option.sticky]
    if len(names) > option.max_modules:
        raise RequestError(key, f"at most {option.max_modules} modules (got {len(names)})")
    if names and source is None:
        raise RequestError(key, "no module system is configured for this profile's cluster")
    if source is not None and names:
        if source.catalogue is not None:
            sticky = {m.name for m in map(source.find, option.sticky) if m is not None}
            names = [n for n in names if (found := source.find(n)) is None or found.name not in sticky]
            names = [m.name for m in _checked(key, option, names, source)]
        elif given is not None:
            why = f" ({source.error})" if source.error else ""
            raise RequestError(
                key, f"the module catalogue of {_where(source)} is not available now{why}; try again later"
            )
    chosen = ServerModules(
        modules=tuple(names), sticky=tuple(option.sticky), purge=option.purge, kernels=tuple(option.kernels)
    )
    return {key: names}, ",".join(names), chosen


def modules_option(profile: Profile) -> tuple[str, Option] | None:
    """The profile's ``modules`` option (a profile has at most one)."""
    return next(((k, o) for k, o in profile.profile_options.items() if o.type == "modules"), None)


def modules_view(
    option: Option, values: Mapping[str, Any], key: str, source: ModuleSource | None
) -> dict[str, Any]:
    """The form's part of a ``modules`` option: every offered module (default versions marked,
    the selected ones selected, sticky ones checked and disabled, listed first)."""
    raw = values.get(key)
    selected = set(raw if isinstance(raw, list) else option.preset)
    sticky = list(option.sticky)
    offered = source.offered(tuple(option.allow), tuple(option.deny)) if source is not None else ()
    rows = [
        {"name": n, "label": f"{n} (always loaded)", "title": "", "sticky": True, "selected": True}
        for n in sticky
    ]
    rows += [
        {
            "name": m.name,
            "label": f"{m.name} (default)" if m.default else m.name,
            "title": m.description,
            "sticky": False,
            "selected": m.name in selected,
        }
        for m in offered
        if m.name not in option.sticky
    ]
    problem = ""
    if source is None:
        problem = "No module system is configured for this cluster."
    elif source.catalogue is None:
        problem = f"The module list of {_where(source)} is not available now" + (
            f": {source.error}" if source.error else "."
        )
    hint = f"Pick up to {option.max_modules}; Ctrl/Cmd-click to pick several."
    if option.purge:
        hint += " Loaded after a module purge."
    return {
        "kind": "modules",
        "modules": rows,
        "count": len(rows) - len(sticky),
        "max_modules": option.max_modules,
        "hint": hint,
        "problem": problem,
        "system": source.system.kind if source is not None else "",
    }


def modules_schema(option: Option, source: ModuleSource | None) -> dict[str, Any]:
    """The JSON Schema of a ``modules`` value (the catalogue itself is not listed: it is
    ``GET /hub/api/hpc/modules/...`` for a running server, and the form's)."""
    offered: Sequence[Module] = source.offered(tuple(option.allow), tuple(option.deny)) if source else ()
    return {
        "type": ["array", "string"],
        "items": {"type": "string"},
        "maxItems": option.max_modules,
        "x-preset": list(option.preset),
        "x-sticky": list(option.sticky),
        "x-allow": list(option.allow),
        "x-deny": list(option.deny),
        "x-purge": option.purge,
        "x-offered": len(offered),
    }
