"""The idle policy: the pure decision (last activity, timeout, warning, now -> state and stop time),
the job card's section, the traits per profile (checked at hub start, kept with the job across a
hub restart) and which servers the hub's check stops. The live stops are in
tests/local/test_idle_hub.py (local backend) and tests/e2e/test_slurm_idle.py (Slurm)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from traitlets import TraitError
from traitlets.config import Config

from jupyterhub_hpc.idle import (
    IdleEnforcer,
    IdleState,
    card_section,
    decide,
    duration_text,
    last_activity_of,
)
from jupyterhub_hpc.profiles import ProfileConfigError, check_profiles
from jupyterhub_hpc.spawner import SlurmSpawner

UTC = timezone.utc
T0 = datetime(2026, 12, 3, 8, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- the decision -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "warning", "now", "state"),
    [
        (0, 300, 10_000, IdleState.OFF),  # no timeout: never stopped
        (1800, 300, 0, IdleState.ACTIVE),
        (1800, 300, 1499, IdleState.ACTIVE),
        (1800, 300, 1500, IdleState.WARNING),  # "idle for 25 min: stops in 5 min"
        (1800, 300, 1799, IdleState.WARNING),
        (1800, 300, 1800, IdleState.STOP),
        (1800, 300, 90_000, IdleState.STOP),
        (1800, 0, 1799, IdleState.ACTIVE),  # no warning
        (60, 300, 0, IdleState.WARNING),  # a warning longer than the timeout warns from the start
        (60, 300, 60, IdleState.STOP),
    ],
)
def test_decide(timeout: int, warning: int, now: float, state: IdleState) -> None:
    decision = decide(T0, timeout, warning, at(now))
    assert decision.state is state
    if state is IdleState.OFF:
        assert decision.stops_at is None
    else:
        assert decision.stops_at == at(timeout)
        assert decision.idle_seconds == now


def test_decide_reads_naive_utc_and_epoch_seconds_alike() -> None:
    naive = T0.replace(tzinfo=None)  # as JupyterHub's database holds it
    assert decide(naive, 60, 10, at(55)) == decide(T0, 60, 10, at(55).timestamp())
    assert decide(naive, 60, 10, at(55)).state is IdleState.WARNING


def test_no_known_activity_decides_nothing() -> None:
    assert decide(None, 60, 10, at(1000)).state is IdleState.OFF


def test_activity_after_now_is_not_negative_idle_time() -> None:
    decision = decide(at(5), 60, 10, T0)
    assert decision.state is IdleState.ACTIVE and decision.idle_seconds == 0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5 s"), (60, "1 min"), (95, "1 min 35 s"), (1800, "30 min"), (5400, "1 h 30 min"), (7199, "2 h")],
)
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


# -- the card's section -------------------------------------------------------------------------------


def server(**kwargs: Any) -> SimpleNamespace:
    values: dict[str, Any] = {
        "idle_timeout": 1800,
        "idle_warning": 300,
        "ready": True,
        "orm_spawner": SimpleNamespace(last_activity=T0.replace(tzinfo=None), started=None),
        "_idle_ready_at": None,
    }
    values.update(kwargs)
    return SimpleNamespace(**values)


def test_card_section() -> None:
    assert card_section(server(), at(1500)) == {
        "timeout_seconds": 1800,
        "warn_seconds": 300,
        "last_activity": "2026-12-03T08:00:00Z",
        "stops_at": "2026-12-03T08:30:00Z",
        "basis": "activity",
        "report_seconds": 60.0,
    }


def test_card_section_is_none_without_a_timeout_or_a_running_server() -> None:
    assert card_section(server(idle_timeout=0), at(10)) is None
    assert card_section(server(ready=False), at(10)) is None
    assert card_section(SimpleNamespace(), at(10)) is None  # not a spawner of this package


def test_a_queue_wait_is_not_idle_time() -> None:
    """JupyterHub sets last_activity when the spawn is requested; the job may wait in the queue
    longer than the timeout. Idle time counts from when the server became ready."""
    spawner = server(_idle_ready_at=at(3600))
    assert last_activity_of(spawner) == at(3600)
    assert decide(last_activity_of(spawner), 1800, 300, at(3700)).state is IdleState.ACTIVE
    assert card_section(spawner, at(3700))["stops_at"] == "2026-12-03T09:30:00Z"  # type: ignore[index]


# -- the basis: the server's reported use, once it reported one ------------------------------------------


def test_a_reported_use_replaces_jupyterhubs_activity() -> None:
    """JupyterHub's last_activity (fresh from a visible Lab's polling) no longer counts once the
    server reported its last use; before that, it does (a server without the extension)."""
    spawner = server(orm_spawner=SimpleNamespace(last_activity=at(1700).replace(tzinfo=None), started=None))
    assert last_activity_of(spawner) == at(1700)
    assert card_section(spawner, at(1750))["basis"] == "activity"  # type: ignore[index]
    spawner._idle_last_use = T0
    assert last_activity_of(spawner) == T0
    section = card_section(spawner, at(1750))
    assert section is not None and section["basis"] == "use"
    assert section["stops_at"] == "2026-12-03T08:30:00Z"
    assert decide(last_activity_of(spawner), 1800, 300, at(1800)).state is IdleState.STOP


def test_accept_use_is_monotonic_and_never_in_the_future() -> None:
    spawner = SlurmSpawner()
    assert spawner.accept_use(at(100), now=at(200)) == at(100)
    assert spawner.accept_use(at(50), now=at(200)) == at(100)  # older: nothing changes
    assert spawner.accept_use(at(210), now=at(200)) == at(200)  # within the skew: clipped to now
    with pytest.raises(ValueError, match="future"):
        spawner.accept_use(at(200 + 31), now=at(200))
    assert spawner._idle_last_use == at(200)


def test_the_last_use_is_kept_with_the_job_across_a_hub_restart() -> None:
    spawner = SlurmSpawner()
    spawner.job_id = "12"
    spawner.accept_use(at(100), now=at(200))
    after_restart = SlurmSpawner()
    after_restart.load_state(spawner.get_state())
    assert after_restart._idle_last_use == at(100)
    after_restart.clear_state()
    assert after_restart._idle_last_use is None and "idle_last_use" not in after_restart.get_state()


# -- the traits, per profile ----------------------------------------------------------------------------


def gpu_profiles(override: dict[str, Any]) -> Config:
    c = Config()
    c.JupyterHub.spawner_class = "slurm"
    c.SlurmSpawner.profile_list = [
        {"display_name": "CPU", "slug": "cpu", "default": True},
        {"display_name": "GPU", "slug": "gpu", "spawner_override": override},
    ]
    return c


def test_the_traits_default_to_off() -> None:
    spawner = SlurmSpawner()
    assert (spawner.idle_timeout, spawner.idle_warning) == (0, 300)
    assert "idle_timeout" in SlurmSpawner.class_traits(config=True)


def test_a_profile_may_set_an_idle_timeout() -> None:
    check_profiles(gpu_profiles({"idle_timeout": 1800, "idle_warning": 600}))


@pytest.mark.parametrize(
    ("key", "value"),
    [("idle_timeout", -1), ("idle_timeout", "half an hour"), ("idle_warning", -5), ("idle_timeout", None)],
)
def test_a_bad_idle_value_stops_the_hub_start(key: str, value: Any) -> None:
    with pytest.raises(ProfileConfigError) as info:
        check_profiles(gpu_profiles({key: value}))
    assert info.value.key == f"profile_list[1].spawner_override.{key}"
    assert "profile 'gpu' sets" in info.value.reason


def test_a_bad_configured_value_is_refused() -> None:
    with pytest.raises(TraitError):
        SlurmSpawner(config=Config({"SlurmSpawner": {"idle_timeout": -1}}))


def test_the_profile_timeout_is_kept_with_the_job_across_a_hub_restart() -> None:
    spawner = SlurmSpawner()
    spawner.apply_profile_overrides([("idle_timeout", 1800), ("idle_warning", 120)])
    spawner.job_id = "12"
    state = spawner.get_state()

    after_restart = SlurmSpawner()  # built from the configuration, as JupyterHub does
    after_restart.load_state(state)
    assert (after_restart.idle_timeout, after_restart.idle_warning) == (1800, 120)
    after_restart.clear_state()  # the server stopped: the configuration's values again
    assert (after_restart.idle_timeout, after_restart.idle_warning) == (0, 300)


def test_a_profile_without_a_timeout_leaves_none_in_the_state() -> None:
    spawner = SlurmSpawner()
    spawner.apply_profile_overrides([("cpus", 2)])
    spawner.job_id = "12"
    assert "idle_timeout" not in str(spawner.get_state())


# -- the hub's check ------------------------------------------------------------------------------------


class StandInUser:
    """What the check uses of JupyterHub's User: its spawners and ``stop``."""

    def __init__(self) -> None:
        self.name = "alice"
        self.spawners: dict[str, Any] = {}
        self.stopped: list[str] = []
        self.settings: dict[str, Any] = {}

    async def stop(self, name: str) -> None:
        self.stopped.append(name)
        self.spawners.pop(name)


