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


# -- strict values (issue 11, item 5) -----------------------------------------------------------

#: what a refusal must never show: pydantic's or Python's own words
INTERNALS = re.compile(
    r"Value error|Input should|valid integer|unable to parse|invalid literal|cannot convert|"
    r"float NaN|Exceeds the limit|KeyError|Traceback|pydantic|int\(\)|object has no|NoneType|"
    r"errors\.pydantic|For further information",
    re.IGNORECASE,
)
UNICODE_DIGITS = [
    "\u0663",  # ARABIC-INDIC DIGIT THREE
    "\uff13",  # FULLWIDTH DIGIT THREE
    "\u00b2",  # SUPERSCRIPT TWO (isdigit() but not int())
    "\u0966",  # DEVANAGARI DIGIT ZERO
    "1\u0663",
    "\U0001d7d1",  # MATHEMATICAL BOLD DIGIT THREE
]


def clean(error: RequestError, field: str) -> str:
    """The refusal names the field, and says nothing of Python or pydantic."""
    assert error.field == field
    assert str(error) == f"{field}: {error.reason}"
    assert not INTERNALS.search(str(error)), str(error)
    return error.reason


@pytest.mark.parametrize("field", ["cpus", "nodes", "gpus"])
@pytest.mark.parametrize("digits", UNICODE_DIGITS)
def test_counts_take_ascii_digits_only(field: str, digits: str) -> None:
    reason = clean(reject({field: digits}), field)
    assert "must be a whole number between" in reason and "digits 0-9" in reason


@pytest.mark.parametrize("digits", UNICODE_DIGITS)
@pytest.mark.parametrize("unit", ["", "G", "M"])
def test_memory_takes_ascii_digits_only(digits: str, unit: str) -> None:
    assert "not a memory size" in clean(reject({"memory": digits + unit}), "memory")
    with pytest.raises(ValueError, match="not a memory size"):
        parse_memory_mib(digits + unit)


@pytest.mark.parametrize(
    "value", [*UNICODE_DIGITS, "\u0663:00", "01:\uff13\uff10:00", "\u0661-00:00:00", "00:00:\u00b2"]
)
def test_walltime_takes_ascii_digits_only(value: str) -> None:
    assert "not a walltime" in clean(reject({"walltime": value}), "walltime")


@pytest.mark.parametrize(
    "value",
    [
        "4\u212a",  # KELVIN SIGN: matched [K] case-insensitively, then crashed with a KeyError
        "4\u212aiB",
        "1\u0131B",  # dotless i
        "4G\u2028",
        "\u20284G",
        "4\u00a0G",  # no-break space
        "4\u3000G",
    ],
)
def test_memory_units_and_blanks_are_ascii(value: str) -> None:
    assert "not a memory size" in clean(reject({"memory": value}), "memory")


@pytest.mark.parametrize(
    "value", ["01:00:00\u2028", "\u202901:00:00", "90\x85", "01:00:00\u00a0", "\u200b90", "\u3000" + "90"]
)
def test_walltime_blanks_are_ascii(value: str) -> None:
    assert "not a walltime" in clean(reject({"walltime": value}), "walltime")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("00:99:99", "minutes must be below 60 (got '00:99:99')"),
        ("00:60:00", "minutes must be below 60"),
        ("01:00:60", "seconds must be below 60"),
        ("90:60", "seconds must be below 60"),  # MM:SS
        ("1-24", "hours must be below 24"),  # D-HH
        ("1-24:00:00", "hours must be below 24"),
        ("1-23:60", "minutes must be below 60"),  # D-HH:MM
        ("1-00:00:99", "seconds must be below 60"),
        ("01:000:00", "minutes must have one or two digits"),
        ("1-002:00", "hours must have one or two digits"),
        ("10:100", "seconds must have one or two digits"),
    ],
)
def test_walltime_clock_fields_are_range_checked(value: str, reason: str) -> None:
    assert clean(reject({"walltime": value}), "walltime").startswith(reason)
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_walltime_seconds(value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("59", 59 * 60),  # MM: any number of minutes
        ("5000", 5000 * 60),
        ("99:59", 99 * 60 + 59),  # MM:SS: minutes unbounded, seconds below 60
        ("200:00", 200 * 60),
        ("23:59:59", 23 * 3600 + 59 * 60 + 59),
        ("100:59:59", 100 * 3600 + 59 * 60 + 59),  # HH:MM:SS: hours unbounded (format_walltime writes them)
        ("0:1:0", 60),
        ("1-23", 86_400 + 23 * 3600),
        ("1-23:59", 86_400 + 23 * 3600 + 59 * 60),
        ("1-23:59:59", 86_400 + 23 * 3600 + 59 * 60 + 59),
        ("400-00", None),  # well-formed, but over a year: refused by the request, read by the parser
        ("\t90 ", 90 * 60),
        (90.0, 90 * 60),  # an integral JSON number is whole minutes
    ],
)
def test_walltime_valid_forms_are_read_exactly(value: object, seconds: int | None) -> None:
    if seconds is None:
        assert parse_walltime_seconds(value) == 400 * 86_400
        assert "at most 365-00:00:00" in clean(reject({"walltime": value}), "walltime")
    else:
        assert parse_walltime_seconds(value) == seconds
        assert JobRequest.from_mapping({"walltime": value}).walltime == seconds


