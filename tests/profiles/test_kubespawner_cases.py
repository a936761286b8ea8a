"""Real KubeSpawner ``profile_list`` values (``../shared/compat/cases/01-29``) against the real KubeSpawner.

For every case: (a) the list loads on ``ProfilesMixin`` in front of KubeSpawner (the cases are other
projects' config data, read from ``../shared/compat``, never copied here); (b) for every valid
``user_options`` (the case's own, the default start ``{}`` and each profile's slug) our resolution
sets the same trait values as KubeSpawner's ``load_user_options`` on its own instance, and what
KubeSpawner refuses is refused too; (c) the expectations the case carries from its source hold.
On an HPC spawner, the Kubernetes-only override keys are a start-up error naming the key.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner
from traitlets import Any as AnyTrait
from traitlets.config import Config

from jupyterhub_hpc.profiles import check_profiles, compat
from jupyterhub_hpc.profiles.form import options_from_formdata
from jupyterhub_hpc.profiles.mixin import ProfileOptionsError, ProfilesMixin
from jupyterhub_hpc.profiles.model import ProfileConfigError, ProfileList, parse_profile_list
from jupyterhub_hpc.profiles.validate import format_value
from jupyterhub_hpc.spawner import SlurmSpawner

COMPAT = Path(__file__).resolve().parents[2].parent / "shared" / "compat"
CASES = COMPAT / "cases"
if not CASES.is_dir():
    pytest.skip(
        f"{CASES} is missing: the KubeSpawner compatibility cases live in ../shared/compat beside "
        "the repository (other projects' config data, never copied into it); CI always has it",
        allow_module_level=True,
    )

CASE_FILES = sorted(p for p in CASES.iterdir() if p.name[:2].isdigit() and 1 <= int(p.name[:2]) <= 29)

#: override keys of a case that no KubeSpawner trait has: z2jh's docs write a placeholder
#: ("your_config"); the spawner the list is meant for has such a trait, so the test's has one too
EXTRA_TRAITS: dict[str, tuple[str, ...]] = {"z2jh-doc-one-profile": ("your_config",)}

#: user_options KubeSpawner accepts that are refused here, by the policy of docs/profiles.md
#: ("Unknown wire keys"): (case id, the key our 400 names)
REFUSED_HERE = {
    ("ks-doc-wire-extra-keys", "garbage-arrived-via-rest-api"),
    ("ks-doc-wire-extra-keys", "image"),  # a listed choice *and* a write-in: ambiguous
}

#: traits that are no profile's result: set by the start itself, or the hooks and the list itself
#: (KubeSpawner's ``options_form`` renders its form when read)
NOT_COMPARED = frozenset(
    {"user_options", "options_form", "options_from_form", "apply_user_options", "profile_list"}
)


def load_case(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    spec = importlib.util.spec_from_file_location(f"compat_case_{path.stem.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASE  # type: ignore[no-any-return]


def test_all_29_cases_are_there() -> None:
    assert [int(p.name[:2]) for p in CASE_FILES] == list(range(1, 30))


@pytest.fixture(autouse=True)
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KubeSpawner reads a kubeconfig when built; this one names an address nothing listens on,
    and nothing here calls the Kubernetes API."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "none", "user": {"token": "none"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    # kubernetes_asyncio reads $KUBECONFIG when it is imported, which happened already
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))


def _groups(value: Any) -> Iterator[str]:
    """Every group a case names in ``allowed_groups``: the test user is in all of them, so that
    everything is visible, as for KubeSpawner (which does not read ``allowed_groups``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "allowed_groups" and isinstance(item, list):
                yield from (str(g) for g in item)
            else:
                yield from _groups(item)
    elif isinstance(value, list):
        for item in value:
            yield from _groups(item)


class Case:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = load_case(path)
        self.id: str = self.data["id"]
        extra = {
            name: AnyTrait(None, allow_none=True).tag(config=True) for name in EXTRA_TRAITS.get(self.id, ())
        }
        self.kube: type = type("CaseKubeSpawner", (KubeSpawner,), extra)
        self.ours: type = type("CaseProfilesKubeSpawner", (ProfilesMixin, self.kube), {})
        raw = self.data["profile_list"]
        self.static = raw if not callable(raw) else None

    def raw_list(self, spawner: Any) -> Any:
        raw = self.data["profile_list"]
        return raw(spawner) if callable(raw) else raw

    def user(self) -> SimpleNamespace:
        raw = self.data["profile_list"]
        groups = sorted(set(_groups(raw if not callable(raw) else raw(None))))
        return SimpleNamespace(
            name="user1", id=1, url="/user/user1/", groups=[SimpleNamespace(name=g) for g in groups]
        )

    def spawner(self, cls: type) -> Any:
        spawner = cls(_mock=True, user=self.user(), profile_list=copy.deepcopy(self.data["profile_list"]))
        for name, value in (self.data.get("base_traits") or {}).items():
            setattr(spawner, name, copy.deepcopy(value))
        return spawner

    def parsed(self) -> ProfileList:
        spawner_traits = frozenset(self.ours.class_trait_names())
        return parse_profile_list(copy.deepcopy(self.raw_list(None)), spawner_traits)

    def probes(self) -> list[dict[str, Any]]:
        """The case's user_options, the default start, each profile's slug and each listed
        choice of each of its options, each once."""
        found: list[dict[str, Any]] = [p["user_options"] for p in self.data.get("probes", [])]
        found.append({})
        for profile in self.parsed().profiles:
            found.append({"profile": profile.slug})
            for key, option in profile.profile_options.items():
                found.extend({"profile": profile.slug, key: choice} for choice in option.choices)
        unique: list[dict[str, Any]] = []
        for options in found:
            if options not in unique:
                unique.append(options)
        return unique


CASE_OBJECTS = [Case(p) for p in CASE_FILES]
IDS = [c.path.name for c in CASE_OBJECTS]


def snapshot(spawner: Any) -> dict[str, Any]:
    """The configurable traits' values (those a copy cannot be made of, such as hooks holding a
    task, are left out: no override of the cases sets them)."""
    values: dict[str, Any] = {}
    for name in spawner.trait_names(config=True):
        if name in NOT_COMPARED:
            continue
        try:
            values[name] = copy.deepcopy(getattr(spawner, name))
        except TypeError:
            continue
    return values


def changed(before: dict[str, Any], spawner: Any) -> set[str]:
    return {n for n, v in before.items() if getattr(spawner, n) != v}


async def kubespawner_result(case: Case, options: dict[str, Any]) -> tuple[Any, Exception | None]:
    spawner = case.spawner(case.kube)
    before = snapshot(spawner)
    spawner.user_options = copy.deepcopy(options)
    try:
        await spawner.load_user_options()
    except (ValueError, KeyError, StopIteration) as exc:
        return None, exc
    return (spawner, changed(before, spawner)), None


async def our_result(case: Case, options: dict[str, Any]) -> tuple[Any, ProfileOptionsError | None]:
    spawner = case.spawner(case.ours)
    spawner.handler = SimpleNamespace()  # a start that comes with options: strict validation
    before = snapshot(spawner)
    try:
        await spawner.apply_profile(copy.deepcopy(options))
    except ProfileOptionsError as exc:
        return None, exc
    return (spawner, changed(before, spawner)), None


@pytest.mark.parametrize("case", CASE_OBJECTS, ids=IDS)
async def test_the_list_loads_on_profiles_mixin_in_front_of_kubespawner(case: Case) -> None:
    spawner = case.spawner(case.ours)  # a static list is checked when it is assigned
    profiles = await spawner.load_profiles()
    assert profiles is not None
    expected = KubeSpawner._get_initialized_profile_list(
        spawner, KubeSpawner._sorted_dict_values(spawner, case.raw_list(spawner))
    )
    assert [p.slug for p in profiles.profiles] == [p["slug"] for p in expected]
    assert ProfileList.default_of(profiles.profiles) is not None
    assert ProfileList.default_of(profiles.profiles).slug == next(
        p["slug"] for p in expected if p.get("default")
    )


@pytest.mark.parametrize("case", CASE_OBJECTS, ids=IDS)
async def test_every_valid_user_options_sets_the_traits_kubespawner_sets(case: Case) -> None:
    compared = 0
    for options in case.probes():
        theirs, their_error = await kubespawner_result(case, options)
        ours, our_error = await our_result(case, options)
        refused_here = our_error is not None and (case.id, our_error.field) in REFUSED_HERE
        if their_error is not None:
            assert our_error is not None, f"{options}: KubeSpawner refuses it ({their_error!r}), we accept it"
            continue
        if refused_here:
            assert our_error is not None and our_error.status_code == 400
            continue
        assert our_error is None, f"{options}: KubeSpawner accepts it, we refuse it: {our_error}"
        (their_spawner, their_names), (our_spawner, our_names) = theirs, ours
        for name in sorted(their_names | our_names):
            assert getattr(our_spawner, name) == getattr(their_spawner, name), f"{options}: {name}"
        compared += 1
    assert compared >= 1


@pytest.mark.parametrize("case", CASE_OBJECTS, ids=IDS)
async def test_the_expectations_the_case_carries_hold(case: Case) -> None:
    for probe in case.data.get("probes", []):
        asserts = probe.get("kubespawner_test_asserts")
        if not asserts:
            continue
        ours, error = await our_result(case, probe["user_options"])
        assert error is None, error
        spawner = ours[0]
        for name, value in asserts.items():
            actual = getattr(spawner, name)
            if isinstance(value, dict):
                assert {k: actual.get(k) for k in value} == value, name
            else:
                assert actual == value, name
    for probe in case.data.get("form_probes", []):
        spawner = case.spawner(case.ours)
        options = options_from_formdata(probe["formdata"], await spawner.load_profiles())
        kube = case.spawner(case.kube)
        assert options == kube._options_from_form(probe["formdata"])
        if probe.get("kubespawner_test_asserts"):
            assert options == probe["kubespawner_test_asserts"]
    expected = case.data.get("kubespawner_expected_initialized")
    if expected:
        profiles = case.parsed().profiles
        assert [p.slug for p in profiles] == [e["slug"] for e in expected]
        assert (
            ProfileList.default_of(profiles)
            is profiles[[bool(e.get("default")) for e in expected].index(True)]
        )
        for profile, want in zip(profiles, expected, strict=True):
            assert set(profile.profile_options) == set(want.get("profile_options", {}))
            for key, option in profile.profile_options.items():
                want_option = want["profile_options"][key]
                want_default = next(
                    (k for k, c in want_option.get("choices", {}).items() if c.get("default")), None
                )
                our_default = next(
                    (k for k, c in option.choices.items() if c.default), next(iter(option.choices), None)
                )
                assert our_default == want_default, key
                unlisted = want_option["unlisted_choice"]
                assert option.unlisted_choice.enabled == unlisted["enabled"]
                if unlisted["enabled"]:
                    assert (
                        option.unlisted_choice.display_name_in_choices == unlisted["display_name_in_choices"]
                    )


async def test_braces_of_a_write_in_are_unescaped_as_kubespawner_does() -> None:
    case = next(c for c in CASE_OBJECTS if c.id == "ks-test-unlisted-non-string-override")
    ours, error = await our_result(case, {"profile": "cpu", "image--unlisted-choice": "pangeo/x:1"})
    assert error is None
    assert ours[0].environment["USER_TEST"] == "${JUPYTER_USER}"  # '${{JUPYTER_USER}}' configured
    assert ours[0].environment["USER"] == "${JUPYTER_USER}"  # an unknown field is left as it is
    assert ours[0].init_containers[0]["image"] == "pangeo/x:1"


@pytest.mark.parametrize("case", CASE_OBJECTS, ids=IDS)
def test_on_an_hpc_spawner_a_kubernetes_key_is_a_start_up_error_naming_it(case: Case) -> None:
    slurm = frozenset(SlurmSpawner.class_trait_names())
    kube_only = frozenset(KubeSpawner.class_trait_names()) - slurm
    try:
        parse_profile_list(copy.deepcopy(case.raw_list(None)), slurm)
    except ProfileConfigError as exc:
        key = exc.key.rsplit(".", 1)[-1]
        assert key in kube_only | set(EXTRA_TRAITS.get(case.id, ())), exc
        assert exc.reason == "the spawner has no such trait"


def test_check_profiles_on_slurm_names_the_kubernetes_key() -> None:
    case = next(c for c in CASE_OBJECTS if c.id == "ks-test-spawner-profiles-list")
    config = Config()
    config.JupyterHub.spawner_class = "slurm"
    config.SlurmSpawner.profile_list = copy.deepcopy(case.data["profile_list"])
    with pytest.raises(ProfileConfigError) as caught:
        check_profiles(config)
    assert caught.value.key == "profile_list[0].overrides.image"
    assert "image: the spawner has no such trait" in str(caught.value)


IGNORED = {
    "2i2c-reflective-common": "profile_list[0].profile_options.resource_allocation.choices.mem_2_gb"
    ".kubespawner_override.default",
    "2i2c-cloudbank-gpu-demo": "profile_list[0].kubespawner_override.default",
    "2i2c-nasa-cryo-common": "profile_list[0].profile_options.image.unlisted_choice.description",
}


@pytest.mark.parametrize("case_id", sorted(IGNORED))
async def test_keys_kubespawner_ignores_are_accepted_with_one_warning_each(
    case_id: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compat, "_warned", set())
    case = next(c for c in CASE_OBJECTS if c.id == case_id)
    paths = [path for path, _why in case.parsed().ignored]
    assert IGNORED[case_id] in paths
    spawner = case.spawner(case.ours)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # every start parses the list again; the warning is given once
            spawner.__dict__.pop("_profile_parsed", None)
            await spawner.load_profiles()
    warned = [r.getMessage() for r in caplog.records if "profile_list" in r.getMessage()]
    assert len(warned) == len(paths) == len(set(warned))
    assert any(IGNORED[case_id] in text for text in warned)


def test_check_profiles_warns_once_per_ignored_key_at_hub_start(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compat, "_warned", set())
    config = Config()
    config.JupyterHub.spawner_class = "slurm"
    config.SlurmSpawner.profile_list = [
        {"display_name": "A", "spawner_override": {"partition": "debug", "default": True}},
        {
            "display_name": "B",
            "profile_options": {
                "env": {
                    "choices": {"x": {"display_name": "X"}},
                    "unlisted_choice": {"enabled": True, "description": "free text"},
                }
            },
        },
    ]
    with caplog.at_level(logging.WARNING):
        check_profiles(config)
        check_profiles(config)
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("profile_list")]
    assert len(warned) == 2
    assert warned[0].startswith("profile_list: profile_list[0].spawner_override.default: ignored")
    assert warned[1].startswith(
        "profile_list: profile_list[1].profile_options.env.unlisted_choice.description"
    )


