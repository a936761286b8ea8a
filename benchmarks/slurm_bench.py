"""Side-by-side scenarios on the real Slurm: jupyterhub-hpc's SlurmSpawner ("ours") and
batchspawner 1.3.0, each behind its own real JupyterHub 6 + configurable-http-proxy (both hubs run
for the whole benchmark), plus issue 2's registered-jobs run with a standalone watcher.

    python benchmarks/slurm_bench.py [--spawners ours,batchspawner] [--scenarios ...]

Scenarios (all by default). In the ordinary partition, one spawner after the other:

``phases``     5 single spawns of a real ``jupyterhub-singleuser``: spawn time split into submit /
               queue / job start / server start / hub overhead; then the stop time of each (DELETE
               until the job has left Slurm's live queue).
``idle``       N = 1, then 5 real idle servers: status RPCs per minute, counted by slurmctld
               (``sdiag`` per-user counters, reset first).
``queued``     5 spawns held in the queue with ``--begin=now+3600``: status RPCs per minute.
``failure``    a job that exits (code 3) before its server starts, at once and after 5 s: time
               until the hub reports the failure, and the message the user gets.
``registered`` one QueueWatcher (defaults: 30 s interval) with N = 1 registered sleep job.

``shared`` (needs a quiet node): in a run-time partition with OverSubscribe=FORCE, N = 20 light
servers (``lightserver.py``) on BOTH hubs at once, and the registered run with N = 10, then 50
sleep jobs, all counted in the same windows (each by its own accounts). A guard stops the stage as
soon as somebody else's job waits for the node (Slurm does not mix such jobs with ordinary ones).

Writes ``results/slurm_<spawner>.json`` and ``results/registered_ours.json``. Run as root,
through ``run.sh``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from bench_lib import (
    BENCH_USERS,
    FAIL_USERS,
    PARTITION,
    RESULTS,
    SHARED_PARTITION,
    BenchHub,
    CountersReset,
    CtldLog,
    blocked_foreign_jobs,
    cancel_bench_jobs,
    conditions,
    ensure_shared_partition,
    hub_log_times,
    job_output_times,
    job_stdout,
    jobs_of,
    log,
    median,
    sdiag_reset,
    wait_for,
    wait_quiet,
    write_json,
)
from rpc_count import (
    Probe,
    WatcherThread,
    calibrate,
    count,
    guarded_sleep,
    hub_probe,
    job_ids_of,
    snapshot,
    window_row,
)
from spawners import ABORT, SPAWN_FAILURES, Aborted, Kind, spawn, spawn_many, stop_many


# -- scenarios -------------------------------------------------------------------------------------------
def phase_split(hub: BenchHub, kind: Kind, rec: dict[str, Any], ctld: CtldLog, offset: int) -> dict[str, Any]:
    job = rec["job_id"]
    slurm = ctld.events().get(job, {})
    out = job_output_times(job_stdout(job))
    hub_times = hub_log_times(hub.log_path, offset, kind.log_patterns(rec["user"], job))
    t = {"post": rec["t_post"], **slurm, **out, **hub_times, "ready": rec["t_ready"]}
    missing = [
        k for k in ("submitted", "allocated", "job_start", "listening", "start_returned") if k not in t
    ]
    phases: dict[str, Any] = {"job_id": job, "times": t, "missing": missing}
    if not missing:
        phases.update(
            submit=t["submitted"] - t["post"],
            queue=t["allocated"] - t["submitted"],
            job_start=t["job_start"] - t["allocated"],
            server_start=t["listening"] - t["job_start"],
            hub_overhead=t["ready"] - t["listening"],
            # hub overhead = the spawner noticing (start() returning after the server listens)
            # + JupyterHub's own HTTP check of the server and the proxy route
            hub_spawner_wait=max(0.0, t["start_returned"] - t["listening"]),
            hub_jupyterhub_check=t["ready"] - max(t["start_returned"], t["listening"]),
            total=t["ready"] - t["post"],
        )
    return phases


def scenario_phases(hub: BenchHub, kind: Kind, runs: int) -> dict[str, Any]:
    user = BENCH_USERS[0]
    hub.per_user({})
    results: list[dict[str, Any]] = []
    stops: list[dict[str, Any]] = []
    for i in range(runs):
        time.sleep(2)
        ctld, offset = CtldLog(), hub.log_offset()
        rec = spawn(hub, user)
        rec["reach_status"] = hub.reach(user)
        split = phase_split(hub, kind, rec, ctld, offset)
        split["reach_status"] = rec["reach_status"]
        results.append(split)
        log(
            f"{kind.name} spawn {i + 1}/{runs}: total {split.get('total', float('nan')):.2f} s "
            f"(reach {rec['reach_status']}, missing {split['missing']})"
        )
        stops += stop_many(hub, [rec])
        log(
            f"{kind.name} stop {i + 1}/{runs}: DELETE {stops[-1]['delete_response_s']:.2f} s, "
            f"job gone {stops[-1].get('job_gone_s', float('nan')):.2f} s"
        )
    keys = (
        "submit",
        "queue",
        "job_start",
        "server_start",
        "hub_overhead",
        "hub_spawner_wait",
        "hub_jupyterhub_check",
        "total",
    )
    return {
        "runs": results,
        "median": {k: median([r[k] for r in results if k in r]) for k in keys},
        "stops": stops,
        "stop_median": {
            k: median([s[k] for s in stops if k in s])
            for k in ("delete_response_s", "job_gone_s", "hub_gone_s")
        },
    }


# -- scenarios on the ordinary partition ---------------------------------------------------------------------
def scenario_idle_small(hub: BenchHub, kind: Kind, window: float) -> dict[str, Any]:
    """N = 1 and 5 idle jupyterhub-singleuser servers."""
    hub.per_user({})
    rows = []
    recs = spawn_many(hub, BENCH_USERS[:1])
    probe = hub_probe(kind, hub, BENCH_USERS[:1])
    rows.append(
        {
            "n": 1,
            "server": "jupyterhub-singleuser",
            "partition": PARTITION,
            **count([probe], window, 10)[probe.key],
        }
    )
    recs += spawn_many(hub, BENCH_USERS[1:5])
    probe = hub_probe(kind, hub, BENCH_USERS[:5])
    rows.append(
        {
            "n": 5,
            "server": "jupyterhub-singleuser",
            "partition": PARTITION,
            **count([probe], window, 10)[probe.key],
        }
    )
    stops = stop_many(hub, recs)
    return {"rows": rows, "stops_5_at_once": stops}


def scenario_queued(hub: BenchHub, kind: Kind, window: float) -> dict[str, Any]:
    users = BENCH_USERS[:5]
    hub.per_user({u: kind.knobs(hold=True) for u in users})
    posts = [
        threading.Thread(
            target=hub.api, args=("POST", f"/users/{u}/server"), kwargs={"json": {}}, daemon=True
        )
        for u in users
    ]
    for t in posts:
        t.start()
    wait_for(
        lambda: len([s for s in jobs_of(users).values() if s == "PENDING"]) == 5,
        60,
        what="the 5 held jobs are not pending",
    )
    time.sleep(1)
    accounts = kind.status_users(users)
    probe = Probe(
        f"{kind.name} 5 queued",
        accounts,
        calibrate(accounts[0], kind.status_argv(job_ids_of(hub, users))),
        hub,
    )
    row = count([probe], window, 3)[probe.key]
    for t in posts:
        t.join(timeout=30)
    recs = [{"user": u, "job_id": (job_ids_of(hub, [u]) or [""])[0]} for u in users]
    stops = stop_many(hub, recs)
    hub.per_user({})
    return {"row": row, "stops_pending": stops}


def scenario_failure(
    hub: BenchHub, kind: Kind, user: str, fail_after: float, timeout: float = 420
) -> dict[str, Any]:
    """Time until the user learns that the job died before its server started."""
    hub.per_user({user: kind.knobs(fail_after=fail_after)})
    rec: dict[str, Any] = {"user": user, "fail_after_s": fail_after}
    message: dict[str, Any] = {}

    def post() -> None:
        rec["post_status"] = hub.api("POST", f"/users/{user}/server", json={}).status_code
        rec["post_response_s"] = time.time() - rec["t_post"]

    def progress() -> None:
        message["text"] = hub.progress_message(user, timeout)
        message["t"] = time.time()

    rec["t_post"] = time.time()
    threading.Thread(target=post, daemon=True).start()
    wait_for(lambda: hub.server(user), 30, interval=0.05, what=f"{user}'s spawn did not begin")
    reader = threading.Thread(target=progress, daemon=True)
    reader.start()
    wait_for(
        lambda: hub.server(user) is None, timeout, interval=0.1, what=f"{user}'s failed spawn never ended"
    )
    rec["server_gone_s"] = time.time() - rec["t_post"]
    reader.join(timeout=30)
    rec["message"] = message.get("text", "")[:600]
    if "t" in message:
        rec["progress_failed_s"] = message["t"] - rec["t_post"]
    rec["reported_s"] = min(rec["server_gone_s"], rec.get("progress_failed_s", rec["server_gone_s"]))
    log(
        f"{kind.name} failure after {fail_after:g} s: reported after {rec['reported_s']:.1f} s: "
        f"{rec['message'][:100]!r}"
    )
    return rec


def run_regular(
    kind: Kind, hub: BenchHub, scenarios: list[str], args: argparse.Namespace, result: dict[str, Any]
) -> threading.Thread | None:
    """The scenarios that fit the ordinary partition, one spawner at a time. Returns the thread of
    batchspawner's slow failure (it ends at start_timeout, 300 s: it runs alongside the rest)."""
    background = None
    if "failure" in scenarios and not kind.ours:

        def slow_failure() -> None:
            result["failure_after_5s"] = scenario_failure(hub, kind, FAIL_USERS[1], 5)

        background = threading.Thread(target=slow_failure, daemon=True)
        background.start()
        time.sleep(15)  # its spawn has read its per-user settings before they change
    steps: list[tuple[str, str, Callable[[], Any]]] = [
        ("phases", "phases", lambda: scenario_phases(hub, kind, args.runs)),
        ("idle", "idle", lambda: scenario_idle_small(hub, kind, args.window)),
        ("queued", "queued", lambda: scenario_queued(hub, kind, args.queued_window)),
        ("failure", "failure_at_once", lambda: scenario_failure(hub, kind, FAIL_USERS[0], 0)),
    ]
    if background is None:
        steps.append(("failure", "failure_after_5s", lambda: scenario_failure(hub, kind, FAIL_USERS[1], 5)))
    for scenario, key, step in steps:
        if scenario in scenarios:
            guarded_step(kind, hub, result, key, step)
    return background