@pytest.mark.parametrize(
    ("field", "rule"),
    [
        ("cpus", "must be a whole number between 1 and 100000"),
        ("nodes", "must be a whole number between 1 and 10000"),
        ("gpus", "must be a whole number between 0 and 1024"),
    ],
)
@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), float("-inf"), 1.5, "4.5", "1e3", "four", "", " ", None, [1], {}]
)
def test_counts_refuse_non_whole_values_cleanly(field: str, rule: str, value: object) -> None:
    assert clean(reject({field: value}), field).startswith(rule)


@pytest.mark.parametrize(("field", "value"), [("cpus", 4.0), ("cpus", "4"), ("nodes", " 2 "), ("gpus", "0")])
def test_counts_take_whole_numbers_in_any_plain_form(field: str, value: object) -> None:
    assert getattr(JobRequest.from_mapping({field: value}), field) == int(float(str(value).strip()))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0, "must be a whole number between 1 and 100000 (got 0)"),
        (100_001, "must be a whole number between 1 and 100000 (got 100001)"),
        pytest.param(
            10**400, "must be a whole number between 1 and 100000 (got a very large number)", id="huge"
        ),
        ("٣", "must be a whole number between 1 and 100000, in the digits 0-9 (got '٣')"),
        (True, "must be a whole number between 1 and 100000 (got true)"),
    ],
)
def test_count_messages_name_the_rule(value: object, reason: str) -> None:
    assert clean(reject({"cpus": value}), "cpus") == reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "must be a finite size (got NaN)"),
        (float("inf"), "must be a finite size (got Infinity)"),
        pytest.param(
            "9" * 40, "not a memory size", id="40-digits"
        ),  # no giant numbers converted (float: NaN; int: a 500)
        pytest.param(10**400, "must be at most 1024T", id="huge"),
        ("1025T", "must be at most 1024T"),
        (1e300, "must be at most 1024T"),
        (0.0, "must be at least 1 MiB"),
    ],
)
def test_memory_extremes_are_refused_cleanly(value: object, reason: str) -> None:
    assert clean(reject({"memory": value}), "memory").startswith(reason)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "must be whole minutes"),
        (float("inf"), "must be whole minutes"),
        (1.5, "must be whole minutes"),
        pytest.param(
            "9" * 5000, "not a walltime", id="5000-digits"
        ),  # int() would say "Exceeds the limit (4300 digits)"
        pytest.param(10**400, "must be at most 365-00:00:00", id="huge"),
        (True, "must be minutes or text"),
        ([60], "must be minutes or text"),
    ],
)
def test_walltime_extremes_are_refused_cleanly(value: object, reason: str) -> None:
    assert clean(reject({"walltime": value}), "walltime").startswith(reason)


@pytest.mark.parametrize("field", NAME_FIELDS)
@pytest.mark.parametrize("value", ["a b", 5, None, "debug\u202e", "d\u0435bug", "\uff44ebug"])
def test_name_refusals_say_the_rule(field: str, value: object) -> None:
    if value is None and field != "job_name":
        assert getattr(JobRequest.from_mapping({field: value}), field) is None  # the scheduler decides
        return
    assert "letters, digits or _ . + : @ % - (ASCII)" in clean(reject({field: value}), field)


