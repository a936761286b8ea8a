"""The one validation path: strict for requests, lenient (with notices) for remembered options;
property tests: any request is either refused with a field and a reason, or fits every limit."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from jupyterhub_hpc.backends.limits import ClusterLimits
from jupyterhub_hpc.backends.slurm_limits import parse_sinfo_nodes
from jupyterhub_hpc.profiles.model import ProfileList, parse_profile_list
from jupyterhub_hpc.profiles.schema import MEMORY_PATTERN, WALLTIME_PATTERN
from jupyterhub_hpc.profiles.validate import Context, reconcile, resolve
from jupyterhub_hpc.request import RequestError, parse_memory_mib, parse_walltime_seconds

from .conftest import BASE, SITE_PROFILES, data

#: pydantic's and Python's own words, which a refusal must never show
INTERNALS = re.compile(
    r"Value error|Input should|valid integer|unable to parse|invalid literal|cannot convert|"
    r"float NaN|Exceeds the limit|KeyError|Traceback|pydantic|int\(\)|NoneType",
    re.IGNORECASE,
)

LIMITS = ClusterLimits(partitions=parse_sinfo_nodes(data("sinfo-node-idle.txt")), live=True, fetched_at=1.0)
PROFILES = parse_profile_list(SITE_PROFILES)


def ctx(
    user: str = "hpcuser1", groups: tuple[str, ...] = ("jupyterhub-users",), limits: Any = LIMITS
) -> Context:
    return Context(
        user=user,
        groups=frozenset(groups),
        base_job=BASE,
        base_backend="slurm",
        limits={"slurm/": limits} if limits is not None else {},
    )


def refused(options: dict[str, Any], context: Context | None = None) -> RequestError:
    with pytest.raises(RequestError) as info:
        resolve(PROFILES, options, context or ctx())
    return info.value


def test_no_options_mean_the_default_profile_with_its_defaults() -> None:
    res = resolve(PROFILES, {}, ctx())
    assert res.user_options == {
        "profile": "cpu",
        "cpus": 1,
        "memory": "400M",
        "walltime": "01:00:00",
        "env": "base",
    }
    request = res.job_request()
    assert (request.partition, request.cpus, request.memory, request.walltime) == ("debug", 1, 400, 3600)
    assert res.overrides == [("partition", "debug")]


def test_a_gpu_request_becomes_a_typed_job_request() -> None:
    res = resolve(PROFILES, {"profile": "gpu", "gpus": "2", "cpus": 3, "walltime": "90"}, ctx())
    request = res.job_request()
    assert (request.partition, request.gpus, request.gpu_type, request.cpus, request.walltime) == (
        "gpu",
        2,
        "tesla",
        3,
        5400,
    )
    assert res.user_options == {
        "profile": "gpu",
        "gpus": 2,
        "gpu_type": "tesla",
        "cpus": 3,
        "walltime": "01:30:00",
    }
    # normalised options validate to the same request (what is remembered is stable)
    again = resolve(PROFILES, res.user_options, ctx())
    assert again.user_options == res.user_options and again.job_request() == request


@pytest.mark.parametrize(
    ("options", "field", "reason"),
    [
        (
            {"profile": "gpu", "walltime": "05:00:00"},
            "walltime",
            "more than the gpu partition's limit of 04:00:00",
        ),
        ({"profile": "bigmem", "walltime": "00:06:00"}, "walltime", "limit of 00:05:00"),
        ({"profile": "bigmem", "memory": "7.5G"}, "memory", "at most 7G"),
        ({"profile": "cpu", "cpus": 5}, "cpus", "at most 4"),
        ({"profile": "cpu", "cpus": "two"}, "cpus", "whole number"),
        ({"profile": "cpu", "memory": "100M"}, "memory", "at least 256M"),
        ({"profile": "gpu", "gpus": 3}, "gpus", "at most 2"),
        (
            {"profile": "gpu", "gpus": 0, "gpu_type": "tesla"},
            "gpu_type",
            "only applies when gpus is at least 1",
        ),
        ({"profile": "gpu", "gpu_type": "a100"}, "gpu_type", "not one of the choices"),
        ({"profile": "cpu", "gpus": 1}, "gpus", "unknown option for profile 'cpu'"),
        ({"profile": "cpu", "partition": "gpu"}, "partition", "unknown option"),
        ({"profile": "staff"}, "profile", "no profile 'staff' is available to you"),
        ({"profile": "nosuch"}, "profile", "no profile 'nosuch'"),
        ({"profile": "cpu", "env": "ml", "env--unlisted-choice": "x"}, "env", "not both"),
        (
            {"profile": "cpu", "env--unlisted-choice": "Bad Name"},
            "env--unlisted-choice",
            "lower-case letters",
        ),
        ({"profile": "cpu", "env": "unlisted-choice"}, "env--unlisted-choice", "empty"),
        ({"profile": "cpu", "walltime": "soon"}, "walltime", "not a walltime"),
    ],
)
def test_invalid_requests_name_the_field_and_the_reason(
    options: dict[str, Any], field: str, reason: str
) -> None:
    error = refused(options)
    assert error.field == field
    assert reason in error.reason


def test_visibility_is_authorization() -> None:
    staff = ctx(user="hpcuser3", groups=("jupyterhub-users", "hpc-staff"))
    assert resolve(PROFILES, {"profile": "staff"}, staff).profile.slug == "staff"
    hidden_choice = parse_profile_list(
        [
            {
                "display_name": "A",
                "profile_options": {
                    "env": {
                        "choices": {
                            "pub": {"display_name": "public"},
                            "lic": {"display_name": "licensed", "allowed_users": ["hpcuser2"]},
                        },
                        "unlisted_choice": {"enabled": True, "allowed_groups": ["hpc-staff"]},
                    }
                },
            }
        ]
    )
    with pytest.raises(RequestError, match="not one of the choices available to you \\(pub\\)"):
        resolve(hidden_choice, {"env": "lic"}, ctx())
    assert resolve(hidden_choice, {"env": "lic"}, ctx(user="hpcuser2")).user_options["env"] == "lic"
    with pytest.raises(RequestError, match="listed choices only"):
        resolve(hidden_choice, {"env--unlisted-choice": "x"}, ctx())
    assert resolve(hidden_choice, {"env--unlisted-choice": "x"}, staff).user_options == {
        "profile": "a",
        "env--unlisted-choice": "x",
    }


def test_write_in_overrides_get_the_value() -> None:
    res = resolve(PROFILES, {"profile": "cpu", "env--unlisted-choice": "my-env"}, ctx())
    assert ("environment", {"HPC_PROFILE_ENV": "my-env"}) in res.overrides
    res = resolve(PROFILES, {"profile": "cpu", "env": "ml"}, ctx())
    assert ("environment", {"HPC_PROFILE_ENV": "ml"}) in res.overrides


def test_without_scheduler_data_the_configured_bounds_still_hold() -> None:
    blind = ctx(limits=ClusterLimits(error="sinfo: Unable to contact slurm controller"))
    assert (
        resolve(PROFILES, {"profile": "gpu", "walltime": "05:00:00"}, blind).job_request().walltime == 18000
    )
    assert refused({"profile": "cpu", "cpus": 5}, blind).field == "cpus"
    configured = ctx(limits=ClusterLimits().with_config({"gpu": {"max_walltime": "02:00:00"}}))
    error = refused({"profile": "gpu", "walltime": "03:00:00"}, configured)
    assert error.field == "walltime" and "02:00:00" in error.reason


def test_partitions_and_accounts_from_the_scheduler() -> None:
    profiles = parse_profile_list(
        [
            {
                "display_name": "Any",
                "profile_options": {
                    "partition": {"type": "partition"},
                    "account": {"type": "account"},
                    "walltime": {"type": "walltime", "default": "00:03:00"},
                },
            }
        ]
    )
    assert resolve(profiles, {}, ctx()).user_options == {
        "profile": "any",
        "partition": "debug",
        "walltime": "00:03:00",
    }
    assert resolve(profiles, {"partition": "short"}, ctx()).job_request().partition == "short"
    assert refused_with(profiles, {"partition": "nosuch"}).field == "partition"
    # accounting off: the account is free text (a name), checked by the scheduler at submit
    assert resolve(profiles, {"account": "physics"}, ctx()).job_request().account == "physics"
    assert refused_with(profiles, {"account": "bad name"}).field == "account"
    from jupyterhub_hpc.backends.slurm_limits import parse_sacctmgr_associations

    with_acct = ClusterLimits(
        partitions=LIMITS.partitions,
        associations=parse_sacctmgr_associations(data("sacctmgr-assoc.HAND-WRITTEN.txt")),
    )
    assert resolve(profiles, {"account": "chem"}, ctx(limits=with_acct)).job_request().account == "chem"
    error = refused_with(profiles, {"account": "biology"}, ctx(limits=with_acct))
    assert error.field == "account" and "physics, chem" in error.reason
    assert resolve(profiles, {}, ctx(limits=with_acct)).job_request().account is None  # scheduler's default


def refused_with(
    profiles: ProfileList, options: dict[str, Any], context: Context | None = None
) -> RequestError:
    with pytest.raises(RequestError) as info:
        resolve(profiles, options, context or ctx())
    return info.value


def test_remembered_choices_fall_back_with_notices() -> None:
    res, notices = reconcile(PROFILES, {"profile": "retired-gpu", "gpus": 4}, ctx())
    assert res.profile.slug == "cpu" and "'retired-gpu'" in notices[0]
    res, notices = reconcile(
        PROFILES, {"profile": "cpu", "env": "old-env", "cpus": 3, "walltime": "99:00:00"}, ctx()
    )
    assert res.user_options["cpus"] == 3  # still valid: kept
    assert res.user_options["env"] == "base" and res.user_options["walltime"] == "01:00:00"
    assert [n.split(" for ")[1].split(" ")[0] for n in notices] == ["'walltime'", "'env'"]
    res, notices = reconcile(PROFILES, {"profile": "cpu", "removed-option": 1}, ctx())
    assert res.profile.slug == "cpu" and "'removed-option'" in notices[0]
    res, notices = reconcile(PROFILES, {"profile": "gpu", "cpus": 2}, ctx())
    assert notices == [] and res.user_options["cpus"] == 2


# -- properties ------------------------------------------------------------------------------------
KEYS = [
    "profile",
    "cpus",
    "memory",
    "walltime",
    "env",
    "env--unlisted-choice",
    "gpus",
    "gpu_type",
    "nodes",
    "x",
]
values = st.one_of(
    st.integers(-3, 20),
    st.sampled_from(
        [
            "cpu",
            "gpu",
            "bigmem",
            "staff",
            "nosuch",
            "",
            "base",
            "ml",
            "tesla",
            "a100",
            "unlisted-choice",
            "my-env",
            "Bad Env",
            "2",
            "8",
            "512M",
            "3G",
            "7G",
            "9G",
            "1.5G",
            "00:04:00",
            "00:05:01",
            "03:59:00",
            "04:00:01",
            "1-00:00:00",
            "90",
            "x:y",
            "00:99:99",
            "\u0663",
            "\uff12",
            "\u00b2",
            "my-env\u2028",
            "a\u202eb",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
)
PROFILE_KEYS = {
    slug: [*profile.profile_options, *(f"{k}--unlisted-choice" for k in profile.profile_options)]
    for slug, profile in ((p.slug, p) for p in PROFILES.profiles)
}


PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "cpus": st.one_of(st.integers(-1, 10), st.sampled_from(["2", "8"])),
    "memory": st.sampled_from(["256M", "400M", "512M", "1G", "2G", "3G", "7G", "9G", "1.5G", "100M", 700]),
    "walltime": st.sampled_from(
        ["00:04:00", "00:05:01", "03:59:00", "04:00:01", "1-00:00:00", "90", 5, "x:y"]
    ),
    "env": st.sampled_from(["base", "ml", "unlisted-choice", "old"]),
    "env--unlisted-choice": st.sampled_from(["my-env", "Bad Env", "", "x" * 40]),
    "gpus": st.integers(-1, 4),
    "gpu_type": st.sampled_from(["tesla", "a100", ""]),
}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly plausible values for the keys of the chosen profile (so that many requests pass),
    sometimes any key with any value."""
    slug = draw(st.sampled_from(["cpu", "gpu", "bigmem", "staff", "nosuch", None]))
    keys = PROFILE_KEYS.get(slug or "cpu", []) if draw(st.integers(0, 4)) else KEYS
    options: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(keys or KEYS), unique=True, max_size=5)):
        junk = key not in PLAUSIBLE or not draw(st.integers(0, 9))
        options[key] = draw(values if junk else PLAUSIBLE[key])
    if slug is not None:
        options["profile"] = slug
    return options


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options=requests(), staff=st.booleans())
def test_any_request_is_refused_with_a_reason_or_fits_every_limit(
    options: dict[str, Any], staff: bool
) -> None:
    context = ctx(user="hpcuser3" if staff else "hpcuser1", groups=("hpc-staff",) if staff else ())
    try:
        res = resolve(PROFILES, options, context)
    except RequestError as exc:
        event(f"refused: {exc.field.split('--')[0]}")
        assert exc.field and exc.reason
        assert not INTERNALS.search(exc.reason), exc.reason
        assert (
            exc.field in options
            or exc.field in ("profile",)
            or exc.field.removesuffix("--unlisted-choice") in options
        )
        return
    request = res.job_request()
    event(f"accepted: {res.profile.slug}")
    part = LIMITS.partitions[request.partition or "debug"]
    profile = res.profile
    assert profile.visible_to(context.user, context.groups)
    # every key is kept, except empty ones and the "unlisted-choice" marker, which the
    # normalised options carry as the write-in key alone
    assert set(options) - {"profile"} <= set(res.user_options) | {
        k for k, v in options.items() if v in (None, "")
    } | {
        k
        for k, v in options.items()
        if v == "unlisted-choice" and f"{k}--unlisted-choice" in res.user_options
    }
    assert part.max_walltime is None or request.walltime <= part.max_walltime
    assert request.cpus <= (part.cpus_per_node or 10**6) and request.memory <= (part.memory_per_node or 10**9)
    assert request.gpus <= part.max_gpus(request.gpu_type)
    assert request.gpu_type is None or request.gpus >= 1
    for key, option in profile.profile_options.items():
        if key in res.user_options and option.type in ("integer", "memory", "walltime"):
            number = option.parse_number(res.user_options[key])
            low, high = option.bound("min"), option.bound("max")
            assert (low is None or number >= low) and (high is None or number <= high)
    # what is remembered resolves to the same request
    again = resolve(PROFILES, res.user_options, context)
    assert again.job_request() == request and again.user_options == res.user_options