def guarded_step(
    kind: Kind, hub: BenchHub, result: dict[str, Any], key: str, step: Callable[[], Any]
) -> None:
    try:
        result[key] = step()
    except Exception as exc:  # keep the other scenarios' results
        log(f"{kind.name} {key} failed: {exc!r}")
        result.setdefault("errors", {})[key] = repr(exc)
        for user in [*BENCH_USERS, FAIL_USERS[0]]:
            hub.api("DELETE", f"/users/{user}/server")
        time.sleep(5)
        cancel_bench_jobs(exclude=[FAIL_USERS[1]])


# -- the shared-partition stage ---------------------------------------------------------------------------
def guard_thread(stop: threading.Event, seen: list[str]) -> None:
    while not stop.wait(2):
        try:
            blocked = blocked_foreign_jobs()
        except Exception as exc:  # a guard that dies would let the stage hold up others' jobs
            log(f"guard: cannot read the queue ({exc!r}); stopping the stage to be safe")
            blocked = ["(unknown)"]
        if blocked:
            seen.extend(blocked)
            ABORT.set()
            return


def run_shared(
    hubs: list[tuple[Kind, BenchHub]], watcher: WatcherThread | None, args: argparse.Namespace
) -> dict[str, Any]:
    """N = 20 light servers per spawner (both hubs at once) and the registered run with N = 10, 50 sleep
    jobs, in the shared partition, while nobody else uses the node."""
    out: dict[str, Any] = {"partition": SHARED_PARTITION, "conditions_start": conditions()}
    if not wait_quiet(args.quiet_wait):
        out["skipped"] = f"other people's jobs kept the node busy for {args.quiet_wait:.0f} s"
        log(f"shared stage skipped: {out['skipped']}")
        return out
    ensure_shared_partition()
    ABORT.clear()
    stop_guard, blocked = threading.Event(), []
    threading.Thread(target=guard_thread, args=(stop_guard, blocked), daemon=True).start()
    recs: dict[str, list[dict[str, Any]]] = {}
    try:
        for kind, hub in hubs:
            hub.per_user({u: kind.knobs(light=True) for u in BENCH_USERS})
            recs[kind.name] = spawn_many(hub, BENCH_USERS)
            out.setdefault("reach_status", {})[kind.name] = [hub.reach(u) for u in BENCH_USERS[:3]]
        probes = [hub_probe(kind, hub, BENCH_USERS) for kind, hub in hubs]
        reg_a = reg_b = None
        running_a = 0
        if watcher is not None:
            watcher.add_jobs(10, SHARED_PARTITION)
            reg_a = watcher.probe()
            running_a = watcher.running
        time.sleep(10)
        sdiag_reset()
        first = snapshot(probes + ([reg_a] if reg_a else []))
        cut_a = guarded_sleep(args.window, guard=False)
        middle = middle_b = last = snapshot(probes + ([reg_a] if reg_a else []))
        cut_b: list[str] = []
        if watcher is not None and not cut_a:
            watcher.add_jobs(50, SHARED_PARTITION)
            reg_b = watcher.probe()
            time.sleep(5)
            middle_b = snapshot([*probes, reg_b])
            cut_b = guarded_sleep(args.registered_window, guard=False)
            last = snapshot([*probes, reg_b])
        # the N = 20 rows count window A only: like every idle window it lasts a whole number of
        # status intervals (90 s = 3 x 30 s), so a periodic count has no +-1 edge effect
        rows: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for probe in probes:
            rows[probe.key] = (
                {"n": 20, "server": "lightserver.py", **window_row(probe, first, middle)},
                cut_a,
            )
        if reg_a is not None:
            rows["registered_10"] = (
                {"registered": 10, "running": running_a, **window_row(reg_a, first, middle)},
                cut_a,
            )
        if reg_b is not None and watcher is not None:
            rows["registered_50"] = (
                {"registered": 50, "running": watcher.running, **window_row(reg_b, middle_b, last)},
                cut_b,
            )
        for key, (row, cut) in rows.items():
            if cut:
                row["interrupted_by_foreign_jobs"] = cut
            out[key] = row
        if cut_a or cut_b or blocked:
            out["interrupted_by_foreign_jobs"] = cut_a or cut_b or blocked
        for key, row in out.items():
            if isinstance(row, dict) and "squeue_calls_per_min" in row:
                log(
                    f"{key}: {row['squeue_calls_per_min']:.1f} squeue/min, {row['status_rpcs_per_min']:.1f} "
                    f"status RPCs/min over {row['window_s']:.0f} s"
                )
    except (Aborted, CountersReset, TimeoutError) as exc:
        out["error"] = repr(exc)
        log(f"shared stage stopped: {exc!r}")
    finally:
        stop_guard.set()
        if blocked:
            out["interrupted_by_foreign_jobs"] = blocked
        ABORT.clear()
        if watcher is not None:
            watcher.clear()
        for kind, hub in hubs:
            users = [u for u in BENCH_USERS if hub.server(u)]
            stops = stop_many(hub, [{"user": u, "job_id": (job_ids_of(hub, [u]) or [""])[0]} for u in users])
            out.setdefault("stops_20_at_once", {})[kind.name] = stops
            hub.per_user({})
        cancel_bench_jobs(exclude=[FAIL_USERS[1]])
        out["conditions_end"] = conditions()
    return out


