"""The spawn form: server-rendered from the profile model, and parsed back into ``user_options``.

Rendering uses Jinja2 with autoescaping on: display names and descriptions from
the configuration are text, never HTML. Field names follow KubeSpawner's wire
format (``profile``, ``profile-option-<slug>--<key>``,
``profile-option-<slug>--<key>--unlisted-choice``), so existing form templates
and spawn links keep working. The form works without JavaScript; the small
script next to the template adds dependent fields, per-partition bounds and a
refreshing availability table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib.resources import files
from typing import Any

import jinja2
from markupsafe import Markup

from ..request import RequestError
from .limits import ClusterLimits, PartitionInfo
from .model import CHOICE_TYPES, UNLISTED_KEY, UNLISTED_SUFFIX, Option, Profile, ProfileList
from .modules import modules_view
from .validate import (
    Context,
    Resolution,
    active,
    default_choice,
    effective_bounds,
    option_choices,
    profile_target,
    resolve,
    visible_options,
    wire_value,
)

__all__ = ["FIELD_PREFIX", "options_from_formdata", "render_form"]

FIELD_PREFIX = "profile-option-"
TEMPLATE = "hpc_profiles_form.html.j2"


@lru_cache(maxsize=8)
def _environment(paths: tuple[str, ...]) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(list(paths))] if paths else []
    loaders.append(jinja2.PackageLoader("jupyterhub_hpc.profiles", "templates"))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders), autoescape=True, undefined=jinja2.StrictUndefined
    )


@lru_cache(maxsize=4)
def static_text(name: str) -> str:
    """A file of ``profiles/static`` (the script and the style sheet, inlined into the form)."""
    return files("jupyterhub_hpc.profiles").joinpath("static").joinpath(name).read_text()


def field_name(slug: str, key: str) -> str:
    return f"{FIELD_PREFIX}{slug}--{key}"


def _number_text(option: Option, number: int | None) -> str:
    return "" if number is None else str(wire_value(option, number))


def _option_view(
    profile: Profile,
    key: str,
    option: Option,
    values: Mapping[str, Any],
    ctx: Context,
    limits: ClusterLimits | None,
    partition: PartitionInfo | None,
) -> dict[str, Any]:
    name = field_name(profile.slug, key)
    view: dict[str, Any] = {
        "key": key,
        "name": name,
        "id": f"hpc-{profile.slug}-{key}".replace(".", "_"),
        "label": option.display_name or key,
        "description": option.description,
        "type": option.type,
        "target": option.target_field,
        "value": values.get(key, ""),
        "choices": [],
        "unlisted": None,
        "when": {k: c.model_dump(by_alias=True, exclude_none=True) for k, c in option.when.items()},
        "when_text": " and ".join(
            c.describe(profile.profile_options[k].display_name or k) for k, c in option.when.items()
        ),
        "hint": "",
        "placeholder": option.placeholder,
        "pattern": "",
    }
    if option.type == "modules":
        return {**view, **modules_view(option, values, key, ctx.modules.get(profile.slug))}
    if option.type in CHOICE_TYPES:
        choices = option_choices(option, ctx, limits)
        if choices is None:
            view["kind"] = "text"
            view["pattern"] = option.text_pattern()
            view["hint"] = (
                "Leave empty for the scheduler's default." if option.type in ("account", "qos") else ""
            )
            return view
        view["kind"] = "select"
        write_in = option.unlisted_choice
        written = values.get(f"{key}{UNLISTED_SUFFIX}")
        selected = UNLISTED_KEY if written is not None else values.get(key) or default_choice(choices)
        if option.type in ("account", "qos") and not option.choices:
            view["choices"].append(
                {"key": "", "label": "(scheduler default)", "selected": not values.get(key)}
            )
        for ckey, choice in choices.items():
            view["choices"].append(
                {
                    "key": ckey,
                    "label": choice.display_name or ckey,
                    "description": choice.description,
                    "selected": ckey == selected,
                }
            )
        if write_in.enabled and write_in.visible_to(ctx.user, ctx.groups):
            view["choices"].append(
                {
                    "key": UNLISTED_KEY,
                    "label": write_in.display_name_in_choices,
                    "description": write_in.description_in_choices,
                    "selected": selected == UNLISTED_KEY,
                }
            )
            view["unlisted"] = {
                "name": f"{name}{UNLISTED_SUFFIX}",
                "id": f"{view['id']}-unlisted",
                "label": write_in.display_name or f"Other {view['label'].lower()}",
                "value": written or "",
                "pattern": write_in.validation_regex or option.text_pattern(),
                "title": write_in.validation_message,
                "selected": selected == UNLISTED_KEY,
            }
        return view
    if option.type in ("integer", "memory", "walltime"):
        gpu_type = values.get("gpu_type") if isinstance(values.get("gpu_type"), str) else None
        low, high = effective_bounds(option, partition, gpu_type)
        view["kind"] = "number" if option.type == "integer" else "text"
        view["min"], view["max"], view["step"] = low, high, option.step
        view["static_min"], view["static_max"] = option.bound("min"), option.bound("max")
        view["min_text"], view["max_text"] = _number_text(option, low), _number_text(option, high)
        view["pattern"] = {
            "memory": r"\s*\d+(\.\d+)?\s*([KkMmGgTt](i?[Bb])?)?\s*",
            "walltime": r"\s*(\d+-)?\d+(:\d{1,2}){0,2}\s*",
        }.get(option.type, "")
        low_text, high_text = view["min_text"], view["max_text"]
        if low_text and high_text:
            bound = f"{low_text} to {high_text}"
        else:
            bound = f"up to {high_text}" if high_text else (f"at least {low_text}" if low_text else "")
        binding = partition is not None and high is not None and high != option.bound("max")
        view["hint"] = bound + (f" on partition {partition.name}" if binding and partition else "")
        if option.type == "walltime":
            view["hint"] += (" · " if view["hint"] else "") + "HH:MM:SS, D-HH:MM:SS or minutes"
        elif option.type == "memory":
            view["hint"] += (" · " if view["hint"] else "") + "e.g. 512M, 4G"
        return view
    view["kind"] = "text"
    view["pattern"] = option.text_pattern()
    view["placeholder"] = option.placeholder
    return view


def _profile_view(
    profiles: ProfileList, profile: Profile, ctx: Context, prefill: Resolution | None, selected: bool
) -> dict[str, Any]:
    """One profile's part of the form, its fields pre-filled from *prefill* (this profile's
    remembered choices) or else from its defaults."""
    target = profile_target(profile, ctx)
    limits = ctx.limits_for(target)
    problem = ""
    if prefill is not None and prefill.profile.slug == profile.slug:
        resolved: Resolution | None = prefill
    else:
        try:
            resolved = resolve(profiles, {"profile": profile.slug}, ctx)
        except RequestError as exc:
            resolved, problem = None, f"{exc.field}: {exc.reason}"
    values = resolved.user_options if resolved else {}
    job = resolved.job if resolved else dict(ctx.base_job)
    partition = limits.partition(job.get("partition")) if limits is not None else None
    options = [
        _option_view(profile, k, o, values, ctx, limits, partition)
        for k, o in visible_options(profile, ctx).items()
    ]
    return {
        "slug": profile.slug,
        "id": f"hpc-profile-{profile.slug}".replace(".", "_"),
        "display_name": profile.display_name,
        "description": profile.description,
        "selected": selected,
        "options": options,
        "problem": problem,
        "target": target.key,
        "partition": partition.name if partition is not None else (job.get("partition") or ""),
    }


def _table(ctx: Context, profiles: Sequence[Profile]) -> list[dict[str, Any]]:
    """The availability tables: one per scheduler the visible profiles submit to."""
    tables, seen = [], set()
    for profile in profiles:
        target = profile_target(profile, ctx)
        limits = ctx.limits_for(target)
        if limits is None or target.key in seen or not limits.partitions:
            continue
        seen.add(target.key)
        tables.append({"target": target.key, "cluster": target.cluster, "limits": limits.to_json()})
    return tables


def render_form(
    profiles: ProfileList,
    ctx: Context,
    prefill: Resolution | None,
    notices: Sequence[str],
    *,
    template_paths: Sequence[str] = (),
    api_url: str = "",
    refresh_seconds: float = 0,
    remembered: Mapping[str, Resolution] | None = None,
) -> str:
    """The HTML of the options form (to be placed inside JupyterHub's spawn form).

    *prefill* is the selected profile with its choices (the last start's); *remembered*
    holds the other profiles' own last choices by slug (each pre-fills its fields).
    """
    visible = profiles.visible(ctx.user, ctx.groups)
    chosen = (
        prefill.profile.slug if prefill is not None else getattr(ProfileList.default_of(visible), "slug", "")
    )
    by_slug = {**(remembered or {})}
    if prefill is not None:
        by_slug[prefill.profile.slug] = prefill
    views = [_profile_view(profiles, p, ctx, by_slug.get(p.slug), p.slug == chosen) for p in visible]
    data = {
        "profiles": {
            v["slug"]: {
                "partition": v["partition"],
                "target": v["target"],
                "options": {
                    o["key"]: {
                        "type": o["type"],
                        "target": o["target"],
                        "when": o["when"],
                        "min": o.get("static_min"),
                        "max": o.get("static_max"),
                    }
                    for o in v["options"]
                },
            }
            for v in views
        },
        "limits": {t["target"]: t["limits"] for t in _table(ctx, visible)},
        "api_url": api_url,
        "refresh_seconds": refresh_seconds,
    }
    template = _environment(tuple(template_paths)).get_template(TEMPLATE)
    return template.render(
        profiles=views,
        single=len(views) == 1,
        notices=list(notices),
        maintenance=[dict(m) for m in ctx.maintenance_notes],
        tables=_table(ctx, visible),
        data_json=Markup(json.dumps(data).replace("<", "\\u003c")),
        script=Markup(static_text("profiles.js").replace("</", "<\\/")),
        modules_script=Markup(static_text("modules.js").replace("</", "<\\/"))
        if any(o["type"] == "modules" for v in views for o in v["options"])
        else "",
        style=Markup(static_text("profiles.css").replace("</", "<\\/")),
    )


def _typed(option: Option, raw: Any) -> Any:
    if option.type in ("integer", "memory", "walltime"):
        try:
            return option.parse_number(raw)
        except ValueError:
            return None
    return raw


def options_from_formdata(
    formdata: Mapping[str, Sequence[Any]], profiles: ProfileList | None
) -> dict[str, Any]:
    """Form fields -> flat ``user_options`` (KubeSpawner's format).

    Only the fields of the selected profile count; a write-in counts only when its
    list says "other"; empty fields are left out (the default applies); fields of
    options whose ``when`` does not hold are dropped (without JavaScript the browser
    posts them all). A ``modules`` option is the list of every value posted (its hidden
    empty field says "none" when nothing is selected). Everything else is left for
    validation to judge.
    """

    def first(name: str) -> Any:
        values = formdata.get(name) or [None]
        value = values[0]
        return value.decode() if isinstance(value, bytes) else value

    slug = first("profile")
    options: dict[str, Any] = {"profile": slug} if slug else {}
    if slug is None and profiles is not None:
        default = ProfileList.default_of(profiles.profiles)
        slug = default.slug if default else None
    prefix = f"{FIELD_PREFIX}{slug}--"
    for name in formdata:
        if name.startswith(prefix):
            value = first(name)
            if value not in (None, ""):
                options[name[len(prefix) :]] = value
    for key in [k for k in options if k.endswith(UNLISTED_SUFFIX)]:
        base = key[: -len(UNLISTED_SUFFIX)]
        if options.get(base) == UNLISTED_KEY:
            del options[base]
        elif base in options:
            del options[key]
    profile = profiles.by_slug(slug) if profiles is not None and slug else None
    for key in [k for k, o in profile.profile_options.items() if o.type == "modules"] if profile else []:
        posted = formdata.get(f"{prefix}{key}")  # the form's hidden "" then one value per selected module
        if posted is not None:
            texts = [v.decode() if isinstance(v, bytes) else v for v in posted]
            options[key] = [v for v in texts if v not in (None, "")]
    if profile is not None:
        values: dict[str, Any] = {}
        for key, option in profile.profile_options.items():
            if not active(option, values):
                options.pop(key, None)
                options.pop(f"{key}{UNLISTED_SUFFIX}", None)
            elif key in options:
                values[key] = _typed(option, options[key])
            elif option.default is not None:
                values[key] = _typed(option, option.default)
    return options