def watched(user: StandInUser, name: str, last: float, timeout: int = 60, pending: str | None = None) -> Any:
    spawner = SlurmSpawner()
    spawner.idle_timeout = timeout
    spawner.user = user  # type: ignore[assignment]
    spawner.job_id = f"job-{name}"
    spawner.orm_spawner = SimpleNamespace(
        name=name, server=None, last_activity=at(last).replace(tzinfo=None), started=None
    )
    user.spawners[name] = spawner
    spawner.__dict__["_test_state"] = pending  # JupyterHub's server state, read below
    return spawner


def test_the_check_stops_only_idle_ready_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SlurmSpawner, "ready", property(lambda s: s.__dict__["_test_state"] is None))
    monkeypatch.setattr(SlurmSpawner, "pending", property(lambda s: s.__dict__["_test_state"]))
    monkeypatch.setattr(SlurmSpawner, "active", property(lambda s: True))
    user = StandInUser()
    idle = watched(user, "idle", last=0)
    used = watched(user, "used", last=50)
    watched(user, "starting", last=0, pending="spawn")
    enforcer = IdleEnforcer()
    for spawner in list(user.spawners.values()):
        enforcer._spawners[id(spawner)] = spawner

    stopped = asyncio.run(enforcer.check(at(61)))
    assert stopped == [idle] and user.stopped == ["idle"]
    assert idle._last_end == (
        "Job job-idle was stopped by the hub after 1 min 1 s without activity (the idle timeout is 1 min)."
    )
    assert used in enforcer.watched and used._last_end == ""
    # the stopped server is no longer watched; the one used later is stopped at its own time
    assert asyncio.run(enforcer.check(at(111))) == [used]