def run_registered_small(watcher: WatcherThread, window: float) -> dict[str, Any]:
    """Registered N = 1 in the ordinary partition (no need for the shared one)."""
    watcher.add_jobs(1, PARTITION)
    probe = watcher.probe()
    row = {"registered": 1, "running": watcher.running, **count([probe], window, 3)[probe.key]}
    watcher.clear()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spawners", default="ours,batchspawner", help="comma-separated: ours, batchspawner")
    parser.add_argument("--scenarios", default="phases,idle,queued,failure,shared,registered")
    parser.add_argument("--runs", type=int, default=5, help="spawns for the phase split (median)")
    parser.add_argument("--window", type=float, default=90, help="seconds counted per idle scenario")
    parser.add_argument("--queued-window", type=float, default=60, help="seconds counted, 5 queued spawns")
    parser.add_argument(
        "--registered-window", type=float, default=60, help="seconds counted per N, registered"
    )
    parser.add_argument("--quiet-wait", type=float, default=300, help="longest wait for a quiet node")
    parser.add_argument(
        "--merge", action="store_true", help="replace only these scenarios in the existing result files"
    )
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    cancel_bench_jobs()
    kinds = [Kind(name) for name in args.spawners.split(",")]
    hubs: list[tuple[Kind, BenchHub]] = []
    results: dict[str, dict[str, Any]] = {}
    backgrounds: list[threading.Thread] = []
    watcher: WatcherThread | None = None
    registered: dict[str, Any] = {"conditions_start": conditions(), "rows": []}
    started = time.time()
    try:
        for kind in kinds:
            hub = BenchHub(kind.name, kind.venv, kind.name, kind.base_config())
            log(f"{kind.name}: starting the hub ({hub.root})")
            hub.start()
            for user in [*BENCH_USERS, *FAIL_USERS]:
                hub.ensure_user(user)
            hubs.append((kind, hub))
            results[kind.name] = {
                "spawner": kind.name,
                "config": kind.base_config(),
                "hub_log": str(hub.log_path),
                "conditions_start": conditions(),
            }
        for kind, hub in hubs:
            t0 = time.time()
            regular = [s for s in scenarios if s != "shared"]
            background = run_regular(kind, hub, regular, args, results[kind.name])
            if background is not None:
                backgrounds.append(background)
            results[kind.name]["regular_duration_s"] = time.time() - t0
        if "registered" in scenarios:
            watcher = WatcherThread()
            try:
                registered["rows"].append(run_registered_small(watcher, args.registered_window))
            except Exception as exc:
                registered.setdefault("errors", {})["registered_1"] = repr(exc)
                watcher.clear()
        if "shared" in scenarios:
            shared_hubs = [(k, h) for k, h in hubs if k.name in ("ours", "batchspawner")]
            shared = run_shared(shared_hubs, watcher, args)
            for kind, _ in shared_hubs:
                results[kind.name]["shared"] = {
                    "row": shared.get(f"{kind.name} N=20"),
                    "stops_20_at_once": shared.get("stops_20_at_once", {}).get(kind.name, []),
                    **{
                        k: shared[k]
                        for k in (
                            "skipped",
                            "error",
                            "interrupted_by_foreign_jobs",
                            "conditions_start",
                            "conditions_end",
                            "reach_status",
                        )
                        if k in shared
                    },
                }
            for key in ("registered_10", "registered_50"):
                if key in shared:
                    registered["rows"].append(shared[key])
            registered["shared_stage"] = {
                k: shared[k] for k in ("skipped", "error", "interrupted_by_foreign_jobs") if k in shared
            }
        for background in backgrounds:
            log("waiting for batchspawner's failing spawn (it ends at start_timeout, 300 s)")
            background.join(timeout=480)
    finally:
        if watcher is not None:
            watcher.stop()
        for kind, hub in hubs:
            results[kind.name]["spawn_failures"] = [f for f in SPAWN_FAILURES if f.get("hub") == kind.name]
            results[kind.name]["conditions_end"] = conditions()
            hub.stop()
        cancel_bench_jobs()
    for name, result in results.items():
        result["duration_s"] = time.time() - started
        if args.merge:
            result = merged(f"slurm_{name}.json", result, scenarios)
        write_json(f"slurm_{name}.json", result)
    if "registered" in scenarios or (args.merge and "shared" in scenarios):
        registered["conditions_end"] = conditions()
        registered["duration_s"] = time.time() - started
        if args.merge:
            registered = merged_registered(registered)
        write_json("registered_ours.json", registered)


