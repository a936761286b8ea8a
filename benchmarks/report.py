"""Turn ``results/*.json`` into ``results/README.md`` (Markdown tables) and
``results/calls_per_minute.png``. Runs with the benchmark venv's python (matplotlib)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str) -> dict[str, Any]:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else {}


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def idle_row(result: dict[str, Any], n: int) -> dict[str, Any]:
    if n == 20:
        shared = result.get("shared", {})
        row = dict(shared.get("row") or {})
        for key in ("skipped", "error"):
            if key in shared:
                row[key] = shared[key]
        return row
    for row in result.get("idle", {}).get("rows", []):
        if row.get("n") == n:
            return dict(row)
    return {}


def calls(row: dict[str, Any]) -> Any:
    """squeue runs per minute: the watcher's own counter where there is one (ours), else slurmctld's
    per-user RPCs divided by the measured RPCs per squeue (batchspawner)."""
    if "watcher_queries_per_min" in row:
        return row["watcher_queries_per_min"]
    per_call = row.get("calibration", {}).get("rpcs_per_call")
    if per_call and "status_rpcs_per_min" in row:
        return row["status_rpcs_per_min"] / (round(per_call) or per_call)
    return row.get("squeue_calls_per_min")


def ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}" if isinstance(a, float) and isinstance(b, float) and b else "n/a"


def window_note(row: dict[str, Any]) -> str:
    notes = []
    if row.get("skipped"):
        notes.append(f"skipped: {row['skipped']}")
    if row.get("error"):
        notes.append(f"stopped: {row['error'][:80]}")
    if row.get("interrupted_by_foreign_jobs"):
        notes.append(f"window cut to {row.get('window_s', 0):.0f} s: others' jobs waited")
    before = row.get("conditions_before", {})
    if before.get("foreign_jobs"):
        notes.append(f"{before['foreign_jobs']} other jobs on the node")
    return "; ".join(notes)


def status_table(ours: dict[str, Any], bs: dict[str, Any]) -> list[str]:
    lines = [
        "| scenario | ours: squeue/min | batchspawner: squeue/min | ours: slurmctld RPCs/min "
        "| batchspawner: slurmctld RPCs/min | target (squeue/min) | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    targets = {1: "", 5: "", 20: "≤ 2 (batchspawner ~40)"}
    for n in (1, 5, 20):
        o, b = idle_row(ours, n), idle_row(bs, n)
        server = o.get("server") or b.get("server") or ""
        parts = [
            f"ours: {window_note(o)}" if window_note(o) else "",
            f"batchspawner: {window_note(b)}" if window_note(b) else "",
        ]
        notes = "; ".join(x for x in parts if x)
        lines.append(
            f"| {n} idle server{'s' if n > 1 else ''} ({server}) | {fmt(calls(o), 1)} "
            f"| {fmt(calls(b), 1)} | {fmt(o.get('status_rpcs_per_min'), 1)} "
            f"| {fmt(b.get('status_rpcs_per_min'), 1)} | {targets[n]} | {notes} |"
        )
    o, b = ours.get("queued", {}).get("row", {}), bs.get("queued", {}).get("row", {})
    lines.append(
        f"| 5 spawns held in the queue | {fmt(calls(o), 1)} "
        f"| {fmt(calls(b), 1)} | {fmt(o.get('status_rpcs_per_min'), 1)} "
        f"| {fmt(b.get('status_rpcs_per_min'), 1)} | ≤ 60 (batchspawner ~580) | {window_note(o)} |"
    )
    return lines


PHASES = [
    ("submit", "submit (POST → slurmctld has the job)"),
    ("queue", "queue (→ slurmctld allocates)"),
    ("job_start", "job start (→ first line of the script)"),
    ("server_start", "server start (→ Jupyter listens)"),
    ("hub_overhead", "hub overhead (→ REST says ready)"),
    ("hub_spawner_wait", "… of which the spawner noticing"),
    ("hub_jupyterhub_check", "… of which JupyterHub's HTTP check + proxy"),
    ("total", "total POST → ready"),
]


def phase_table(ours: dict[str, Any], bs: dict[str, Any]) -> list[str]:
    om, bm = ours.get("phases", {}).get("median", {}), bs.get("phases", {}).get("median", {})
    runs = [len(r.get("phases", {}).get("runs", [])) for r in (ours, bs)]
    lines = [
        f"| phase (median of {runs[0]} / {runs[1]} spawns, s) | ours | batchspawner | ours / batchspawner |",
        "|---|---|---|---|",
    ]
    for key, label in PHASES:
        o, b = om.get(key), bm.get(key)
        lines.append(f"| {label} | {fmt(o)} | {fmt(b)} | {ratio(o, b)} |")
    return lines


def stop20(result: dict[str, Any], key: str) -> float | None:
    """Median over the 20 servers stopped at once (None unless at least 10 were)."""
    stops = result.get("shared", {}).get("stops_20_at_once", [])
    values = sorted(s[key] for s in stops if key in s)
    return values[len(values) // 2] if len(values) >= 10 else None


def stop_fail_table(ours: dict[str, Any], bs: dict[str, Any]) -> list[str]:
    lines = ["| measurement (s) | ours | batchspawner |", "|---|---|---|"]
    for key, label in (
        ("delete_response_s", "stop: DELETE answered (median)"),
        ("job_gone_s", "stop: DELETE → job left Slurm's live queue (median)"),
    ):
        lines.append(
            f"| {label} | {fmt(ours.get('phases', {}).get('stop_median', {}).get(key))} "
            f"| {fmt(bs.get('phases', {}).get('stop_median', {}).get(key))} |"
        )
    for key, label in (
        ("delete_response_s", "stop 20 servers at once: DELETE answered (median)"),
        ("job_gone_s", "stop 20 servers at once: → job gone (median)"),
    ):
        lines.append(f"| {label} | {fmt(stop20(ours, key))} | {fmt(stop20(bs, key))} |")
    for key, label in (
        ("failure_at_once", "failure reported: job exits 3 at once"),
        ("failure_after_5s", "failure reported: job exits 3 after 5 s"),
    ):
        lines.append(
            f"| {label} | {fmt(ours.get(key, {}).get('reported_s'), 1)} "
            f"| {fmt(bs.get(key, {}).get('reported_s'), 1)} |"
        )
    return lines


def messages(ours: dict[str, Any], bs: dict[str, Any]) -> list[str]:
    lines = []
    for name, result in (("ours", ours), ("batchspawner", bs)):
        for key in ("failure_at_once", "failure_after_5s"):
            text = " ".join(str(result.get(key, {}).get("message", "")).split())[:220]
            if text:
                lines.append(f"- {name}, {key.replace('_', ' ')}: `{text}`")
    return lines


def registered_table(reg: dict[str, Any]) -> list[str]:
    if reg.get("skipped"):
        return [f"Not measured: {reg['skipped']}."]
    lines = [
        "| registered running jobs | watcher queries/min | squeue/min (sdiag) | slurmctld RPCs/min | notes |",
        "|---|---|---|---|---|",
    ]
    for row in reg.get("rows", []):
        lines.append(
            f"| {row['registered']} ({row.get('running', '?')} running) "
            f"| {fmt(row['watcher_queries_per_min'], 1)} "
            f"| {fmt(row['status_rpcs_per_min'] / (round(row['calibration']['rpcs_per_call']) or 1), 1)} "
            f"| {fmt(row['status_rpcs_per_min'], 1)} | {window_note(row)} |"
        )
    return lines


def scale_table(scale: dict[str, Any]) -> list[str]:
    if not scale:
        return ["Not run."]
    steady, pend, mem = scale["steady"], scale["pending_spawns"], scale["memory"]
    lag = pend["loop_lag_ms"]
    return [
        "| measurement | value |",
        "|---|---|",
        f"| status commands per interval, {scale['jobs']} jobs, no spawn waiting | "
        f"{fmt(steady['commands_per_interval'])} ({steady['status_commands']} in {steady['window_s']:.0f} s, "
        f"interval {steady['status_interval_s']:g} s) |",
        f"| status commands per second, {scale['pending']} spawns pending (fast interval 1 s) | "
        f"{fmt(pend['commands_per_second'])} ({pend['status_commands']} in {pend['window_s']:.0f} s) |",
        f"| event-loop lag, {scale['pending']} spawns pending: p50 / p99 / max (ms) | "
        f"{fmt(lag['p50'])} / {fmt(lag['p99'])} / {fmt(lag['max'])} |",
        f"| event-loop lag, steady: p50 / p99 / max (ms) | {fmt(steady['loop_lag_ms']['p50'])} / "
        f"{fmt(steady['loop_lag_ms']['p99'])} / {fmt(steady['loop_lag_ms']['max'])} |",
        f"| memory per registered job: watcher (tracemalloc) | {mem['watcher_bytes_per_job']:.0f} B |",
        f"| memory per job: the HPCSpawner object itself (tracemalloc) "
        f"| {mem['spawner_object_bytes_per_job']:.0f} B |",
        f"| memory per job: process RSS growth (both, incl. tracemalloc overhead) | "
        f"{mem['rss_delta_bytes_per_job']:.0f} B |",
        f"| {scale['release']['spawns']} pending spawns finished after their jobs ran | "
        f"{fmt(scale['release']['all_returned_s'])} s for all |",
    ]


def targets(ours: dict[str, Any], bs: dict[str, Any], scale: dict[str, Any]) -> list[str]:
    def check(label: str, value: Any, limit: float, unit: str) -> str:
        if not isinstance(value, (int, float)):
            return f"- {label}: not measured"
        return (
            f"- {label}: **{value:.2f} {unit}** (target ≤ {limit:g}): {'met' if value <= limit else 'MISSED'}"
        )

    o20 = calls(idle_row(ours, 20))
    oq = calls(ours.get("queued", {}).get("row", {}))
    overhead = ours.get("phases", {}).get("median", {}).get("hub_overhead")
    spawner_part = ours.get("phases", {}).get("median", {}).get("hub_spawner_wait")
    lag = scale.get("pending_spawns", {}).get("loop_lag_ms", {}).get("p99")
    return [
        check("status commands/min, 20 idle servers", o20, 2, "squeue/min"),
        check("status commands/min, 5 queued spawns", oq, 60, "squeue/min"),
        check("hub overhead per spawn (median, all of it)", overhead, 0.3, "s"),
        check(
            "… the spawner's own part of it (start() returning after Jupyter listens)", spawner_part, 0.3, "s"
        ),
        check("event-loop lag p99 with 1000 jobs, 200 spawns pending", lag, 50, "ms"),
    ]


def conditions(ours: dict[str, Any], bs: dict[str, Any], reg: dict[str, Any]) -> list[str]:
    lines = []
    for name, result in (("ours", ours), ("batchspawner", bs), ("registered jobs", reg)):
        start, end = result.get("conditions_start", {}), result.get("conditions_end", {})
        if start:
            lines.append(
                f"- {name}: started {start.get('time')}, load {start.get('loadavg', [0])[0]:.2f} → "
                f"{end.get('loadavg', [0])[0]:.2f}, other people's jobs on the node "
                f"{start.get('foreign_jobs')} → {end.get('foreign_jobs')}, "
                f"run time {result.get('duration_s', 0) / 60:.1f} min"
            )
        failures = result.get("spawn_failures") or []
        if failures:
            lines.append(
                f"  - {len(failures)} spawn(s) failed and were retried: {failures[0]['error'][:160]}"
            )
        for key, error in (result.get("errors") or {}).items():
            lines.append(f"  - scenario {key} did not finish: {error[:200]}")
        for rerun in result.get("reruns", []):
            start = rerun.get("conditions_start") or {}
            scenarios = rerun.get("scenarios") or ["registered", "shared"]
            which = ", ".join(scenarios)
            flag = "--rerun-phases" if scenarios == ["phases"] else "--rerun-shared"
            lines.append(
                f"  - {which} re-run at {start.get('time')} "
                f"(`run.sh {flag}`), results merged; spawn failures retried: "
                f"{len(rerun.get('spawn_failures') or [])}"
            )
    return lines


def plot(ours: dict[str, Any], bs: dict[str, Any], reg: dict[str, Any]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: no plot", file=sys.stderr)
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for name, result, color in (("batchspawner 1.3.0", bs, "tab:red"), ("jupyterhub-hpc", ours, "tab:blue")):
        points = [(n, calls(idle_row(result, n))) for n in (1, 5, 20)]
        points = [(n, v) for n, v in points if isinstance(v, (int, float))]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", color=color, label=f"{name}: N idle servers")
        queued = calls(result.get("queued", {}).get("row", {}))
        if isinstance(queued, (int, float)):
            ax.scatter(
                [5], [queued], marker="s", s=70, color=color, label=f"{name}: 5 spawns waiting in the queue"
            )
    reg_points = [(r["registered"], r["watcher_queries_per_min"]) for r in reg.get("rows", [])]
    if reg_points:
        ax.plot(
            *zip(*reg_points, strict=True),
            marker="^",
            linestyle="--",
            color="tab:cyan",
            label="jupyterhub-hpc watcher: N registered sleep jobs",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([1, 5, 10, 20, 50])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("N (servers or jobs)")
    ax.set_ylabel("status commands (squeue) per minute, from sdiag")
    ax.set_title("Scheduler status calls per minute, real Slurm 22.05")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = RESULTS / "calls_per_minute.png"
    fig.savefig(path)
    return path


def readiness_table(ready: dict[str, Any]) -> list[str]:
    """Issue 11: what the launcher's ownership check costs a spawn (benchmarks/readiness.py)."""
    if not ready:
        return ["(not measured: run `benchmarks/readiness.py --json results/readiness.json`)"]
    det = ready["detection_s"]
    return [
        "| measurement | value | target |",
        "|---|---|---|",
        f"| server listens → hub has the port, median of {ready['runs']} launches (s) "
        f"| {fmt(det['median'], 3)} | ≤ 0.1 |",
        f"| … the slowest of them (s) | {fmt(det['max'], 3)} | |",
        f"| one ownership check, {ready['processes_on_machine']} processes on the machine (s) "
        f"| {fmt(ready['one_check_s'], 4)} | |",
        f"| poll interval of the check (s) | {fmt(ready['poll_interval_s'], 2)} | |",
    ]


