"""JobRequest: the only thing that reaches a job script must be validated and safe."""

from __future__ import annotations

import re
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyterhub_hpc.request import (
    JobRequest,
    RequestError,
    format_walltime,
    parse_memory_mib,
    parse_walltime_seconds,
)

NAME_FIELDS = ["job_name", "partition", "account", "qos", "reservation", "gpu_type"]
#: written here independently of request.NAME_PATTERN: what a directive value may look like
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+:@%-]{0,127}")
SAFE_CONSTRAINT = re.compile(r"[A-Za-z0-9_.,&|:()\[\]*-]{1,256}")

HOSTILE_NAMES = [
    "",
    "two words",
    "debug\n#SBATCH --wrap=id",
    "debug\n",
    "\ndebug",
    "debug\r",
    "$(id)",
    "`id`",
    "${HOME}",
    "#SBATCH",
    "a;b",
    "a'b",
    'a"b',
    "a\\b",
    "a|b",
    "a&b",
    "a>b",
    "-p",
    "--wrap=id",
    "tab\there",
    "x" * 129,
    "débug",
    "a\x00b",
]


def reject(data: dict[str, Any]) -> RequestError:
    with pytest.raises(RequestError) as info:
        JobRequest.from_mapping(data)
    return info.value


# -- memory ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "mib"),
    [
        (2048, 2048),
        ("2048", 2048),
        ("512M", 512),
        ("512MB", 512),
        ("512MiB", 512),
        ("4G", 4096),
        ("4g", 4096),
        ("4 GiB", 4096),
        ("1.5G", 1536),
        ("1T", 1024 * 1024),
        ("1024K", 1),
        ("1K", 1),  # rounded up, never down to 0
        ("2047.1", 2048),
        (0.5, 1),
    ],
)
def test_memory_units(value: object, mib: int) -> None:
    assert parse_memory_mib(value) == mib
    assert JobRequest.from_mapping({"memory": value}).memory == mib


@pytest.mark.parametrize(
    "value", ["", "lots", "4X", "4GG", "G4", "-1G", "0", "0M", "4 G B", "1e3", True, None, [4], 0, -5, 0.0]
)
def test_bad_memory_is_refused_and_named(value: object) -> None:
    with pytest.raises(ValueError):
        parse_memory_mib(value)
    error = reject({"memory": value})
    assert error.field == "memory"
    assert str(error).startswith("memory: ")


# -- walltime ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 5400),
        ("90", 5400),
        ("1", 60),
        ("01:30:00", 5400),
        ("1:30:00", 5400),
        ("00:01:00", 60),
        ("00:01:30", 90),
        ("100:00:00", 360_000),
        ("1-00:00:00", 86_400),
        ("2-12:30:00", 2 * 86_400 + 12 * 3600 + 30 * 60),
        (" 01:00:00 ", 3600),
        # Slurm's --time reading: MM:SS, D-HH, D-HH:MM
        ("30:00", 1800),
        ("1-2", 86_400 + 2 * 3600),
        ("1-2:30", 86_400 + 2 * 3600 + 30 * 60),
    ],
)
def test_walltime_formats(value: object, seconds: int) -> None:
    assert parse_walltime_seconds(value) == seconds
    assert JobRequest.from_mapping({"walltime": value}).walltime == seconds


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0",
        "00:00:59",
        "abc",
        "1:2:3:4",
        "-5",
        "x-01:00:00",
        "01:00:xx",
        "1h",
        "1.5",
        0,
        -1,
        1.5,
        True,
        None,
    ],
)
def test_bad_walltime_is_refused_and_named(value: object) -> None:
    with pytest.raises(ValueError):
        parse_walltime_seconds(value)
    error = reject({"walltime": value})
    assert error.field == "walltime"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(60, "00:01:00"), (61, "00:02:00"), (5400, "01:30:00"), (86_400, "24:00:00"), (100 * 3600, "100:00:00")],
)
def test_format_walltime_rounds_up_to_minutes(seconds: int, text: str) -> None:
    assert format_walltime(seconds) == text


# -- bounds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "ok", "bad"),
    [
        ("nodes", [1, 10_000], [0, -1, 10_001]),
        ("cpus", [1, 100_000], [0, -1, 100_001]),
        ("gpus", [0, 1024], [-1, 1025]),
    ],
)
def test_integer_bounds(field: str, ok: list[int], bad: list[int]) -> None:
    for value in ok:
        assert getattr(JobRequest.from_mapping({field: value}), field) == value
    for value in bad:
        assert reject({field: value}).field == field


@pytest.mark.parametrize("value", ["4; rm -rf ~", "four", 1.5, [2], {"n": 1}])
def test_non_integer_counts_are_refused(value: object) -> None:
    assert reject({"cpus": value}).field == "cpus"