@settings(max_examples=200, deadline=None)
@given(options=requests())
def test_remembered_options_never_fail(options: dict[str, Any]) -> None:
    res, notices = reconcile(PROFILES, options, ctx())
    request = res.job_request()
    assert request.partition in LIMITS.partitions
    if notices:
        assert all(isinstance(n, str) and n for n in notices)


def test_an_option_without_default_starts_from_the_admins_value_within_its_range() -> None:
    profiles = parse_profile_list(
        [
            {
                "display_name": "G",
                "slug": "g",
                "spawner_override": {"partition": "gpu", "walltime": "01:00:00"},
                "profile_options": {
                    "gpus": {
                        "type": "integer",
                        "display_name": "GPUs",
                        "job_field": "gpus",
                        "min": 1,
                        "max": 2,
                    },
                    "cpus": {"type": "integer", "display_name": "Cores", "job_field": "cpus", "max": 8},
                },
            }
        ]
    )
    res = resolve(profiles, {"profile": "g"}, ctx())
    # the admin asks for no GPU (gpus = 0): this profile's least is 1; the admin's 1 core is kept
    assert (res.user_options["gpus"], res.user_options["cpus"]) == (1, BASE["cpus"])
    assert resolve(profiles, {"profile": "g", "gpus": 2}, ctx()).user_options["gpus"] == 2
    with pytest.raises(RequestError, match="at least 1"):
        resolve(profiles, {"profile": "g", "gpus": 0}, ctx())


