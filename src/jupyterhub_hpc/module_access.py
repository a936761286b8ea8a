"""Software modules on the hub side: the module system per cluster, its catalogue cache, the
job's environment.

:class:`ModuleOptions` is a base class of the batch spawners. ``module_system`` names the
cluster's module system (Lmod or Environment Modules); a profile for another cluster sets
its own with ``spawner_override: {"module_system": {...}}`` (or ``None``: no modules there).

The catalogue (Lmod's ``spider``, Tmod's ``avail``) runs through the hub's
:class:`~jupyterhub_hpc.client.SchedulerClient` of that cluster, as the hub's own account (over
SSH on a remote submit host), and is cached per client and module system for the whole hub
process (:class:`CatalogueCache`): at most one refresh per ``module_catalogue_ttl``, one at a
time, parsed once per refresh; a failed refresh keeps the last catalogue (and is retried after
:data:`RETRY_SECONDS`). A spawn's validated modules go into the job's environment
(``SERVER_MODULES_ENV``, with the system as ``MODULE_SYSTEM_ENV``) and into the spawner's
state, which ``GET /hub/api/hpc/modules/<user>/<server>`` answers from.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import replace
from typing import Any

from pydantic import ValidationError
from traitlets import Dict, Float, List, TraitError, Unicode, Union, validate
from traitlets.config import Configurable

from .backends.base import QueryError
from .client import SchedulerClient
from .commands import CommandError
from .modules import (
    MODULE_SYSTEM_ENV,
    SERVER_MODULES_ENV,
    KernelPreset,
    Module,
    ModuleSystem,
    ServerModules,
    check_module_name,
)
from .profiles.model import ProfileList
from .profiles.modules import modules_option
from .profiles.modulespec import ModuleSource
from .profiles.validate import Context, profile_target

__all__ = ["CatalogueCache", "ModuleOptions", "get_catalogue_cache", "module_system_of"]

log = logging.getLogger(__name__)

#: seconds after a failed catalogue refresh before the next one (the stale catalogue is used meanwhile)
RETRY_SECONDS = 60.0
#: the state key of a job's module system and modules
STATE_KEY = "modules"
MODULE_KEYS = ("name", "package", "version", "default", "description", "family")


def module_system_of(value: Any) -> ModuleSystem | None:
    """``module_system`` as configured (a dict, a :class:`ModuleSystem` or None), validated;
    raises ``ValueError`` naming the problem."""
    if value is None or isinstance(value, ModuleSystem):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"must be a dict of ModuleSystem fields or None, not {type(value).__name__}")
    try:
        return ModuleSystem.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where}: {first['msg']}") from None


class CatalogueCache:
    """The catalogue of one module system through one scheduler client (see the module docstring)."""

    def __init__(self, client: SchedulerClient, system: ModuleSystem) -> None:
        self.client = client
        self.system = system
        self.current: ModuleSource | None = None
        #: refreshes started (the benchmark's and the tests' count of spider runs)
        self.refreshes = 0
        self._next = 0.0
        self._refresh: asyncio.Task[ModuleSource] | None = None

    async def get(self, ttl: float, timeout: float) -> ModuleSource:
        """The cached catalogue while fresh; otherwise one refresh starts (never two at once)
        and the last catalogue is returned meanwhile; without one, the refresh is awaited."""
        if self.current is not None and time.monotonic() < self._next:
            return self.current
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._fetch(ttl, timeout))
        if self.current is not None and self.current.catalogue is not None:
            return self.current
        return await asyncio.shield(self._refresh)

    async def _fetch(self, ttl: float, timeout: float) -> ModuleSource:
        self.refreshes += 1
        cluster = self.client.backend.cluster
        try:
            result = await self.client.run(self.system.catalogue_argv(), count="modules", timeout=timeout)
            if not result.ok:
                raise QueryError(result.stderr.strip()[-500:] or f"exit status {result.returncode}")
            catalogue = self.system.parse_catalogue(result.stdout)
            source = ModuleSource(self.system, catalogue, cluster, fetched_at=time.time())
            self._next = time.monotonic() + ttl
        except (CommandError, QueryError, ValueError) as exc:
            log.warning("module catalogue unavailable (%s): %s", self.client.describe(), exc)
            previous = self.current or ModuleSource(self.system, None, cluster)
            source = replace(previous, error=str(exc) or type(exc).__name__)
            self._next = time.monotonic() + min(ttl, RETRY_SECONDS)
        self.current = source
        return source


_CACHES: dict[tuple[object, ...], CatalogueCache] = {}


def get_catalogue_cache(client: SchedulerClient, system: ModuleSystem) -> CatalogueCache:
    """The one catalogue cache of ``system`` through ``client`` in this process."""
    key = (*client.key, system.to_env())
    cache = _CACHES.get(key)
    if cache is None:
        cache = _CACHES[key] = CatalogueCache(client, system)
    return cache


class ModuleOptions(Configurable):
    """The module settings of the batch spawners (see the module docstring)."""

    module_system = Union(
        [Dict()],
        allow_none=True,
        default_value=None,
        help="""
        The module system of this spawner's cluster, or None (no software modules). A dict
        of :class:`jupyterhub_hpc.modules.ModuleSystem` fields, e.g. for Debian's Lmod
        ``{"kind": "lmod", "modulepath": ["/opt/modulefiles"], "init":
        "/usr/share/lmod/lmod/init/bash", "spider": "/usr/share/lmod/lmod/libexec/spider"}``.
        The hub lists the modules through the scheduler client (over SSH with
        ``ssh_host``); the job loads them with the same settings before its server starts.
        A profile for another cluster sets its own through ``spawner_override``. Used by
        profile options of type ``modules`` (docs/profiles.md).
        """,
    ).tag(config=True)

    module_catalogue_ttl = Float(
        3600.0,
        min=0.0,
        help="""
        Seconds the hub reuses a cluster's module catalogue before it lists the modules
        again: one listing per cluster and module system per TTL serves every user.
        """,
    ).tag(config=True)

    module_catalogue_timeout = Float(
        60.0,
        min=1.0,
        help="""
        Seconds the module listing may take. When it fails or takes longer, the last
        catalogue is used (without one, the form says the module list is unavailable).
        """,
    ).tag(config=True)

    sticky_modules = List(
        Unicode(),
        help="""
        Modules loaded in every server of this spawner before it starts, with or without
        profiles (before a profile's own sticky and chosen modules), e.g. a site's
        ``["jupyter-kernel/1"]``: users cannot deselect them, and a kernel whose module set
        purges loads them again. Needs ``module_system``. Names are checked when the config
        loads; a name the cluster lacks fails the spawn with the tool's message.
        """,
    ).tag(config=True)

    kernel_presets = List(
        Dict(),
        help="""
        Kernels with their own module sets, offered in every server of this spawner (with or
        without profiles; a profile's ``modules`` option may add its own ``kernels``). Each a
        dict ``{"name": "torch", "display_name": "Python 3.11 + PyTorch 2.5", "modules":
        ["python/3.11", "pytorch/2.5"], "purge": false}``: JupyterLab lists it as a kernel
        that loads those modules when it starts, the server itself unchanged. Needs
        ``module_system``.
        """,
    ).tag(config=True)

    #: the module system and modules of the current job (its state), or None
    job_modules: dict[str, Any] | None = None

    @validate("module_system")
    def _validate_module_system(self, proposal: Any) -> Any:
        try:
            system = module_system_of(proposal["value"])
        except ValueError as exc:
            raise TraitError(f"module_system: {exc}") from None
        return None if system is None else system.model_dump(mode="json")

    @validate("sticky_modules")
    def _validate_sticky_modules(self, proposal: Any) -> Any:
        try:
            return [check_module_name(name) for name in proposal["value"]]
        except ValueError as exc:
            raise TraitError(f"sticky_modules: {exc}") from None

    @validate("kernel_presets")
    def _validate_kernel_presets(self, proposal: Any) -> Any:
        try:
            presets = [KernelPreset.model_validate(p) for p in proposal["value"]]
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise TraitError(f"kernel_presets: {where}: {first['msg']}") from None
        names = [p.name for p in presets]
        if len(set(names)) != len(names):
            raise TraitError("kernel_presets: two presets have the same name")
        return [p.model_dump(mode="json") for p in presets]

    def _with_spawner_modules(self, chosen: ServerModules | None) -> ServerModules | None:
        """``chosen`` (a profile's) with this spawner's ``sticky_modules`` and ``kernel_presets``."""
        sticky = tuple(self.sticky_modules)
        kernels = tuple(KernelPreset.model_validate(p) for p in self.kernel_presets)
        if not sticky and not kernels:
            return chosen
        base = chosen or ServerModules()
        own = {k.name for k in base.kernels}
        return base.model_copy(
            update={
                "sticky": tuple(dict.fromkeys([*sticky, *base.sticky])),
                "modules": tuple(m for m in base.modules if m not in sticky),
                "kernels": (*(k for k in kernels if k.name not in own), *base.kernels),
            }
        )

    def configured_module_system(self, overrides: dict[str, Any] | None = None) -> ModuleSystem | None:
        """The module system of a profile (its override of ``module_system``), else the admin's."""
        if overrides is not None and "module_system" in overrides:
            return module_system_of(overrides["module_system"])
        base = getattr(self, "_base_trait", None)
        return module_system_of(base("module_system") if base is not None else self.module_system)

    async def module_sources(self, profiles: ProfileList, ctx: Context) -> dict[str, ModuleSource]:
        """By profile slug: the module catalogue of every visible profile with a ``modules``
        option (from the cache: one listing per cluster per TTL)."""
        wanted: dict[str, tuple[SchedulerClient, ModuleSystem]] = {}
        for profile in profiles.visible(ctx.user, ctx.groups):
            if modules_option(profile) is None:
                continue
            system = self.configured_module_system(profile.all_overrides)
            client = getattr(self, "_target_client")(profile_target(profile, ctx))  # noqa: B009
            if system is not None and client is not None:
                wanted[profile.slug] = (client, system)
        fetched = await asyncio.gather(
            *(
                get_catalogue_cache(c, s).get(self.module_catalogue_ttl, self.module_catalogue_timeout)
                for c, s in wanted.values()
            )
        )
        return dict(zip(wanted, fetched, strict=True))

    # -- the job ----------------------------------------------------------------------------
    def module_environment(self) -> dict[str, str]:
        """The job's module variables (none without a module system); kept as ``job_modules``."""
        value = self.module_system
        if value is None:
            self.job_modules = None
            return {}
        system = ModuleSystem.model_validate(value)
        env = {MODULE_SYSTEM_ENV: system.to_env()}
        resolution = getattr(self, "profile_resolution", None)
        chosen = self._with_spawner_modules(getattr(resolution, "server_modules", None))
        record: dict[str, Any] = {"system": env[MODULE_SYSTEM_ENV], "allow": [], "deny": []}
        if chosen is not None:
            env[SERVER_MODULES_ENV] = record["server"] = chosen.to_env()
        found = modules_option(resolution.profile) if resolution is not None else None
        if found is not None:
            record.update(allow=list(found[1].allow), deny=list(found[1].deny))
        self.job_modules = record
        return env

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()  # type: ignore[misc]
        if self.job_modules is not None and str(getattr(self, "job_id", "")):
            state[STATE_KEY] = dict(self.job_modules)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)  # type: ignore[misc]
        stored = state.get(STATE_KEY)
        self.job_modules = dict(stored) if isinstance(stored, dict) and stored.get("system") else None

    def clear_state(self) -> None:
        super().clear_state()  # type: ignore[misc]
        self.job_modules = None

    async def modules_document(self) -> dict[str, Any] | None:
        """What ``GET /hub/api/hpc/modules/<user>/<server>`` answers: the job's module system,
        its catalogue (within the profile's allow/deny), the server's modules and the kernel
        presets; without a job, the configured system and no modules. None: no module system."""
        record = self.job_modules
        if record is None:
            system = self.configured_module_system()
            record = {"system": system.to_env()} if system is not None else None
        if record is None:
            return None
        system = ModuleSystem.from_env(record["system"])
        client: SchedulerClient = getattr(self, "client")  # noqa: B009
        source = await get_catalogue_cache(client, system).get(
            self.module_catalogue_ttl, self.module_catalogue_timeout
        )
        offered: tuple[Module, ...] = source.offered(
            tuple(record.get("allow", ())), tuple(record.get("deny", ()))
        )
        server = json.loads(record["server"]) if record.get("server") else {}
        return {
            "system": system.kind,
            "cluster": client.backend.cluster,
            "catalogue": [{k: getattr(m, k) for k in MODULE_KEYS} for m in offered],
            "catalogue_error": source.error,
            "server": {
                "modules": list(server.get("modules", [])),
                "sticky": list(server.get("sticky", [])),
                "purge": bool(server.get("purge", False)),
            },
            "kernels": list(server.get("kernels", [])),
        }
