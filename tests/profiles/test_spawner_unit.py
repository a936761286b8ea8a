"""The mixin on spawner objects (no hub): per-profile backend and cluster, overrides applied and
undone, notices in the progress stream, and how a start's options are told apart from stored ones."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from jupyterhub_hpc.profiles.mixin import ProfileOptionsError, explicit_options
from jupyterhub_hpc.profiles.spawners import ProfilesLocalProcessSpawner
from jupyterhub_hpc.request import RequestError
from jupyterhub_hpc.spawner import SlurmSpawner

USER = SimpleNamespace(
    name="hpcuser1", groups=[SimpleNamespace(name="jupyterhub-users")], url="/user/hpcuser1/"
)

PROFILES = [
    {"display_name": "Here", "slug": "here", "default": True},
    {
        "display_name": "Cluster B GPU",
        "slug": "b",
        "cluster": "cluster-b",
        "spawner_override": {"partition": "gpu", "gpus": 1, "environment": {"SITE": "b", "KEEP": None}},
    },
    {"display_name": "Local test", "slug": "local", "backend": "local"},
]


def slurm_spawner(**kw: Any) -> SlurmSpawner:
    kw.setdefault("profile_list", PROFILES)
    return SlurmSpawner(user=USER, profile_live_limits=False, **kw)


async def test_a_profile_picks_backend_and_cluster_without_a_child_spawner() -> None:
    spawner = slurm_spawner(environment={"KEEP": "x", "OTHER": "y"})
    await spawner.apply_profile({"profile": "b"})
    assert (spawner.backend, spawner.cluster) == ("slurm", "cluster-b")
    assert spawner.scheduler.cluster == "cluster-b"
    request = spawner.job_request()
    assert (request.partition, request.gpus) == ("gpu", 1)
    assert "--clusters=cluster-b" in spawner.scheduler.submit_argv(request)
    # dict traits are merged, None deletes a key
    assert spawner.environment == {"OTHER": "y", "SITE": "b"}
    spawner.clear_state()  # JupyterHub calls it after stop and before the next start
    assert (spawner.cluster, spawner.partition, spawner.gpus) == ("", "", 0)
    assert spawner.environment == {"KEEP": "x", "OTHER": "y"}
    await spawner.apply_profile({"profile": "local"})
    assert spawner.scheduler.name == "local"
    spawner.clear_state()
    assert spawner.scheduler.name == "slurm"


async def test_invalid_options_raise_an_http_400_naming_the_field() -> None:
    spawner = slurm_spawner()
    spawner.handler = SimpleNamespace()  # a page handler: the options come with this start
    with pytest.raises(ProfileOptionsError) as info:
        await spawner.apply_profile({"profile": "b", "gpus": 2})
    assert isinstance(info.value, web.HTTPError) and info.value.status_code == 400
    assert info.value.field == "gpus" and "unknown option" in info.value.jupyterhub_message
    assert spawner.partition == ""  # nothing was applied


async def test_stored_options_fall_back_and_the_notice_is_a_progress_event() -> None:
    spawner = ProfilesLocalProcessSpawner(user=USER, profile_list=[PROFILES[0]])
    spawner.handler = None  # no request: an admin or internal start with the stored options
    res = await spawner.apply_profile({"profile": "retired"})
    assert res is not None and res.profile.slug == "here"
    assert spawner.user_options == {"profile": "here"}
    events = []
    async for event in spawner.progress():
        events.append(event["message"])
    assert "'retired' you used last is no longer available" in events[0]
    assert len(events) == 2  # then LocalProcessSpawner's own


def api_handler(body: bytes) -> APIHandler:
    handler = APIHandler.__new__(APIHandler)
    handler.request = SimpleNamespace(body=body)
    return handler


@pytest.mark.parametrize(
    ("handler", "explicit"),
    [
        (None, False),  # admin start from inside the hub
        (SimpleNamespace(), True),  # the spawn form or a spawn link
        (api_handler(b""), False),  # POST .../server without a body
        (api_handler(b'{"user_options": null, "display_name": "x"}'), False),
        (api_handler(b'{"user_options": {"profile": "a"}}'), True),
        (api_handler(b'{"profile": "a"}'), True),  # 5.x-style body
        (api_handler(b"{}"), False),
    ],
)
def test_options_of_this_start_or_stored_ones(handler: Any, explicit: bool) -> None:
    assert explicit_options(handler) is explicit


async def test_without_profiles_the_spawner_is_plain_hpc_spawner() -> None:
    spawner = SlurmSpawner(user=USER, allowed_user_options=["cpus"], user_options={"cpus": 3})
    assert await spawner.render_profiles_form() == ""
    assert spawner.job_request().cpus == 3
    spawner.user_options = {"memory": "1G"}
    with pytest.raises(RequestError, match="cannot be set by users"):
        spawner.job_request()
    spawner.handler = SimpleNamespace()
    assert await spawner.apply_profile({"cpus": 3}) is None  # HPCSpawner's allowed_user_options apply
    assert spawner.profile_resolution is None


async def test_profile_list_may_be_an_async_callable_checked_at_each_call() -> None:
    calls: list[str] = []

    async def per_user(spawner: Any) -> list[dict[str, Any]]:
        calls.append(spawner.user.name)
        if spawner.environment.get("BROKEN"):
            return [{"display_name": "X", "spawner_override": {"no_such_trait": 1}}]
        return [{"display_name": f"For {spawner.user.name}", "slug": "mine"}]

    spawner = ProfilesLocalProcessSpawner(user=USER, profile_list=per_user)
    res = await spawner.resolve_profile({"profile": "mine"}, remembered=False)
    assert res is not None and res.profile.display_name == "For hpcuser1" and calls == ["hpcuser1"]
    assert "For hpcuser1" in await spawner.render_profiles_form()
    spawner.environment = {"BROKEN": "1"}
    with pytest.raises(web.HTTPError) as info:
        await spawner.load_profiles()
    assert info.value.status_code == 500 and "profile_list[0].overrides.no_such_trait" in str(info.value)


async def test_choices_per_profile_survive_clear_state_and_ride_in_the_state() -> None:
    spawner = slurm_spawner()
    spawner.handler = SimpleNamespace()
    await spawner.apply_profile({"profile": "b"})
    await spawner.apply_profile({"profile": "here"})
    spawner.clear_state()  # a stop: the job is forgotten, the choices are not
    state = spawner.get_state()
    assert state["profile_choices"] == {"b": {"profile": "b"}, "here": {"profile": "here"}}
    fresh = slurm_spawner()
    fresh.load_state(state)
    assert fresh.profile_memory == state["profile_choices"]
    # a state written by something else does not break the spawner: it is ignored
    for junk in ("text", ["b"], {"b": "not a dict"}, None):
        odd = slurm_spawner()
        odd.load_state({"profile_choices": junk})
        assert odd.profile_memory == {}
    # a profile the admin removed is forgotten at the next start
    spawner.profile_list = PROFILES[:1]
    await spawner.apply_profile({"profile": "here"})
    assert spawner.profile_memory == {"here": {"profile": "here"}}


async def test_a_profiles_scheduler_address_rides_with_its_job_across_a_restart() -> None:
    other = {
        "display_name": "Other cluster",
        "slug": "other",
        "spawner_override": {
            "scheduler_environment": {"SLURM_CONF": "/etc/other/slurm.conf"},
            "scheduler_commands": {"squeue": "/opt/other/bin/squeue"},
            "job_output": "{home}/.other-{job_id}.log",
        },
    }
    spawner = slurm_spawner(profile_list=[*PROFILES, other], scheduler_environment={"SITE": "a"})
    assert spawner.scheduler.cmd("squeue") == "squeue"
    await spawner.apply_profile({"profile": "other"})
    assert spawner.scheduler.cmd("squeue") == "/opt/other/bin/squeue"  # not the cached backend
    assert spawner.watcher.client.environment == {"SITE": "a", "SLURM_CONF": "/etc/other/slurm.conf"}
    spawner.job_id = "42"
    state = spawner.get_state()
    assert state["profile_job_address"] == {
        "scheduler_commands": {"squeue": "/opt/other/bin/squeue"},
        "scheduler_environment": {"SITE": "a", "SLURM_CONF": "/etc/other/slurm.conf"},
        "job_output": "{home}/.other-{job_id}.log",
    }
    # a restarted hub: a fresh spawner with the admin's configuration loads the state
    restarted = slurm_spawner(profile_list=[*PROFILES, other], scheduler_environment={"SITE": "a"})
    restarted.load_state(state)
    assert restarted.job_id == "42"
    assert restarted.watcher.client.environment == {"SITE": "a", "SLURM_CONF": "/etc/other/slurm.conf"}
    assert restarted.scheduler.cmd("squeue") == "/opt/other/bin/squeue"
    assert restarted.job_output == "{home}/.other-{job_id}.log"
    restarted.clear_state()  # the job ended: the configuration is back
    assert restarted.scheduler_environment == {"SITE": "a"} and restarted.scheduler.cmd("squeue") == "squeue"
    assert "profile_job_address" not in restarted.get_state()
    # without a job (a stopped server) there is no address to keep
    spawner.job_id = ""
    assert "profile_job_address" not in spawner.get_state()