# -- strict values (issue 11, item 5) ------------------------------------------------------------

#: characters refused in free text unless an admin pattern accepts them (Cc, Cf, Zl, Zp)
INVISIBLE = [
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE (Cf)
    "\u2066",  # LEFT-TO-RIGHT ISOLATE (Cf)
    "\u200b",  # ZERO WIDTH SPACE (Cf)
    "\ufeff",  # BYTE ORDER MARK (Cf)
    "\u00ad",  # SOFT HYPHEN (Cf)
    "\U000e0041",  # TAG LATIN CAPITAL LETTER A (Cf, beyond the BMP)
    "\u2028",  # LINE SEPARATOR (Zl)
    "\u2029",  # PARAGRAPH SEPARATOR (Zp)
    "\x85",  # NEXT LINE (Cc, C1)
    "\x9b",  # CONTROL SEQUENCE INTRODUCER (Cc, C1)
    "\x1b",  # ESCAPE (Cc)
    "\n",
    "\x00",
]

FREE_TEXT = parse_profile_list(
    [
        {
            "display_name": "Free",
            "slug": "free",
            "profile_options": {
                # a write-in without validation_regex: the default rule applies
                "image": {
                    "choices": {"base": {"display_name": "base"}},
                    "unlisted_choice": {"enabled": True},
                },
                # a write-in whose admin pattern accepts anything but a newline
                "label": {
                    "choices": {"none": {"display_name": "none"}},
                    "unlisted_choice": {"enabled": True, "validation_regex": ".+"},
                },
                "note": {"type": "text"},  # free text, no pattern
                "motd": {"type": "text", "pattern": "[^\\n]*"},  # the admin allows all but newlines
                "reservation": {"type": "reservation"},
            },
        }
    ]
)


