"""Batch kernels within the site's profiles: what the Lab's "New batch kernel…" dialog may choose.

A batch kernel (:mod:`jupyterhub_hpc.kernels`) asks for a few fields of the job request
(:data:`KERNEL_FIELDS`). Inside a hub with profiles, the user's server asks its hub
(``/hub/api/hpc/kernel-request/<user>/<server>``, :mod:`jupyterhub_hpc.handlers`) which of them a
profile lets the user choose, and has a request checked by the spawner's own validation:

* :func:`kernel_profiles`: per visible profile, each field either ``fixed`` (the profile or the
  admin set it), or chosen through one of the profile's options (its ``choices``, or its
  ``min``/``max`` after live limits, and its ``default``);
* :func:`kernel_user_options`: the dialog's resources as the profile's ``user_options`` (each
  field onto the option whose ``job_field`` it is); a field the profile neither offers nor fixes
  to that very value is refused (:class:`KernelRequestError`), as is a profile the user cannot see;
* :func:`kernel_resources`: the resolved job's fields, in the forms
  :func:`jupyterhub_hpc.kernels.spec.kernelspec` takes (memory ``"4G"``, walltime ``HH:MM:SS``).

The validation itself is :func:`~.validate.resolve` (through the spawner's ``resolve_profile``),
the same as a server start's: a cpus over the option's max is refused with the profile's message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..request import (
    RequestError,
    parse_memory_mib,
    parse_walltime_seconds,
    parse_whole_number,
    walltime_text,
)
from .model import CHOICE_TYPES, UNLISTED_KEY, UNLISTED_SUFFIX, Option, Profile, ProfileList
from .schema import profile_heading
from .validate import (
    Context,
    Resolution,
    choose_profile,
    effective_bounds,
    option_choices,
    profile_target,
    resolve,
    visible_options,
)

__all__ = [
    "KERNEL_FIELDS",
    "KernelRequestError",
    "kernel_profiles",
    "kernel_resources",
    "kernel_user_options",
]

#: the job request fields the dialog may choose
KERNEL_FIELDS = ("partition", "cpus", "memory", "walltime", "gpus")
#: fields a kernel job takes from its profile as they are (never chosen in the dialog)
CARRIED_FIELDS = ("account", "qos", "reservation", "constraint", "gpu_type")
NUMERIC_TYPES = frozenset({"integer", "memory", "walltime"})


class KernelRequestError(ValueError):
    """A kernel request outside the profile; ``field`` is the resource (or ``profile``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def show(field: str, value: Any) -> Any:
    """A job value as the dialog shows it and the kernelspec takes it."""
    if value is None:
        return None
    if field == "memory":
        mib = int(value)
        return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"
    if field == "walltime":
        return walltime_text(int(value))
    return value


def _normal(field: str, value: Any) -> Any:
    """A dialog value in the job request's units (MiB, seconds), for comparing with a fixed one."""
    if field == "memory":
        return parse_memory_mib(value)
    if field == "walltime":
        return parse_walltime_seconds(value)
    if field in ("cpus", "gpus"):
        return parse_whole_number(value)
    return str(value).strip()


def field_options(profile: Profile, ctx: Context) -> dict[str, tuple[str, Option]]:
    """The visible options of ``profile`` that set a kernel field: field → (option key, option)."""
    found: dict[str, tuple[str, Option]] = {}
    for key, option in visible_options(profile, ctx).items():
        target = option.target_field
        if target in KERNEL_FIELDS and target not in found:
            found[target] = (key, option)
    return found


def _field_entry(
    field: str, key: str, option: Option, profile: Profile, ctx: Context, job: Mapping[str, Any]
) -> dict[str, Any]:
    limits = ctx.limits_for(profile_target(profile, ctx))
    entry: dict[str, Any] = {"option": key, "default": show(field, job.get(field))}
    if option.description:
        entry["description"] = option.description
    if option.type in CHOICE_TYPES:
        choices = option_choices(option, ctx, limits)
        if choices is not None:
            entry["choices"] = list(choices)
        write_in = option.unlisted_choice
        if choices is None or (write_in.enabled and write_in.visible_to(ctx.user, ctx.groups)):
            entry["free"] = True
    elif option.type in NUMERIC_TYPES:
        partition = job.get("partition")
        part = limits.partition(partition) if limits is not None and partition else None
        low, high = effective_bounds(option, part)
        entry["min"], entry["max"] = show(field, low), show(field, high)
    else:
        entry["free"] = True
    return entry


def kernel_profiles(profiles: ProfileList, ctx: Context) -> list[dict[str, Any]]:
    """The visible profiles as the dialog needs them: ``slug``, ``display_name``,
    ``description``, ``default``, ``backend``, ``cluster``, ``unavailable`` (why the profile's
    defaults are not valid now, else None) and ``fields``: per kernel field either
    ``{"fixed": value}`` or ``{"option", "default", "choices" | "min"/"max" | "free"}``; a field
    the profile leaves to the scheduler and does not offer is left out."""
    visible = profiles.visible(ctx.user, ctx.groups)
    default = ProfileList.default_of(visible)
    entries = []
    for profile in visible:
        target = profile_target(profile, ctx)
        try:
            job: Mapping[str, Any] = resolve(profiles, {"profile": profile.slug}, ctx).job
            problem = None
        except RequestError as exc:
            job, problem = {}, f"{exc.field}: {exc.reason}"
        offered = field_options(profile, ctx)
        fields: dict[str, Any] = {}
        for name in KERNEL_FIELDS:
            if name in offered:
                fields[name] = _field_entry(name, *offered[name], profile, ctx, job)
            elif job.get(name) is not None:
                fields[name] = {"fixed": show(name, job[name])}
        entries.append(
            {
                **profile_heading(profile, default, target),
                "unavailable": problem,
                "fields": fields,
            }
        )
    return entries


def kernel_user_options(
    profiles: ProfileList, ctx: Context, slug: str | None, resources: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``user_options`` of a start of profile ``slug`` (None: the default profile) with
    ``resources``; :class:`KernelRequestError` for a profile the user cannot see, a field that is
    not a kernel field, or one the profile neither offers nor fixes to that value. Values are
    passed on as given: :func:`~.validate.resolve` checks them (bounds, choices, limits)."""
    try:
        profile = choose_profile(profiles, slug, ctx)
    except RequestError as exc:
        raise KernelRequestError("profile", exc.reason) from None
    offered = field_options(profile, ctx)
    user_options: dict[str, Any] = {"profile": profile.slug}
    fixed: Mapping[str, Any] | None = None
    for name, value in resources.items():
        if name not in KERNEL_FIELDS:
            raise KernelRequestError(name, "not a field of a batch kernel")
        if value is None or value == "":
            continue
        if name in offered:
            key, option = offered[name]
            choices = option_choices(option, ctx, ctx.limits_for(profile_target(profile, ctx)))
            if option.type in CHOICE_TYPES and choices is not None and str(value) not in choices:
                if option.unlisted_choice.enabled:  # a write-in; resolve checks its pattern and visibility
                    user_options[key] = UNLISTED_KEY
                    user_options[f"{key}{UNLISTED_SUFFIX}"] = str(value)
                    continue
            user_options[key] = str(value) if option.type in CHOICE_TYPES else value
            continue
        if fixed is None:
            try:
                fixed = resolve(profiles, {"profile": profile.slug}, ctx).job
            except RequestError:
                fixed = {}
        try:
            same = fixed.get(name) is not None and _normal(name, value) == fixed[name]
        except (ValueError, TypeError):
            same = False
        if not same:
            kept = fixed.get(name)
            what = f" (it is {show(name, kept)})" if kept is not None else ""
            raise KernelRequestError(name, f"profile {profile.slug} does not let you choose {name}{what}")
    return user_options


def kernel_resources(resolution: Resolution) -> dict[str, Any]:
    """The resolved job's kernel fields (and the account, QoS, ... the profile set), in the forms
    :func:`~jupyterhub_hpc.kernels.spec.kernelspec` takes; fields left to the scheduler are left out."""
    job = resolution.job
    return {
        name: show(name, job[name]) for name in (*KERNEL_FIELDS, *CARRIED_FIELDS) if job.get(name) is not None
    }
