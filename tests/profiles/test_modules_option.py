"""The ``modules`` option type: its keys, validation against a real Lmod catalogue (400s for what
is outside it, denied, or not a module name), the form, spawn links, the JSON Schema, the hub's
catalogue cache (one spider run per cluster per TTL, the stale catalogue kept on a failure) and
the job's environment. The catalogue is the real ``spider`` of Debian's Lmod over the test tree
of ``scripts/modules.sh``, behind a counting wrapper program (tests/fakes style: a real program)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from jupyterhub_hpc.backends.slurm import SlurmBackend
from jupyterhub_hpc.client import ClientSettings, SchedulerClient
from jupyterhub_hpc.module_access import CatalogueCache, get_catalogue_cache
from jupyterhub_hpc.modules import MODULE_SYSTEM_ENV, SERVER_MODULES_ENV, ModuleSystem, ServerModules
from jupyterhub_hpc.profiles.form import options_from_formdata, render_form
from jupyterhub_hpc.profiles.mixin import ProfileOptionsError
from jupyterhub_hpc.profiles.model import ProfileConfigError, parse_profile_list
from jupyterhub_hpc.profiles.modulespec import ModuleSource
from jupyterhub_hpc.profiles.schema import profiles_document
from jupyterhub_hpc.profiles.validate import Context, reconcile, resolve
from jupyterhub_hpc.request import RequestError
from jupyterhub_hpc.singleuser import modules as job_modules
from jupyterhub_hpc.spawner import SlurmSpawner
from module_systems import LMOD

LMOD_SPIDER = LMOD.spider
OPTION: dict[str, Any] = {
    "type": "modules",
    "display_name": "Software modules",
    "deny": ["broken/*"],
    "preset": ["gcc"],
    "sticky": ["hpctool/1.0"],
    "max_modules": 3,
    "kernels": [{"name": "py311", "display_name": "Python 3.11", "modules": ["python/3.11"]}],
}
PROFILES: list[dict[str, Any]] = [
    {"display_name": "With modules", "slug": "mods", "profile_options": {"modules": OPTION}},
    {"display_name": "Plain", "slug": "plain"},
]


def counting_spider(tmp_path: Path, *, fail: bool = False, delay: float = 0.0) -> tuple[str, Path]:
    """A program in front of the real spider that records each run (or fails like a broken one)."""
    calls = tmp_path / f"spider-calls-{fail}"
    calls.write_text("")
    program = tmp_path / f"spider-{fail}"
    body = "echo 'spider: cannot read the module tree' >&2; exit 1" if fail else f'exec {LMOD_SPIDER} "$@"'
    program.write_text(f"#!/bin/sh\necho run >> {calls}\nsleep {delay}\n{body}\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(program), calls


def lmod(spider: str = LMOD_SPIDER) -> ModuleSystem:
    """The test tree's Lmod (tests/module_systems.py), with its spider behind ``spider``."""
    return LMOD.model_copy(update={"spider": spider})


@pytest.fixture(scope="module")
def source() -> ModuleSource:
    client = SchedulerClient(SlurmBackend(), ClientSettings(timeout=30))
    return asyncio.run(CatalogueCache(client, lmod()).get(ttl=60, timeout=30))


def context(source: ModuleSource | None) -> Context:
    return Context(user="hpcuser1", modules={"mods": source} if source is not None else {})


PARSED = parse_profile_list(PROFILES)


def test_the_real_catalogue_marks_defaults_and_drops_hidden_modules(source: ModuleSource) -> None:
    assert source.catalogue is not None and not source.error
    names = source.catalogue.names()
    assert {"gcc/11", "gcc/12", "python/3.11", "hpctool/1.0", "broken/1.0"} <= set(names)
    assert not [n for n in names if "secret" in n]
    assert [m.name for m in source.offered((), ("broken/*",)) if m.default and m.package == "gcc"] == [
        "gcc/12"
    ]