async def test_an_unknown_wire_key_is_refused_where_kubespawner_ignores_it() -> None:
    case = next(c for c in CASE_OBJECTS if c.id == "ks-doc-wire-extra-keys")
    for options in (
        {"garbage-arrived-via-rest-api": "x"},
        {"profile": "demo-1", "garbage-arrived-via-rest-api": "x"},
    ):
        theirs, their_error = await kubespawner_result(case, options)
        assert their_error is None and theirs is not None
        _ours, error = await our_result(case, options)
        assert error is not None and error.status_code == 400
        assert error.field == "garbage-arrived-via-rest-api"
        assert error.detail == "unknown option for profile 'demo-1'"
    # a listed choice and a write-in: refused as ambiguous; KubeSpawner's form sends the write-in
    # with "unlisted-choice" as the list's value, which both take
    both = {"profile": "demo-1", "image": "minimal", "image--unlisted-choice": "jupyter/base-notebook:x"}
    _ours, error = await our_result(case, both)
    assert error is not None and error.field == "image" and "not both" in error.detail
    as_the_form = {**both, "image": "unlisted-choice"}
    theirs, their_error = await kubespawner_result(case, as_the_form)
    ours, our_error = await our_result(case, as_the_form)
    assert their_error is None and our_error is None
    assert ours[0].image == theirs[0].image == "jupyter/base-notebook:x"


