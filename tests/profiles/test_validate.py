"""The one validation path: strict for requests, lenient (with notices) for remembered options;
property tests: any request is either refused with a field and a reason, or fits every limit."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from jupyterhub_hpc.profiles.limits import ClusterLimits, parse_sinfo_nodes
from jupyterhub_hpc.profiles.model import ProfileList, parse_profile_list
from jupyterhub_hpc.profiles.validate import Context, reconcile, resolve
from jupyterhub_hpc.request import RequestError

from .conftest import SITE_PROFILES, data

#: what ProfilesSlurmSpawner passes as the admin's base (its traits' defaults)
BASE = {
    "job_name": "jupyterhub",
    "partition": None,
    "account": None,
    "qos": None,
    "reservation": None,
    "constraint": None,
    "cpus": 1,
    "memory": "1G",
    "walltime": "08:00:00",
    "gpus": 0,
    "gpu_type": None,
}
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
    from jupyterhub_hpc.profiles.limits import parse_sacctmgr_associations

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
        ]
    ),
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