def merged(name: str, new: dict[str, Any], scenarios: list[str]) -> dict[str, Any]:
    """An earlier result file with the scenarios just run replaced (``--merge``)."""
    path = RESULTS / name
    old: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    keys = {"phases": ["phases"], "idle": ["idle"], "queued": ["queued"], "shared": ["shared"],
            "failure": ["failure_at_once", "failure_after_5s"]}  # fmt: skip
    for scenario in scenarios:
        for key in keys.get(scenario, []):
            if key in new:
                old[key] = new[key]
    old.setdefault("reruns", []).append(
        {
            k: new.get(k)
            for k in ("hub_log", "conditions_start", "conditions_end", "spawn_failures", "duration_s")
        }
        | {"scenarios": scenarios}
    )
    return old


def merged_registered(new: dict[str, Any]) -> dict[str, Any]:
    path = RESULTS / "registered_ours.json"
    old: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"rows": []}
    counts = {row["registered"] for row in new["rows"]}
    old["rows"] = sorted(
        [r for r in old["rows"] if r["registered"] not in counts] + new["rows"], key=lambda r: r["registered"]
    )
    if "shared_stage" in new:
        old["shared_stage"] = new["shared_stage"]
    old.setdefault("reruns", []).append(
        {k: new.get(k) for k in ("conditions_start", "conditions_end")}
        | {"scenarios": ["registered", "shared"]}
    )
    return old


if __name__ == "__main__":
    main()
