"""Counting status RPCs the way slurmctld counts them: a window between two ``sdiag`` snapshots per
:class:`Probe` (a hub's spawner, or the standalone watcher of the registered-jobs run), with the
RPC cost of one status command calibrated first."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench_lib import (
    REGISTERED_USER,
    STATUS_TYPES,
    BenchHub,
    CountersReset,
    blocked_foreign_jobs,
    conditions,
    job_states,
    log,
    metric_value,
    rpcs_per_call,
    run,
    sdiag,
    sdiag_reset,
    wait_for,
)
from spawners import ABORT, Kind


# -- counting status RPCs --------------------------------------------------------------------------------
@dataclass
class Probe:
    """One thing whose status RPCs a window counts: a hub's spawner, or the standalone watcher."""

    key: str
    accounts: list[str]
    per_call: dict[str, Any]
    hub: BenchHub | None = None
    watcher: WatcherThread | None = None

    def queries(self) -> float | None:
        """The watcher's own query counter (ours only)."""
        if self.watcher is not None:
            return float(self.watcher.watcher.queries)
        if self.hub is not None and self.hub.settings["spawner"].startswith("ours"):
            return metric_value(self.hub.metrics(), "jupyterhub_hpc_status_query_duration_seconds_count")
        return None


def snapshot(probes: list[Probe]) -> dict[str, Any]:
    return {"sdiag": sdiag(), "queries": {p.key: p.queries() for p in probes}, "conditions": conditions()}


