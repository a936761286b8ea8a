"""Simulated JupyterLab clients polling the job card (issue 14's benchmark; prints numbers).

One real hub (our Slurm spawner, squeue as ``benchstat`` so that slurmctld counts the watcher's
RPCs apart from everything else) and one real server of ``benchuser1`` on the real Slurm. Each
simulated Lab polls ``GET /hub/api/hpc/card/benchuser1/`` **directly at the hub**, once per
``poll_seconds`` of the card (the extension's real interval: the watcher's ``status_interval``),
from a random phase. That is the worst case for the hub: in real use each server's extension
caches the card for ``poll_seconds / 2``, so N tabs of one server cost the hub at most two
requests per interval, not N.

Phases: 0, 10 and 100 Labs for ``--windows`` intervals each, counting the watcher's status queries
(``/hub/metrics``) and slurmctld's RPCs of ``benchstat`` (``sdiag``); then ``--clients`` Labs
(1000) for the same time: card latency p50/p99 and the hub process's CPU (``/proc``).

    VENV=/opt/jupyterhub-hpc/venv-card python benchmarks/lab_clients.py [--interval 10] [--windows 3]

Run as root (it reads sdiag, spawns as benchuser1 through sudo). It cancels only benchuser1's jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from dataclasses import dataclass, field

from bench_lib import OUR_VENV, STATUS_USER, BenchHub, log, metric_value, run, sdiag, wait_for
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

USER = "benchuser1"
QUERIES = "jupyterhub_hpc_status_query_duration_seconds_count"


@dataclass
class Polls:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def lab(url: str, token: str, interval: float, until: float, polls: Polls) -> None:
    """One Lab tab: the card every ``interval`` seconds, starting at a random phase."""
    client = AsyncHTTPClient()
    await asyncio.sleep(random.uniform(0, interval))
    while time.monotonic() < until:
        started = time.monotonic()
        request = HTTPRequest(url, headers={"Authorization": f"token {token}"}, request_timeout=30)
        response = await client.fetch(request, raise_error=False)
        if response.code == 200:
            polls.latencies.append(time.monotonic() - started)
        else:
            polls.errors += 1
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


def poll(url: str, token: str, labs: int, interval: float, seconds: float) -> Polls:
    polls = Polls()
    AsyncHTTPClient.configure(None, max_clients=max(10, min(labs, 200)))

    async def main() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(lab(url, token, interval, until, polls) for _ in range(labs)))
        await asyncio.sleep(max(0.0, until - time.monotonic()))

    asyncio.run(main())
    return polls


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=10.0, help="status_interval = the Lab's poll (s)")
    parser.add_argument("--windows", type=int, default=3, help="intervals per phase")
    parser.add_argument("--clients", type=int, default=1000, help="Labs of the latency phase")
    args = parser.parse_args()
    interval, seconds = args.interval, args.interval * args.windows

    config = {
        "partition": "debug",
        "memory": "400M",
        "walltime": "01:00:00",
        "status_interval": interval,
        "status_prefix": ["sudo", "-n", "-u", STATUS_USER, "--"],
    }
    hub = BenchHub("lab-clients", OUR_VENV, "ours", config)
    run(["scancel", f"--user={USER}"], check=False)
    hub.start()
    try:
        hub.ensure_user(USER)
        hub.api("POST", f"/users/{USER}/server", json={}).raise_for_status()
        wait_for(lambda: (hub.server(USER) or {}).get("ready"), 180, what=f"{USER}'s server")
        token = hub.user_token(USER)
        url = f"{hub.url}/hub/api/hpc/card/{USER}/"
        assert hub.proc is not None
        pid = hub.proc.pid
        job = (hub.server(USER) or {}).get("state", {}).get("job_id")
        print(f"hub {hub.url}, job {job}, status_interval {interval:g} s, {args.windows} intervals per phase")
        heads = ("labs", "seconds", "card requests", "status queries", "per interval", "squeue RPCs")
        print(" ".join(f"{h:>{w}}" for h, w in zip(heads, (6, 8, 14, 15, 13, 12), strict=True)))
        for labs in (0, 10, 100):
            q0, r0, t0 = metric_value(hub.metrics(), QUERIES), sdiag(), time.monotonic()
            polls = poll(url, token, labs, interval, seconds) if labs else None
            if polls is None:
                time.sleep(seconds)
            q1, r1, took = metric_value(hub.metrics(), QUERIES), sdiag(), time.monotonic() - t0
            rpcs = r1.minus(r0).by_user.get(STATUS_USER, 0)
            done = len(polls.latencies) if polls else 0
            per = (q1 - q0) / (took / interval)
            print(f"{labs:>6} {took:>8.1f} {done:>14} {q1 - q0:>15.0f} {per:>13.2f} {rpcs:>12}")
        log(f"{args.clients} Labs for {seconds:.0f} s")
        cpu0, t0, q0 = cpu_seconds(pid), time.monotonic(), metric_value(hub.metrics(), QUERIES)
        polls = poll(url, token, args.clients, interval, seconds)
        cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - t0
        queries = metric_value(hub.metrics(), QUERIES) - q0
        lat = polls.latencies
        print(
            f"{args.clients} Labs, {len(lat)} card requests in {wall:.1f} s ({len(lat) / wall:.1f}/s), "
            f"{polls.errors} errors: p50 {quantile(lat, 0.5) * 1000:.1f} ms, "
            f"p99 {quantile(lat, 0.99) * 1000:.1f} ms, "
            f"mean {statistics.fmean(lat) * 1000 if lat else 0:.1f} ms"
        )
        print(
            f"hub CPU {cpu:.1f} s in {wall:.1f} s ({100 * cpu / wall:.0f}% of one core); "
            f"status queries {queries:.0f}"
        )
    finally:
        hub.api("DELETE", f"/users/{USER}/server")
        time.sleep(3)
        hub.stop()
        run(["scancel", f"--user={USER}"], check=False)


if __name__ == "__main__":
    main()
