"""The idle policy: a server of this package unused for ``idle_timeout`` seconds is stopped.

"Unused" means nobody used it. A server with this package's Jupyter server extension
(:mod:`jupyterhub_hpc.lab.activity`, enabled by the wheel) reports its ``last_use`` to the hub
(``POST /hub/api/hpc/use`` with its own token, :mod:`jupyterhub_hpc.handlers`): the latest user
input the JupyterLab extension saw (keys, clicks, wheel, a tab brought back to view, "I'm still
here"), a kernel running code, a save. Once a server has reported one, that is its basis
(``basis: "use"`` on the job card). An open Lab tab's own polling (card, kernels, sessions,
contents listings) is not use: it would keep a server with a visible Lab alive forever.

A server without the extension never reports; for it the basis is JupyterHub's own
``last_activity`` (``basis: "activity"``), which the hub updates from the proxy's routes (every
``c.JupyterHub.last_activity_interval``) and from ``jupyterhub-singleuser``'s reports (every
``JUPYTERHUB_ACTIVITY_INTERVAL``), the value ``jupyterhub-idle-culler`` reads.

The decision is a pure function (:func:`decide`); :func:`card_section` gives it to the job card
(and through it to the Lab extension's warning); :class:`IdleEnforcer` is one asyncio task per
hub process that stops idle servers through JupyterHub's own stop (``User.stop``: the job is
cancelled, the allocation released, the server's token removed) and the proxy's route removal,
as the REST API's ``DELETE /users/{name}/servers/{server}`` does. Why the server stopped is kept
as the spawner's end message, which the user's next spawn shows (``Your previous server
stopped: ...``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from traitlets import Float, Integer
from traitlets.config import Configurable

UTC = timezone.utc

__all__ = [
    "REPORT_ENV",
    "USE_SKEW_SECONDS",
    "IdleDecision",
    "IdleEnforcer",
    "IdlePolicy",
    "IdleState",
    "basis_of",
    "card_section",
    "decide",
    "duration_text",
    "get_enforcer",
    "last_activity_of",
]

log = logging.getLogger(__name__)

#: the environment variable that tells the server's extension how often it may report its use
REPORT_ENV = "JUPYTERHUB_HPC_IDLE_REPORT_SECONDS"
#: seconds a reported ``last_use`` may lie ahead of the hub's clock (it is clipped to now)
USE_SKEW_SECONDS = 30.0


class IdleState(Enum):
    OFF = "off"  # no idle timeout (or no activity known yet)
    ACTIVE = "active"  # used recently enough
    WARNING = "warning"  # within ``idle_warning`` seconds of the stop
    STOP = "stop"  # idle for ``idle_timeout`` seconds or more


@dataclass(frozen=True)
class IdleDecision:
    state: IdleState
    #: when the server stops unless it is used (None when the policy is off)
    stops_at: datetime | None = None
    #: seconds since the last activity (0 when unknown)
    idle_seconds: float = 0.0


def _utc(value: datetime) -> datetime:
    """An aware UTC datetime (JupyterHub's database holds naive UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _as_datetime(now: datetime | float | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if isinstance(now, int | float):
        return datetime.fromtimestamp(now, UTC)
    return _utc(now)


def decide(
    last_activity: datetime | None, timeout: float, warning: float, now: datetime | float | None = None
) -> IdleDecision:
    """The idle state of a server last used at ``last_activity``, ``now``.

    ``timeout`` <= 0 is off. The warning starts ``warning`` seconds before the stop (at most
    at the last activity itself: a warning longer than the timeout warns from the start).
    """
    if timeout <= 0 or last_activity is None:
        return IdleDecision(IdleState.OFF)
    at = _as_datetime(now)
    last = _utc(last_activity)
    stops_at = last + timedelta(seconds=timeout)
    idle = max(0.0, (at - last).total_seconds())
    if at >= stops_at:
        state = IdleState.STOP
    elif at >= stops_at - timedelta(seconds=min(max(warning, 0), timeout)) and warning > 0:
        state = IdleState.WARNING
    else:
        state = IdleState.ACTIVE
    return IdleDecision(state, stops_at, idle)


def duration_text(seconds: float) -> str:
    """``45 s``, ``30 min``, ``1 h 30 min`` (rounded to whole seconds, minutes above an hour)."""
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    if total < 3600:
        minutes, rest = divmod(total, 60)
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    hours, minutes = divmod(round(total / 60), 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


class IdlePolicy(Configurable):
    """The spawner traits of the idle policy (a base class of the spawners of this package)."""

    idle_timeout = Integer(
        0,
        min=0,
        help="""
        Seconds without activity after which the hub stops the server (its job is cancelled
        and its allocation released); 0 (the default) never stops an idle server. Activity is
        the ``last_use`` the server's jupyterhub-hpc extension reports (user input in
        JupyterLab, busy kernels, saves; not a Lab tab's own polling); for a server without
        the extension, JupyterHub's ``last_activity`` (proxy traffic, jupyterhub-singleuser's
        reports). Settable per profile like any trait (``spawner_override: {"idle_timeout":
        1800}`` for a GPU profile).
        """,
    ).tag(config=True)

    idle_warning = Integer(
        300,
        min=0,
        help="""
        Seconds before an idle stop from which the user is warned (the job card's ``idle``
        section; JupyterLab shows "idle for 25 min: stops in 5 min unless you use it").
        0: no warning. Only used with an ``idle_timeout``; settable per profile.
        """,
    ).tag(config=True)

    idle_check_interval = Float(
        60.0,
        min=0.5,
        help="""
        Seconds between the hub's checks of its servers' idle time (one task per hub process
        checks all servers that have an ``idle_timeout``; the shortest interval of them
        applies). A server is stopped at most this long after its timeout (plus the time
        JupyterHub takes to learn of the last activity: ``c.JupyterHub.last_activity_interval``).
        """,
    ).tag(config=True)

    idle_report_interval = Float(
        60.0,
        min=1.0,
        help="""
        Seconds between the reports of use: the JupyterLab extension reports user input to
        its server at most this often, the server reports its ``last_use`` to the hub at most
        this often (and at once after input that follows a quiet period). Keep it well below
        ``idle_timeout``; settable per profile (passed to the server as
        JUPYTERHUB_HPC_IDLE_REPORT_SECONDS).
        """,
    ).tag(config=True)

    #: when this spawner's server became ready (aware UTC), so that a queue wait is not idle time
    _idle_ready_at: datetime | None = None
    #: the latest use the server reported (aware UTC); None: it never reported (no extension)
    _idle_last_use: datetime | None = None

    def accept_use(self, last_use: datetime, now: datetime | None = None) -> datetime:
        """Record a ``last_use`` the server reported; return the one now kept.

        Raises ``ValueError`` for a time more than :data:`USE_SKEW_SECONDS` ahead of ``now``;
        a time slightly ahead is clipped to ``now``; an older one than the kept one changes
        nothing (monotonic)."""
        at = _as_datetime(now)
        value = _utc(last_use)
        if value > at + timedelta(seconds=USE_SKEW_SECONDS):
            raise ValueError("last_use is in the future")
        value = min(value, at)
        if self._idle_last_use is None or value > self._idle_last_use:
            self._idle_last_use = value
        return self._idle_last_use

    def get_env(self) -> dict[str, str]:
        env: dict[str, str] = super().get_env()  # type: ignore[misc]
        if self.idle_timeout > 0:
            env[REPORT_ENV] = f"{self.idle_report_interval:g}"
        return env

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()  # type: ignore[misc]
        if self._idle_last_use is not None and state.get("job_id"):
            state["idle_last_use"] = _iso(self._idle_last_use)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)  # type: ignore[misc]
        self._idle_last_use = None
        text = state.get("idle_last_use")
        if state.get("job_id") and isinstance(text, str):
            with contextlib.suppress(ValueError):
                self._idle_last_use = _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))

    def clear_state(self) -> None:
        super().clear_state()  # type: ignore[misc]
        self._idle_last_use = None

    def idle_stop_message(self, decision: IdleDecision) -> str:
        """Why the hub stopped this server, in words (the spawn page shows it at the next start)."""
        job = getattr(self, "job_id", "")
        what = f"Job {job}" if job else "The server"
        return (
            f"{what} was stopped by the hub after {duration_text(decision.idle_seconds)} "
            f"without activity (the idle timeout is {duration_text(self.idle_timeout)})."
        )

    def record_idle_stop(self, message: str) -> None:
        """Keep ``message`` as why the server ended (the spawner's end message, if it has one)."""
        if hasattr(self, "_last_end"):
            self._last_end = message

    async def start(self) -> Any:
        url = await super().start()  # type: ignore[misc]
        self._idle_ready_at = datetime.now(UTC)
        if self.idle_timeout > 0:
            get_enforcer().watch(self)
        return url

    async def poll(self) -> int | None:
        status: int | None = await super().poll()  # type: ignore[misc]
        if status is None and self.idle_timeout > 0:
            get_enforcer().watch(self)  # also after a hub restart: JupyterHub polls at start
        return status