def test_valid_choices_are_normalised_and_the_sticky_modules_kept_apart(source: ModuleSource) -> None:
    res = resolve(PARSED, {"profile": "mods", "modules": ["gcc/11", "python", "hpctool"]}, context(source))
    assert res.user_options == {"profile": "mods", "modules": ["gcc/11", "python/3.11"]}
    assert res.server_modules is not None
    assert res.server_modules.modules == ("gcc/11", "python/3.11")
    assert res.server_modules.sticky == ("hpctool/1.0",)
    assert [k.name for k in res.server_modules.kernels] == ["py311"]
    # nothing given: the preset; a spawn link's comma-separated text; an explicit empty list
    assert resolve(PARSED, {"profile": "mods"}, context(source)).user_options["modules"] == ["gcc/12"]
    link = resolve(PARSED, {"profile": "mods", "modules": "gcc/11,python/3.11"}, context(source))
    assert link.user_options["modules"] == ["gcc/11", "python/3.11"]
    none = resolve(PARSED, {"profile": "mods", "modules": []}, context(source))
    assert none.server_modules is not None and none.server_modules.to_load() == ["hpctool/1.0"]
    # a profile without the option has no server modules
    assert resolve(PARSED, {"profile": "plain"}, context(source)).server_modules is None


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (["gcc/12;id"], "is not a module name"),
        (["$(id)"], "is not a module name"),
        (["gcc/12 id"], "is not a module name"),
        ([" gcc/12"], "is not a module name"),
        (["../gcc"], "is not a module name"),
        (["-r"], "is not a module name"),
        ("gcc/12;id", "is not a module name"),
        ("gcc/12, python/3.11", "is not a module name"),
        (["nosuch/1.0"], "'nosuch/1.0' is not a module on this cluster"),
        (["secret/.1.0"], "is not a module"),  # hidden: not offered, and the dot part is refused
        (["broken/1.0"], "'broken/1.0' is not offered by this profile"),
        (["broken"], "'broken/1.0' is not offered by this profile"),
        (["gcc/11", "gcc/12"], "gcc/11 and gcc/12 are two versions of gcc"),
        (["gcc/11", "python/3.11", "execmod/1.0", "gcc/12"], "at most 3 modules"),
        ([3], "must be a list of module names"),
        ({"gcc": 1}, "must be a list of module names"),
    ],
)
def test_anything_else_is_refused_naming_the_option(source: ModuleSource, value: Any, says: str) -> None:
    with pytest.raises(RequestError) as info:
        resolve(PARSED, {"profile": "mods", "modules": value}, context(source))
    assert info.value.field == "modules" and says in info.value.reason, info.value.reason


def test_without_a_catalogue_only_the_admins_modules_pass(source: ModuleSource) -> None:
    unavailable = ModuleSource(source.system, None, "c2", error="spider: cannot read the module tree")
    res = resolve(PARSED, {"profile": "mods"}, context(unavailable))
    assert res.user_options["modules"] == ["gcc"]  # the preset, unchecked
    with pytest.raises(RequestError, match=r"catalogue of cluster c2 is not available now .spider: cannot"):
        resolve(PARSED, {"profile": "mods", "modules": ["gcc/12"]}, context(unavailable))
    with pytest.raises(RequestError, match="no module system is configured"):
        resolve(PARSED, {"profile": "mods", "modules": ["gcc/12"]}, context(None))
    with pytest.raises(RequestError, match="unknown option"):
        resolve(PARSED, {"profile": "mods", "modules--unlisted-choice": "x"}, context(source))


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ({"type": "modules", "preset": ["gcc;id"]}, "is not a module name"),
        ({"type": "modules", "sticky": ["$(id)"]}, "is not a module name"),
        ({"type": "modules", "allow": ["gcc *"]}, "not a module name pattern"),
        ({"type": "modules", "choices": {"a": {}}}, "not choices"),
        ({"type": "modules", "kernels": [{"name": "Bad Name", "display_name": "x"}]}, "kernel name"),
        ({"type": "modules", "kernels": [{"name": "k", "display_name": "x", "modules": ["a b"]}]}, "module"),
        ({"type": "modules", "preset": ["a", "b"], "max_modules": 1}, "more than max_modules"),
        ({"type": "text", "allow": ["gcc/*"]}, "only for an option of type modules"),
    ],
)
def test_the_admins_keys_are_checked_at_hub_start(option: dict[str, Any], says: str) -> None:
    with pytest.raises(ProfileConfigError) as info:
        parse_profile_list([{"display_name": "x", "profile_options": {"m": option}}])
    assert says in str(info.value) and "profile_options.m" in info.value.key, str(info.value)
    with pytest.raises(ProfileConfigError, match="at most one option of type modules"):
        parse_profile_list(
            [{"display_name": "x", "profile_options": {"a": {"type": "modules"}, "b": {"type": "modules"}}}]
        )