def free(options: dict[str, Any]) -> Any:
    return resolve(FREE_TEXT, {"profile": "free", **options}, ctx(limits=None))


def free_refused(options: dict[str, Any]) -> RequestError:
    with pytest.raises(RequestError) as info:
        free(options)
    assert not INTERNALS.search(str(info.value)), str(info.value)
    return info.value


@pytest.mark.parametrize("char", INVISIBLE)
@pytest.mark.parametrize("where", ["{c}x", "x{c}", "my{c}env"])
@pytest.mark.parametrize("key", ["image--unlisted-choice", "note"])
def test_invisible_and_control_characters_are_refused_without_an_admin_pattern(
    char: str, where: str, key: str
) -> None:
    value = where.format(c=char)
    error = free_refused({key: value})
    assert error.field == key
    assert f"U+{ord(char):04X}" in error.reason and "not allowed here" in error.reason


@pytest.mark.parametrize("char", [c for c in INVISIBLE if c != "\n"])
def test_an_admin_pattern_that_matches_allows_them(char: str) -> None:
    value = f"left{char}right"
    res = free({"label--unlisted-choice": value, "motd": value})
    assert res.user_options["label--unlisted-choice"] == value and res.user_options["motd"] == value
    # ... and only what it matches: "." is no newline, "[^\n]" refuses one
    assert free_refused({"label--unlisted-choice": "a\nb"}).field == "label--unlisted-choice"
    assert free_refused({"motd": "a\nb"}).field == "motd"