def window_row(probe: Probe, first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    diff = last["sdiag"].minus(first["sdiag"])
    minutes = diff.taken / 60
    rpcs = sum(diff.by_user.get(a, 0) for a in probe.accounts)
    # a given squeue argv always sends the same number of RPCs; an odd extra one during the
    # calibration (a retry) must not skew every count of the window
    per_call = round(probe.per_call["rpcs_per_call"]) or probe.per_call["rpcs_per_call"]
    row: dict[str, Any] = {
        "window_s": diff.taken,
        "status_accounts": probe.accounts,
        # every RPC slurmctld counted for the accounts that run the status command
        "status_rpcs": rpcs,
        "status_rpcs_per_min": rpcs / minutes,
        # squeue runs: each sends one REQUEST_JOB_INFO or REQUEST_JOB_INFO_SINGLE plus, depending on
        # its options, REQUEST_FED_INFO / REQUEST_PARTITION_INFO: divided by the measured RPCs per call
        "squeue_calls": rpcs / per_call,
        "squeue_calls_per_min": rpcs / per_call / minutes,
        "calibration": probe.per_call,
        "job_info_rpcs_per_min_machine_wide": sum(diff.by_type.get(t, 0) for t in STATUS_TYPES[:2]) / minutes,
        "rpc_by_type": diff.by_type,
        "rpc_by_user": diff.by_user,
        "conditions_before": first["conditions"],
        "conditions_after": last["conditions"],
    }
    q0, q1 = first["queries"].get(probe.key), last["queries"].get(probe.key)
    if q0 is not None and q1 is not None:
        row["watcher_queries"] = q1 - q0
        row["watcher_queries_per_min"] = (q1 - q0) / minutes
    return row


def guarded_sleep(seconds: float, guard: bool) -> list[str]:
    """Sleep; with ``guard``, return early with the jobs of others that wait for the node."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(2.0, max(0.0, end - time.monotonic())))
        if guard and (blocked := blocked_foreign_jobs()):
            return blocked
        if ABORT.is_set():
            return ["(guard)"]
    return []


def count(
    probes: list[Probe], window: float, settle: float, guard: bool = False
) -> dict[str, dict[str, Any]]:
    """Reset sdiag, wait ``window`` s, return a row per probe (again, at most twice, when slurmctld's
    counters were reset meanwhile, e.g. by a slurmctld restart)."""
    time.sleep(settle)
    for attempt in range(3):
        sdiag_reset()
        first = snapshot(probes)
        interrupted = guarded_sleep(window, guard)
        last = snapshot(probes)
        try:
            rows = {p.key: window_row(p, first, last) for p in probes}
        except CountersReset as exc:
            log(f"{exc}; counting again")
            continue
        for row in rows.values():
            row["attempt"] = attempt + 1
            if interrupted:
                row["interrupted_by_foreign_jobs"] = interrupted
        for key, row in rows.items():
            log(
                f"{key}: {row['squeue_calls_per_min']:.1f} squeue/min, {row['status_rpcs_per_min']:.1f} "
                f"status RPCs/min over {row['window_s']:.0f} s" + (" (cut short)" if interrupted else "")
            )
        return rows
    raise CountersReset("slurmctld's counters were reset during three windows in a row")


def job_ids_of(hub: BenchHub, users: list[str]) -> list[str]:
    ids = [str(((hub.server(u) or {}).get("state") or {}).get("job_id", "")) for u in users]
    return [j for j in ids if j]


def hub_probe(kind: Kind, hub: BenchHub, users: list[str]) -> Probe:
    """A probe for a hub's spawner, with the RPC cost of its status command measured now."""
    accounts = kind.status_users(users)
    return Probe(
        f"{kind.name} N={len(users)}",
        accounts,
        calibrate(accounts[0], kind.status_argv(job_ids_of(hub, users))),
        hub,
    )


def calibrate(account: str, argv: list[str]) -> dict[str, Any]:
    for attempt in range(3):
        try:
            return rpcs_per_call(account, argv)
        except CountersReset:
            if attempt == 2:
                raise
            time.sleep(10)
    raise AssertionError("unreachable")


# -- the standalone watcher of the registered-jobs run (issue 2) -----------------------------------
class WatcherThread:
    """One QueueWatcher with its defaults (30 s interval) on its own event loop in a thread,
    querying as REGISTERED_USER, which also owns the sleep jobs."""

    def __init__(self) -> None:
        from jupyterhub_hpc.backends.slurm import SlurmBackend
        from jupyterhub_hpc.client import ClientSettings, Prefixes, SchedulerClient
        from jupyterhub_hpc.watcher import QueueWatcher

        self.backend = SlurmBackend()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def make() -> QueueWatcher:
            sudo = Prefixes(status=("sudo", "-n", "-u", REGISTERED_USER, "--"))
            return QueueWatcher(SchedulerClient(self.backend, ClientSettings(prefixes=sudo)))

        self.watcher = asyncio.run_coroutine_threadsafe(make(), self.loop).result()
        self.jobs: list[str] = []
        self.running = 0

    def call(self, fn: Callable[[], Any]) -> Any:
        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result()

    def add_jobs(self, count: int, partition: str) -> None:
        """Submit sleep jobs up to ``count``, wait until they run, register them."""
        while len(self.jobs) < count:
            out = run(
                [
                    "sudo",
                    "-n",
                    "-u",
                    REGISTERED_USER,
                    "--",
                    "sbatch",
                    "--parsable",
                    f"--partition={partition}",
                    "--mem=20M",
                    "--time=00:30:00",
                    "--output=/dev/null",
                    "--job-name=bench-sleep",
                    "--wrap=sleep 1800",
                ]
            )
            self.jobs.append(out.strip().split(";")[0])
        wait_for(
            lambda: (
                sum(1 for s in job_states(self.jobs).values() if s == "RUNNING") == len(self.jobs)
                or ABORT.is_set()
            ),
            90,
            what="the sleep jobs do not run",
        )
        self.running = sum(1 for s in job_states(self.jobs).values() if s == "RUNNING")
        self.call(lambda: [self.watcher.register(j) for j in self.jobs])

    def clear(self) -> None:
        self.call(lambda: [self.watcher.unregister(j) for j in self.jobs])
        if self.jobs:
            run(["scancel", *self.jobs], check=False)
        self.jobs = []

    def probe(self) -> Probe:
        per_call = calibrate(REGISTERED_USER, self.backend.status_argv(self.jobs))
        return Probe(f"registered N={len(self.jobs)}", [REGISTERED_USER], per_call, watcher=self)

    def stop(self) -> None:
        self.clear()

        async def shutdown() -> None:
            self.watcher.stop()
            await asyncio.sleep(0.1)  # let the cancelled task finish

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