async def test_kubespawners_own_profile_step_does_nothing_behind_the_mixin() -> None:
    case = next(c for c in CASE_OBJECTS if c.id == "ks-test-spawner-profiles-list")
    spawner = case.spawner(case.ours)
    spawner.handler = SimpleNamespace()
    await spawner.apply_profile({"profile": "test-choices", "image--unlisted-choice": "pangeo/a:1"})
    spawner.user_options = {"profile": "training-r"}  # what KubeSpawner's step would apply
    await spawner.load_user_options()  # KubeSpawner's start calls it
    assert spawner.image == "pangeo/a:1"


async def test_a_nested_dict_override_merges_and_deletes_as_kubespawner_does() -> None:
    """Our own list (no case has it): a dict override, nested, with None inside a new key."""
    profiles = [
        {
            "display_name": "Nested",
            "kubespawner_override": {
                "extra_pod_config": {"a": {"keep": 1, "gone": None}, "b": {"c": None, "d": 2}, "x": None},
                "environment": {"NEW": "1", "OLD": None},
            },
        }
    ]
    base = {"extra_pod_config": {"b": {"c": 3}, "x": 1}, "environment": {"OLD": "o", "KEEP": "k"}}
    case = next(c for c in CASE_OBJECTS if c.id == "ks-test-override-namespace")
    case = copy.copy(case)
    case.data = {**case.data, "profile_list": profiles, "base_traits": base}
    theirs, their_error = await kubespawner_result(case, {})
    ours, our_error = await our_result(case, {})
    assert their_error is None and our_error is None
    assert theirs[1] == ours[1] == {"extra_pod_config", "environment"}
    for name in theirs[1]:
        assert getattr(ours[0], name) == getattr(theirs[0], name)
    assert ours[0].extra_pod_config == {"a": {"keep": 1}, "b": {"d": 2}}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{value}", "v{a}"),  # the value itself is never formatted
        ("{{value}}", "{value}"),
        ("{{{value}}}", "{v{a}}"),
        ("${{JUPYTER_USER}}", "${JUPYTER_USER}"),
        ("${JUPYTER_USER}", "${JUPYTER_USER}"),
        ("a}b{", "a}b{"),
        ("{value!r} {0}", "{value!r} {0}"),
    ],
)
def test_format_value_is_str_format_with_only_value_known(template: str, expected: str) -> None:
    assert format_value(template, "v{a}") == expected
    if "!r" in template or "{0}" in template:
        return  # str.format would apply the conversion or fail: no format specs here
    try:
        kube = template.format_map(_Missing(value="v{a}"))  # what KubeSpawner does
    except ValueError:
        assert template == "a}b{"  # a lone brace fails KubeSpawner's start; it is kept here
    else:
        assert kube == expected


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