def main() -> None:
    ours, bs = load("slurm_ours.json"), load("slurm_batchspawner.json")
    reg, scale = load("registered_ours.json"), load("scale_ours.json")
    ready = load("readiness.json")
    out = [
        "# Benchmark results",
        "",
        "Produced by `make bench` (see [docs/benchmarks.md](../../docs/benchmarks.md) for what each number "
        'means and how it is measured). jupyterhub-hpc\'s `SlurmSpawner` ("ours") and batchspawner 1.3.0, '
        "each behind a real JupyterHub 6.1.1 + configurable-http-proxy, on the real Slurm 22.05 of the test "
        "machine (1 node, 8 declared CPUs on 2 real cores). squeue/min counts status commands from "
        "slurmctld's own per-user RPC counters (`sdiag`, reset before each window) divided by the RPCs one "
        "such squeue costs (measured right before each window); for ours it equals the watcher's query "
        "counter exported at `/hub/metrics`.",
        "",
        "![status calls per minute](calls_per_minute.png)",
        "",
        "What these numbers mean, the causes of the missed targets and the defects they revealed: "
        '[docs/benchmarks.md, "Findings"](../../docs/benchmarks.md#findings-of-the-latest-run).',
        "",
        "## Targets",
        "",
        *targets(ours, bs, scale),
        "",
        "## Scheduler status load",
        "",
        *status_table(ours, bs),
        "",
        "## Spawn time by phase",
        "",
        *phase_table(ours, bs),
        "",
        "## Stop and failure",
        "",
        *stop_fail_table(ours, bs),
        "",
        "What the user is told:",
        "",
        *messages(ours, bs),
        "",
        "## Issue 2: one watcher, N registered running jobs (real Slurm, default 30 s interval)",
        "",
        *registered_table(reg),
        "",
        "## Scale run without a cluster (1000 jobs, fake squeue, in-process)",
        "",
        *scale_table(scale),
        "",
        "## Issue 11: the launcher's ownership check (no cluster)",
        "",
        *readiness_table(ready),
        "",
        "## Conditions",
        "",
        *conditions(ours, bs, reg),
        "",
    ]
    (RESULTS / "README.md").write_text("\n".join(out))
    print("\n".join(out))
    png = plot(ours, bs, reg)
    print(f"\nwrote {RESULTS / 'README.md'}" + (f" and {png}" if png else ""))


if __name__ == "__main__":
    main()
