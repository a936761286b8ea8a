"""The job card: what a user's server is as a batch job, as JSON (issue 14's contract, version 1).

:func:`build_card` is a pure function of typed values: the spawner's job (id, the resources it
asked for, profile, cluster), the shared watcher's **last** :class:`~jupyterhub_hpc.states.JobStatus`
of that job, and the card settings. :func:`spawner_card` collects those values from a spawner
without running any scheduler command (it reads :meth:`QueueWatcher.cached`), so any number of
card requests cost the scheduler nothing: the watcher's one query per interval is all there is.

Times are ISO 8601 in UTC with ``Z``; a naive time (Slurm prints the cluster's local time) is
taken as the hub's local time, as the rest of the package does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .request import JobRequest
from .states import JobState, JobStatus

__all__ = [
    "CARD_VERSION",
    "CardSettings",
    "JobResources",
    "build_card",
    "card_state",
    "iso_utc",
    "resources_of",
    "spawner_card",
]

CARD_VERSION = 1
_MIB = 1024 * 1024


@dataclass(frozen=True)
class JobResources:
    """What the spawner asked the scheduler for (kept with the job id in the spawner's state)."""

    partition: str | None = None
    cores: int | None = None
    memory_mib: int | None = None
    gpus: int | None = None
    nodes: int | None = None
    time_limit_seconds: int | None = None

    def as_state(self) -> dict[str, Any]:
        """For ``Spawner.get_state`` (JSON)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_state(cls, data: object) -> JobResources | None:
        """Back from :meth:`as_state`; None for anything that is not such a mapping."""
        if not isinstance(data, Mapping):
            return None

        def number(key: str) -> int | None:
            value = data.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        partition = data.get("partition")
        return cls(
            partition=partition if isinstance(partition, str) and partition else None,
            cores=number("cores"),
            memory_mib=number("memory_mib"),
            gpus=number("gpus"),
            nodes=number("nodes"),
            time_limit_seconds=number("time_limit_seconds"),
        )


def resources_of(request: JobRequest) -> JobResources:
    """What the card shows of a submitted request: cores in all, memory per node, GPUs, the limit."""
    tasks = request.ntasks or (request.ntasks_per_node or 1) * request.nodes
    return JobResources(
        partition=request.partition,
        cores=request.cpus * tasks,
        memory_mib=request.memory,
        gpus=request.gpus,
        nodes=request.nodes,
        time_limit_seconds=int(request.walltime),
    )


@dataclass(frozen=True)
class CardSettings:
    """The card's configuration: the watcher interval the Lab polls at, the walltime thresholds."""

    poll_seconds: int = 30
    warn_seconds: tuple[int, ...] = (900, 300)
    #: 0: autosave off (null in the card)
    autosave_seconds: int = 120


def iso_utc(value: datetime | None) -> str | None:
    """``2026-12-03T07:30:00Z``; None stays None. Naive times are local time."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def card_state(state: JobState) -> str:
    """The card's coarse state: pending, running, ended or unknown."""
    if state is JobState.PENDING:
        return "pending"
    if state is JobState.RUNNING:
        return "running"
    if state is JobState.UNKNOWN:
        return "unknown"
    return "ended"  # COMPLETING, the final states, NOT_FOUND


def _job(
    job_id: str,
    resources: JobResources | None,
    status: JobStatus | None,
    describe_reason: Callable[[str | None], str | None],
) -> dict[str, Any]:
    res = resources or JobResources()
    state = status.state if status is not None else JobState.UNKNOWN
    coarse = card_state(state)
    reason = status.reason if status is not None and status.reason not in (None, "", "None") else None
    started = status.expected_start if status is not None else None
    nodes: list[str] = []
    if status is not None and coarse in ("running", "ended"):
        nodes = list(status.nodes) or ([status.host] if status.host else [])
    limit = status.time_limit_seconds if status is not None else None
    return {
        "id": job_id,
        "state": coarse,
        "native_state": status.native_state if status is not None else None,
        "reason": reason,
        "reason_text": describe_reason(reason) if reason else None,
        "expected_start": iso_utc(started) if coarse == "pending" else None,
        "start_time": iso_utc(started) if coarse in ("running", "ended") else None,
        "end_time": iso_utc(status.end_time) if status is not None and coarse != "pending" else None,
        "time_limit_seconds": limit if limit is not None else res.time_limit_seconds,
        "partition": (status.partition if status is not None else None) or res.partition,
        "nodes": nodes,
        "cores": res.cores,
        "memory_bytes": res.memory_mib * _MIB if res.memory_mib is not None else None,
        "gpus": res.gpus,
    }


def build_card(
    *,
    now: datetime,
    user: str,
    server_name: str,
    backend: str | None,
    cluster: str | None,
    profile: str | None,
    job_id: str | None,
    resources: JobResources | None,
    status: JobStatus | None,
    describe_reason: Callable[[str | None], str | None],
    settings: CardSettings,
    idle: Mapping[str, Any] | None = None,
    maintenance: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The card (issue 14's contract) from typed values; ``job`` is null without a job id."""
    return {
        "version": CARD_VERSION,
        "now": iso_utc(now),
        "poll_seconds": settings.poll_seconds,
        "user": user,
        "server_name": server_name,
        "backend": backend or None,
        "cluster": cluster or None,
        "profile": profile or None,
        "job": _job(job_id, resources, status, describe_reason) if job_id else None,
        "walltime": {
            "warn_seconds": list(settings.warn_seconds),
            "autosave_seconds": settings.autosave_seconds or None,
        },
        "idle": dict(idle) if idle is not None else None,
        "maintenance": [dict(item) for item in maintenance],
    }


def _no_reason(reason: str | None) -> str | None:
    return reason or None


def spawner_card(spawner: Any, now: datetime | None = None) -> dict[str, Any]:
    """The card of one spawner of this package (or any JupyterHub spawner: then ``job`` is
    null), from its state and its watcher's cache. Never calls the scheduler."""
    from . import idle, maintenance

    now = now or datetime.now(timezone.utc)
    job_id = str(getattr(spawner, "job_id", "") or "")
    status: JobStatus | None = None
    describe: Callable[[str | None], str | None] = _no_reason
    if job_id and hasattr(spawner, "watcher"):
        watcher = spawner.watcher
        if job_id in watcher.job_ids:
            status = watcher.cached(job_id)
        describe = spawner.scheduler.describe_reason
    interval = float(getattr(spawner, "status_interval", 30.0))
    resolution = getattr(spawner, "profile_resolution", None)
    profile = resolution.profile.slug if resolution is not None else None
    settings = CardSettings(
        poll_seconds=max(1, math.ceil(interval)),
        warn_seconds=tuple(getattr(spawner, "walltime_warnings", (900, 300))),
        autosave_seconds=int(getattr(spawner, "walltime_autosave", 120)),
    )
    return build_card(
        now=now,
        user=spawner.user.name,
        server_name=spawner.name or "",
        backend=getattr(spawner, "job_backend", "") or getattr(spawner, "backend", None),
        cluster=getattr(spawner, "job_cluster", "") or getattr(spawner, "cluster", None),
        profile=profile or getattr(spawner, "job_profile", None),
        job_id=job_id,
        resources=getattr(spawner, "job_resources", None),
        status=status,
        describe_reason=describe,
        settings=settings,
        idle=idle.card_section(spawner, now),
        maintenance=maintenance.card_section(spawner, now),
    )