class Controls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.options: list[dict[str, str | None]] = []
        self.inputs: list[dict[str, str | None]] = []
        self.labels: set[str] = set()
        self.selects: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "option":
            self.options.append(a)
        elif tag == "input":
            self.inputs.append(a)
        elif tag == "select":
            self.selects.append(a)
        elif tag == "label" and a.get("for"):
            self.labels.add(str(a["for"]))


def render(source: ModuleSource | None, remembered: dict[str, Any] | None = None) -> str:
    ctx = context(source)
    prefill, notices = reconcile(PARSED, remembered or {"profile": "mods"}, ctx)
    return render_form(PARSED, ctx, prefill, notices)


def test_the_form_offers_the_catalogue_with_defaults_preset_and_sticky_modules(source: ModuleSource) -> None:
    html = render(source)
    parser = Controls()
    parser.feed(html)
    [select] = [s for s in parser.selects if s.get("name") == "profile-option-mods--modules"]
    assert "multiple" in select and select["id"] in parser.labels
    search = [i for i in parser.inputs if i.get("type") == "search"]
    assert search and all(i["id"] in parser.labels and "name" not in i for i in search)
    by_value = {o["value"]: o for o in parser.options}
    assert "broken/1.0" not in by_value and not [v for v in by_value if v and "secret" in v]
    assert "selected" in by_value["hpctool/1.0"] and "disabled" in by_value["hpctool/1.0"]
    assert "selected" in by_value["gcc/12"] and "selected" not in by_value["gcc/11"]
    assert ">gcc/12 (default)<" in html and ">hpctool/1.0 (always loaded)<" in html
    assert "hpc-modules-search" in html and 'data-max="3"' in html
    # the last start's choice is pre-selected
    again = Controls()
    again.feed(render(source, {"profile": "mods", "modules": ["gcc/11", "python/3.11"]}))
    chosen = {o["value"] for o in again.options if "selected" in o}
    assert chosen == {"gcc/11", "python/3.11", "hpctool/1.0"}
    # no catalogue: said so, nothing to pick
    assert "not available now: spider: gone" in render(
        ModuleSource(source.system, None, error="spider: gone")
    )


def test_form_fields_and_spawn_links_become_module_lists() -> None:
    name = "profile-option-mods--modules"
    picked = options_from_formdata({"profile": [b"mods"], name: [b"", b"gcc/11", b"python/3.11"]}, PARSED)
    assert picked == {"profile": "mods", "modules": ["gcc/11", "python/3.11"]}
    # the hidden empty field alone: the user deselected everything (not "use the preset")
    assert options_from_formdata({"profile": [b"mods"], name: [b""]}, PARSED) == {
        "profile": "mods",
        "modules": [],
    }
    assert options_from_formdata({"profile": [b"mods"]}, PARSED) == {"profile": "mods"}


def test_the_schema_describes_a_modules_value(source: ModuleSource) -> None:
    document = profiles_document(PARSED, context(source), None, [])
    schema = document["profiles"][0]["schema"]["properties"]["modules"]
    assert schema["type"] == ["array", "string"] and schema["maxItems"] == 3
    assert schema["x-sticky"] == ["hpctool/1.0"] and schema["x-deny"] == ["broken/*"]
    assert schema["x-offered"] == len(source.offered((), ("broken/*",)))


async def test_one_spider_run_per_ttl_for_all_callers_parsed_once(tmp_path: Path) -> None:
    spider, calls = counting_spider(tmp_path, delay=0.3)
    cache = CatalogueCache(SchedulerClient(SlurmBackend(), ClientSettings(timeout=30)), lmod(spider))
    results = await asyncio.gather(*(cache.get(ttl=60, timeout=30) for _ in range(20)))
    assert all(r is results[0] for r in results) and results[0].catalogue is not None
    assert await cache.get(ttl=60, timeout=30) is results[0]
    assert calls.read_text().splitlines() == ["run"] and cache.refreshes == 1
    assert cache.client.counts == {"modules": 1}
    # past the TTL: one refresh, the last catalogue answered meanwhile
    cache._next = time.monotonic() - 1
    assert await cache.get(ttl=60, timeout=30) is results[0]
    assert cache._refresh is not None
    fresh = await cache._refresh
    assert fresh is not results[0] and fresh.catalogue == results[0].catalogue
    assert len(calls.read_text().splitlines()) == 2