def basis_of(spawner: Any) -> str:
    """``"use"`` once the server reported a ``last_use``, else ``"activity"`` (JupyterHub's)."""
    return "use" if isinstance(getattr(spawner, "_idle_last_use", None), datetime) else "activity"


def last_activity_of(spawner: Any) -> datetime | None:
    """The server's last activity as the idle policy counts it: its reported ``last_use`` when
    it reported one, else JupyterHub's ``last_activity`` of the server; never before the server
    became ready (a queue wait is not idle time)."""
    orm = getattr(spawner, "orm_spawner", None)
    if basis_of(spawner) == "use":
        latest = getattr(spawner, "_idle_last_use", None)
    else:
        latest = getattr(orm, "last_activity", None)
    candidates = [
        _utc(t)
        for t in (latest, getattr(orm, "started", None), getattr(spawner, "_idle_ready_at", None))
        if isinstance(t, datetime)
    ]
    return max(candidates) if candidates else None


def _decision(spawner: Any, now: datetime | float | None) -> IdleDecision:
    timeout = int(getattr(spawner, "idle_timeout", 0) or 0)
    warning = int(getattr(spawner, "idle_warning", 0) or 0)
    return decide(last_activity_of(spawner), timeout, warning, now)


def card_section(spawner: Any, now: datetime | float | None = None) -> dict[str, Any] | None:
    """The job card's ``idle`` section, or None without an idle timeout (or for a server that
    is not running): ``timeout_seconds``, ``warn_seconds``, ``last_activity`` (the basis's
    latest time) and ``stops_at`` (ISO 8601 UTC with ``Z``), ``basis`` (``"use"`` or
    ``"activity"``, :func:`basis_of`) and ``report_seconds`` (``idle_report_interval``)."""
    timeout = int(getattr(spawner, "idle_timeout", 0) or 0)
    if timeout <= 0 or not getattr(spawner, "ready", False):
        return None
    decision = _decision(spawner, now)
    if decision.state is IdleState.OFF:
        return None
    warning = min(int(getattr(spawner, "idle_warning", 0) or 0), timeout)
    return {
        "timeout_seconds": timeout,
        "warn_seconds": warning,
        "last_activity": _iso(last_activity_of(spawner)),
        "stops_at": _iso(decision.stops_at),
        "basis": basis_of(spawner),
        "report_seconds": float(getattr(spawner, "idle_report_interval", 60.0)),
    }


