"""The one validation path: ``user_options`` -> (profile, job request fields, trait overrides).

The HTML form, GET spawn links, the REST API, admin starts and the dry-run
endpoint all end in :func:`resolve`. It is pure: the caller passes the user, the
admin's base values and the scheduler limits it fetched. The first problem raises
:class:`~jupyterhub_hpc.request.RequestError` with the field (the ``user_options``
key) and the reason. :func:`reconcile` is the lenient variant for *remembered*
options: what no longer exists falls back to the default, with a notice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..backends.reservations import WalltimeCap
from ..modules import ServerModules
from ..request import JobRequest, RequestError, Seconds, shown, walltime_text
from .context import Context, Resolution, Target
from .limits import ClusterLimits, PartitionInfo
from .model import (
    CHOICE_TYPES,
    JOB_FIELDS,
    UNLISTED_KEY,
    UNLISTED_SUFFIX,
    Choice,
    Option,
    Profile,
    ProfileList,
)
from .modules import parse_modules

__all__ = [
    "Context",
    "Resolution",
    "Target",
    "effective_bounds",
    "option_choices",
    "reconcile",
    "reconcile_each",
    "remembered_choices",
    "resolve",
    "wire_value",
]


def wire_value(option: Option, number: int) -> str | int:
    """The canonical ``user_options`` form of a typed number (``"4G"``, ``"01:30:00"``, ``4``):
    exact, so that the same options sent again make the same job (a walltime keeps its
    seconds, ``"01:30:30"``)."""
    if option.type == "memory":
        return f"{number // 1024}G" if number % 1024 == 0 else f"{number}M"
    if option.type == "walltime":
        return walltime_text(number)
    return number


_FIELD_RE = re.compile(r"\{\{|\}\}|\{value\}")


def format_value(template: str, text: str) -> str:
    """``template`` formatted as KubeSpawner formats a write-in's override (``str.format`` with
    only ``value`` known): ``{value}`` becomes ``text``, ``{{`` and ``}}`` become ``{`` and ``}``,
    and every other field (``${JUPYTER_USER}``) is left as it is. ``text`` is never formatted.

    >>> format_value("${{JUPYTER_USER}} ${HOME} {value}:{{x}}", "img")
    '${JUPYTER_USER} ${HOME} img:{x}'
    """

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        return text if token == "{value}" else token[0]

    return _FIELD_RE.sub(one, template)


def _substitute(value: Any, text: str) -> Any:
    """:func:`format_value` on every string, through lists and dicts (their keys too)."""
    if isinstance(value, str):
        return format_value(value, text)
    if isinstance(value, list):
        return [_substitute(v, text) for v in value]
    if isinstance(value, dict):
        return {_substitute(k, text): _substitute(v, text) for k, v in value.items()}
    return value


def visible_options(profile: Profile, ctx: Context) -> dict[str, Option]:
    return {k: o for k, o in profile.profile_options.items() if o.visible_to(ctx.user, ctx.groups)}


def profile_target(profile: Profile, ctx: Context) -> Target:
    """Where a profile submits to (its ``backend``/``cluster``, else the admin's)."""
    overrides = profile.all_overrides
    backend = overrides.get("backend", ctx.base_backend)
    cluster = overrides.get("cluster", ctx.base_cluster)
    commands = overrides.get("scheduler_commands")
    environment = overrides.get("scheduler_environment")
    return Target(
        str(backend) if backend is not None else None,
        str(cluster or ""),
        dict(commands) if isinstance(commands, Mapping) else {},
        dict(environment) if isinstance(environment, Mapping) else {},
    )


def option_choices(option: Option, ctx: Context, limits: ClusterLimits | None) -> dict[str, Choice] | None:
    """The visible choices of a choice-like option; None means "free text" (nothing to list)."""
    if option.choices:
        return {k: c for k, c in option.choices.items() if c.visible_to(ctx.user, ctx.groups)}
    if option.type == "partition" and limits is not None and limits.partitions:
        base = ctx.base_job.get("partition") or limits.default_partition()
        return {n: Choice(display_name=n, default=n == base) for n, p in limits.partitions.items() if p.up}
    if option.type in ("account", "qos") and limits is not None:
        assoc = limits.for_user(ctx.user)
        if assoc is not None:
            names = assoc.accounts if option.type == "account" else assoc.qos
            return {n: Choice(display_name=n) for n in names}
    if option.type in ("choice", "environment"):
        return {}
    return None


def default_choice(choices: Mapping[str, Choice]) -> str | None:
    return next((k for k, c in choices.items() if c.default), next(iter(choices), None))


def effective_bounds(
    option: Option, partition: PartitionInfo | None, gpu_type: str | None = None
) -> tuple[int | None, int | None]:
    """(min, max) of a numeric option: its own bounds, capped by the partition's limits."""
    low, high = option.bound("min"), option.bound("max")
    cap: int | None = None
    if partition is not None:
        target = option.target_field
        if target == "walltime":
            cap = partition.max_walltime
        elif target == "cpus":
            cap = partition.cpus_per_node or None
        elif target == "memory":
            cap = partition.memory_per_node or None
        elif target == "gpus":
            cap = partition.max_gpus(gpu_type)
        elif target == "nodes":
            cap = partition.nodes or None
    if cap is not None:
        high = cap if high is None else min(high, cap)
    return low, high


@dataclass
class _Parsed:
    wire: dict[str, Any]
    value: Any
    overrides: dict[str, Any]


def _parse_choice(
    key: str, option: Option, raw: Any, unlisted: Any, choices: dict[str, Choice], write_in_ok: bool
) -> _Parsed:
    write_in_key = f"{key}{UNLISTED_SUFFIX}"
    if unlisted is not None or raw == UNLISTED_KEY:
        if raw not in (None, "", UNLISTED_KEY):
            raise RequestError(key, f"give either a listed choice or {write_in_key}, not both")
        if not write_in_ok:
            raise RequestError(write_in_key, "this option takes one of its listed choices only")
        if unlisted is not None and not isinstance(unlisted, str):
            raise RequestError(write_in_key, f"must be text (got {shown(unlisted)})")
        text = (unlisted or "").strip(" \t")  # ASCII blanks only: str.strip() would hide U+2028 and the like
        if not text:
            raise RequestError(write_in_key, "the custom value is empty")
        write_in = option.unlisted_choice
        problem = option.check_text(text, write_in.validation_regex)
        if problem is not None:
            raise RequestError(write_in_key, write_in.validation_message or f"{shown(text)} {problem}")
        return _Parsed({write_in_key: text}, text, _substitute(write_in.overrides, text))
    if raw in (None, ""):
        wanted = option.default if isinstance(option.default, str) and option.default in choices else None
        raw = wanted or default_choice(choices)
        if raw is None:
            raise RequestError(key, "a value is required (no default choice is available to you)")
    if not isinstance(raw, str) or raw not in choices:
        listed = ", ".join(choices) or "none"
        raise RequestError(key, f"{raw!r} is not one of the choices available to you ({listed})")
    return _Parsed({key: raw}, raw, {**_substitute(option.overrides, raw), **choices[raw].overrides})


def _parse_name(key: str, option: Option, raw: Any) -> _Parsed | None:
    """Free text (a scheduler name nobody listed, a reservation, a text option)."""
    if raw is None or raw == "":
        raw = option.default
        if raw is None or raw == "":
            return None
    if not isinstance(raw, str):
        raise RequestError(key, f"must be text (got {shown(raw)})")
    problem = option.check_text(raw)
    if problem is not None:
        raise RequestError(key, f"{shown(raw)} {problem}")
    return _Parsed({key: raw}, raw, _substitute(option.overrides, raw))


def _default_number(key: str, option: Option, job: Mapping[str, Any], limits: ClusterLimits | None) -> int:
    """What a number option holds when the user gave nothing: its own ``default``, else
    the job's value so far (a profile's override wins over the admin's setting), else its
    minimum; brought into the option's range as the form shows it (its own bounds, capped
    by the partition's limits, on its steps): a 6 h partition starts at 06:00:00 when the
    admin's walltime is 8 h, GPUs 1-2 start at 1 when the admin has 0."""
    if option.default is not None:
        raw: Any = option.default
    elif option.target_field and job.get(option.target_field) is not None:
        raw = job[option.target_field]
    else:
        raw = option.bound("min") or 0
    try:
        number = option.parse_number(raw)
    except ValueError as exc:
        raise RequestError(key, str(exc)) from None
    partition = limits.partition(job.get("partition")) if limits is not None else None
    gpu_type = job.get("gpu_type") if isinstance(job.get("gpu_type"), str) else None
    low, high = effective_bounds(option, partition, gpu_type)
    if high is not None and number > high:
        number = high
        if option.type == "integer":
            number -= (number - (low or 0)) % option.step  # the highest step within the range
    if low is not None and number < low:
        number = low
    return Seconds(number) if option.type == "walltime" else number


def _parse_number(
    key: str, option: Option, raw: Any, job: Mapping[str, Any], limits: ClusterLimits | None
) -> _Parsed:
    low, high = option.bound("min"), option.bound("max")
    if raw is None or raw == "":
        number = _default_number(key, option, job, limits)
    else:
        try:
            number = option.parse_number(raw)
        except ValueError as exc:
            raise RequestError(key, str(exc)) from None
    if low is not None and number < low:
        raise RequestError(
            key, f"must be at least {wire_value(option, low)} (got {wire_value(option, number)})"
        )
    if high is not None and number > high:
        raise RequestError(
            key, f"must be at most {wire_value(option, high)} (got {wire_value(option, number)})"
        )
    if option.type == "integer" and (number - (low or 0)) % option.step:
        raise RequestError(key, f"must be in steps of {option.step} from {low or 0}")
    wire = wire_value(option, number)
    return _Parsed({key: wire}, number, _substitute(option.overrides, str(wire)))


def parse_option(
    key: str,
    option: Option,
    options: Mapping[str, Any],
    ctx: Context,
    limits: ClusterLimits | None,
    job: Mapping[str, Any],
    slug: str = "",
) -> _Parsed | None:
    """One option's validated value (None: not set and no default). ``job`` is the job
    request as resolved so far (the admin's values, the profile's overrides, the options
    before this one): a number option without its own default starts from it. ``slug``:
    the profile's (a ``modules`` option's catalogue is the profile's cluster's)."""
    raw = options.get(key)
    unlisted = options.get(f"{key}{UNLISTED_SUFFIX}")
    if option.type == "modules" and unlisted is None:
        wire, _, chosen = parse_modules(key, option, raw, ctx.modules.get(slug))
        return _Parsed(wire, chosen, {**option.overrides})  # resolve() keeps ``chosen`` apart
    if option.type in CHOICE_TYPES:
        choices = option_choices(option, ctx, limits)
        if choices is None:
            if unlisted is not None:
                raise RequestError(f"{key}{UNLISTED_SUFFIX}", f"give the value as {key}")
            return _parse_name(key, option, raw)
        if (
            option.type in ("account", "qos")
            and not option.choices
            and raw in (None, "")
            and unlisted is None
        ):
            return None  # the scheduler's default account / QoS
        write_in_ok = option.unlisted_choice.enabled and option.unlisted_choice.visible_to(
            ctx.user, ctx.groups
        )
        return _parse_choice(key, option, raw, unlisted, choices, write_in_ok)
    if unlisted is not None:
        raise RequestError(f"{key}{UNLISTED_SUFFIX}", "this option has no write-in")
    if option.type in ("integer", "memory", "walltime"):
        return _parse_number(key, option, raw, job, limits)
    return _parse_name(key, option, raw)


def active(option: Option, values: Mapping[str, Any]) -> bool:
    """An option's ``when`` conditions hold on the values of the options before it."""
    return all(key in values and cond.holds(values[key]) for key, cond in option.when.items())


def choose_profile(profiles: ProfileList, slug: Any, ctx: Context) -> Profile:
    visible = profiles.visible(ctx.user, ctx.groups)
    if not visible:
        raise RequestError("profile", "no profile is available to you")
    if slug in (None, ""):
        chosen = ProfileList.default_of(visible)
        assert chosen is not None
        return chosen
    found = next((p for p in visible if p.slug == slug), None)
    if found is None:
        names = ", ".join(p.slug for p in visible)
        raise RequestError("profile", f"no profile {slug!r} is available to you (available: {names})")
    return found


def resolve(profiles: ProfileList, user_options: Mapping[str, Any], ctx: Context) -> Resolution:
    """Validate ``user_options`` strictly; raise :class:`RequestError` naming the field."""
    if not isinstance(user_options, Mapping):
        raise RequestError("user_options", "must be an object")
    profile = choose_profile(profiles, user_options.get("profile"), ctx)
    options = visible_options(profile, ctx)
    allowed = {"profile", *options}
    allowed |= {f"{k}{UNLISTED_SUFFIX}" for k, o in options.items() if o.type in CHOICE_TYPES}
    for key in user_options:
        if key not in allowed:
            raise RequestError(str(key), f"unknown option for profile {profile.slug!r}")
    target = profile_target(profile, ctx)
    limits = ctx.limits_for(target)

    job = dict(ctx.base_job)
    source: dict[str, str] = {}
    overrides: list[tuple[str, Any]] = []

    def override(items: Mapping[str, Any], origin: str) -> None:
        for name, value in items.items():
            overrides.append((name, value))
            if name in JOB_FIELDS:
                job[name] = value
                source[name] = origin

    override(profile.all_overrides, "profile")
    wire: dict[str, Any] = {"profile": profile.slug}
    values: dict[str, Any] = {}
    server_modules: ServerModules | None = None
    for key, option in options.items():
        if not active(option, values):
            for given in (key, f"{key}{UNLISTED_SUFFIX}"):
                if user_options.get(given) not in (None, ""):
                    conditions = " and ".join(c.describe(k) for k, c in option.when.items())
                    raise RequestError(given, f"only applies when {conditions}")
            continue
        parsed = parse_option(key, option, user_options, ctx, limits, job, profile.slug)
        if parsed is None:
            continue
        if isinstance(parsed.value, ServerModules):
            server_modules, parsed.value = parsed.value, ",".join(parsed.value.modules)
        wire.update(parsed.wire)
        values[key] = parsed.value
        override(parsed.overrides, key)
        if option.target_field:
            value = parsed.value
            if option.type == "walltime":
                value = Seconds(value)  # seconds, not minutes, to JobRequest
            job[option.target_field] = value if value != "" else None
            source[option.target_field] = key
    resolution = Resolution(profile, wire, overrides, job, target.backend, target.cluster)
    resolution.server_modules = server_modules
    if ctx.base_job or any(f in JOB_FIELDS for f in job):
        _check_job(resolution, source, limits, ctx, ctx.walltime_caps.get(target.key, {}))
    return resolution


def _fit_maintenance(res: Resolution, source: dict[str, str], cap: WalltimeCap, ctx: Context) -> None:
    """A walltime crossing the partition's next maintenance: refused, or clipped (the request,
    the stored options and a notice), or kept with ``--time-min`` (``maintenance_walltime``)."""
    request = res.job_request()
    asked = walltime_text(request.walltime)
    fits = walltime_text(cap.seconds)
    # refused only when the user chose the walltime (a default is within the cap already;
    # a walltime the admin or the profile fixed is clipped: the user could not ask for less)
    if ctx.maintenance_policy == "refuse" and source.get("walltime") not in (None, "profile"):
        raise RequestError(
            source.get("walltime", "walltime"),
            f"{asked} would not end before {cap.describe()}: at most {fits} fits; "
            "ask for less, or start after the maintenance",
        )
    if ctx.maintenance_time_min:
        res.time_min = cap.seconds
        res.notices.append(f"The scheduler may shorten the walltime {asked} to {fits}: {cap.describe()}.")
        return
    res.request = JobRequest.from_mapping({**res.job, "walltime": Seconds(cap.seconds)})
    res.job = res.request.model_dump()
    key = source.get("walltime")
    if key in res.user_options:
        res.user_options[key] = fits
    res.notices.append(f"Walltime shortened from {asked} to {fits}: {cap.describe()}.")


def _check_job(
    res: Resolution,
    source: dict[str, str],
    limits: ClusterLimits | None,
    ctx: Context,
    caps: Mapping[str, WalltimeCap] | None = None,
) -> None:
    """The job request is well-formed and fits the partition (and the user's associations)."""
    request = JobRequest.from_mapping(res.job, rename=source)
    res.request = request
    res.job = request.model_dump()
    if limits is None or not limits.partitions:
        return

    def fail(name: str, reason: str) -> None:
        raise RequestError(source.get(name, "profile"), reason)

    pname = request.partition or limits.default_partition()
    part = limits.partition(pname)
    if part is None:
        missing = [n for n in (pname or "").split(",") if n not in limits.partitions] or [str(pname)]
        fail("partition", f"there is no partition {missing[0]!r} (available: {', '.join(limits.partitions)})")
        return
    if not part.up:
        fail("partition", f"partition {part.name} is not accepting jobs now")
    cap = (caps or {}).get(part.name)
    if cap is not None and ctx.maintenance_policy != "off" and request.walltime > cap.seconds:
        _fit_maintenance(res, source, cap, ctx)
        request = res.job_request()
    check_partition_fit(request, part, fail, gpu_type_asked="gpu_type" in source)
    assoc = limits.for_user(ctx.user)
    if assoc is not None:
        if request.account and request.account not in assoc.accounts:
            fail("account", f"you have no association with account {request.account!r}")
        if request.qos and request.qos not in assoc.qos:
            fail("qos", f"QoS {request.qos!r} is not available to you")


def check_partition_fit(
    request: JobRequest, part: PartitionInfo, fail: Callable[[str, str], None], gpu_type_asked: bool = True
) -> None:
    """Call ``fail(field, reason)`` for the first field of ``request`` that does not fit a node of
    partition ``part`` (walltime, CPUs, tasks, memory, nodes, GPUs): the spawn form's rule, and the
    JupyterLab batch-kernel dialog's."""
    if part.max_walltime is not None and request.walltime > part.max_walltime:
        fail(
            "walltime",
            f"{walltime_text(request.walltime)} is more than the {part.name} partition's "
            f"limit of {walltime_text(part.max_walltime)}",
        )
    if part.cpus_per_node and request.cpus > part.cpus_per_node:
        fail("cpus", f"{request.cpus} CPUs: nodes of partition {part.name} have at most {part.cpus_per_node}")
    per_node = request.ntasks_per_node
    if part.cpus_per_node and per_node is not None and request.cpus * per_node > part.cpus_per_node:
        fail(
            "ntasks_per_node",
            f"{per_node} tasks of {request.cpus} CPUs: nodes of partition {part.name} have at most "
            f"{part.cpus_per_node}",
        )
    if part.memory_per_node and request.memory > part.memory_per_node:
        fail(
            "memory",
            f"{request.memory} MiB: nodes of partition {part.name} have at most {part.memory_per_node} MiB",
        )
    if part.nodes and request.nodes > part.nodes:
        fail("nodes", f"partition {part.name} has {part.nodes} nodes")
    if request.gpus:
        if request.gpu_type and request.gpu_type not in part.gpus_per_node:
            types = ", ".join(part.gpu_types) or "none"
            fail("gpu_type", f"partition {part.name} has no {request.gpu_type!r} GPUs (types: {types})")
        most = part.max_gpus(request.gpu_type)
        if request.gpus > most:
            fail("gpus", f"{request.gpus} GPUs: nodes of partition {part.name} have at most {most}")
    elif request.gpu_type and gpu_type_asked:
        fail("gpu_type", "a GPU type needs at least one GPU")


def reconcile(
    profiles: ProfileList, remembered: Mapping[str, Any] | None, ctx: Context
) -> tuple[Resolution, list[str]]:
    """Resolve *remembered* options leniently: whatever is no longer valid falls back to the
    default, each time with a notice. Raises only when even the defaults are invalid."""
    notices: list[str] = []
    options = dict(remembered or {})
    visible = profiles.visible(ctx.user, ctx.groups)
    slug = options.get("profile")
    if slug not in (None, "") and not any(p.slug == slug for p in visible):
        fallback = ProfileList.default_of(visible)
        name = fallback.display_name if fallback else "none"
        notices.append(
            f"The profile {slug!r} you used last is no longer available; {name!r} is selected instead."
        )
        options = {}
    profile = next((p for p in visible if p.slug == options.get("profile")), None)
    if profile is not None:
        for key, option in profile.profile_options.items():
            if not option.remember:
                options.pop(key, None)
                options.pop(f"{key}{UNLISTED_SUFFIX}", None)
    for _ in range(len(options) + 1):
        try:
            res = resolve(profiles, options, ctx)
        except RequestError as exc:
            culprit = exc.field.removesuffix(UNLISTED_SUFFIX)
            dropped = [k for k in options if k.removesuffix(UNLISTED_SUFFIX) == culprit and k != "profile"]
            if not dropped:
                break
            shown = options[dropped[0]]
            for k in dropped:
                del options[k]
            notices.append(
                f"Your last choice {shown!r} for {culprit!r} is no longer valid ({exc.reason}); "
                "the default is used instead."
            )
            continue
        res.notices = [*notices, *res.notices]
        return res, res.notices
    notices.append("Your last choices are no longer valid; the defaults are used instead.")
    res = resolve(profiles, {}, ctx)
    res.notices = [*notices, *res.notices]
    return res, res.notices


def reconcile_each(
    profiles: ProfileList, memory: Mapping[str, Mapping[str, Any]], ctx: Context, *, skip: str = ""
) -> tuple[dict[str, Resolution], list[str]]:
    """Each visible profile's own remembered choices (*memory*: slug → options), resolved
    leniently like :func:`reconcile`; each notice names its profile. Profiles without a
    memory, the profile *skip* (resolved by the caller) and hidden ones are left out."""
    resolved: dict[str, Resolution] = {}
    notices: list[str] = []
    for profile in profiles.visible(ctx.user, ctx.groups):
        choices = memory.get(profile.slug)
        if profile.slug == skip or not choices:
            continue
        try:
            res, found = reconcile(profiles, {**choices, "profile": profile.slug}, ctx)
        except RequestError:
            continue  # not even its defaults are valid: the form shows that problem already
        resolved[profile.slug] = res
        notices.extend(f"{profile.display_name}: {notice}" for notice in found)
    return resolved, notices


def remembered_choices(resolution: Resolution) -> dict[str, Any]:
    """What is remembered of a start: its options without those marked ``remember: false``."""
    forget = {k for k, o in resolution.profile.profile_options.items() if not o.remember}
    return {k: v for k, v in resolution.user_options.items() if k.removesuffix(UNLISTED_SUFFIX) not in forget}
