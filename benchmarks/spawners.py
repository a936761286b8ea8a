"""The two spawners of the side-by-side benchmark, configured alike (:class:`Kind`), and driving
their hubs: one spawn timed from POST to ready, spawns a few at a time, stops all at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_lib import (
    ACTIVE_STATES,
    BENCH_VENV,
    LIGHT_SERVER,
    OUR_VENV,
    PARTITION,
    SHARED_PARTITION,
    STATUS_USER,
    BenchHub,
    job_states,
    log,
    wait_for,
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
    def ours(self) -> bool:
        """Our spawner."""
        return self.name.startswith("ours")

    @property
    def venv(self) -> Path:
        return OUR_VENV if self.ours else BENCH_VENV

    def base_config(self) -> dict[str, Any]:
        if self.ours:
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
        ours = self.ours
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
        if self.ours:
            from jupyterhub_hpc.backends.slurm import SlurmBackend

            return SlurmBackend().status_argv(job_ids)
        return ["/usr/bin/squeue", "-h", "-j", job_ids[0], "-o", "%T %B"]

    def status_users(self, users: list[str]) -> list[str]:
        """The accounts whose RPCs are this spawner's status queries."""
        return [STATUS_USER] if self.ours else users

    def log_patterns(self, user: str, job: str) -> dict[str, str]:
        if self.ours:
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
class Aborted(RuntimeError):
    """The shared-partition stage stopped: somebody else's job waits for the node."""


#: set by the guard of the shared-partition stage
ABORT = threading.Event()


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
        if ABORT.is_set():
            raise Aborted("another job waits for the node")
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
        except Aborted:
            raise
        except RuntimeError as exc:
            SPAWN_FAILURES.append(
                {
                    "hub": hub.settings["spawner"],
                    "user": user,
                    "attempt": attempt + 1,
                    "error": str(exc),
                    "time": time.time(),
                }
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
