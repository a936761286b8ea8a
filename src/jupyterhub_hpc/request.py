"""The typed job request: the only thing a backend renders into a job script.

Raw ``user_options`` never reach a template. They are validated into a
:class:`JobRequest` first (see :func:`JobRequest.from_mapping`), and every text
field of the request is restricted to a conservative character set, so a value
can neither break a directive line nor reach a shell unquoted.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

__all__ = [
    "JobRequest",
    "RequestError",
    "format_walltime",
    "parse_memory_mib",
    "parse_walltime_seconds",
]

#: Names (partition, account, QoS, reservation, GPU type): no spaces, no quotes, no shell syntax.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+:@%-]{0,127}$"
#: Node feature constraints additionally allow Slurm's operators.
CONSTRAINT_PATTERN = r"^[A-Za-z0-9_.,&|:()\[\]*-]{1,256}$"

_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_MEMORY_FACTOR = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}


class RequestError(ValueError):
    """A request that cannot be turned into a job. ``field`` names the culprit."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_memory_mib(value: object) -> int:
    """Memory as whole MiB from ``2048``, ``"512M"``, ``"4G"``, ``"1.5GiB"`` or ``"1T"``.

    A bare number is MiB (Slurm's convention). Fractions are rounded up.

    >>> parse_memory_mib("4G"), parse_memory_mib(512), parse_memory_mib("1.5G")
    (4096, 512, 1536)
    """
    if isinstance(value, bool):
        raise ValueError("memory must be a number or a size such as '4G'")
    if isinstance(value, int):
        mib = float(value)
    elif isinstance(value, float):
        mib = value
    elif isinstance(value, str):
        match = _MEMORY_RE.match(value)
        if not match:
            raise ValueError(f"not a memory size: {value!r} (use e.g. 512M, 4G)")
        mib = float(match.group(1)) * _MEMORY_FACTOR[match.group(2).upper()]
    else:
        raise ValueError("memory must be a number or a size such as '4G'")
    result = int(-(-mib // 1))
    if result < 1:
        raise ValueError("memory must be at least 1 MiB")
    return result


def parse_walltime_seconds(value: object) -> int:
    """A time limit in seconds, read the way Slurm reads ``--time``: minutes (an int
    or ``"MM"``), ``"MM:SS"``, ``"HH:MM:SS"``, ``"D-HH"``, ``"D-HH:MM"`` or
    ``"D-HH:MM:SS"``.

    >>> parse_walltime_seconds("01:30:00"), parse_walltime_seconds(90), parse_walltime_seconds("30:00")
    (5400, 5400, 1800)
    >>> parse_walltime_seconds("1-00:00:00"), parse_walltime_seconds("1-2")
    (86400, 93600)
    """
    if isinstance(value, bool):
        raise ValueError("walltime must be minutes or HH:MM:SS")
    if isinstance(value, int):
        seconds = value * 60
    elif isinstance(value, str):
        text = value.strip()
        days: int | None = None
        if "-" in text:
            day_text, text = text.split("-", 1)
            if not day_text.isdigit():
                raise ValueError(f"not a walltime: {value!r}")
            days = int(day_text)
        parts = text.split(":")
        if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
            raise ValueError(f"not a walltime: {value!r} (use HH:MM:SS or minutes)")
        n = [int(p) for p in parts]
        if days is not None:
            # D-HH, D-HH:MM, D-HH:MM:SS
            n += [0] * (3 - len(n))
            seconds = days * 86400 + n[0] * 3600 + n[1] * 60 + n[2]
        elif len(n) == 1:
            seconds = n[0] * 60
        elif len(n) == 2:
            seconds = n[0] * 60 + n[1]
        else:
            seconds = n[0] * 3600 + n[1] * 60 + n[2]
    else:
        raise ValueError("walltime must be minutes or HH:MM:SS")
    if seconds < 60:
        raise ValueError("walltime must be at least one minute")
    return seconds


def format_walltime(seconds: int) -> str:
    """``HH:MM:SS`` (hours may exceed 24), rounded up to whole minutes.

    >>> format_walltime(5400), format_walltime(61)
    ('01:30:00', '00:02:00')
    """
    minutes = -(-seconds // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def _no_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("a number is required, not true/false")
    return value


Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Count = Annotated[int, BeforeValidator(_no_bool)]
Memory = Annotated[int, BeforeValidator(parse_memory_mib), Field(ge=1)]
#: a year: longer limits are not what anybody means, and Slurm stores far larger ones wrongly
MAX_WALLTIME = 365 * 86400
Walltime = Annotated[int, BeforeValidator(parse_walltime_seconds), Field(ge=60, le=MAX_WALLTIME)]
#: account and QoS names are case-insensitive to Slurm, which stores them in lower case
LowerName = Annotated[str, Field(pattern=NAME_PATTERN), AfterValidator(str.lower)]


class JobRequest(BaseModel):
    """What one Jupyter server asks of the scheduler: validated and immutable.

    Memory is in MiB (``memory="4G"`` is accepted and stored as 4096), the
    walltime in seconds (``"08:00:00"`` or minutes are accepted). ``None`` means
    "let the scheduler decide" for the optional names.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    job_name: Name = "jupyterhub"
    partition: Name | None = None
    account: LowerName | None = None
    qos: LowerName | None = None
    reservation: Name | None = None
    constraint: Annotated[str, Field(pattern=CONSTRAINT_PATTERN)] | None = None
    nodes: Count = Field(default=1, ge=1, le=10_000)
    cpus: Count = Field(default=1, ge=1, le=100_000)
    memory: Memory = 1024
    walltime: Walltime = 8 * 3600
    gpus: Count = Field(default=0, ge=0, le=1024)
    gpu_type: Name | None = None

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> JobRequest:
        """Validate ``data`` into a request; the first problem raises :class:`RequestError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "request"
            raise RequestError(field, first["msg"]) from None

    def updated(self, changes: dict[str, Any]) -> JobRequest:
        """A new, re-validated request with ``changes`` applied."""
        return self.from_mapping({**self.model_dump(), **changes})
