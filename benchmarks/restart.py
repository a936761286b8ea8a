"""Hub restart with spawns queued in Slurm (issue 12, item 6), on the real Slurm.

    python benchmarks/restart.py [--configs ours-10,ours-1,batchspawner] [--kills sigterm,sigkill]
    python benchmarks/restart.py --section     # only rewrite the section of results/README.md

For each configuration and each way of stopping the hub: a fresh hub, ``--users`` (10) benchmark
users each spawn a light server (``lightserver.py``) whose job is held in the queue
(``--begin=now+3600``); once every job is PENDING the hub is stopped (``sigterm``: SIGTERM to the
hub process, ``cleanup_servers = False`` as in every benchmark hub; ``sigkill``: SIGKILL to the hub
only, its proxy survives as after a crash) and started again. Measured:

- seconds from the new hub process's start to the first HTTP 200 of ``GET /hub/api/`` with a token,
  and to JupyterHub's log line "JupyterHub is now running";
- what the restarted hub shows for each server (pending, ready, job id) and what Slurm still has;
- then every held job is released (``scontrol update JobId=... StartTime=now``): seconds until each
  server is ready in the REST model with the job id it had before the restart, and whether it is
  reachable through the proxy.

Configurations: ``ours-10`` (our SlurmSpawner, JupyterHub's default ``init_spawners_timeout = 10``:
"before"), ``ours-1`` (``c.JupyterHub.init_spawners_timeout = 1``, the recommended setting:
"after"), ``batchspawner`` (1.3.0, JupyterHub's default). Afterwards only the benchmark accounts'
jobs are cancelled. The jobs run in the run-time shared partition (10 light servers need more job
slots than the node's 8 CPUs); each run waits for a node nobody else uses.

Writes ``results/restart.json`` and its section of ``results/README.md``. Run as root (run.sh
``--restart``, or the full run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import requests
from bench_lib import (
    BENCH_USERS,
    HERE,
    RESULTS,
    SHARED_PARTITION,
    BenchHub,
    cancel_bench_jobs,
    conditions,
    ensure_shared_partition,
    hub_log_times,
    job_states,
    jobs_of,
    log,
    median,
    wait_for,
    wait_quiet,
    write_json,
)
from spawners import Kind

from jupyterhub_hpc.hubprocess import API_PATH, HubProcess, hub_environment

#: configuration name -> (spawner kind, init_spawners_timeout given on the command line or None)
CONFIGS: dict[str, tuple[str, int | None]] = {
    "ours-10": ("ours", None),
    "ours-1": ("ours", 1),
    "batchspawner": ("batchspawner", None),
}
LABELS = {
    "ours-10": "ours, init_spawners_timeout = 10 (JupyterHub's default): before",
    "ours-1": "ours, init_spawners_timeout = 1: after",
    "batchspawner": "batchspawner 1.3.0, init_spawners_timeout = 10 (default)",
}
LOG_PATTERNS = {
    "version": r"^Running JupyterHub version",
    "now_running": r"^JupyterHub is now running",
    "init_timed_out": r"^init_spawners did not complete within",
    "init_done": r"^Initialized \d+ spawners in",
}
SUMMARY_KEYS = (
    "api_after_s",
    "log_now_running_s",
    "api_after_version_log_s",
    "init_spawners_blocked_s",
    "servers_shown_after_restart",
    "pending_after_restart",
    "readopted_same_job",
    "all_ready_after_release_s",
    "orphaned_jobs",
    "error",
)
SECTION_BEGIN = "<!-- restart.py: begin -->"
SECTION_END = "<!-- restart.py: end -->"


class RestartHub(BenchHub):
    """A benchmark hub started with extra JupyterHub options, stopped by one signal and started
    again: the process is the shared harness's (:class:`jupyterhub_hpc.hubprocess.HubProcess`),
    started with those options and timed here."""

    def __init__(self, name: str, kind: Kind, init_timeout: int | None) -> None:
        super().__init__(name, kind.venv, kind.name, kind.base_config())
        self.extra_args = (
            [] if init_timeout is None else [f"--JupyterHub.init_spawners_timeout={init_timeout}"]
        )
        #: process groups of every hub started (a proxy left by a SIGKILLed hub lives in its group)
        self.groups: list[int] = []

    def launch(self) -> float:
        """Start the hub process; returns the wall-clock time right before it was created."""
        started = time.time()
        self.process = HubProcess.start(
            HERE / "hub_config.py",
            log_path=self.log_path,
            command=[str(self.venv / "bin" / "jupyterhub")],
            args=self.extra_args,
            env=hub_environment(self.venv / "bin", {"BENCH_HUB_SETTINGS": str(self.root / "settings.json")}),
            cwd=self.root,
        )
        self.groups.append(self.process.pid)
        return started

    def start(self, timeout: float = 90) -> None:
        self.launch()
        self.wait_api(timeout)

    def wait_api(self, timeout: float = 90) -> float:
        """Poll ``GET /hub/api/`` every 50 ms; the wall-clock time of the first answer."""
        assert self.process is not None
        self.process.wait_ready(f"{self.url}{API_PATH}", timeout, interval=0.05)
        return time.time()

    def kill_hub(self, how: str) -> None:
        """SIGTERM (JupyterHub's own shutdown, which stops its proxy) or SIGKILL (the hub only,
        its proxy left running as after a crash)."""
        assert self.process is not None
        if how == "sigterm":
            self.process.stop(timeout=60)
        else:
            self.process.kill()

    def stop(self) -> None:
        """Stop the running hub; then whatever is left in the process groups of the hubs this
        object started."""
        if self.process is not None:
            self.process.stop(timeout=30)
        for group in self.groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass


def server_view(hub: BenchHub, user: str) -> dict[str, Any]:
    """What the REST model says of the user's default server."""
    server = hub.server(user)
    if server is None:
        return {"present": False}
    return {
        "present": True,
        "pending": server.get("pending"),
        "ready": bool(server.get("ready")),
        "job_id": str((server.get("state") or {}).get("job_id", "")),
    }


