"""Side-by-side scenarios on the real Slurm: jupyterhub-hpc's SlurmSpawner ("ours") and
batchspawner 1.3.0, each behind its own real JupyterHub 6 + configurable-http-proxy.

    python benchmarks/slurm_bench.py [--spawners ours,batchspawner] [--scenarios ...] [--window S]

Scenarios (all by default), per spawner, in this order:

``phases``   5 single spawns of a real ``jupyterhub-singleuser``, one after the other: spawn time
             split into submit / queue / job start / server start / hub overhead, then the stop
             time (DELETE until the job has left the live queue) of each.
``idle``     N = 1 and 5 real servers, then N = 20 light servers (``lightserver.py``): status RPCs
             per minute while they sit idle, counted by slurmctld (``sdiag``, reset first).
``queued``   5 spawns held in the queue with ``--begin=now+3600``: status RPCs per minute.
``failure``  a job that exits (code 3) before its server starts, at once and after 5 s: time
             until the hub reports the failure, and the message the user gets.

Writes ``results/slurm_<spawner>.json``. Run as root, through ``run.sh``.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_lib import (
    ACTIVE_STATES,
    BENCH_USERS,
    BENCH_VENV,
    FAIL_USERS,
    LIGHT_SERVER,
    OUR_VENV,
    PARTITION,
    SHARED_PARTITION,
    STATUS_TYPES,
    STATUS_USER,
    BenchHub,
    CountersReset,
    CtldLog,
    blocked_foreign_jobs,
    cancel_bench_jobs,
    conditions,
    ensure_shared_partition,
    hub_log_times,
    job_output_times,
    job_states,
    job_stdout,
    jobs_of,
    log,
    median,
    metric_value,
    rpcs_per_call,
    sdiag,
    sdiag_reset,
    wait_for,
    wait_quiet,
    write_json,
)

#: the first line of both job scripts' prologue: when the batch script started on the node
STAMP = 'echo "BENCH_JOB_START $(date +%s.%N)"'
HOLD = "--begin=now+3600"
REAL_MEMORY = "400M"
LIGHT_MEMORY = "100M"


@dataclass
class Kind:
    """How one spawner is configured for each scenario (the same resources for both)."""

    name: str

    @property
    def venv(self) -> Path:
        return OUR_VENV if self.name == "ours" else BENCH_VENV

    def base_config(self) -> dict[str, Any]:
        if self.name == "ours":
            return {
                "partition": PARTITION,
                "memory": REAL_MEMORY,
                "walltime": "01:00:00",
                # squeue as a dedicated account: slurmctld counts our status RPCs apart from
                # everything else on the machine (the default is squeue as the hub's own user)
                "status_prefix": ["sudo", "-n", "-u", STATUS_USER, "--"],
                "job_script_prologue": STAMP,
            }
        # the working batchspawner set-up of the baseline (pain points P3-P5)
        return {
            "req_partition": PARTITION,
            "req_memory": REAL_MEMORY,
            "req_runtime": "01:00:00",
            "req_prologue": f"export PATH={BENCH_VENV}/bin:$PATH\n{STAMP}",
            "req_keepvars_extra": "PATH",
            "batch_submit_cmd": "/usr/bin/sbatch --parsable",
            "batch_query_cmd": "/usr/bin/squeue -h -j {job_id} -o '%T %B'",
            "batch_cancel_cmd": "/usr/bin/scancel {job_id}",
        }

    def knobs(
        self, *, hold: bool = False, light: bool = False, fail_after: float | None = None
    ) -> dict[str, Any]:
        """Per-user settings of one scenario."""
        knobs: dict[str, Any] = {}
        ours = self.name == "ours"
        if hold:
            knobs["job_extra_directives" if ours else "req_options"] = [HOLD] if ours else HOLD
        if light:
            knobs["cmd"] = [str(LIGHT_SERVER)]
            knobs["memory" if ours else "req_memory"] = LIGHT_MEMORY
            knobs["partition" if ours else "req_partition"] = SHARED_PARTITION
        if fail_after is not None:
            fail = f"sleep {fail_after:g}\nexit 3" if fail_after else "exit 3"
            if ours:
                knobs["job_script_prologue"] = f"{STAMP}\n{fail}"
            else:
                knobs["req_prologue"] = f"export PATH={BENCH_VENV}/bin:$PATH\n{STAMP}\n{fail}"
        return knobs

    def status_argv(self, job_ids: list[str]) -> list[str]:
        """The status command this spawner runs for these jobs (for calibrating its RPC cost)."""
        if self.name == "ours":
            from jupyterhub_hpc.backends.slurm import SlurmBackend

            return SlurmBackend().status_argv(job_ids)
        return ["/usr/bin/squeue", "-h", "-j", job_ids[0], "-o", "%T %B"]

    def status_users(self, users: list[str]) -> list[str]:
        """The accounts whose RPCs are this spawner's status queries."""
        return [STATUS_USER] if self.name == "ours" else users

    def log_patterns(self, user: str, job: str) -> dict[str, str]:
        if self.name == "ours":
            return {
                "port_reported": rf"^{user}: job {job} listens on port",
                "start_returned": rf"^{user}: Starting Jupyter$",
                "hub_took": rf"^User {user} took [\d.]+ seconds to start",
            }
        return {
            "port_reported": rf"POST /hub/api/batchspawner \({user}@",
            "start_returned": rf"^Notebook server job {job} started at",
            "hub_took": rf"^User {user} took [\d.]+ seconds to start",
        }