def test_plain_unicode_text_is_still_accepted() -> None:
    res = free({"image--unlisted-choice": "Bildung: ünïcödé 日本 😀", "note": "café au lait"})
    assert res.user_options["image--unlisted-choice"] == "Bildung: ünïcödé 日本 😀"
    assert res.user_options["note"] == "café au lait"
    # surrounding spaces of a write-in are trimmed, other blanks are not hidden by trimming
    assert free({"image--unlisted-choice": "  x  "}).user_options["image--unlisted-choice"] == "x"
    assert "U+2028" in free_refused({"image--unlisted-choice": "x\u2028"}).reason


@pytest.mark.parametrize("value", ["resv\u202e", "r\u0435sv", "\uff52esv", "a b"])
def test_scheduler_names_stay_ascii(value: str) -> None:
    assert free_refused({"reservation": value}).field == "reservation"


def test_an_admin_pattern_cannot_widen_what_a_job_field_takes() -> None:
    """The option's pattern lets any text through; the job request still takes names only,
    and its refusal names the option (not the job field) and the rule."""
    profiles = parse_profile_list(
        [{"display_name": "P", "profile_options": {"where": {"type": "partition", "pattern": ".+"}}}]
    )
    with pytest.raises(RequestError) as info:
        resolve(profiles, {"where": "gpu\u202e"}, ctx(limits=None))
    assert info.value.field == "where"
    assert "letters, digits or _ . + : @ % - (ASCII)" in info.value.reason
    assert not INTERNALS.search(info.value.reason)
    assert resolve(profiles, {"where": "gpu"}, ctx(limits=None)).job_request().partition == "gpu"


