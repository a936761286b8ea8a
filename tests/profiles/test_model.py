"""The profile model: KubeSpawner's documented examples parse unchanged; bad configs name the bad key."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyterhub_hpc.profiles import check_profiles
from jupyterhub_hpc.profiles.model import (
    SLUG_RE,
    ProfileConfigError,
    ProfileList,
    parse_profile_list,
    slugify,
)
from jupyterhub_hpc.profiles.spawners import ProfilesLocalProcessSpawner
from jupyterhub_hpc.spawner import SlurmSpawner

# -- KubeSpawner's examples, re-typed from its documentation (profile_list help text, older and current
#    versions; the unlisted_choice example of the docs; the fancy-profiles image-building example) -------

KS_CLASSIC = [
    {
        "display_name": "Training Env - Python",
        "slug": "training-python",
        "default": True,
        "kubespawner_override": {"image": "training/python:label", "cpu_limit": 1, "mem_limit": "512M"},
    },
    {
        "display_name": "Training Env - Datascience",
        "slug": "training-datascience",
        "kubespawner_override": {"image": "training/datascience:label", "cpu_limit": 4, "mem_limit": "8G"},
    },
    {
        "display_name": "DataScience - Small instance",
        "slug": "datascience-small",
        "kubespawner_override": {"image": "datascience/small:label", "cpu_limit": 10, "mem_limit": "16G"},
    },
    {
        "display_name": "DataScience - Medium instance",
        "slug": "datascience-medium",
        "kubespawner_override": {"image": "datascience/medium:label", "cpu_limit": 48, "mem_limit": "96G"},
    },
    {
        "display_name": "DataScience - Medium instance (GPUx2)",
        "slug": "datascience-gpu2x",
        "kubespawner_override": {
            "image": "datascience/medium:label",
            "cpu_limit": 48,
            "mem_limit": "96G",
            "extra_resource_guarantees": {"nvidia.com/gpu": "2"},
        },
    },
]

KS_OPTIONS = [
    {
        "display_name": "Demo - profile_list entry 1",
        "description": (
            "Demo description for profile_list entry 1, and it should look good even though it is "
            "a bit lengthy."
        ),
        "slug": "demo-1",
        "default": True,
        "profile_options": {
            "image": {
                "display_name": "Image",
                "choices": {
                    "base": {
                        "display_name": "jupyter/base-notebook:latest",
                        "kubespawner_override": {"image": "jupyter/base-notebook:latest"},
                    },
                    "minimal": {
                        "display_name": "jupyter/minimal-notebook:latest",
                        "default": True,
                        "kubespawner_override": {"image": "jupyter/minimal-notebook:latest"},
                    },
                },
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Other image",
                    "display_name_in_choices": "Enter image manually",
                    "validation_regex": "^jupyter/.+:.+$",
                    "validation_message": "Must be an image matching ^jupyter/<name>:<tag>$",
                    "kubespawner_override": {"image": "{value}"},
                },
            },
        },
        "kubespawner_override": {"default_url": "/lab"},
    },
    {
        "display_name": "Demo - profile_list entry 2",
        "slug": "demo-2",
        "kubespawner_override": {"extra_resource_guarantees": {"nvidia.com/gpu": "1"}},
    },
]

#: the unlisted_choice override example of the help text ({value} in nested dicts)
KS_UNLISTED_TAG = [
    {
        "display_name": "Datascience",
        "profile_options": {
            "tag": {
                "display_name": "Image tag",
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Tag",
                    "kubespawner_override": {
                        "image_spec": "jupyter/datascience-notebook:{value}",
                        "default_url": "/lab",
                        "extra_labels": {"user-specified-image-tag": "{value}"},
                    },
                },
            }
        },
    }
]

FANCY_PROFILES = [
    {
        "display_name": "Choose your environment and resources",
        "slug": "only-choice",
        "profile_options": {
            "image": {
                "display_name": "Image",
                "dynamic_image_building": {"enabled": True},
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Custom image",
                    "validation_regex": "^.+:.+$",
                    "validation_message": (
                        "Must be a publicly available docker image, of form <image-name>:<tag>"
                    ),
                    "display_name_in_choices": "Specify an existing docker image",
                    "description_in_choices": "Use a pre-existing docker image from a public docker registry",
                    "kubespawner_override": {"image": "{value}"},
                },
                "choices": {
                    "pangeo": {
                        "display_name": "Pangeo Notebook Image",
                        "description": "Python image with scientific, dask and geospatial tools",
                        "kubespawner_override": {"image": "pangeo/pangeo-notebook:2023.09.11"},
                    },
                    "scipy": {
                        "display_name": "Jupyter SciPy Notebook",
                        "slug": "scipy",
                        "kubespawner_override": {"image": "quay.io/jupyter/scipy-notebook:2024-03-18"},
                    },
                },
            }
        },
    }
]


@pytest.mark.parametrize("example", [KS_CLASSIC, KS_OPTIONS, KS_UNLISTED_TAG, FANCY_PROFILES])
def test_kubespawner_examples_parse(example: list[dict[str, Any]]) -> None:
    parsed = parse_profile_list(example)
    assert [p.display_name for p in parsed.profiles] == [p["display_name"] for p in example]
    for profile, raw in zip(parsed.profiles, example, strict=True):
        assert profile.slug == raw.get("slug", slugify(raw["display_name"]))
        assert profile.overrides == raw.get("kubespawner_override", {})
        assert set(profile.profile_options) == set(raw.get("profile_options", {}))


def test_slugs_defaults_and_dict_order_follow_kubespawner() -> None:
    parsed = parse_profile_list(KS_UNLISTED_TAG)
    assert parsed.profiles[0].slug == "datascience"
    # no profile marked default: the first is the default
    assert ProfileList.default_of(parse_profile_list(KS_CLASSIC[1:]).profiles).slug == "training-datascience"
    # a dict is sorted by key (not insertion order), and its keys are not slugs
    as_dict = parse_profile_list({"b": KS_CLASSIC[0], "a": KS_CLASSIC[1]})
    assert [p.slug for p in as_dict.profiles] == ["training-datascience", "training-python"]
    demo = parse_profile_list(KS_OPTIONS).profiles[0].profile_options["image"]
    assert [k for k, c in demo.choices.items() if c.default] == ["minimal"]
    assert demo.unlisted_choice.display_name_in_choices == "Enter image manually"
    # absent unlisted_choice means disabled, with KubeSpawner's label
    assert parse_profile_list(FANCY_PROFILES).profiles[0].profile_options["image"].unlisted_choice.enabled


@pytest.mark.parametrize(
    ("config", "key", "reason"),
    [
        (
            [{"display_name": "A", "kubespawner_overide": {}}],
            "profile_list[0].kubespawner_overide",
            "unknown key",
        ),
        ([{"slug": "a"}], "profile_list[0].display_name", "Field required"),
        (
            [
                {
                    "display_name": "A",
                    "profile_options": {"x": {"choices": {"c": {"display_name": "c", "bogus": 1}}}},
                }
            ],
            "profile_list[0].profile_options.x.choices.c.bogus",
            "unknown key",
        ),
        (
            [{"display_name": "A", "profile_options": {"x": {"display_name": "no choices"}}}],
            "profile_list[0].profile_options.x",
            "needs choices",
        ),
        (
            [{"display_name": "A", "profile_options": {"n": {"type": "integer", "min": 5, "max": 2}}}],
            "profile_list[0].profile_options.n",
            "min is larger than max",
        ),
        (
            [{"display_name": "A", "profile_options": {"m": {"type": "memory", "max": "lots"}}}],
            "profile_list[0].profile_options.m",
            "not a memory size",
        ),
        (
            [{"display_name": "A", "profile_options": {"n": {"type": "integer", "job_field": "walltime"}}}],
            "profile_list[0].profile_options.n",
            "cpus, nodes or gpus",
        ),
        (
            [{"display_name": "A", "profile_options": {"n": {"type": "integer", "job_field": "colour"}}}],
            "profile_list[0].profile_options.n.job_field",
            "unknown job field",
        ),
        (
            [
                {
                    "display_name": "A",
                    "profile_options": {
                        "x": {"choices": {"a": {}}, "when": {"y": {"min": 1}}},
                        "y": {"type": "integer"},
                    },
                }
            ],
            "profile_list[0]",
            "'y' is not an option declared before it",
        ),
        (
            [
                {
                    "display_name": "A",
                    "profile_options": {"x": {"unlisted_choice": {"enabled": True, "validation_regex": "("}}},
                }
            ],
            "profile_list[0].profile_options.x.unlisted_choice.validation_regex",
            "not a regular expression",
        ),
        ([{"display_name": "A"}, {"display_name": "a"}], "profile_list", "two profiles have the slug 'a'"),
        ([{"display_name": "A", "slug": "a--b"}], "profile_list[0]", "single '-'"),
        ([], "profile_list", "is empty"),
    ],
)
def test_bad_configuration_names_the_key(config: Any, key: str, reason: str) -> None:
    with pytest.raises(ProfileConfigError) as info:
        parse_profile_list(config)
    assert info.value.key == key
    assert reason in info.value.reason


def test_override_keys_are_checked_against_the_spawner_traits() -> None:
    local_traits = frozenset(ProfilesLocalProcessSpawner.class_trait_names())
    with pytest.raises(ProfileConfigError) as info:
        parse_profile_list(KS_CLASSIC, local_traits)  # "image" is a KubeSpawner trait
    assert info.value.key == "profile_list[0].overrides.image"
    slurm_traits = frozenset(SlurmSpawner.class_trait_names())
    ok = [{"display_name": "A", "backend": "local", "cluster": "b", "spawner_override": {"partition": "gpu"}}]
    assert parse_profile_list(ok, slurm_traits).profiles[0].all_overrides == {
        "partition": "gpu",
        "backend": "local",
        "cluster": "b",
    }
    with pytest.raises(ProfileConfigError, match="no such trait"):
        parse_profile_list(ok, local_traits)
    with pytest.raises(ProfileConfigError, match="plain values"):
        parse_profile_list([{"display_name": "A", "spawner_override": {"cpus": lambda s: 2}}], slurm_traits)


def test_check_profiles_at_hub_start_reads_the_config_of_the_spawner_class() -> None:
    from traitlets.config import Config

    c = Config()
    c.JupyterHub.spawner_class = "slurm"
    c.HPCSpawner.profile_list = [{"display_name": "A", "spawner_override": {"partition": "x"}}]
    check_profiles(c)  # inherited from the HPCSpawner section
    c.SlurmSpawner.profile_list = [{"display_name": "A", "spawner_override": {"image": "x"}}]
    with pytest.raises(ProfileConfigError, match=r"profile_list\[0\]\.overrides\.image"):
        check_profiles(c)
    c.SlurmSpawner.profile_list = [{"display_name": "A"}]
    c.SlurmSpawner.partition_limits = {"gpu": {"max_walltimes": "1:00:00"}}
    with pytest.raises(ProfileConfigError, match="max_walltimes"):
        check_profiles(c)


def test_trait_validation_rejects_a_bad_static_list() -> None:
    from traitlets import TraitError

    with pytest.raises(TraitError, match=r"profile_list\[0\]\.display_name"):
        ProfilesLocalProcessSpawner(profile_list=[{"slug": "x"}])


@given(st.text(max_size=60))
def test_slugify_always_gives_a_usable_slug(text: str) -> None:
    slug = slugify(text)
    assert SLUG_RE.match(slug), slug
    assert slug == slug.lower() and "--" not in slug


@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=6))
def test_any_display_names_parse_or_collide_by_name(names: list[str]) -> None:
    config = [{"display_name": n} for n in names]
    slugs = [slugify(n) for n in names]
    if len(set(slugs)) < len(slugs):
        with pytest.raises(ProfileConfigError, match="two profiles have the slug"):
            parse_profile_list(config)
    else:
        parsed = parse_profile_list(config)
        assert [p.slug for p in parsed.profiles] == slugs
        assert all(re.fullmatch(SLUG_RE, s) for s in slugs)