# -- spawning and stopping -----------------------------------------------------------------------------
def spawn(hub: BenchHub, user: str, timeout: float = 240) -> dict[str, Any]:
    """POST a spawn and wait until the REST model says ready (polled every 50 ms)."""
    rec: dict[str, Any] = {"user": user}
    done = threading.Event()

    def post() -> None:
        try:
            rec["post_status"] = hub.api("POST", f"/users/{user}/server", json={}).status_code
        finally:
            rec["post_returned"] = time.time()
            done.set()

    rec["t_post"] = time.time()
    threading.Thread(target=post, daemon=True).start()
    deadline = time.monotonic() + timeout
    seen = False
    while time.monotonic() < deadline:
        server = hub.server(user)
        if server and server.get("ready"):
            rec["t_ready"] = time.time()
            rec["job_id"] = str((server.get("state") or {}).get("job_id", ""))
            return rec
        seen = seen or bool(server)
        if done.is_set() and not server and (seen or rec.get("post_status", 0) >= 400):
            raise RuntimeError(f"{user}'s spawn failed (POST {rec.get('post_status')}); see {hub.log_path}")
        time.sleep(0.05)
    raise TimeoutError(f"{user}'s server not ready in {timeout} s; see {hub.log_path}")


#: spawns sent at once. With 20 at once, 10 of ours failed in a trial run: the job's launcher
#: reported its port before the busy hub had recorded the job id, and the hub refused it (400);
#: see docs/benchmarks.md. Both spawners get the same treatment.
PARALLEL_SPAWNS = 4
SPAWN_FAILURES: list[dict[str, Any]] = []


def spawn_retrying(hub: BenchHub, user: str, retries: int = 2) -> dict[str, Any]:
    """``spawn``, again after a failed spawn (each failure is kept in SPAWN_FAILURES)."""
    for attempt in range(retries + 1):
        try:
            return spawn(hub, user)
        except RuntimeError as exc:
            SPAWN_FAILURES.append(
                {"user": user, "attempt": attempt + 1, "error": str(exc), "time": time.time()}
            )
            log(f"spawn failed, retrying: {exc}")
            time.sleep(1)
    raise RuntimeError(f"{user}: {retries + 1} spawns failed")


def spawn_many(hub: BenchHub, users: list[str]) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(min(PARALLEL_SPAWNS, len(users))) as pool:
        return list(pool.map(lambda u: spawn_retrying(hub, u), users))


def stop_many(hub: BenchHub, recs: list[dict[str, Any]], timeout: float = 120) -> list[dict[str, Any]]:
    """DELETE every server at once; per server: time until DELETE answered, until its job left
    Slurm's live queue, and until the hub forgot the server."""
    out: dict[str, dict[str, Any]] = {
        r["user"]: {"user": r["user"], "job_id": r.get("job_id", "")} for r in recs
    }

    def delete(user: str) -> None:
        out[user]["t_delete"] = time.time()
        out[user]["delete_status"] = hub.api("DELETE", f"/users/{user}/server").status_code
        out[user]["delete_response_s"] = time.time() - out[user]["t_delete"]

    threads = [threading.Thread(target=delete, args=(u,), daemon=True) for u in out]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = job_states(r["job_id"] for r in out.values() if r["job_id"] and "job_gone_s" not in r)
        now = time.time()
        for r in out.values():
            if "t_delete" in r and "job_gone_s" not in r and states.get(r["job_id"], "") not in ACTIVE_STATES:
                r["job_gone_s"] = now - r["t_delete"]
                r["final_state"] = states.get(r["job_id"], "(gone)")
        if all("job_gone_s" in r for r in out.values()):
            break
        time.sleep(0.05)
    for t in threads:
        t.join(timeout=60)
    for r in out.values():
        wait_for(lambda u=r["user"]: hub.server(u) is None, 60, what=f"{r['user']}'s server not gone")
        r["hub_gone_s"] = time.time() - r["t_delete"]
    return list(out.values())


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