@pytest.mark.parametrize("value", ["\u0663", "\uff12", "\u00b2", "1\u0663", 1.5, float("nan"), float("inf")])
def test_typed_options_take_ascii_whole_numbers(value: object) -> None:
    error = refused({"profile": "cpu", "cpus": value})
    assert error.field == "cpus" and error.reason.startswith("must be a whole number")
    assert not INTERNALS.search(error.reason)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("walltime", "00:99:99", "minutes must be below 60 (got '00:99:99')"),
        ("walltime", "00:30:60", "seconds must be below 60"),
        ("walltime", "0-24:00:00", "hours must be below 24"),
        ("walltime", "\u0661:00:00", "not a walltime"),
        ("memory", "\uff11G", "not a memory size"),
        ("memory", "1\u212a", "not a memory size"),  # Kelvin sign: was a KeyError (a 500)
        ("memory", float("nan"), "must be a finite size"),
    ],
)
def test_typed_options_refuse_bad_numbers_in_plain_words(key: str, value: object, reason: str) -> None:
    error = refused({"profile": "cpu", key: value})
    assert error.field == key and error.reason.startswith(reason), error.reason
    assert not INTERNALS.search(error.reason)


def test_an_integral_float_is_a_whole_number() -> None:
    assert resolve(PROFILES, {"profile": "cpu", "cpus": 3.0}, ctx()).user_options["cpus"] == 3


# -- null: "not given" in profiles ---------------------------------------------------------------


def test_null_means_the_default_for_every_declared_option() -> None:
    defaults = resolve(PROFILES, {"profile": "cpu"}, ctx())
    nulls = {"profile": "cpu", "cpus": None, "memory": None, "walltime": None, "env": None}
    res = resolve(PROFILES, nulls, ctx())
    assert res.user_options == defaults.user_options  # no null is kept: the defaults are
    assert res.job_request() == defaults.job_request()
    # "" and leaving the key out mean the same
    empties = resolve(PROFILES, {k: "" for k in nulls} | {"profile": "cpu"}, ctx())
    assert empties.user_options == defaults.user_options


def test_null_profile_is_the_default_profile() -> None:
    assert resolve(PROFILES, {"profile": None}, ctx()).profile.slug == "cpu"


def test_null_write_in_is_no_write_in() -> None:
    res = resolve(PROFILES, {"profile": "cpu", "env": "ml", "env--unlisted-choice": None}, ctx())
    assert res.user_options["env"] == "ml" and "env--unlisted-choice" not in res.user_options
    # choosing the write-in and giving null is an empty write-in: refused
    assert refused({"profile": "cpu", "env": "unlisted-choice", "env--unlisted-choice": None}).reason == (
        "the custom value is empty"
    )


def test_null_for_an_option_that_does_not_apply_is_ignored() -> None:
    res = resolve(PROFILES, {"profile": "gpu", "gpus": 0, "gpu_type": None}, ctx())
    assert res.job_request().gpu_type is None and "gpu_type" not in res.user_options
    assert refused({"profile": "gpu", "gpus": 0, "gpu_type": "tesla"}).field == "gpu_type"


def test_null_for_free_text_and_scheduler_defaults_is_nothing() -> None:
    res = free({"note": None, "reservation": None, "image--unlisted-choice": None})
    assert "note" not in res.user_options and res.job_request().reservation is None
    assert res.user_options["image"] == "base"


def test_null_does_not_make_an_unknown_or_hidden_key_acceptable() -> None:
    assert refused({"profile": "cpu", "gpus": None}).reason == "unknown option for profile 'cpu'"
    assert refused({"profile": "cpu", "job_extra_directives": None}).field == "job_extra_directives"
    assert refused({"profile": "staff", "cpus": None}).field == "profile"  # not visible to this user


@settings(max_examples=400, deadline=None)
@given(
    text=st.one_of(
        st.text(alphabet="0123456789:- \t", max_size=12),
        st.text(alphabet="0123456789:-\u0663\uff13\u00b2\u2028x", max_size=9),
    )
)
def test_the_schema_walltime_pattern_is_the_parsers_rule(text: str) -> None:
    """The pattern clients (and the browser) check matches exactly the forms the hub reads;
    the bounds (at least a minute, the option's min and max) are separate keywords."""
    try:
        parse_walltime_seconds(text)
        readable = True
    except ValueError as exc:
        readable = str(exc).startswith("must be at least one minute")
    assert bool(re.fullmatch(WALLTIME_PATTERN, text)) == readable, text


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="0123456789.KMGTkmgtiBb \t\u0663\u212a", max_size=10))
def test_the_schema_memory_pattern_is_the_parsers_rule(text: str) -> None:
    try:
        parse_memory_mib(text)
        readable = True
    except ValueError as exc:
        readable = str(exc).startswith("must be at least 1 MiB")
    assert bool(re.fullmatch(MEMORY_PATTERN, text)) == readable, text