async def test_a_failed_refresh_keeps_the_stale_catalogue_and_says_why(tmp_path: Path) -> None:
    good, _ = counting_spider(tmp_path)
    bad, bad_calls = counting_spider(tmp_path, fail=True)
    client = SchedulerClient(SlurmBackend(), ClientSettings(timeout=30))
    cache = CatalogueCache(client, lmod(good))
    first = await cache.get(ttl=0, timeout=30)
    cache.system = lmod(bad)  # the tool breaks on the cluster
    assert await cache.get(ttl=0, timeout=30) is first  # stale at once, a refresh in the background
    assert cache._refresh is not None
    failed = await cache._refresh
    assert failed.catalogue is first.catalogue and "cannot read the module tree" in failed.error
    assert await cache.get(ttl=0, timeout=30) is failed  # retried only after RETRY_SECONDS
    assert bad_calls.read_text().splitlines() == ["run"]
    never = CatalogueCache(client, lmod(bad))
    empty = await never.get(ttl=60, timeout=30)
    assert empty.catalogue is None and "cannot read the module tree" in empty.error


def spawner(system: ModuleSystem, **kw: Any) -> SlurmSpawner:
    user = SimpleNamespace(name="hpcuser1", groups=[], url="/user/hpcuser1/")
    return SlurmSpawner(
        user=user, profile_list=PROFILES, profile_live_limits=False, module_system=system.model_dump(), **kw
    )


async def test_spawners_of_one_cluster_share_one_catalogue_and_the_job_gets_the_modules(
    tmp_path: Path,
) -> None:
    spider, calls = counting_spider(tmp_path, delay=0.2)
    system = lmod(spider)
    one, two = spawner(system), spawner(system)
    forms = await asyncio.gather(one.render_profiles_form(), two.render_profiles_form())
    assert all("gcc/12 (default)" in f for f in forms)
    assert calls.read_text().splitlines() == ["run"]
    assert get_catalogue_cache(one.client, system).refreshes == 1
    one.handler = SimpleNamespace()  # options of this start (a form or a link)
    for bad in (["gcc/12;id"], ["$(id)"], ["broken/1.0"], ["gcc 12"]):
        with pytest.raises(ProfileOptionsError) as info:
            await one.apply_profile({"profile": "mods", "modules": bad})
        assert info.value.status_code == 400 and "'modules'" in info.value.jupyterhub_message
    await one.apply_profile({"profile": "mods", "modules": ["python/3.11"]})
    env = one.module_environment()  # what get_env() adds (the live test sees it in the job)
    assert ModuleSystem.from_env(env[MODULE_SYSTEM_ENV]) == system
    chosen = ServerModules.from_env(env[SERVER_MODULES_ENV])
    assert chosen.to_load() == ["hpctool/1.0", "python/3.11"]
    one.job_id = "42"
    state = one.get_state()
    later = spawner(system)
    later.load_state(state)
    document = await later.modules_document()
    assert document is not None and document["system"] == "lmod"
    assert document["server"] == {"modules": ["python/3.11"], "sticky": ["hpctool/1.0"], "purge": False}
    assert [k["name"] for k in document["kernels"]] == ["py311"]
    assert "broken/1.0" not in {m["name"] for m in document["catalogue"]}
    assert {"gcc/12", "python/3.11"} <= {m["name"] for m in document["catalogue"]}
    assert len(calls.read_text().splitlines()) == 1  # still the one listing
    # a profile without the option: the system for kernels, no server modules
    await two.apply_profile({"profile": "plain"})
    assert set(two.module_environment()) == {MODULE_SYSTEM_ENV}
    # no module system: nothing, and no document (the route's 404)
    none = SlurmSpawner(user=one.user, profile_list=PROFILES, profile_live_limits=False)
    assert none.module_environment() == {} and await none.modules_document() is None


def test_a_bad_module_system_is_refused_when_configured() -> None:
    with pytest.raises(Exception, match="module_system"):
        SlurmSpawner(module_system={"kind": "tmod"})
    with pytest.raises(Exception, match="module_system"):
        SlurmSpawner(module_system={"kind": "lmod", "modulepath": ["relative/path"]})