def test_defaults_are_explicit() -> None:
    request = JobRequest()
    assert (request.nodes, request.cpus, request.memory, request.walltime, request.gpus) == (
        1,
        1,
        1024,
        28800,
        0,
    )
    assert request.partition is None and request.account is None


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", NAME_FIELDS)
@pytest.mark.parametrize("value", ["debug", "gpu-a100", "proj_01.x", "a", "A+B:c@d%e", "x" * 128])
def test_plain_names_are_accepted(field: str, value: str) -> None:
    # Slurm stores account and QoS names in lower case: the request says what Slurm will show
    expected = value.lower() if field in ("account", "qos") else value
    assert getattr(JobRequest.from_mapping({field: value}), field) == expected


def test_walltime_over_a_year_is_refused() -> None:
    assert JobRequest.from_mapping({"walltime": "365-00:00:00"}).walltime == 365 * 86400
    with pytest.raises(RequestError) as info:
        JobRequest.from_mapping({"walltime": 98108615})
    assert info.value.field == "walltime"


@pytest.mark.parametrize("field", NAME_FIELDS)
@pytest.mark.parametrize("value", HOSTILE_NAMES)
def test_hostile_names_are_refused_and_named(field: str, value: str) -> None:
    error = reject({field: value})
    assert error.field == field
    assert str(error).startswith(f"{field}: ")


@pytest.mark.parametrize("value", ["a100&ib", "[rack1|rack2]", "x*2", "(a|b)&c", "intel,avx512"])
def test_constraint_allows_slurm_operators(value: str) -> None:
    assert JobRequest.from_mapping({"constraint": value}).constraint == value


@pytest.mark.parametrize("value", ["", "a b", "$(id)", "`id`", "a;b", "a\nb", "a'b", "x" * 257, "a>b"])
def test_constraint_refuses_shell_syntax(value: str) -> None:
    assert reject({"constraint": value}).field == "constraint"


@pytest.mark.parametrize("value", [5, 1.5, ["debug"], {"name": "debug"}, True])
def test_names_must_be_text(value: object) -> None:
    assert reject({"partition": value}).field == "partition"


# -- the request as a whole ----------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["prologue", "cmd", "job_extra_directives", "environment", "Partition", "nodes "]
)
def test_extra_keys_are_refused(key: str) -> None:
    error = reject({"partition": "debug", key: "x"})
    assert error.field == key


def test_the_first_culprit_is_named_and_valid_fields_are_not_blamed() -> None:
    error = reject({"partition": "debug", "account": "bad account", "cpus": 2})
    assert error.field == "account"
    assert str(error) == f"account: {error.reason}"


def test_request_is_immutable() -> None:
    request = JobRequest.from_mapping({"partition": "debug"})
    with pytest.raises(pydantic.ValidationError):
        request.partition = "$(id)"
    assert request.partition == "debug"


def test_updated_revalidates() -> None:
    request = JobRequest.from_mapping({"partition": "debug", "memory": "2G"})
    changed = request.updated({"cpus": 4})
    assert (changed.cpus, changed.partition, changed.memory) == (4, "debug", 2048)
    assert request.cpus == 1
    with pytest.raises(RequestError) as info:
        request.updated({"qos": "normal\n#SBATCH --wrap=id"})
    assert info.value.field == "qos"


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(NAME_FIELDS), value=st.text(max_size=140))
def test_any_text_name_is_rejected_or_safe(field: str, value: str) -> None:
    try:
        request = JobRequest.from_mapping({field: value})
    except RequestError as error:
        assert error.field == field
    else:
        accepted = getattr(request, field)
        assert accepted == (value.lower() if field in ("account", "qos") else value)
        assert SAFE_NAME.fullmatch(accepted), accepted


@settings(max_examples=200, deadline=None)
@given(
    field=st.sampled_from(NAME_FIELDS),
    value=st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=20).map(lambda s: "ok" + s),
)
def test_ascii_names_with_specials_are_rejected_or_safe(field: str, value: str) -> None:
    """ASCII with a valid start reaches the character checks (plain st.text rarely does)."""
    try:
        accepted = getattr(JobRequest.from_mapping({field: value}), field)
    except RequestError as error:
        assert error.field == field
        assert not SAFE_NAME.fullmatch(value)
    else:
        assert SAFE_NAME.fullmatch(accepted), accepted


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=40))
def test_any_text_constraint_is_rejected_or_safe(value: str) -> None:
    try:
        accepted = JobRequest.from_mapping({"constraint": value}).constraint
    except RequestError as error:
        assert error.field == "constraint"
    else:
        assert accepted is not None and SAFE_CONSTRAINT.fullmatch(accepted), accepted
