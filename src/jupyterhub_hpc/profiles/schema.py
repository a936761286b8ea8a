"""JSON Schema of the ``user_options`` a user may send, with bounds resolved against live limits.

One schema per visible profile (combined with ``oneOf``); dependent bounds that a
static schema cannot express are given as ``x-`` keywords: the per-partition
maximum of a numeric option (``x-partition-maximum``) and ``when`` conditions
(``x-when``). Clients can build a form from it, or check a request before
sending; the hub validates again either way.
"""

from __future__ import annotations

from typing import Any

from ..request import RequestError, format_walltime
from .context import Target
from .limits import ClusterLimits
from .model import CHOICE_TYPES, UNLISTED_SUFFIX, Option, Profile, ProfileList
from .modules import modules_schema
from .validate import (
    Context,
    effective_bounds,
    option_choices,
    profile_target,
    resolve,
    visible_options,
)

__all__ = ["profiles_document"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: the forms parse_memory_mib reads (ASCII digits, blanks are spaces and tabs only)
MEMORY_PATTERN = r"^[ \t]*[0-9]+(\.[0-9]+)?[ \t]*([KkMmGgTt]?([Ii]?[Bb])?)?[ \t]*$"
#: the forms parse_walltime_seconds reads: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, with
#: minutes and seconds below 60 and, after days, hours below 24
_MS = "[0-5]?[0-9]"
WALLTIME_PATTERN = (
    rf"^[ \t]*(?:[0-9]+(?::{_MS})?|[0-9]+:{_MS}:{_MS}"
    rf"|[0-9]+-(?:[01]?[0-9]|2[0-3])(?::{_MS}){{0,2}})[ \t]*$"
)


def _show(option: Option, number: int | None) -> Any:
    if number is None:
        return None
    if option.type == "memory":
        return f"{number}M"
    if option.type == "walltime":
        return format_walltime(number)
    return number


def option_schema(
    option: Option, ctx: Context, limits: ClusterLimits | None, partition: str | None, slug: str = ""
) -> dict[str, Any]:
    """The schema of one option's value (its write-in, if any, is a separate property)."""
    schema: dict[str, Any] = {"title": option.display_name, "x-type": option.type}
    if option.description:
        schema["description"] = option.description
    if option.target_field:
        schema["x-job-field"] = option.target_field
    if option.when:
        schema["x-when"] = {k: c.model_dump(by_alias=True, exclude_none=True) for k, c in option.when.items()}
    if option.type == "modules":
        return {**schema, **modules_schema(option, ctx.modules.get(slug))}
    if option.type in CHOICE_TYPES:
        choices = option_choices(option, ctx, limits)
        if choices is None:
            return {**schema, "type": "string", "pattern": f"^(?:{option.text_pattern()})$"}
        schema.update(type="string", enum=list(choices))
        schema["x-choices"] = {
            k: {"display_name": c.display_name or k, "description": c.description} for k, c in choices.items()
        }
        return schema
    if option.type in ("integer", "memory", "walltime"):
        part = limits.partition(partition) if limits is not None else None
        low, high = effective_bounds(option, part)
        if option.type == "integer":
            schema["type"] = "integer"
            if low is not None:
                schema["minimum"] = low
            if high is not None:
                schema["maximum"] = high
            if option.step > 1:
                schema["multipleOf"] = option.step
        else:
            schema["type"] = ["string", "integer"]
            schema["pattern"] = MEMORY_PATTERN if option.type == "memory" else WALLTIME_PATTERN
            unit = "mib" if option.type == "memory" else "seconds"
            if low is not None:
                schema[f"x-minimum-{unit}"] = low
            if high is not None:
                schema[f"x-maximum-{unit}"] = high
        if limits is not None and limits.partitions:
            per_partition = {
                name: _show(option, effective_bounds(option, p)[1]) for name, p in limits.partitions.items()
            }
            schema["x-partition-maximum"] = per_partition
        return schema
    return {**schema, "type": "string", "pattern": f"^(?:{option.text_pattern()})$"}


def profile_schema(
    profile: Profile, ctx: Context, limits: ClusterLimits | None, partition: str | None
) -> dict[str, Any]:
    properties: dict[str, Any] = {"profile": {"const": profile.slug}}
    for key, option in visible_options(profile, ctx).items():
        properties[key] = option_schema(option, ctx, limits, partition, profile.slug)
        write_in = option.unlisted_choice
        if option.type in CHOICE_TYPES and write_in.enabled and write_in.visible_to(ctx.user, ctx.groups):
            pattern = write_in.validation_regex or option.text_pattern()
            properties[f"{key}{UNLISTED_SUFFIX}"] = {
                "title": write_in.display_name or f"Other {key}",
                "type": "string",
                "pattern": f"^(?:{pattern})$",
            }
    return {
        "type": "object",
        "title": profile.display_name,
        "properties": properties,
        "required": ["profile"],
        "additionalProperties": False,
    }


def profile_heading(profile: Profile, default: Profile | None, target: Target) -> dict[str, Any]:
    """What every listing of a profile starts with: its slug, names, whether it is the site's
    ``default`` and where it submits (``target``: :func:`~.validate.profile_target`)."""
    return {
        "slug": profile.slug,
        "display_name": profile.display_name,
        "description": profile.description,
        "default": default is not None and profile.slug == default.slug,
        "backend": target.backend,
        "cluster": target.cluster,
    }


def profiles_document(
    profiles: ProfileList,
    ctx: Context,
    remembered: dict[str, Any] | None,
    notices: list[str],
    remembered_by_profile: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What ``GET /hub/api/hpc/profiles`` returns for the caller: the visible profiles with
    resolved limits and JSON Schemas, the last start's options (``remembered``), each
    profile's own last choices (``remembered_by_profile``) and notices on stale ones."""
    visible = profiles.visible(ctx.user, ctx.groups)
    default = ProfileList.default_of(visible)
    entries, schemas, limits_json = [], [], {}
    for profile in visible:
        target = profile_target(profile, ctx)
        limits = ctx.limits_for(target)
        if limits is not None:
            limits_json[target.key] = limits.to_json()
        problem = None
        try:
            defaults = resolve(profiles, {"profile": profile.slug}, ctx)
            partition = defaults.job.get("partition")
            defaults_json: dict[str, Any] | None = defaults.user_options
            job = defaults.job
        except RequestError as exc:
            problem, partition, defaults_json, job = f"{exc.field}: {exc.reason}", None, None, {}
        schema = profile_schema(profile, ctx, limits, partition)
        schemas.append(schema)
        entries.append(
            {
                **profile_heading(profile, default, target),
                "limits_key": target.key if limits is not None else None,
                "defaults": defaults_json,
                "default_job": job or None,
                "unavailable": problem,
                "schema": schema,
            }
        )
    return {
        "user": ctx.user,
        "profiles": entries,
        "schema": {"$schema": SCHEMA_DIALECT, "oneOf": schemas},
        "limits": limits_json,
        "remembered": remembered,
        "remembered_by_profile": remembered_by_profile or {},
        "notices": notices,
    }