def test_the_launcher_loads_the_modules_or_fails_with_the_tools_message() -> None:
    assert (job_modules.MODULE_SYSTEM_ENV, job_modules.SERVER_MODULES_ENV) == (
        MODULE_SYSTEM_ENV,
        SERVER_MODULES_ENV,
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LMOD", "MODULE", "LOADEDMODULES"))}
    base[MODULE_SYSTEM_ENV] = lmod().to_env()
    assert job_modules.load_server_modules(base) == base  # no modules: unchanged
    base[SERVER_MODULES_ENV] = ServerModules(modules=("gcc/12",), sticky=("hpctool/1.0",)).to_env()
    env = job_modules.load_server_modules(base)
    assert env["LOADEDMODULES"].split(":") == ["hpctool/1.0", "gcc/12"]
    assert env["CC"] == "gcc" and "LOADEDMODULES" not in os.environ
    base[SERVER_MODULES_ENV] = ServerModules(modules=("gcc/12", "broken/1.0")).to_env()
    with pytest.raises(SystemExit) as info:
        job_modules.load_server_modules(base)
    line = str(info.value.code)
    assert line.startswith("jupyterhub-hpc-singleuser: loading modules gcc/12 broken/1.0 failed: ")
    assert "its licence server is down" in line and "\n" not in line
    base[SERVER_MODULES_ENV] = json.dumps({"modules": ["a;b"]})
    with pytest.raises(SystemExit, match="module settings are invalid"):
        job_modules.load_server_modules(base)


def test_the_documented_example_is_valid() -> None:
    import re

    from traitlets.config import Config

    doc = (Path(__file__).resolve().parents[2] / "docs" / "profiles.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if '"type": "modules"' in b)
    c = Config()
    exec(compile(block, "docs/profiles.md", "exec"), {"c": c})
    made = SlurmSpawner(config=c, user=SimpleNamespace(name="alice", groups=[], url="/user/alice/"))
    parsed = parse_profile_list(made.profile_list, frozenset(made.trait_names()))
    option = parsed.profiles[0].profile_options["modules"]
    assert option.permits("gcc/12") and not option.permits("gcc/12-debug") and not option.permits("cuda/12")
    assert made.configured_module_system() == ModuleSystem(
        kind="lmod", modulepath=("/apps/modulefiles/Core",)
    )
    tmod = made.configured_module_system(parsed.profiles[1].all_overrides)
    assert tmod is not None and tmod.kind == "tmod"


async def test_the_spawners_own_sticky_modules_and_kernel_presets_with_and_without_profiles() -> None:
    presets = [
        {"name": "torch", "display_name": "Python + PyTorch", "modules": ["python/3.11"], "purge": True}
    ]
    user = SimpleNamespace(name="hpcuser1", groups=[], url="/user/hpcuser1/")
    plain = SlurmSpawner(
        user=user, module_system=LMOD.model_dump(), sticky_modules=["gcc/12"], kernel_presets=presets
    )
    chosen = ServerModules.from_env(plain.module_environment()[SERVER_MODULES_ENV])  # no profile_list
    assert chosen.to_load() == ["gcc/12"] and [k.name for k in chosen.kernels] == ["torch"]
    with_profile = spawner(LMOD, sticky_modules=["gcc/12"], kernel_presets=presets)
    with_profile.handler = SimpleNamespace()
    await with_profile.apply_profile({"profile": "mods", "modules": ["python/3.11"]})
    both = ServerModules.from_env(with_profile.module_environment()[SERVER_MODULES_ENV])
    assert both.to_load() == ["gcc/12", "hpctool/1.0", "python/3.11"]
    assert [k.name for k in both.kernels] == ["torch", "py311"]


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"sticky_modules": ["gcc;id"]}, "sticky_modules"),
        ({"kernel_presets": [{"name": "Bad Name", "display_name": "x"}]}, "kernel_presets: name"),
        (
            {"kernel_presets": [{"name": "a", "display_name": "x", "modules": ["$(id)"]}]},
            "kernel_presets: modules",
        ),
        ({"kernel_presets": [{"name": "a", "display_name": "x"}] * 2}, "the same name"),
    ],
)
def test_the_spawners_own_modules_are_checked_when_configured(settings: dict[str, Any], says: str) -> None:
    with pytest.raises(Exception, match=says):
        SlurmSpawner(module_system=LMOD.model_dump(), **settings)