def calibrate(kind: Kind, users: list[str], job_ids: list[str]) -> dict[str, Any]:
    """RPCs per status command of this spawner, with the job ids it would ask about now."""
    account = kind.status_users(users)[0]
    for attempt in range(3):
        try:
            return rpcs_per_call(account, kind.status_argv(job_ids))
        except CountersReset:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def count_window(
    hub: BenchHub, kind: Kind, users: list[str], window: float, settle: float, guard: bool = False
) -> dict[str, Any]:
    """``count_window_once``, again (twice at most) when slurmctld restarted during the window."""
    job_ids = []
    for user in users:
        job_ids.append(str(((hub.server(user) or {}).get("state") or {}).get("job_id", "")))
    calibration = calibrate(kind, users, [j for j in job_ids if j])
    for attempt in range(3):
        try:
            row = count_window_once(hub, kind, users, window, settle, guard, calibration["rpcs_per_call"])
            row["calibration"] = calibration
            row["attempt"] = attempt + 1
            return row
        except CountersReset as exc:
            log(f"{kind.name} N={len(users)}: {exc}; counting again")
    raise CountersReset("slurmctld's counters were reset during three windows in a row")


def count_window_once(
    hub: BenchHub, kind: Kind, users: list[str], window: float, settle: float, guard: bool, per_call: float
) -> dict[str, Any]:
    """Reset sdiag, wait ``window`` seconds, and attribute the status RPCs to this spawner.
    With ``guard``, end early as soon as somebody else's job waits for resources."""
    time.sleep(settle)
    before = conditions()
    metrics0 = hub.metrics() if kind.name == "ours" else ""
    sdiag_reset()
    c0 = sdiag()
    end = time.monotonic() + window
    interrupted: list[str] = []
    while time.monotonic() < end:
        time.sleep(min(2.0, max(0.0, end - time.monotonic())))
        if guard and (interrupted := blocked_foreign_jobs()):
            break
    c1 = sdiag()
    metrics1 = hub.metrics() if kind.name == "ours" else ""
    diff = c1.minus(c0)
    minutes = diff.taken / 60
    status_users = kind.status_users(users)
    rpcs = sum(diff.by_user.get(u, 0) for u in status_users)
    row: dict[str, Any] = {
        "n": len(users),
        "window_s": diff.taken,
        "status_accounts": status_users,
        # every RPC slurmctld counted for the accounts that run the status command
        "status_rpcs": rpcs,
        "status_rpcs_per_min": rpcs / minutes,
        # squeue runs: each sends exactly one REQUEST_JOB_INFO or REQUEST_JOB_INFO_SINGLE, plus
        # REQUEST_FED_INFO / REQUEST_PARTITION_INFO depending on its options (see calibration)
        "squeue_calls": rpcs / per_call,
        "squeue_calls_per_min": rpcs / per_call / minutes,
        "rpcs_per_squeue": per_call,
        "all_job_info_rpcs_per_min_machine_wide": sum(diff.by_type.get(t, 0) for t in STATUS_TYPES[:2])
        / minutes,
        "rpc_by_type": diff.by_type,
        "rpc_by_user": diff.by_user,
        "conditions_before": before,
        "conditions_after": conditions(),
    }
    if interrupted:
        row["interrupted_by_foreign_jobs"] = interrupted
        log(f"{kind.name} N={len(users)}: window ended early, jobs {interrupted} of others were waiting")
    if metrics0:
        name = "jupyterhub_hpc_status_query_duration_seconds_count"
        queries = metric_value(metrics1, name) - metric_value(metrics0, name)
        row["watcher_queries"] = queries
        row["watcher_queries_per_min"] = queries / minutes
    log(
        f"{kind.name} N={len(users)}: {row['squeue_calls_per_min']:.1f} squeue/min, "
        f"{row['status_rpcs_per_min']:.1f} status RPCs/min over {diff.taken:.0f} s"
    )
    return row


