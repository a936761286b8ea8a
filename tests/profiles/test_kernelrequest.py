"""The "New batch kernel…" dialog within the site's profiles (profiles/kernelrequest.py): real
profile lists and limits, the spawner's own validation (resolve), refusals naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from jupyterhub_hpc.backends.limits import ClusterLimits
from jupyterhub_hpc.kernels.spec import kernelspec
from jupyterhub_hpc.profiles.kernelrequest import (
    KernelRequestError,
    kernel_profiles,
    kernel_resources,
    kernel_user_options,
)
from jupyterhub_hpc.profiles.model import parse_profile_list
from jupyterhub_hpc.profiles.validate import Context, resolve
from jupyterhub_hpc.request import RequestError

from .conftest import BASE

PROFILES = parse_profile_list(
    [
        {
            "display_name": "Small",
            "slug": "small",
            "default": True,
            "spawner_override": {"partition": "debug", "memory": "2G"},
            "profile_options": {
                "ncpu": {"type": "integer", "job_field": "cpus", "max": 2, "default": 1},
                "time": {"type": "walltime", "max": "01:00:00", "default": "00:30:00"},
            },
        },
        {
            "display_name": "Big",
            "slug": "big",
            "allowed_groups": ["bigusers"],
            "profile_options": {
                "queue": {
                    "type": "partition",
                    "choices": {"debug": {"default": True}, "batch": {}},
                },
                "ncpu": {"type": "integer", "job_field": "cpus", "max": 16},
                "mem": {"type": "memory", "max": "64G", "default": "4G"},
            },
        },
    ]
)
LIMITS = ClusterLimits(live=True, fetched_at=1.0).with_config(
    {"debug": {"max_walltime": "10:00:00", "max_cpus": 8}, "batch": {"max_cpus": 4}}
)


def ctx(*groups: str) -> Context:
    return Context(
        user="hpcuser1",
        groups=frozenset(groups),
        base_job=BASE,
        base_backend="slurm",
        limits={"slurm/": LIMITS},
    )


def request(slug: str | None, resources: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
    context = context or ctx()
    options = kernel_user_options(PROFILES, context, slug, resources)
    return kernel_resources(resolve(PROFILES, options, context))


def test_the_dialog_sees_fixed_values_bounds_and_choices() -> None:
    listed = kernel_profiles(PROFILES, ctx())
    assert [p["slug"] for p in listed] == ["small"]  # big is for its group only
    small = listed[0]
    assert small["default"] is True and small["unavailable"] is None
    assert small["fields"]["partition"] == {"fixed": "debug"}
    assert small["fields"]["memory"] == {"fixed": "2G"}
    assert small["fields"]["cpus"] == {"option": "ncpu", "default": 1, "min": 1, "max": 2}
    assert small["fields"]["walltime"] == {
        "option": "time",
        "default": "00:30:00",
        "min": None,
        "max": "01:00:00",
    }
    assert small["fields"]["gpus"] == {"fixed": 0}
    big = {p["slug"]: p for p in kernel_profiles(PROFILES, ctx("bigusers"))}["big"]
    assert big["default"] is False
    assert big["fields"]["partition"]["choices"] == ["debug", "batch"]
    # the live limit of the default partition (debug: 8 cpus) caps the option's 16
    assert big["fields"]["cpus"]["max"] == 8
    assert big["fields"]["memory"] == {"option": "mem", "default": "4G", "min": None, "max": "64G"}


def test_a_request_within_the_profile_gets_the_profiles_fixed_values() -> None:
    assert request(None, {"cpus": 2, "walltime": "00:45:00"}) == {
        "partition": "debug",
        "cpus": 2,
        "memory": "2G",
        "walltime": "00:45:00",
        "gpus": 0,
    }
    # a fixed field given with its own value (in another spelling) is accepted
    assert request("small", {"partition": "debug", "memory": "2048M"})["walltime"] == "00:30:00"
    resources = request("big", {"partition": "batch", "cpus": "4", "memory": "8G"}, ctx("bigusers"))
    assert resources == {"partition": "batch", "cpus": 4, "memory": "8G", "walltime": "08:00:00", "gpus": 0}
    # what the hub answers is what a kernelspec takes
    spec = kernelspec("k", resources=resources)
    assert spec["metadata"]["kernel_provisioner"]["config"]["resources"] == resources


def test_a_field_the_profile_does_not_offer_is_refused_naming_field_and_profile() -> None:
    with pytest.raises(KernelRequestError) as info:
        request("small", {"partition": "batch"})
    assert info.value.field == "partition"
    assert str(info.value) == "partition: profile small does not let you choose partition (it is debug)"
    with pytest.raises(KernelRequestError, match="does not let you choose gpus"):
        request("small", {"gpus": 1})
    with pytest.raises(KernelRequestError, match="does not let you choose memory"):
        request(None, {"memory": "4G"})
    with pytest.raises(KernelRequestError, match="not a field of a batch kernel"):
        request(None, {"nodes": 2})


def test_over_a_max_is_refused_by_the_profiles_own_validation() -> None:
    with pytest.raises(RequestError) as info:
        request("small", {"cpus": 4})
    assert info.value.field == "ncpu" and "2" in info.value.reason
    with pytest.raises(RequestError) as info:
        request("small", {"walltime": "02:00:00"})
    assert info.value.field == "time"
    # the partition's live limit (batch: 4 cpus) under the option's max (16)
    with pytest.raises(RequestError) as info:
        request("big", {"partition": "batch", "cpus": 6}, ctx("bigusers"))
    assert info.value.field == "ncpu"


def test_a_choice_not_offered_is_refused() -> None:
    with pytest.raises(RequestError) as info:
        request("big", {"partition": "gpu"}, ctx("bigusers"))
    assert info.value.field == "queue" and "not one of the choices" in info.value.reason


def test_a_profile_the_user_cannot_see_is_refused() -> None:
    with pytest.raises(KernelRequestError) as info:
        request("big", {"cpus": 1})
    assert info.value.field == "profile" and "no profile 'big' is available to you" in info.value.message
    with pytest.raises(KernelRequestError, match="no profile 'nope'"):
        request("nope", {}, ctx("bigusers"))