class StandInProxy:
    """What the check uses of JupyterHub's Proxy: ``get_all_routes`` (configurable-http-proxy's
    route data carries ``last_activity``)."""

    def __init__(self, activity: dict[str, datetime]) -> None:
        self.activity = activity
        self.deleted: list[str] = []

    async def get_all_routes(self) -> dict[str, Any]:
        return {
            f"/user/alice/{name}": {
                "routespec": f"/user/alice/{name}",
                "data": {
                    "user": "alice",
                    "server_name": name,
                    "last_activity": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                },
            }
            for name, when in self.activity.items()
        }

    async def delete_user(self, user: Any, name: str) -> None:
        self.deleted.append(name)


def test_the_proxy_is_asked_before_a_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """JupyterHub reads the proxy's activity every 5 minutes by default: a server used a minute
    ago whose last_activity in the database is older than its timeout is not stopped."""
    monkeypatch.setattr(SlurmSpawner, "ready", property(lambda s: True))
    monkeypatch.setattr(SlurmSpawner, "pending", property(lambda s: None))
    monkeypatch.setattr(SlurmSpawner, "active", property(lambda s: True))
    user = StandInUser()
    back = watched(user, "back", last=0)
    gone = watched(user, "gone", last=0)
    proxy = StandInProxy({"back": at(50), "gone": at(-100)})
    user.settings["proxy"] = proxy
    enforcer = IdleEnforcer()
    for spawner in (back, gone):
        enforcer._spawners[id(spawner)] = spawner

    assert asyncio.run(enforcer.check(at(61))) == [gone]
    assert proxy.deleted == ["gone"]  # its route, after JupyterHub's stop
    assert back.orm_spawner.last_activity == at(50).replace(tzinfo=None)  # as JupyterHub stores it
    assert back in enforcer.watched


def test_the_example_of_docs_lab_md_is_valid_as_written() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "lab.md"
    idle_part = doc.read_text().split("## Idle policy", 1)[1]
    example = re.findall(r"```python\n(.*?)```", idle_part, re.S)[0]
    c = Config()
    exec(compile(example, str(doc), "exec"), {"c": c})
    check_profiles(c)
    spawner = SlurmSpawner(config=c)
    gpu = next(p for p in c.SlurmSpawner.profile_list if p["slug"] == "gpu")
    spawner.apply_profile_overrides(list(gpu["spawner_override"].items()))
    assert (spawner.idle_timeout, spawner.idle_warning) == (1800, 300)
    spawner.undo_profile_overrides()
    assert spawner.idle_timeout == 0