def init_blocked(hub: BenchHub, offset: int, timeout: int) -> float | None:
    """How long JupyterHub's start waited for init_spawners: its timeout, or the time it reports."""
    with open(hub.log_path, errors="replace") as f:
        f.seek(offset)
        text = f.read()
    if "init_spawners did not complete within" in text:
        return float(timeout)
    match = re.search(r"Initialized \d+ spawners in ([\d.]+) seconds", text)
    return float(match.group(1)) if match else None


def post_spawn(hub: BenchHub, user: str) -> None:
    try:
        hub.api("POST", f"/users/{user}/server", json={})
    except requests.RequestException:
        pass


def release(job_ids: list[str]) -> None:
    for job in job_ids:
        subprocess.run(
            ["scontrol", "update", f"JobId={job}", "StartTime=now"], check=False, capture_output=True
        )


def one_run(config: str, how: str, users: list[str], ready_timeout: float) -> dict[str, Any]:
    kind_name, init_timeout = CONFIGS[config]
    kind = Kind(kind_name)
    rec: dict[str, Any] = {
        "config": config,
        "label": LABELS[config],
        "spawner": kind_name,
        "init_spawners_timeout": 10 if init_timeout is None else init_timeout,
        "kill": how,
        "users": len(users),
        "conditions_start": conditions(),
    }
    hub = RestartHub(f"restart-{config}-{how}", kind, init_timeout)
    rec["hub_log"] = str(hub.log_path)
    try:
        hub.start()
        for user in users:
            hub.ensure_user(user)
        hub.per_user({u: kind.knobs(hold=True, light=True) for u in users})
        for user in users:  # each POST answers after JupyterHub's slow_spawn_timeout, or dies with the hub
            threading.Thread(target=post_spawn, args=(hub, user), daemon=True).start()
        wait_for(
            lambda: len([s for s in jobs_of(users).values() if s == "PENDING"]) == len(users),
            120,
            what=f"the {len(users)} held jobs are not all pending",
        )
        if kind.ours:  # our spawner writes the job id to the database at once
            wait_for(
                lambda: all(server_view(hub, u).get("job_id") for u in users),
                60,
                what="job ids not in the hub's database",
            )
        time.sleep(1)
        before = {u: server_view(hub, u) for u in users}
        slurm_before = jobs_of(users)
        rec["jobs_before"] = slurm_before
        rec["hub_job_ids_before"] = {u: v.get("job_id", "") for u, v in before.items()}

        offset = hub.log_offset()
        hub.kill_hub(how)
        t_start = hub.launch()
        t_api = hub.wait_api(120)
        rec["api_after_s"] = t_api - t_start
        after = {u: server_view(hub, u) for u in users}
        t_view = time.time()
        rec["servers_after_restart"] = after
        rec["pending_after_restart"] = sorted({str(v.get("pending")) for v in after.values() if v["present"]})
        rec["servers_shown_after_restart"] = sum(1 for v in after.values() if v["present"])
        slurm_after = job_states(slurm_before)
        rec["jobs_after_restart"] = slurm_after
        log(
            f"{config} {how}: API after {rec['api_after_s']:.2f} s; {rec['servers_shown_after_restart']} "
            f"servers shown (pending {rec['pending_after_restart']}); Slurm: "
            f"{sorted(set(slurm_after.values())) or '(none)'}"
        )

        # release the held jobs (those Slurm still has) and follow every server
        live = [j for j, s in slurm_after.items() if s == "PENDING"]
        t_release = time.time()
        release(live)
        ready_at: dict[str, float] = {}
        deadline = time.monotonic() + ready_timeout
        views: dict[str, dict[str, Any]] = dict(after)
        while time.monotonic() < deadline:
            for u in users:
                if u in ready_at:
                    continue
                views[u] = server_view(hub, u)
                if views[u].get("ready"):
                    ready_at[u] = time.time()
            shown = [u for u in users if views[u]["present"]]
            if all(u in ready_at for u in shown) and (shown or time.time() - t_release > 30):
                break
            time.sleep(0.1)
        times = hub_log_times(hub.log_path, offset, LOG_PATTERNS)
        for name, t in times.items():
            rec[f"log_{name}_s"] = t - t_start
        rec["view_taken_s"] = t_view - t_start
        if "version" in times:  # JupyterHub's own start work begins (after its imports)
            rec["api_after_version_log_s"] = t_api - times["version"]
        rec["init_spawners_blocked_s"] = init_blocked(hub, offset, rec["init_spawners_timeout"])
        rec["released"] = len(live)
        rec["release_after_start_s"] = t_release - t_start
        readopted = [
            u
            for u in users
            if u in ready_at and views[u].get("job_id") and views[u]["job_id"] == before[u].get("job_id")
        ]
        rec["ready_after_release_s"] = {u: ready_at[u] - t_release for u in ready_at}
        rec["readopted_same_job"] = len(readopted)
        rec["all_ready_after_release_s"] = (
            max(rec["ready_after_release_s"].values()) if len(ready_at) == len(users) else None
        )
        rec["median_ready_after_release_s"] = median(list(rec["ready_after_release_s"].values()))
        rec["reach"] = {u: hub.reach(u) for u in ready_at}
        time.sleep(2)
        rec["jobs_after_release"] = job_states(slurm_before)
        known = {v.get("job_id") for v in views.values() if v["present"]}
        rec["orphaned_jobs"] = sorted(
            j for j, s in rec["jobs_after_release"].items() if s in ("PENDING", "RUNNING") and j not in known
        )
        log(
            f"{config} {how}: {len(ready_at)}/{len(users)} ready after release "
            f"(all after {rec['all_ready_after_release_s']}), {len(readopted)} with the same job id; "
            f"orphaned in Slurm: {rec['orphaned_jobs'] or 'none'}"
        )
    except Exception as exc:  # keep the other runs' results
        rec["error"] = repr(exc)
        log(f"{config} {how} failed: {exc!r}")
    finally:
        for user in users:
            try:
                hub.api("DELETE", f"/users/{user}/server", timeout=30)
            except requests.RequestException:
                pass
        time.sleep(3)
        hub.stop()
        cancel_bench_jobs()
        rec["conditions_end"] = conditions()
    return rec