def test_unknown_keys_and_non_objects_are_refused_cleanly() -> None:
    assert clean(reject({"prologue": "x"}), "prologue") == "not a field of a job request"
    with pytest.raises(RequestError) as info:
        JobRequest.from_mapping(["cpus", 2])  # type: ignore[arg-type]
    assert clean(info.value, "request") == "must be an object"


def test_a_rename_names_the_option_that_set_the_field() -> None:
    with pytest.raises(RequestError) as info:
        JobRequest.from_mapping({"cpus": "x"}, rename={"cpus": "cores"})
    assert info.value.field == "cores" and info.value.reason.startswith("must be a whole number")


def test_updated_keeps_the_walltime_exactly() -> None:
    """The walltime is stored in seconds; updated() must not re-read them as minutes."""
    request = JobRequest.from_mapping({"walltime": "08:00:00"})
    assert request.updated({"cpus": 4}).walltime == 8 * 3600
    odd = JobRequest.from_mapping({"walltime": "1-02:03:04"})
    assert odd.updated({}).walltime == odd.walltime == 86_400 + 2 * 3600 + 3 * 60 + 4
    assert odd.updated({"walltime": 30}).walltime == 1800  # a change is read as given (minutes)
    assert JobRequest.from_mapping({"walltime": "365-00:00:00"}).updated({}).walltime == 365 * 86_400


every_value = st.one_of(
    st.text(max_size=12),
    st.text(alphabet="0123456789:-.GMKT \t\u0663\uff13\u00b2\u2028", max_size=10),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
TYPED_FIELDS = ["cpus", "nodes", "gpus", "memory", "walltime", "constraint", *NAME_FIELDS]


@settings(max_examples=600, deadline=None)
@given(field=st.sampled_from(TYPED_FIELDS), value=every_value)
def test_any_value_is_accepted_or_refused_in_plain_words(field: str, value: object) -> None:
    """Nothing escapes as another exception, and no refusal shows pydantic's or Python's text;
    what is accepted was written in ASCII digits where a number is read."""
    try:
        accepted = getattr(JobRequest.from_mapping({field: value}), field)
    except RequestError as error:
        clean(error, field)
        assert len(error.reason) < 300
        return
    if isinstance(value, str) and field in ("cpus", "nodes", "gpus", "memory", "walltime"):
        assert value.isascii() and re.search(r"[0-9]", value), value
    if field in ("cpus", "nodes", "gpus", "memory", "walltime"):
        assert isinstance(accepted, int) and not isinstance(accepted, bool)


@settings(max_examples=300, deadline=None)
@given(
    days=st.one_of(st.none(), st.integers(0, 400)),
    parts=st.lists(st.integers(0, 130), min_size=1, max_size=3),
)
def test_walltime_fields_in_range_are_read_and_out_of_range_refused(
    days: int | None, parts: list[int]
) -> None:
    text = ":".join(f"{p:02d}" for p in parts)
    if days is not None:
        text = f"{days}-{text}"
        units = ["hours", "minutes", "seconds"][: len(parts)]
        checked = list(zip(units, parts, strict=True))
    else:
        units = {1: ["minutes"], 2: ["minutes", "seconds"], 3: ["hours", "minutes", "seconds"]}[len(parts)]
        checked = list(zip(units, parts, strict=True))[1:]
    value = dict(zip(units, parts, strict=True))
    seconds = (
        (days or 0) * 86400
        + value.get("hours", 0) * 3600
        + value.get("minutes", 0) * 60
        + value.get("seconds", 0)
    )
    wrong = [(unit, n) for unit, n in checked if n >= (24 if unit == "hours" else 60) or len(f"{n:02d}") > 2]
    if wrong:
        with pytest.raises(ValueError, match=f"^{wrong[0][0]} must "):
            parse_walltime_seconds(text)
    elif seconds < 60:
        with pytest.raises(ValueError, match="at least one minute"):
            parse_walltime_seconds(text)
    else:
        assert parse_walltime_seconds(text) == seconds
        # the canonical form reads back to the same limit, rounded up to whole minutes
        assert parse_walltime_seconds(format_walltime(seconds)) == -(-seconds // 60) * 60
