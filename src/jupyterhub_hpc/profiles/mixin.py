"""``ProfilesMixin``: profiles for any JupyterHub spawner (HPCSpawner, LocalProcessSpawner, ...).

It plugs into JupyterHub's own hooks, the same in 5.3 and 6.x:

* ``options_form`` renders the profile form: the last start's profile selected, and
  every profile pre-filled with its own last valid choices (kept in the spawner's
  state, which JupyterHub stores across servers of this name and hub restarts);
* ``options_from_form`` / ``options_from_query`` turn form fields and spawn links
  (``/hub/spawn?opt-profile=gpu&opt-cpus=4``) into flat ``user_options``;
* ``apply_user_options`` validates them (:func:`~.validate.resolve`) and applies the
  overrides. JupyterHub calls it for every start (form, link, REST API, admin) and
  answers an ``HTTPError`` raised there with that status, so invalid input gets a
  400 naming the field. Options JupyterHub reuses from its database (a start
  without options) are *reconciled* instead: what no longer exists falls back to
  the default, with a notice in the progress messages, never a failed start.

Overrides are applied to the spawner's traits (dicts merged, ``None`` deletes a key)
and undone when the server stops, so nothing leaks into the next start.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from inspect import isawaitable
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from sqlalchemy.orm import object_session
from tornado import web
from traitlets import Bool, Callable, Dict, Float, Int, List, TraitError, Unicode, Union, default, validate
from traitlets.config import LoggingConfigurable

from ..client import SchedulerClient
from ..maintenance import capped_limits, walltime_caps
from ..refusal import OptionsRefused
from ..request import RequestError, format_walltime
from .compat import warn_once
from .form import options_from_formdata, render_form
from .limits import ClusterLimits, configured_partition_fields, get_limits_cache
from .model import ProfileConfigError, ProfileList, ignored_key_warnings, parse_profile_list
from .schema import profiles_document
from .validate import (
    Context,
    Resolution,
    Target,
    profile_target,
    reconcile,
    reconcile_each,
    remembered_choices,
    resolve,
)

__all__ = ["ProfileOptionsError", "ProfilesMixin"]

API_ROUTE = "api/hpc/profiles"
#: the key of the per-profile remembered choices in the spawner's state
STATE_KEY = "profile_choices"
#: traits that say where a job lives (besides backend and cluster, which the spawner keeps
#: itself). When a profile set them, their values go into the state with the job, so that
#: after a hub restart poll() and stop() reach the job on the scheduler it was submitted to.
JOB_ADDRESS_TRAITS = ("scheduler_commands", "scheduler_environment", "ssh_host", "job_output")
#: traits of a running job's policy that a profile may set, kept with the job the same way, so
#: that after a hub restart the hub still stops an idle GPU server at its profile's timeout
JOB_POLICY_TRAITS = ("idle_timeout", "idle_warning", "idle_report_interval")
JOB_KEPT_TRAITS = (*JOB_ADDRESS_TRAITS, *JOB_POLICY_TRAITS)
ADDRESS_KEY = "profile_job_address"


class ProfileOptionsError(OptionsRefused):
    """Invalid ``user_options``: HTTP 400 whose message names the field and the reason
    (logged by the hub as one line, see :mod:`jupyterhub_hpc.refusal`)."""

    def __init__(self, field: str, reason: str) -> None:
        message = f"Invalid option {field!r}: {reason}"
        super().__init__(400, "%s", message)
        self.field = field
        self.detail = reason
        #: what JupyterHub shows on the spawn page and returns from the REST API
        self.jupyterhub_message = message


def _merge(old: Any, new: Any) -> Any:
    """KubeSpawner's override semantics, without mutating ``old``: dicts merge, None deletes
    (also inside a dict the trait does not have yet: it is merged into an empty one)."""
    if isinstance(old, dict) and isinstance(new, dict):
        merged = copy.deepcopy(old)
        for key, value in new.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = _merge(merged.get(key, {} if isinstance(value, dict) else None), value)
        return merged
    return copy.deepcopy(new)


def explicit_options(handler: Any) -> bool:
    """Did this start come with options (form, spawn link, REST body), or does JupyterHub
    reuse the stored ones (REST call without body, admin start)?"""
    if handler is None:
        return False
    if not isinstance(handler, APIHandler):
        return True  # the spawn form or a spawn link
    body = (handler.request.body or b"").strip()
    if not body:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return True
    if not isinstance(data, dict) or not data:
        return False
    if "user_options" in data or "display_name" in data:  # JupyterHub 6 body
        return data.get("user_options") is not None
    return True


class ProfilesMixin(LoggingConfigurable):
    """Put before the spawner class: ``class MySpawner(ProfilesMixin, LocalProcessSpawner)``."""

    # provided by JupyterHub's Spawner (declared for the type checker only)
    user: Any
    user_options: Any
    _log_name: str

    profile_list = Union(
        [List(Dict()), Dict(), Callable()],
        default_value=[],
        help="""
        Profiles offered on the spawn form and accepted by the REST API, in
        KubeSpawner's ``profile_list`` format (a list, a dict sorted by key, or a
        callable ``f(spawner)`` that may be async), extended with HPC field types.
        See ``docs/profiles.md``. A static list is validated when it is set, and at
        hub start with ``check_profiles(c)``; errors name the bad key. Override keys
        (``spawner_override``, ``kubespawner_override``) must be traits of this
        spawner. Empty: no form, the admin's settings apply.
        """,
    ).tag(config=True)

    partition_limits = Dict(
        help="""
        Limits per partition that win over what the scheduler reports, e.g.
        ``{"gpu": {"max_walltime": "04:00:00", "max_cpus": 16, "max_memory": "120G",
        "max_gpus": {"a100": 4}}}``; also ``default`` and ``up``. A partition named
        here need not exist in ``sinfo`` (sites where the hub cannot run ``sinfo``
        configure everything here).
        """,
    ).tag(config=True)

    profile_live_limits = Bool(
        True,
        help="""
        Ask the scheduler for partitions, node sizes and idle resources (``sinfo``;
        ``sacctmgr`` for accounts and QoS where accounting exists). One query per
        cluster per ``profile_limits_ttl`` serves all users.
        """,
    ).tag(config=True)

    profile_limits_ttl = Float(
        60.0,
        help="""Seconds live limits are reused before the scheduler is asked again.""",
    ).tag(config=True)

    profile_limits_timeout = Float(
        10.0,
        help="""
        Seconds a limits query may take. When the scheduler does not answer, the
        form and the API use the last known limits (or only the configured ones).
        """,
    ).tag(config=True)

    profile_availability_refresh = Float(
        60.0,
        help="""
        Seconds between refreshes of the availability table on the spawn form (by
        its script, from the discovery API). 0 turns the refresh off.
        """,
    ).tag(config=True)

    profile_api_rate_limit = Int(
        30,
        min=0,
        help="""
        Requests each caller (a user, or a service) may send to the discovery and dry-run
        API (``GET /hub/api/hpc/profiles``, ``POST .../validate`` and their ``users/<name>``
        forms) per ``profile_api_rate_window`` seconds, counted together in the hub process.
        Beyond it the answer is HTTP 429 with ``Retry-After``. 0 turns the limit off.
        """,
    ).tag(config=True)

    profile_api_rate_window = Float(
        10.0,
        min=0.0,
        help="""
        Seconds in which ``profile_api_rate_limit`` requests are allowed: a burst of that
        many passes at once, then one more every ``window / limit`` seconds. 0 turns the
        limit off.
        """,
    ).tag(config=True)

    profile_form_template_paths = List(
        Unicode(),
        help="""
        Directories searched, before the packaged one, for
        ``hpc_profiles_form.html.j2`` (a site's own form template; it receives
        the same view data, autoescaped).
        """,
    ).tag(config=True)

    # -- state of one start ---------------------------------------------------------------
    _profile_saved: dict[str, Any]
    profile_resolution: Resolution | None = None

    @validate("profile_list")
    def _validate_profile_list(self, proposal: Any) -> Any:
        value = proposal["value"]
        if not callable(value) and value:
            try:
                parse_profile_list(value, frozenset(self.trait_names()))
            except ProfileConfigError as exc:
                raise TraitError(f"{type(self).__name__}.{exc}") from None
        return value

    @validate("partition_limits")
    def _validate_partition_limits(self, proposal: Any) -> Any:
        for name, values in proposal["value"].items():
            try:
                configured_partition_fields(str(name), values)
            except (ValueError, TypeError) as exc:
                raise TraitError(f"partition_limits: {exc}") from None
        return proposal["value"]

    # -- the profiles, the user, the limits ---------------------------------------------
    async def load_profiles(self) -> ProfileList | None:
        """The validated profile list (a callable is called each time), or None without profiles."""
        raw: Any = self.profile_list
        if callable(raw):
            raw = raw(self)
            if isawaitable(raw):
                raw = await raw
        if not raw:
            return None
        cached = self.__dict__.get("_profile_parsed")
        if cached is not None and cached[0] is raw:
            return cached[1]  # type: ignore[no-any-return]
        try:
            parsed = parse_profile_list(raw, frozenset(self.trait_names()))
            self.__dict__["_profile_parsed"] = (raw, parsed)
            for text in ignored_key_warnings(parsed):
                warn_once(text, "profile_list: %s", text)
            return parsed
        except ProfileConfigError as exc:
            self.log.error("profile_list is invalid: %s", exc)
            raise web.HTTPError(500, f"the profile configuration is invalid: {exc}") from None

    def profile_base_job(self) -> dict[str, Any]:
        """The admin's job-request fields before any profile (none for non-batch spawners)."""
        return {}

    def _base_trait(self, name: str, fallback: Any = None) -> Any:
        """A trait's value as configured, even while a profile's override is applied."""
        saved = getattr(self, "_profile_saved", {})
        if name in saved:
            return saved[name]
        return getattr(self, name) if self.has_trait(name) else fallback

    async def profile_context(self, profiles: ProfileList) -> Context:
        groups = frozenset(g.name for g in getattr(self.user, "groups", []) or [])
        ctx = Context(
            user=self.user.name,
            groups=groups,
            base_job=self.profile_base_job(),
            base_backend=self._base_trait("backend"),
            base_cluster=str(self._base_trait("cluster", "") or ""),
        )
        targets = {t.key: t for t in (profile_target(p, ctx) for p in profiles.visible(ctx.user, groups))}
        wanted = [t for t in targets.values() if t.backend is not None]
        fetched = await asyncio.gather(*(self._fetch_limits(t) for t in wanted))
        limits = {t.key: f.with_config(self.partition_limits) for t, f in zip(wanted, fetched, strict=True)}
        clients = {t.key: c for t in wanted if (c := self._target_client(t)) is not None}
        caps, notes = await walltime_caps(self, clients)
        policy = str(getattr(self, "maintenance_walltime", "off")).lower()
        time_min = bool(getattr(self, "maintenance_time_min", False))
        if policy == "refuse" or (policy == "clip" and not time_min):
            limits = {k: capped_limits(v, caps.get(k)) for k, v in limits.items()}
        find_modules = getattr(self, "module_sources", None)  # the batch spawners' (ModuleOptions)
        return replace(
            ctx,
            modules=await find_modules(profiles, ctx) if find_modules is not None else {},
            limits=limits,
            walltime_caps=caps if policy != "off" else {},
            maintenance_policy=policy,
            maintenance_time_min=time_min,
            maintenance_notes=tuple(notes),
        )

    def _target_client(self, target: Target) -> SchedulerClient | None:
        """The scheduler client of a profile's target (None: not a spawner of this package)."""
        make_client = getattr(self, "scheduler_client", None)
        if make_client is None or target.backend is None:
            return None
        commands = {**(self._base_trait("scheduler_commands", {}) or {}), **target.commands}
        environment = {**(self._base_trait("scheduler_environment", {}) or {}), **target.environment}
        client: SchedulerClient = make_client(target.backend, target.cluster, commands, environment)
        return client

    async def _fetch_limits(self, target: Target) -> ClusterLimits:
        client = self._target_client(target) if self.profile_live_limits else None
        if client is None:  # no live limits, or no scheduler to ask
            return ClusterLimits()
        cache = get_limits_cache(client)
        return await cache.get(self.profile_limits_ttl, self.profile_limits_timeout)

    def stored_user_options(self) -> dict[str, Any]:
        orm = getattr(self, "orm_spawner", None)
        stored = orm.user_options if orm is not None else self.user_options
        return dict(stored or {})

    # -- remembered choices per profile ---------------------------------------------------------
    @property
    def profile_memory(self) -> dict[str, dict[str, Any]]:
        """The last valid choices per profile slug (only options with ``remember: true``)."""
        return self.__dict__.setdefault("_profile_memory", {})  # type: ignore[no-any-return]

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()  # type: ignore[misc]
        if self.profile_memory:
            state[STATE_KEY] = copy.deepcopy(self.profile_memory)
        saved = self.__dict__.get("_profile_saved", {})
        address = {n: copy.deepcopy(getattr(self, n)) for n in JOB_KEPT_TRAITS if n in saved}
        if address and state.get("job_id"):
            state[ADDRESS_KEY] = address
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)  # type: ignore[misc]
        stored = state.get(STATE_KEY)
        memory = self.profile_memory
        memory.clear()
        if isinstance(stored, dict):  # written by get_state(); anything else is ignored
            memory.update({str(k): dict(v) for k, v in stored.items() if isinstance(v, dict)})
        address = state.get(ADDRESS_KEY)
        if state.get("job_id") and isinstance(address, dict):
            # the job's scheduler, as its profile set it; clear_state() restores the configuration
            saved = self.__dict__.setdefault("_profile_saved", {})
            for name in JOB_KEPT_TRAITS:
                if name in address and self.has_trait(name):
                    original = copy.deepcopy(getattr(self, name))
                    try:
                        setattr(self, name, address[name])
                    except TraitError as exc:
                        self.log.warning("%s: ignoring the stored %s: %s", self._log_name, name, exc)
                        continue
                    saved.setdefault(name, original)

    def remembered_profiles(self) -> dict[str, dict[str, Any]]:
        """What pre-fills the form: this server's memory per profile, completed from the
        user's other servers (the most recently active first), so that a new named server
        starts from the user's last choices rather than from the defaults."""
        merged = {slug: dict(options) for slug, options in self.profile_memory.items()}
        orm_user = getattr(self.user, "orm_user", None)
        own = getattr(self, "orm_spawner", None)
        others = [s for s in dict(getattr(orm_user, "orm_spawners", None) or {}).values() if s is not own]
        others.sort(key=lambda s: s.last_activity.timestamp() if s.last_activity else 0.0, reverse=True)
        for orm in others:
            stored = (orm.state or {}).get(STATE_KEY)
            if isinstance(stored, dict):
                for slug, options in stored.items():
                    if isinstance(options, dict):
                        merged.setdefault(str(slug), dict(options))
        return merged

    def remember_choices(self, resolution: Resolution, profiles: ProfileList) -> None:
        """Keep this start's choices as its profile's memory (forgetting profiles that no
        longer exist) and write them to the hub database now: a start that fails still
        remembers what was asked."""
        memory = self.profile_memory
        memory[resolution.profile.slug] = remembered_choices(resolution)
        for slug in [s for s in memory if profiles.by_slug(s) is None]:
            del memory[slug]
        orm = getattr(self, "orm_spawner", None)
        if orm is None:
            return
        orm.state = {**(orm.state or {}), STATE_KEY: copy.deepcopy(memory)}
        session = object_session(orm)
        if session is not None:
            session.commit()

    # -- JupyterHub's hooks ---------------------------------------------------------------
    @default("options_form")
    def _default_options_form(self) -> Any:
        return _render_options_form

    @default("options_from_form")
    def _default_options_from_form(self) -> Any:
        return _options_from_form

    def options_from_query(self, query_data: Mapping[str, Sequence[Any]]) -> Any:
        """Spawn links: ``?opt-profile=gpu&opt-gpus=1`` or KubeSpawner's field names.

        JupyterHub 6 strips the ``opt-`` prefix; 5.x passes it on, so it is stripped here
        too and the same link works with both.
        """
        data = {str(k).removeprefix("opt-"): v for k, v in query_data.items()}
        if any(k.startswith("profile-option-") for k in data):
            return _options_from_form(data, self)
        return {k: (v[0] if isinstance(v, list | tuple) and v else v) for k, v in data.items()}

    @default("apply_user_options")
    def _default_apply_user_options(self) -> Any:
        return _apply_user_options

    def profile_prefill(
        self, profiles: ProfileList, ctx: Context
    ) -> tuple[Resolution | None, dict[str, Resolution], list[str]]:
        """The form's pre-fill: the selected profile with its choices (this server's last
        start, else the default profile), every other profile's remembered choices, and
        the notices on whatever fell back to a default."""
        stored = self.stored_user_options()
        try:
            prefill: Resolution | None
            prefill, notices = reconcile(profiles, stored, ctx)
        except RequestError as exc:
            prefill, notices = None, [f"The default choices are currently not valid: {exc}"]
        # a server's own last start wins over its memory; a server never started (a new named
        # server) shows the default profile with the user's last choices for it, if any
        skip = prefill.profile.slug if prefill is not None and stored else ""
        others, more = reconcile_each(profiles, self.remembered_profiles(), ctx, skip=skip)
        if prefill is not None and not stored and prefill.profile.slug in others:
            prefill = others.pop(prefill.profile.slug)
        return prefill, others, [*notices, *more]

    async def render_profiles_form(self) -> str:
        profiles = await self.load_profiles()
        if profiles is None:
            return ""
        ctx = await self.profile_context(profiles)
        prefill, others, notices = self.profile_prefill(profiles, ctx)
        hub = getattr(self, "hub", None)
        base = getattr(hub, "base_url", "/hub/") if hub is not None else "/hub/"
        return render_form(
            profiles,
            ctx,
            prefill,
            notices,
            remembered=others,
            template_paths=self.profile_form_template_paths,
            api_url=f"{base}{API_ROUTE}",
            refresh_seconds=self.profile_availability_refresh,
        )

    async def resolve_profile(
        self, user_options: Mapping[str, Any], *, remembered: bool
    ) -> Resolution | None:
        """Validate (or, for remembered options, reconcile) without changing the spawner."""
        profiles = await self.load_profiles()
        if profiles is None:
            return None
        return await self._resolve_in(profiles, user_options, remembered=remembered)

    async def _resolve_in(
        self, profiles: ProfileList, user_options: Mapping[str, Any], *, remembered: bool
    ) -> Resolution:
        ctx = await self.profile_context(profiles)
        try:
            if remembered:
                return reconcile(profiles, user_options, ctx)[0]
            return resolve(profiles, user_options, ctx)
        except RequestError as exc:
            raise ProfileOptionsError(exc.field, exc.reason) from None

    async def apply_profile(self, user_options: Mapping[str, Any]) -> Resolution | None:
        """Validate this start's options and apply the profile to the spawner."""
        remembered = not explicit_options(getattr(self, "handler", None))
        profiles = await self.load_profiles()  # once per start: a callable list is called once
        resolution = (
            None
            if profiles is None
            else await self._resolve_in(profiles, dict(user_options or {}), remembered=remembered)
        )
        self.undo_profile_overrides()
        self.profile_resolution = resolution
        if profiles is None or resolution is None:
            return None  # no profiles: the spawner's own handling of user_options applies
        for notice in resolution.notices:
            self.log.warning("%s: %s", self._log_name, notice)
        self.apply_profile_overrides(resolution.overrides)
        if resolution.time_min is not None and self.has_trait("job_extra_directives"):
            # maintenance_time_min: Slurm may shorten the walltime down to what fits
            kept = [d for d in getattr(self, "job_extra_directives", []) if not d.startswith("--time-min")]
            directive = f"--time-min={format_walltime(resolution.time_min)}"
            self.apply_profile_overrides([("job_extra_directives", [*kept, directive])])
        self.remember_choices(resolution, profiles)
        # what is stored (and pre-fills the next form) is the normalised, valid request
        self.user_options = dict(resolution.user_options)
        orm = getattr(self, "orm_spawner", None)
        if orm is not None:
            orm.user_options = dict(resolution.user_options)
        self.log.info(
            "%s: profile %s, options %s", self._log_name, resolution.profile.slug, resolution.user_options
        )
        return resolution

    def apply_profile_overrides(self, overrides: Sequence[tuple[str, Any]]) -> None:
        saved = self.__dict__.setdefault("_profile_saved", {})
        traits = self.traits()
        for name, value in overrides:
            if callable(value):
                value = value(self)
            if name not in saved:
                saved[name] = copy.deepcopy(getattr(self, name))
            value = _merge(getattr(self, name), value)
            try:
                setattr(self, name, value)
            except TraitError:
                if not isinstance(value, str) or name not in traits:
                    raise
                setattr(self, name, traits[name].from_string(value))

    def undo_profile_overrides(self) -> None:
        saved = self.__dict__.pop("_profile_saved", {})
        for name, value in saved.items():
            setattr(self, name, value)

    def clear_state(self) -> None:
        super().clear_state()  # type: ignore[misc]
        self.undo_profile_overrides()
        self.profile_resolution = None

    async def load_user_options(self) -> None:
        """KubeSpawner's own profile step, which its ``start`` calls: with ``profile_list``,
        the profiles were applied by :meth:`apply_profile` already, so it does nothing (the
        overrides must not be applied twice, nor by KubeSpawner's rules); without, it is the
        parent's, where there is one."""
        if self.profile_list:
            return
        parent = getattr(super(), "load_user_options", None)
        if parent is not None:
            result = parent()
            if isawaitable(result):
                await result

    async def start(self) -> Any:
        if self.profile_resolution is None and self.profile_list:
            # apply_user_options was replaced by the admin, or JupyterHub is older than 5.3
            await self.apply_profile(self.user_options or {})
        return await super().start()  # type: ignore[misc]

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        resolution = self.profile_resolution
        own = getattr(self, "emits_profile_notices", False)  # HPCSpawner: in its event list
        for notice in resolution.notices if resolution is not None and not own else []:
            yield {"message": notice}
        async for event in super().progress():  # type: ignore[misc]
            yield event

    # -- discovery and dry run ------------------------------------------------------------------
    async def profiles_document(self) -> dict[str, Any] | None:
        profiles = await self.load_profiles()
        if profiles is None:
            return None
        ctx = await self.profile_context(profiles)
        prefill, others, notices = self.profile_prefill(profiles, ctx)
        by_profile = {slug: res.user_options for slug, res in others.items()}
        stored = prefill.user_options if prefill is not None else None
        if prefill is not None:
            by_profile[prefill.profile.slug] = prefill.user_options
        return profiles_document(profiles, ctx, stored, notices, by_profile)


async def _render_options_form(spawner: ProfilesMixin) -> str:
    return await spawner.render_profiles_form()


async def _options_from_form(formdata: Mapping[str, Sequence[Any]], spawner: ProfilesMixin) -> dict[str, Any]:
    return options_from_formdata(formdata, await spawner.load_profiles())


async def _apply_user_options(spawner: ProfilesMixin, user_options: Mapping[str, Any]) -> None:
    await spawner.apply_profile(user_options)
