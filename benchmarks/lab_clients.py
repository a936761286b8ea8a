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

The hub also runs the announcements service (hub-managed, ``python -m jupyterhub_hpc.announcements``,
SQLite in the hub's directory, a few announcements for everyone and for some users). In the last
phase each Lab also polls the announcements at the same interval, as the extension does, and as its
server extension's route does it: ``GET api/v1/announcements`` **directly at the service's own URL**
(the ``JUPYTERHUB_HPC_ANNOUNCEMENTS_URL`` the spawner gives a server, not through the proxy), with
a token of one of ``--ann-users`` hub users (``access:services!service=hpc-announcements``, like a
server's token; each token used once before the phase, so the service's 60 s token cache is warm).
Printed: announcements latency p50/p99 and the service process's CPU (psutil), next to the hub's,
which now includes the service's requests to the hub (users' groups and servers every
``context_cache_seconds``, token checks).

    VENV=/opt/jupyterhub-hpc/venv-card python benchmarks/lab_clients.py [--interval 10] [--windows 3]

Run as root (it reads sdiag, spawns as benchuser1 through sudo). It cancels only benchuser1's jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from dataclasses import dataclass, field

import psutil
import requests
from bench_lib import OUR_VENV, STATUS_USER, BenchHub, free_port, log, metric_value, run, sdiag, wait_for
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from jupyterhub_hpc.announcements import SERVICE_NAME

USER = "benchuser1"
QUERIES = "jupyterhub_hpc_status_query_duration_seconds_count"
WRITER = "benchwriter"
ACCESS = f"access:services!service={SERVICE_NAME}"
WRITE = "custom:announcements:write"


@dataclass
class Polls:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: what one Lab polls each interval: (URL, token, where its latencies go)
Target = tuple[str, str, Polls]


async def lab(targets: list[Target], interval: float, until: float) -> None:
    """One Lab tab: each target (the card, the announcements) every ``interval`` seconds, one
    after the other, starting at a random phase."""
    client = AsyncHTTPClient()
    await asyncio.sleep(random.uniform(0, interval))
    while time.monotonic() < until:
        began = time.monotonic()
        for url, token, polls in targets:
            started = time.monotonic()
            request = HTTPRequest(url, headers={"Authorization": f"token {token}"}, request_timeout=30)
            response = await client.fetch(request, raise_error=False)
            if response.code == 200:
                polls.latencies.append(time.monotonic() - started)
            else:
                polls.errors += 1
        # not past the end of the phase: its wall time is the polling time (the rates and CPU %)
        await asyncio.sleep(max(0.0, min(interval - (time.monotonic() - began), until - time.monotonic())))


def poll_labs(labs: list[list[Target]], interval: float, seconds: float) -> None:
    AsyncHTTPClient.configure(None, max_clients=max(10, min(len(labs), 200)))

    async def main() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(lab(targets, interval, until) for targets in labs))
        await asyncio.sleep(max(0.0, until - time.monotonic()))

    asyncio.run(main())


def poll(url: str, token: str, labs: int, interval: float, seconds: float) -> Polls:
    polls = Polls()
    poll_labs([[(url, token, polls)] for _ in range(labs)], interval, seconds)
    return polls


def service_process(hub_pid: int) -> psutil.Process:
    """The hub's announcements service (a child of the hub)."""
    for child in psutil.Process(hub_pid).children(recursive=True):
        if "jupyterhub_hpc.announcements" in " ".join(child.cmdline()):
            return child
    raise RuntimeError(f"no announcements service under the hub (pid {hub_pid})")


