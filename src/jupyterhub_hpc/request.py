"""The typed job request: the only thing a backend renders into a job script.

Raw ``user_options`` never reach a template. They are validated into a
:class:`JobRequest` first (see :func:`JobRequest.from_mapping`), and every text
field of the request is restricted to a conservative character set, so a value
can neither break a directive line nor reach a shell unquoted.

Numbers are read from ASCII digits only (a fullwidth or Arabic-Indic 3 is not 3), clock
fields are range-checked (``"00:99:99"`` is refused, not read as 01:40:39), and
every refusal is a :class:`RequestError` whose reason names the rule in plain
words (:func:`request_error` is the one place a pydantic error becomes one).

The same functions read the admin's configuration: the trait types of
:mod:`jupyterhub_hpc.units` call :func:`check_memory` and :func:`check_walltime`, the
rules of the request's ``memory`` and ``walltime`` fields. A walltime already in
seconds is a :class:`Seconds` (a bare number is minutes, as for Slurm), so a parsed
value read back is never taken for minutes: ``JobRequest.from_mapping(r.model_dump())``
is ``r``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
)

__all__ = [
    "MAX_MEMORY_MIB",
    "MAX_WALLTIME",
    "JobRequest",
    "RequestError",
    "Seconds",
    "check_gres",
    "check_memory",
    "check_partitions",
    "check_walltime",
    "check_workdir",
    "format_walltime",
    "parse_memory_mib",
    "parse_walltime_seconds",
    "parse_whole_number",
    "request_error",
    "shown",
    "walltime_text",
]

#: Names (partition, account, QoS, reservation, GPU type): no spaces, no quotes, no shell syntax.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+:@%-]{0,127}$"
#: Node feature constraints additionally allow Slurm's operators.
CONSTRAINT_PATTERN = r"^[A-Za-z0-9_.,&|:()\[\]*-]{1,256}$"
NAME_RULE = "1-128 letters, digits or _ . + : @ % - (ASCII), starting with a letter or digit"
CONSTRAINT_RULE = "1-256 letters, digits or _ . , & | : ( ) [ ] * - (ASCII)"
#: one generic resource, ``name[:type][:count]`` (``gpu:a100:2``, ``nvme:100``, ``shard:1``)
GRES_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}(?::[A-Za-z0-9_.-]{1,64})?(?::[0-9]{1,6})?$"
GRES_RULE = "name[:type][:count]: a letter, then letters, digits or _ . - (ASCII), count in digits"
#: at most this many generic resources in one request
MAX_GRES = 16
#: a working directory: absolute (or starting with {home}), conservative characters only
WORKDIR_PATTERN = r"^(?:/|\{home\}(?:/|$))[A-Za-z0-9_.+@%/{}=-]{0,1022}$"
WORKDIR_RULE = (
    "an absolute path (or one starting with {home}) of letters, digits and _ . + @ % = - / (ASCII), "
    "without '..', with the placeholders {home} and {username} only"
)
#: several partitions in one request, Slurm's way: ``jupyter-long,jupyter-overflow``
MAX_PARTITIONS = 16

#: a year: longer limits are not what anybody means, and Slurm stores far larger ones wrongly
MAX_WALLTIME = 365 * 86400
#: a pebibyte per node: more is a typo (and beyond what any scheduler stores)
MAX_MEMORY_MIB = 1024**3
#: longer numeric text is refused before it is converted (no giant integers)
_MAX_NUMBER_TEXT = 32

_NAME_RE = re.compile(NAME_PATTERN, re.ASCII)
_CONSTRAINT_RE = re.compile(CONSTRAINT_PATTERN, re.ASCII)
_GRES_RE = re.compile(GRES_PATTERN, re.ASCII)
_WORKDIR_RE = re.compile(WORKDIR_PATTERN, re.ASCII)
_WHOLE_RE = re.compile(r"[ \t]*([+-]?[0-9]+)[ \t]*", re.ASCII)
_MEMORY_RE = re.compile(r"[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*([KMGT]?)(?:i?B)?[ \t]*", re.ASCII | re.IGNORECASE)
#: [D-]first[:MM][:SS]; the ranges are checked in parse_walltime_seconds
_WALLTIME_RE = re.compile(
    r"[ \t]*(?:(?P<days>[0-9]+)-)?(?P<first>[0-9]+)(?::(?P<second>[0-9]+))?(?::(?P<third>[0-9]+))?[ \t]*",
    re.ASCII,
)
_MEMORY_FACTOR = {
    "K": Fraction(1, 1024),
    "": Fraction(1),
    "M": Fraction(1),
    "G": Fraction(1024),
    "T": Fraction(1024**2),
}
WALLTIME_FORMS = "minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"


class Seconds(int):
    """A time limit already in seconds: what :func:`parse_walltime_seconds` returns and
    passes through unchanged, where a bare number means minutes. ``Walltime`` traits and
    :attr:`JobRequest.walltime` hold one, so a value read back keeps its meaning.

    >>> Seconds(90) + 0, parse_walltime_seconds(Seconds(90 * 60)), parse_walltime_seconds(90)
    (90, 5400, 5400)
    """

    __slots__ = ()


class RequestError(ValueError):
    """A request that cannot be turned into a job. ``field`` names the culprit."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def shown(value: object) -> str:
    """A user's value as an error message quotes it: short, in JSON's words for non-text.

    >>> shown("two"), shown(None), shown(True), shown([1]), shown(float("nan")), shown("x" * 50)[-4:]
    ("'two'", 'null', 'true', 'a list', 'NaN', "...'")
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40])[:-1] + "...'"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**30 else "a very large number"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return "a value of another kind"


def parse_whole_number(value: object) -> int:
    """A whole number from an int, an integral float (``4.0``) or ASCII digits (``"4"``,
    ``" -2 "``); anything else raises ``ValueError``: true/false, NaN, Infinity,
    ``4.5``, ``"1e3"``, and digits other than ASCII ``0-9`` (fullwidth, Arabic-Indic,
    superscript).

    >>> parse_whole_number("12"), parse_whole_number(3.0), parse_whole_number(" -1 ")
    (12, 3, -1)
    """
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true/false")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"must be a whole number (got {shown(value)})")
        return int(value)
    if isinstance(value, str):
        match = _WHOLE_RE.fullmatch(value) if len(value) <= _MAX_NUMBER_TEXT else None
        if match is None:
            raise ValueError(f"must be a whole number in the digits 0-9 (got {shown(value)})")
        return int(match.group(1))
    raise ValueError(f"must be a whole number (got {shown(value)})")


def parse_memory_mib(value: object) -> int:
    """Memory as whole MiB from ``2048``, ``"512M"``, ``"4G"``, ``"1.5GiB"`` or ``"1T"``.

    A bare number is MiB (Slurm's convention). Fractions are rounded up. Digits are
    ASCII ``0-9``; NaN and Infinity are refused.

    >>> parse_memory_mib("4G"), parse_memory_mib(512), parse_memory_mib("1.5G")
    (4096, 512, 1536)
    """
    mib: Fraction
    if isinstance(value, bool):
        raise ValueError("must be a number of MiB or a size such as '4G', not true/false")
    if isinstance(value, int):
        mib = Fraction(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite size (got {shown(value)})")
        mib = Fraction(value)
    elif isinstance(value, str):
        match = _MEMORY_RE.fullmatch(value) if len(value) <= _MAX_NUMBER_TEXT else None
        if not match:
            raise ValueError(
                f"not a memory size: {shown(value)} (digits 0-9 and a unit K, M, G or T: 512M, 4G)"
            )
        mib = Fraction(match.group(1)) * _MEMORY_FACTOR[match.group(2).upper()]
    else:
        raise ValueError(f"must be a number of MiB or a size such as '4G' (got {shown(value)})")
    result = math.ceil(mib)
    if result < 1:
        raise ValueError(f"must be at least 1 MiB (got {shown(value)})")
    return result


def parse_walltime_seconds(value: object) -> Seconds:
    """A time limit in seconds, read the way Slurm reads ``--time``: minutes (a whole
    number or ``"MM"``), ``"MM:SS"``, ``"HH:MM:SS"``, ``"D-HH"``, ``"D-HH:MM"`` or
    ``"D-HH:MM:SS"``, in the digits 0-9. A :class:`Seconds` is already parsed: its
    number is seconds. The result is a :class:`Seconds`.

    The leading field is unbounded (``"90"`` minutes, ``"100:00:00"``, ``"90:00"``);
    every field after it is range-checked: minutes and seconds below 60, and hours
    below 24 when days are given. Fields after the first have one or two digits.

    >>> parse_walltime_seconds("01:30:00"), parse_walltime_seconds(90), parse_walltime_seconds("30:00")
    (5400, 5400, 1800)
    >>> parse_walltime_seconds("1-00:00:00"), parse_walltime_seconds("1-2")
    (86400, 93600)
    """
    if isinstance(value, Seconds):
        seconds = int(value)
    elif isinstance(value, str):
        match = _WALLTIME_RE.fullmatch(value) if len(value) <= _MAX_NUMBER_TEXT else None
        if match is None:
            raise ValueError(f"not a walltime: {shown(value)} (use {WALLTIME_FORMS}, in the digits 0-9)")
        days, first, second, third = match.group("days", "first", "second", "third")
        if days is None:
            # MM, MM:SS or HH:MM:SS
            names = {1: ["minutes"], 2: ["minutes", "seconds"], 3: ["hours", "minutes", "seconds"]}
        else:
            # D-HH, D-HH:MM or D-HH:MM:SS
            names = {1: ["hours"], 2: ["hours", "minutes"], 3: ["hours", "minutes", "seconds"]}
        texts = [t for t in (first, second, third) if t is not None]
        fields = dict(zip(names[len(texts)], texts, strict=True))
        checked = fields if days is not None else dict(list(fields.items())[1:])
        for unit, text in checked.items():
            limit = 24 if unit == "hours" else 60
            if len(text) > 2:
                raise ValueError(f"{unit} must have one or two digits (got {shown(value)})")
            if int(text) >= limit:
                raise ValueError(f"{unit} must be below {limit} (got {shown(value)})")
        numbers = {unit: int(text) for unit, text in fields.items()}
        seconds = (
            int(days or 0) * 86400
            + numbers.get("hours", 0) * 3600
            + numbers.get("minutes", 0) * 60
            + numbers.get("seconds", 0)
        )
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = parse_whole_number(value) * 60
        except ValueError:
            raise ValueError(f"must be whole minutes or text such as HH:MM:SS (got {shown(value)})") from None
    else:
        raise ValueError(f"must be minutes or text such as HH:MM:SS (got {shown(value)})")
    if seconds < 60:
        raise ValueError(f"must be at least one minute (got {shown(value)})")
    return Seconds(seconds)


def format_walltime(seconds: int) -> str:
    """``HH:MM:SS`` (hours may exceed 24), rounded up to whole minutes.

    >>> format_walltime(5400), format_walltime(61)
    ('01:30:00', '00:02:00')
    """
    minutes = -(-seconds // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def walltime_text(seconds: int) -> str:
    """``HH:MM:SS`` to the second (hours may exceed 24): what :func:`parse_walltime_seconds`
    reads back unchanged, and :func:`format_walltime`'s text for whole minutes.

    >>> walltime_text(5400), walltime_text(93784), parse_walltime_seconds(walltime_text(93784))
    ('01:30:00', '26:03:04', 93784)
    """
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# -- the fields' validators: each raises ValueError with the rule in plain words -----------------


def _count(low: int, high: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        rule = f"must be a whole number between {low} and {high}"
        try:
            number = parse_whole_number(value)
        except ValueError:
            digits = ", in the digits 0-9" if isinstance(value, str) else ""
            raise ValueError(f"{rule}{digits} (got {shown(value)})") from None
        if not low <= number <= high:
            raise ValueError(f"{rule} (got {shown(number)})")
        return number

    return check


def check_memory(value: object) -> int:
    """The rule of :attr:`JobRequest.memory` (and of ``memory`` traits): whole MiB, from 1
    MiB to :data:`MAX_MEMORY_MIB`; raises ``ValueError`` with the rule in plain words."""
    mib = parse_memory_mib(value)
    if mib > MAX_MEMORY_MIB:
        raise ValueError(f"must be at most {MAX_MEMORY_MIB // 1024**2}T (got {shown(value)})")
    return mib


def check_walltime(value: object) -> Seconds:
    """The rule of :attr:`JobRequest.walltime` (and of ``walltime`` traits): one minute to
    :data:`MAX_WALLTIME`, as :class:`Seconds`; raises ``ValueError`` in plain words."""
    seconds = parse_walltime_seconds(value)
    if seconds > MAX_WALLTIME:
        raise ValueError(f"must be at most {MAX_WALLTIME // 86400}-00:00:00, a year (got {shown(value)})")
    return seconds


def _text(pattern: re.Pattern[str], rule: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be text: {rule} (got {shown(value)})")
        if not pattern.fullmatch(value):
            raise ValueError(f"must be {rule} (got {shown(value)})")
        return value

    return check


def check_partitions(value: object) -> str:
    """One partition name, or several joined by commas (Slurm's ``--partition=a,b``), each by
    the name rule; kept as the comma-joined text (:attr:`JobRequest.partitions` splits it)."""
    if not isinstance(value, str):
        raise ValueError(
            f"must be text: {NAME_RULE}, or several such names joined by commas (got {shown(value)})"
        )
    names = value.split(",")
    if len(names) > MAX_PARTITIONS:
        raise ValueError(f"at most {MAX_PARTITIONS} partitions (got {len(names)})")
    for name in names:
        if not _NAME_RE.fullmatch(name):
            what = "each partition must be" if len(names) > 1 else "must be"
            raise ValueError(f"{what} {NAME_RULE} (got {shown(value)})")
    if len(set(names)) != len(names):
        raise ValueError(f"a partition is named twice (got {shown(value)})")
    return value


def check_gres(value: object) -> tuple[str, ...]:
    """Generic resources from a list or tuple of texts or from one comma-separated text,
    each ``name[:type][:count]`` (:data:`GRES_PATTERN`); ``()`` for none.

    >>> check_gres("gpu:a100:2,nvme:100"), check_gres(["shard:1"]), check_gres("")
    (('gpu:a100:2', 'nvme:100'), ('shard:1',), ())
    """
    if isinstance(value, str):
        items: list[object] = list(value.split(",")) if value != "" else []
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError(f"must be a list of generic resources or text joined by commas (got {shown(value)})")
    if len(items) > MAX_GRES:
        raise ValueError(f"at most {MAX_GRES} generic resources (got {len(items)})")
    for item in items:
        if not isinstance(item, str) or not _GRES_RE.fullmatch(item):
            raise ValueError(f"each generic resource must be {GRES_RULE} (got {shown(item)})")
    names = [str(item).split(":", 1)[0] for item in items]
    if len(set(names)) != len(names):
        raise ValueError(f"a generic resource is named twice (got {', '.join(str(i) for i in items)})")
    return tuple(str(item) for item in items)


def check_workdir(value: object) -> str:
    """The job's working directory (:data:`WORKDIR_RULE`): ``/scratch/{username}``,
    ``{home}/work``; never ``..``, spaces, quotes or other placeholders."""
    if not isinstance(value, str):
        raise ValueError(f"must be text: {WORKDIR_RULE} (got {shown(value)})")
    if not _WORKDIR_RE.fullmatch(value):
        raise ValueError(f"must be {WORKDIR_RULE} (got {shown(value)})")
    if ".." in value.split("/"):
        raise ValueError(f"must not contain '..' (got {shown(value)})")
    rest = value.replace("{home}", "").replace("{username}", "")
    if "{" in rest or "}" in rest:
        raise ValueError(f"only {{home}} and {{username}} may be filled in (got {shown(value)})")
    return value


Name = Annotated[str, BeforeValidator(_text(_NAME_RE, NAME_RULE))]
Partitions = Annotated[str, BeforeValidator(check_partitions)]
#: account and QoS names are case-insensitive to Slurm, which stores them in lower case
LowerName = Annotated[str, BeforeValidator(_text(_NAME_RE, NAME_RULE)), AfterValidator(str.lower)]
Constraint = Annotated[str, BeforeValidator(_text(_CONSTRAINT_RE, CONSTRAINT_RULE))]
Memory = Annotated[int, BeforeValidator(check_memory)]
#: kept a Seconds: a request's walltime read back (model_dump, updated) stays seconds
Walltime = Annotated[int, BeforeValidator(check_walltime), AfterValidator(Seconds)]

#: reasons for the pydantic errors that are not our own validators' (no pydantic wording)
_REASONS = {
    "extra_forbidden": "not a field of a job request",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "missing": "is required",
    "frozen_instance": "cannot be changed",
}


def request_error(exc: ValidationError, rename: Mapping[str, str] | None = None) -> RequestError:
    """The first problem of a pydantic ``ValidationError`` as a :class:`RequestError`: the
    field (renamed through ``rename``, e.g. job field -> the option that set it) and our
    validators' reason, never pydantic's wording or a Python exception's text."""
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"]]
    field = loc[0] if loc else "request"
    field = (rename or {}).get(field, field)
    error = (first.get("ctx") or {}).get("error")
    if first["type"] == "value_error" and isinstance(error, ValueError):
        reason = str(error)
    else:
        reason = _REASONS.get(first["type"], "is not a valid value")
    return RequestError(field, reason)


class JobRequest(BaseModel):
    """What one Jupyter server asks of the scheduler: validated and immutable.

    Memory is in MiB (``memory="4G"`` is accepted and stored as 4096), the
    walltime in seconds, as a :class:`Seconds` (``"08:00:00"`` or minutes are
    accepted). ``None`` means "let the scheduler decide" for the optional names.
    ``from_mapping(r.model_dump())`` is ``r``; over JSON, where a number is minutes,
    :meth:`as_options` gives the walltime as text.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    job_name: Name = "jupyterhub"
    #: one partition, or several joined by commas where the scheduler takes that (Slurm)
    partition: Partitions | None = None
    account: LowerName | None = None
    qos: LowerName | None = None
    reservation: Name | None = None
    constraint: Constraint | None = None
    nodes: Annotated[int, BeforeValidator(_count(1, 10_000))] = 1
    cpus: Annotated[int, BeforeValidator(_count(1, 100_000))] = 1
    memory: Memory = 1024
    walltime: Walltime = Seconds(8 * 3600)
    gpus: Annotated[int, BeforeValidator(_count(0, 1024))] = 0
    gpu_type: Name | None = None
    #: tasks in all (None: one per node), tasks per node, GPUs per task (None: not asked)
    ntasks: Annotated[int, BeforeValidator(_count(1, 1_000_000))] | None = None
    ntasks_per_node: Annotated[int, BeforeValidator(_count(1, 100_000))] | None = None
    gpus_per_task: Annotated[int, BeforeValidator(_count(1, 1024))] | None = None
    #: generic resources, ``name[:type][:count]`` each (the GPUs of ``gpus`` come on top)
    gres: Annotated[tuple[str, ...], BeforeValidator(check_gres)] = ()
    #: the job's working directory ({home} and {username} filled in by the spawner); None:
    #: the admin's ``job_workdir``
    workdir: Annotated[str, BeforeValidator(check_workdir)] | None = None

    @field_validator("gres")
    @classmethod
    def _gpus_once(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if info.data.get("gpus") and any(item.split(":", 1)[0] == "gpu" for item in value):
            raise ValueError("GPUs are asked for by gpus (and gpu_type), not also as a generic resource")
        return value

    @property
    def partitions(self) -> tuple[str, ...]:
        """The partition names (several where ``partition`` lists them); ``()`` for none."""
        return tuple(self.partition.split(",")) if self.partition else ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], rename: Mapping[str, str] | None = None) -> JobRequest:
        """Validate ``data`` into a request; the first problem raises :class:`RequestError`
        (its field renamed through ``rename``, see :func:`request_error`)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise request_error(exc, rename) from None

    def as_options(self) -> dict[str, Any]:
        """The fields as plain values that :meth:`from_mapping` reads back to this request,
        also through JSON: memory in MiB, the walltime as ``HH:MM:SS`` text
        (:func:`walltime_text`; a bare number would be minutes)."""
        return {**self.model_dump(), "walltime": walltime_text(self.walltime), "gres": list(self.gres)}

    def updated(self, changes: Mapping[str, Any]) -> JobRequest:
        """A new, re-validated request with ``changes`` applied (the rest kept exactly; a
        changed walltime is read as given: a bare number is minutes)."""
        return self.from_mapping({**self.as_options(), **changes})