def test_free_text_refusals_say_the_rule_not_the_pattern() -> None:
    assert free_refused({"note": "x" * 257}).reason.endswith("must be 1 to 256 characters")
    assert free_refused({"reservation": "a b"}).reason == (
        "'a b' is not a name: 1-128 letters, digits or _ . + : @ % - (ASCII), starting with a letter or digit"
    )
    # an admin's pattern is the admin's rule: it is quoted as written
    assert free_refused({"label--unlisted-choice": "a\nb"}).reason == "'a\\nb' does not match .+"


# -- defaults: the profile's value wins over the admin's, and every default fits its range ------------

#: NERSC's shape: each profile fixes its own walltime and cores; the options have no default
PER_PROFILE = parse_profile_list(
    [
        {
            "display_name": "Shared CPU, 4 h",
            "slug": "shared",
            "default": True,
            "spawner_override": {"walltime": "04:00:00", "cpus": 4, "memory": "6G"},
            "profile_options": {
                "walltime": {"display_name": "Time", "type": "walltime", "max": "12:00:00"},
                "cpus": {"display_name": "Cores", "type": "integer", "job_field": "cpus", "max": 16},
                "memory": {"display_name": "Memory", "type": "memory"},
            },
        },
        {
            "display_name": "Explicit default",
            "slug": "explicit",
            "spawner_override": {"walltime": "04:00:00"},
            "profile_options": {
                "walltime": {"display_name": "Time", "type": "walltime", "default": "02:00:00"},
            },
        },
        {
            "display_name": "Short queue",
            "slug": "short",
            "spawner_override": {"partition": "short", "cpus": 7},
            "profile_options": {
                "walltime": {"display_name": "Time", "type": "walltime"},
                "memory": {"display_name": "Memory", "type": "memory", "default": "64G"},
                "cpus": {
                    "display_name": "Cores",
                    "type": "integer",
                    "job_field": "cpus",
                    "min": 2,
                    "max": 7,
                    "step": 2,
                },
            },
        },
    ]
)


def _short_partition_limits() -> ClusterLimits:
    return ClusterLimits().with_config(
        {"short": {"default": True, "max_walltime": "06:00:00", "max_memory": "16G", "max_cpus": 5}}
    )


def test_a_profiles_own_values_win_over_the_admins_for_options_without_a_default() -> None:
    # the admin's base is 8 h, 1 CPU, 1G: the profile's 4 h, 4 CPUs and 6G are what is asked
    res = resolve(PER_PROFILE, {}, ctx())
    request = res.job_request()
    assert (request.walltime, request.cpus, request.memory) == (4 * 3600, 4, 6144)
    assert res.user_options == {"profile": "shared", "walltime": "04:00:00", "cpus": 4, "memory": "6G"}
    # a user's own value still wins over both
    res = resolve(PER_PROFILE, {"walltime": "10:00:00", "cpus": "8"}, ctx())
    assert (res.job_request().walltime, res.job_request().cpus) == (10 * 3600, 8)


def test_an_options_own_default_wins_over_the_profiles_value() -> None:
    res = resolve(PER_PROFILE, {"profile": "explicit"}, ctx())
    assert res.job_request().walltime == 2 * 3600


def test_typed_defaults_are_brought_into_the_partitions_range() -> None:
    context = ctx(limits=_short_partition_limits())
    # the admin's 8 h in a 6 h partition, an explicit 64G default on 16G nodes, CPUs 2-7 in
    # steps of 2 (the profile asks 7) on 5-CPU nodes: the default start fits instead of being refused
    res = resolve(PER_PROFILE, {"profile": "short"}, context)
    request = res.job_request()
    assert (request.partition, request.walltime, request.memory, request.cpus) == (
        "short",
        6 * 3600,
        16384,
        4,
    )
    assert res.user_options["walltime"] == "06:00:00"
    # what a user writes is checked, never brought into range
    with pytest.raises(RequestError) as info:
        resolve(PER_PROFILE, {"profile": "short", "walltime": "07:00:00"}, context)
    assert info.value.field == "walltime" and "06:00:00" in info.value.reason
    with pytest.raises(RequestError) as info:
        resolve(PER_PROFILE, {"profile": "short", "memory": "32G"}, context)
    assert info.value.field == "memory" and "at most 16384 MiB" in info.value.reason