# -- the section of results/README.md ---------------------------------------------------------------------
def fmt(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def section(data: dict[str, Any]) -> list[str]:
    lines = [
        SECTION_BEGIN,
        f"## Issue 12, item 6: hub restart with {data['users']} spawns queued in Slurm",
        "",
        f"`benchmarks/restart.py` ({data['date']}; `benchmarks/run.sh --restart`): {data['users']} benchmark "
        "users each have a held job (`--begin=now+3600`, light server, partition "
        f"`{data['partition']}`); the hub is stopped (SIGTERM with `cleanup_servers = False`, or SIGKILL) "
        "and started again; then every job is released. Times from the new hub process's start, "
        "release times from the `scontrol update`.",
        "",
        '| configuration | stop | hub API 200 (s) | "now running" log (s) | API 200 after "Running '
        'JupyterHub" log (s) | start waited for init_spawners (s) | servers shown after restart '
        "| jobs in Slurm after restart | ready after release, same job id | all ready after release (s) "
        "| orphaned jobs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["runs"]:
        if "skipped" in r:
            lines.append(f"| {r['label']} | {r['kill']} | skipped: {r['skipped']} | | | | | | | | |")
            continue
        if "error" in r and "api_after_s" not in r:
            lines.append(f"| {r['label']} | {r['kill']} | error: {r['error'][:80]} | | | | | | | | |")
            continue
        states = r.get("jobs_after_restart", {})
        slurm = ", ".join(f"{n} {s}" for s, n in sorted(_count(states.values()).items())) or "none"
        pending = "/".join(r.get("pending_after_restart", [])) or "-"
        lines.append(
            f"| {r['label']} | {r['kill']} | {fmt(r.get('api_after_s'), 2)} "
            f"| {fmt(r.get('log_now_running_s'), 2)} | {fmt(r.get('api_after_version_log_s'), 2)} "
            f"| {fmt(r.get('init_spawners_blocked_s'), 2)} "
            f"| {r.get('servers_shown_after_restart', 0)} (pending: {pending}) | {slurm} "
            f"| {r.get('readopted_same_job', 0)}/{r['users']} | {fmt(r.get('all_ready_after_release_s'), 1)} "
            f"| {len(r.get('orphaned_jobs', []))} |"
        )
    lines += [
        "",
        *data.get("notes", []),
        "",
        'Reading it: "start waited for init_spawners" is the part of the hub\'s start that depends on '
        "the spawner. Our `get_url` waits for a queued job until its server reports (else JupyterHub "
        "would stop the server and cancel the job), so with JupyterHub's default the hub waits the "
        "whole 10 s; with `c.JupyterHub.init_spawners_timeout = 1` the check goes on in the background "
        '(the servers show `pending: "check"`) and every server is re-adopted, with its job id, when '
        "its job starts. batchspawner does not keep a queued job's id in the hub's database: after the "
        'restart JupyterHub finds no job id, logs that the server "appears to have stopped while the '
        'Hub was down", and the jobs stay in Slurm unknown to the hub (not cancelled): after release '
        "they run as orphans. After a SIGKILL the proxy survives and JupyterHub's start spends about "
        "2 s stopping it (for every spawner). The rest of the time from the process start is "
        "Python's imports and the config load.",
        "",
        f"Reached through the proxy after release: {reached(data['runs'])}. Command: `benchmarks/run.sh "
        "--restart` (or `python benchmarks/restart.py` as root with the project venv, then "
        "`--section`).",
        SECTION_END,
    ]
    return lines


def reached(runs: list[dict[str, Any]]) -> str:
    parts = []
    for r in runs:
        codes = list(r.get("reach", {}).values())
        ok = sum(1 for c in codes if c == 200)
        parts.append(f"{r['config']} {r['kill']} {ok}/{r.get('users', 0)} (HTTP 200)")
    return ", ".join(parts)


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def write_section(path: Path = RESULTS / "README.md") -> None:
    """Put (or replace) this benchmark's section in results/README.md, before "## Conditions"."""
    data = json.loads((RESULTS / "restart.json").read_text())
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = "\n".join(section(data)) + "\n"
    if SECTION_BEGIN in text and SECTION_END in text:
        head, rest = text.split(SECTION_BEGIN, 1)
        tail = rest.split(SECTION_END, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    elif "\n## Conditions" in text:
        head, tail = text.split("\n## Conditions", 1)
        text = head + "\n" + block + "\n## Conditions" + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)
    log(f"wrote the restart section of {path}")


def notes(runs: list[dict[str, Any]]) -> list[str]:
    """One line per configuration on what became of the queued jobs (from the runs' own records)."""
    out = []
    for r in runs:
        if "api_after_s" not in r:
            continue
        gone = sum(1 for s in r.get("jobs_after_restart", {}).values() if s not in ("PENDING", "RUNNING"))
        out.append(
            f"- {r['label']}, {r['kill']}: the hub showed {r['servers_shown_after_restart']} of {r['users']} "
            f"servers after the restart; Slurm kept {r['users'] - gone} of the jobs; after release "
            f"{r['readopted_same_job']} were re-adopted with the same job id and "
            f"{len(r.get('orphaned_jobs', []))} ran in Slurm without the hub knowing them."
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: " + ", ".join(CONFIGS))
    parser.add_argument("--kills", default="sigterm,sigkill", help="comma-separated: sigterm, sigkill")
    parser.add_argument("--users", type=int, default=10, help="queued spawns (benchmark users)")
    parser.add_argument("--ready-timeout", type=float, default=180, help="longest wait for the servers")
    parser.add_argument("--quiet-wait", type=float, default=600, help="longest wait for a quiet node")
    parser.add_argument("--section", action="store_true", help="only rewrite the README section")
    args = parser.parse_args()
    if args.section:
        write_section()
        return
    users = BENCH_USERS[: args.users]
    started = time.time()
    data: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "users": len(users),
        "partition": SHARED_PARTITION,
        "server": "lightserver.py",
        "conditions_start": conditions(),
        "runs": [],
    }
    cancel_bench_jobs()
    try:
        for config in args.configs.split(","):
            for how in args.kills.split(","):
                if not wait_quiet(args.quiet_wait):
                    data["runs"].append({"config": config, "kill": how, "skipped": "node busy"})
                    continue
                ensure_shared_partition()
                data["runs"].append(one_run(config, how, users, args.ready_timeout))
    finally:
        cancel_bench_jobs()
    data["runs"] = [r for r in data["runs"] if "skipped" not in r] + [
        r for r in data["runs"] if "skipped" in r
    ]
    for r in data["runs"]:
        r.setdefault("label", LABELS.get(r["config"], r["config"]))
        r.setdefault("users", len(users))
    data["notes"] = notes(data["runs"])
    data["conditions_end"] = conditions()
    data["duration_s"] = time.time() - started
    for r in data["runs"]:
        summary = {k: r.get(k) for k in SUMMARY_KEYS}
        print(f"{r['config']} {r['kill']}: {json.dumps(summary)}", flush=True)
    write_json("restart.json", data)
    write_section()


if __name__ == "__main__":
    main()