def scenario_idle(hub: BenchHub, kind: Kind, window: float, quiet_wait: float) -> dict[str, Any]:
    hub.per_user({})
    rows = []
    recs = spawn_many(hub, BENCH_USERS[:1])
    rows.append({"server": "jupyterhub-singleuser", **count_window(hub, kind, BENCH_USERS[:1], window, 10)})
    recs += spawn_many(hub, BENCH_USERS[1:5])
    rows.append({"server": "jupyterhub-singleuser", **count_window(hub, kind, BENCH_USERS[:5], window, 10)})
    stops5 = stop_many(hub, recs)
    stops20: list[dict[str, Any]] = []
    if wait_quiet(quiet_wait):
        ensure_shared_partition()
        hub.per_user({u: kind.knobs(light=True) for u in BENCH_USERS})
        recs = spawn_many(hub, BENCH_USERS)
        reach = [hub.reach(u) for u in BENCH_USERS[:3]]
        rows.append(
            {
                "server": "lightserver.py",
                "partition": SHARED_PARTITION,
                "reach_status": reach,
                **count_window(hub, kind, BENCH_USERS, window, 10, guard=True),
            }
        )
        stops20 = stop_many(hub, recs)
    else:
        log(f"{kind.name} N=20 skipped: other jobs kept the node busy for {quiet_wait:.0f} s")
        rows.append({"n": 20, "skipped": f"other jobs kept the node busy for {quiet_wait:.0f} s"})
    return {
        "rows": rows,
        "stops_5_at_once": stops5,
        "stops_20_at_once": stops20,
        "stop_20_median": {
            k: median([s[k] for s in stops20 if k in s]) for k in ("delete_response_s", "job_gone_s")
        },
    }


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
    row = count_window(hub, kind, users, window, 3)
    for t in posts:
        t.join(timeout=30)
    recs = []
    for u in users:
        server = hub.server(u) or {}
        recs.append({"user": u, "job_id": str((server.get("state") or {}).get("job_id", ""))})
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


def run_spawner(kind: Kind, scenarios: list[str], args: argparse.Namespace) -> dict[str, Any]:
    hub = BenchHub(
        kind.name, kind.venv, "ours" if kind.name == "ours" else "batchspawner", kind.base_config()
    )
    result: dict[str, Any] = {
        "spawner": kind.name,
        "config": kind.base_config(),
        "hub_log": str(hub.log_path),
        "conditions_start": conditions(),
    }
    log(f"{kind.name}: starting the hub ({hub.root})")
    hub.start()
    background: threading.Thread | None = None
    try:
        for user in [*BENCH_USERS, *FAIL_USERS]:
            hub.ensure_user(user)
        if "failure" in scenarios and kind.name == "batchspawner":
            # batchspawner reports this one only at start_timeout (300 s): run it alongside the
            # other scenarios, as its own account (its RPCs are attributed to nobody else)
            def slow_failure() -> None:
                result["failure_after_5s"] = scenario_failure(hub, kind, FAIL_USERS[1], 5)

            background = threading.Thread(target=slow_failure, daemon=True)
            background.start()
            time.sleep(15)  # its spawn is under way before the per-user file changes
        steps: list[tuple[str, str, Callable[[], Any]]] = [
            ("phases", "phases", lambda: scenario_phases(hub, kind, args.runs)),
            ("idle", "idle", lambda: scenario_idle(hub, kind, args.window, args.quiet_wait)),
            ("queued", "queued", lambda: scenario_queued(hub, kind, args.queued_window)),
            ("failure", "failure_at_once", lambda: scenario_failure(hub, kind, FAIL_USERS[0], 0)),
        ]
        if background is None:
            steps.append(
                ("failure", "failure_after_5s", lambda: scenario_failure(hub, kind, FAIL_USERS[1], 5))
            )
        for scenario, key, step in steps:
            if scenario not in scenarios:
                continue
            try:
                result[key] = step()
            except Exception as exc:  # keep the other scenarios' results
                log(f"{kind.name} {key} failed: {exc!r}")
                result.setdefault("errors", {})[key] = repr(exc)
                cancel_bench_jobs()
                for user in [*BENCH_USERS, *FAIL_USERS[:1]]:
                    hub.api("DELETE", f"/users/{user}/server")
        if background is not None:
            log("waiting for batchspawner's failing spawn (it ends at start_timeout)")
            background.join(timeout=480)
    finally:
        result["spawn_failures"] = list(SPAWN_FAILURES)
        SPAWN_FAILURES.clear()
        result["conditions_end"] = conditions()
        hub.stop()
        cancel_bench_jobs()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spawners", default="ours,batchspawner")
    parser.add_argument("--scenarios", default="phases,idle,queued,failure")
    parser.add_argument("--runs", type=int, default=5, help="spawns for the phase split (median)")
    parser.add_argument("--window", type=float, default=90, help="seconds counted per idle scenario")
    parser.add_argument(
        "--queued-window", type=float, default=60, help="seconds counted with 5 queued spawns"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=240,
        help="longest wait for a quiet node before N=20 (else skipped)",
    )
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    cancel_bench_jobs()
    for name in args.spawners.split(","):
        started = time.time()
        result = run_spawner(Kind(name), scenarios, args)
        result["duration_s"] = time.time() - started
        write_json(f"slurm_{name}.json", result)


if __name__ == "__main__":
    main()