class IdleEnforcer:
    """One task per hub process: every ``idle_check_interval`` seconds it checks the watched
    servers and stops those idle for their ``idle_timeout``."""

    def __init__(self) -> None:
        self._spawners: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
        self._task: asyncio.Task[None] | None = None
        self.stopped = 0

    def watch(self, spawner: Any) -> None:
        """Check ``spawner`` from now on (until its server is gone or replaced)."""
        self._spawners[id(spawner)] = spawner
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    @property
    def watched(self) -> list[Any]:
        return list(self._spawners.values())

    def _interval(self) -> float:
        intervals = [float(getattr(s, "idle_check_interval", 60.0)) for s in self.watched]
        return min(intervals, default=60.0)

    async def _run(self) -> None:
        while self._spawners:
            await asyncio.sleep(self._interval())
            try:
                await self.check()
            except Exception:
                log.exception("idle check failed")

    def _current(self, spawner: Any) -> bool:
        """Still the user's spawner of that name, with a server and an idle timeout."""
        user = getattr(spawner, "user", None)
        spawners = getattr(user, "spawners", None)
        current = spawners is not None and spawners.get(spawner.name) is spawner
        return bool(current and spawner.idle_timeout > 0 and (spawner.active or spawner.ready))

    async def check(self, now: datetime | float | None = None) -> list[Any]:
        """Stop every watched server that is idle for its timeout; return those stopped."""
        due: list[Any] = []
        for spawner in self.watched:
            if not self._current(spawner):
                self._spawners.pop(id(spawner), None)
                continue
            if spawner.pending or not spawner.ready:
                continue  # starting, stopping or being checked: JupyterHub is busy with it
            if _decision(spawner, now).state is IdleState.STOP:
                due.append(spawner)
        due_by_activity = [s for s in due if basis_of(s) == "activity"]
        if due_by_activity:
            # JupyterHub reads the proxy's activity only every last_activity_interval (5 min by
            # default): a user back in the last minutes would be stopped on stale data
            await self._refresh_from_proxy(due_by_activity)
        idle: list[tuple[Any, IdleDecision]] = []
        for spawner in due:
            decision = _decision(spawner, now)
            if decision.state is IdleState.STOP:
                self._spawners.pop(id(spawner), None)
                idle.append((spawner, decision))
        # together: one slow cancel does not hold up the others
        await asyncio.gather(*(self.stop(spawner, decision) for spawner, decision in idle))
        return [spawner for spawner, _ in idle]

    async def _refresh_from_proxy(self, spawners: list[Any]) -> None:
        """Bring the servers' ``last_activity`` up to the proxy's routes now, as JupyterHub's own
        periodic update does (``Proxy.get_all_routes``: the route's ``user``, ``server_name`` and,
        on configurable-http-proxy, ``last_activity``)."""
        proxy = getattr(spawners[0].user, "settings", {}).get("proxy")
        if proxy is None:
            return
        try:
            routes = await proxy.get_all_routes()
        except Exception as exc:
            log.warning("idle check: the proxy's routes are not available (%s)", exc)
            return
        seen: dict[tuple[str, str], datetime] = {}
        for route in routes.values():
            data = route.get("data") or {}
            text = data.get("last_activity")
            if "user" in data and "server_name" in data and isinstance(text, str):
                with contextlib.suppress(ValueError):
                    seen[(data["user"], data["server_name"])] = _utc(
                        datetime.fromisoformat(text.replace("Z", "+00:00"))
                    )
        for spawner in spawners:
            fresh = seen.get((spawner.user.name, spawner.name))
            orm = spawner.orm_spawner
            known = orm.last_activity
            if fresh is not None and (known is None or fresh > _utc(known)):
                orm.last_activity = fresh.replace(tzinfo=None)  # naive UTC, as JupyterHub stores it
                db = getattr(spawner.user, "db", None)  # the hub's database session
                if db is not None:
                    db.commit()

    async def stop(self, spawner: Any, decision: IdleDecision) -> None:
        """Stop the server as JupyterHub's REST API does: ``User.stop`` (the spawner cancels
        the job and waits until the scheduler confirms it ended; the hub removes the server
        and its token), then the proxy's route."""
        user = spawner.user
        message = spawner.idle_stop_message(decision)
        spawner.record_idle_stop(message)
        spawner.log.warning("%s: idle: %s", spawner._log_name, message)
        try:
            await user.stop(spawner.name)
        except Exception:
            spawner.log.exception("%s: the idle stop failed", spawner._log_name)
            return
        self.stopped += 1
        proxy = getattr(user, "settings", {}).get("proxy")
        if proxy is not None:
            with contextlib.suppress(Exception):
                await proxy.delete_user(user, spawner.name)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


_ENFORCER: IdleEnforcer | None = None


def get_enforcer() -> IdleEnforcer:
    """The hub process's one :class:`IdleEnforcer`, created on first use."""
    global _ENFORCER
    if _ENFORCER is None:
        _ENFORCER = IdleEnforcer()
    return _ENFORCER