def process_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def announcement_readers(hub: BenchHub, users: int) -> list[str]:
    """``users`` hub users (no accounts: they never spawn) with a token each for the service, and
    a few announcements for them: three for everyone, one for every other reader."""
    names = [f"benchlab{i:04d}" for i in range(users)]
    r = hub.api("GET", "/users?limit=10000")
    have = {u["name"] for u in r.json()} if r.ok else set()
    missing = [n for n in [*names, WRITER] if n not in have]
    if missing:
        hub.api("POST", "/users", json={"usernames": missing}).raise_for_status()
    tokens = []
    for name in names:
        r = hub.api("POST", f"/users/{name}/tokens", json={"scopes": [ACCESS], "note": "lab_clients"})
        r.raise_for_status()
        tokens.append(str(r.json()["token"]))
    r = hub.api("POST", f"/users/{WRITER}/tokens", json={"scopes": [ACCESS, WRITE], "note": "lab_clients"})
    r.raise_for_status()
    writer = str(r.json()["token"])
    base = service_base(hub)
    payloads = [{"title": f"Benchmark notice {i}", "body": f"Notice **{i}** for everyone."} for i in range(3)]
    payloads.append({"title": "For some readers", "audience": {"users": names[::2]}})
    for payload in payloads:
        r = requests.post(
            base + "api/v1/announcements",
            json=payload,
            headers={"Authorization": f"token {writer}"},
            timeout=30,
        )
        r.raise_for_status()
    return tokens


def service_base(hub: BenchHub) -> str:
    """The service's own URL and prefix (what the spawner gives a server)."""
    return f"http://127.0.0.1:{hub.settings['announcements']['port']}/services/{SERVICE_NAME}/"


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=10.0, help="status_interval = the Lab's poll (s)")
    parser.add_argument("--windows", type=int, default=3, help="intervals per phase")
    parser.add_argument("--clients", type=int, default=1000, help="Labs of the latency phase")
    parser.add_argument("--ann-users", type=int, default=100, help="users the Labs read announcements as")
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
    hub.settings["announcements"] = {"port": free_port(), "writers": [WRITER]}
    (hub.root / "settings.json").write_text(json.dumps(hub.settings))
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
        readers = announcement_readers(hub, args.ann_users)
        ann_url = service_base(hub) + "api/v1/announcements"
        service = service_process(pid)
        poll_labs([[(ann_url, t, Polls())] for t in readers], 1.0, 1.0)  # each token once: warm caches
        log(f"{args.clients} Labs (card + announcements of {len(readers)} users) for {seconds:.0f} s")
        cards, notes = Polls(), Polls()
        labs = [
            [(url, token, cards), (ann_url, readers[i % len(readers)], notes)] for i in range(args.clients)
        ]
        cpu0, scpu0 = cpu_seconds(pid), process_cpu(service)
        t0, q0 = time.monotonic(), metric_value(hub.metrics(), QUERIES)
        poll_labs(labs, interval, seconds)
        cpu, scpu = cpu_seconds(pid) - cpu0, process_cpu(service) - scpu0
        wall = time.monotonic() - t0
        queries = metric_value(hub.metrics(), QUERIES) - q0
        for what, polls in (("card", cards), ("announcements", notes)):
            lat = polls.latencies
            print(
                f"{args.clients} Labs, {len(lat)} {what} requests in {wall:.1f} s ({len(lat) / wall:.1f}/s), "
                f"{polls.errors} errors: p50 {quantile(lat, 0.5) * 1000:.1f} ms, "
                f"p99 {quantile(lat, 0.99) * 1000:.1f} ms, "
                f"mean {statistics.fmean(lat) * 1000 if lat else 0:.1f} ms"
            )
        print(
            f"hub CPU {cpu:.1f} s in {wall:.1f} s ({100 * cpu / wall:.0f}% of one core); "
            f"status queries {queries:.0f}"
        )
        print(
            f"announcements service CPU (pid {service.pid}) {scpu:.1f} s in {wall:.1f} s "
            f"({100 * scpu / wall:.0f}% of one core)"
        )
    finally:
        hub.api("DELETE", f"/users/{USER}/server")
        time.sleep(3)
        hub.stop()
        run(["scancel", f"--user={USER}"], check=False)


if __name__ == "__main__":
    main()
