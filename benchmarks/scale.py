"""Scale run without a cluster: 1000 registered jobs on the fake ``squeue`` (``tests/fakes/squeue``).

    python benchmarks/scale.py [--jobs 1000] [--pending 200] [--window 30]

Everything runs in this one process on one asyncio loop, as in a hub: 1000 real ``HPCSpawner``
objects (the class JupyterHub would load; no hub around them) share one ``QueueWatcher``, whose
status command is the fake ``squeue`` reading a JSON state file with the 1000 jobs.

1. **memory**: ``tracemalloc`` (and RSS) before and after creating the 1000 spawners, and after
   registering their jobs with the watcher and one query filled its cache;
2. **steady state**: every spawner is polled like JupyterHub's poll loop does (``poll()`` every
   ``--poll-interval`` s with jitter; ``status_interval`` scaled down from 30 s to ``--interval``
   s so that a short window holds several intervals): status commands per interval;
3. **200 spawns pending**: ``--pending`` spawners wait in ``_wait_for_server`` (the waiting part
   of ``start()``: their jobs are PENDING in the fake queue) while the other 800 are polled:
   status commands per fast interval, and the loop's lag: a task asks to sleep 10 ms, again and
   again, and records how late it wakes (p50/p99/max);
4. **release**: the 200 jobs turn RUNNING and each launcher's port report arrives
   (``accept_port``; one local listener plays the 200 servers, as ``start()`` returns only once
   its server accepts connections): time until all 200 ``_wait_for_server`` calls returned their URL.

Writes ``results/scale_ours.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench_lib import REPO, log, write_json

from jupyterhub_hpc.spawner import HPCSpawner
from jupyterhub_hpc.watcher import QueueWatcher, all_watchers

FAKE_SQUEUE = REPO / "tests" / "fakes" / "squeue"
FIRST_ID = 500000


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def write_state(path: Path, jobs: int, pending: int) -> None:
    state = {
        "jobs": {
            str(FIRST_ID + i): {"State": "PENDING" if i < pending else "RUNNING", "Reason": "Priority"}
            if i < pending
            else {"State": "RUNNING"}
            for i in range(jobs)
        }
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def commands_since(log_path: Path, since: float) -> int:
    if not log_path.exists():
        return 0
    return sum(1 for line in log_path.read_text().splitlines() if json.loads(line)["time"] >= since)


def make_spawner(i: int, interval: float) -> HPCSpawner:
    user = SimpleNamespace(name=f"user{i}", url=f"/user/user{i}/", escaped_name=f"user{i}", id=i)
    spawner = HPCSpawner(
        user=user,
        orm_spawner=None,
        scheduler_commands={"squeue": str(FAKE_SQUEUE)},
        status_interval=interval,
        status_fast_interval=1.0,
        command_timeout=30.0,
        # the fake queue names the node "vm": every server "runs" on this machine
        node_address="127.0.0.1",
    )
    spawner.job_id = str(FIRST_ID + i)
    spawner.job_backend = "slurm"
    return spawner


async def lag_monitor(stop: asyncio.Event, samples: list[float], tick: float = 0.01) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(tick)
        samples.append(time.perf_counter() - t0 - tick)


async def poller(spawner: HPCSpawner, interval: float, stop: asyncio.Event) -> None:
    """JupyterHub's poll loop for one running server (``Spawner.poll_interval`` with jitter)."""
    await asyncio.sleep(random.uniform(0, interval))
    while not stop.is_set():
        await spawner.poll()
        await asyncio.sleep(interval * random.uniform(0.9, 1.1))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run(args: argparse.Namespace, state: Path, log_path: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"jobs": args.jobs, "pending": args.pending, "fake": str(FAKE_SQUEUE)}
    # 1. memory ------------------------------------------------------------------------------
    gc.collect()
    rss0 = rss_bytes()
    tracemalloc.start()
    m0 = tracemalloc.take_snapshot()
    spawners = [make_spawner(i, args.interval) for i in range(args.jobs)]
    gc.collect()
    m1 = tracemalloc.take_snapshot()
    watcher: QueueWatcher = spawners[0].watcher
    for spawner in spawners:
        assert spawner.watcher is watcher
        watcher.register(spawner.job_id)
    await watcher.refresh()  # the cache holds 1000 statuses now
    gc.collect()
    m2 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    rss2 = rss_bytes()

    def grown(a: tracemalloc.Snapshot, b: tracemalloc.Snapshot) -> int:
        return sum(stat.size_diff for stat in b.compare_to(a, "filename"))

    result["memory"] = {
        "spawner_object_bytes_per_job": grown(m0, m1) / args.jobs,
        "watcher_bytes_per_job": grown(m1, m2) / args.jobs,
        "total_bytes_per_job": grown(m0, m2) / args.jobs,
        "rss_delta_bytes_per_job": (rss2 - rss0) / args.jobs,
        "note": "tracemalloc: Python allocations still alive after gc; RSS includes tracemalloc's own "
        "bookkeeping and allocator slack",
    }
    log(
        f"memory: {result['memory']['watcher_bytes_per_job']:.0f} B/job in the watcher, "
        f"{result['memory']['spawner_object_bytes_per_job']:.0f} B per HPCSpawner object"
    )

    stop = asyncio.Event()
    running = spawners[args.pending :]
    pollers = [asyncio.ensure_future(poller(s, args.poll_interval, stop)) for s in running]

    # 2. steady state --------------------------------------------------------------------------
    await asyncio.sleep(1.5)
    t0 = time.time()
    queries0 = watcher.queries
    lag_steady: list[float] = []
    stop_lag = asyncio.Event()
    monitor = asyncio.ensure_future(lag_monitor(stop_lag, lag_steady))
    await asyncio.sleep(args.window)
    stop_lag.set()
    await monitor
    steady_cmds = commands_since(log_path, t0)
    result["steady"] = {
        "window_s": args.window,
        "status_interval_s": args.interval,
        "poll_interval_s": args.poll_interval,
        "status_commands": steady_cmds,
        "watcher_queries": watcher.queries - queries0,
        "commands_per_interval": steady_cmds / (args.window / args.interval),
        "loop_lag_ms": {
            "p50": 1000 * percentile(lag_steady, 0.5),
            "p99": 1000 * percentile(lag_steady, 0.99),
            "max": 1000 * max(lag_steady),
        },
    }
    log(f"steady: {steady_cmds} status commands in {args.window:.0f} s (interval {args.interval:g} s)")

    # 3. 200 spawns pending ---------------------------------------------------------------------
    waiting = spawners[: args.pending]
    waits = [asyncio.ensure_future(s._wait_for_server(timeout=None)) for s in waiting]
    await asyncio.sleep(2)  # every wait registered and saw its first answer
    t0 = time.time()
    queries0 = watcher.queries
    lag: list[float] = []
    stop_lag = asyncio.Event()
    monitor = asyncio.ensure_future(lag_monitor(stop_lag, lag))
    query_seconds: list[float] = []
    end = time.monotonic() + args.window
    last = watcher.queries
    while time.monotonic() < end:
        await asyncio.sleep(0.05)
        if watcher.queries != last:
            last = watcher.queries
            query_seconds.append(watcher.last_query_seconds)
    stop_lag.set()
    await monitor
    pending_cmds = commands_since(log_path, t0)
    assert not any(w.done() for w in waits), "a pending spawn ended early"
    result["pending_spawns"] = {
        "window_s": args.window,
        "fast_interval_s": 1.0,
        "status_commands": pending_cmds,
        "watcher_queries": watcher.queries - queries0,
        "commands_per_second": pending_cmds / args.window,
        "query_seconds_median": statistics.median(query_seconds) if query_seconds else None,
        "loop_lag_ms": {
            "samples": len(lag),
            "p50": 1000 * percentile(lag, 0.5),
            "p99": 1000 * percentile(lag, 0.99),
            "max": 1000 * max(lag),
        },
    }
    log(
        f"{args.pending} pending: {pending_cmds} commands in {args.window:.0f} s, loop lag p50 "
        f"{result['pending_spawns']['loop_lag_ms']['p50']:.1f} ms p99 "
        f"{result['pending_spawns']['loop_lag_ms']['p99']:.1f} ms"
    )

    # 4. release ----------------------------------------------------------------------------------
    # start() returns once the server accepts connections: one listener stands in for all 200
    listener = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    write_state(state, args.jobs, 0)
    released = time.monotonic()
    for spawner in waiting:
        spawner.accept_port(port)
    urls = await asyncio.wait_for(asyncio.gather(*waits), 60)
    listener.close()
    result["release"] = {
        "spawns": len(urls),
        "all_returned_s": time.monotonic() - released,
        "sample_url": urls[0],
    }
    log(
        f"release: all {len(urls)} waits returned {result['release']['all_returned_s']:.2f} s after the ports"
    )
    stop.set()
    for task in pollers:
        task.cancel()
    for w in all_watchers():
        w.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--pending", type=int, default=200)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=5.0, help="status_interval (scaled from 30 s)")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="JupyterHub poll interval (scaled)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jupyterhub-hpc-scale-") as tmp:
        state = Path(tmp) / "slurm.json"
        log_path = Path(tmp) / "squeue.log"
        write_state(state, args.jobs, args.pending)
        os.environ["FAKE_SLURM_STATE"] = str(state)
        os.environ["FAKE_SLURM_LOG"] = str(log_path)
        started = time.time()
        result = asyncio.run(run(args, state, log_path))
        result["duration_s"] = time.time() - started
        result["loadavg_end"] = list(os.getloadavg())
    write_json("scale_ours.json", result)


if __name__ == "__main__":
    main()
