"""Shared helpers of the benchmarks: Slurm's own counters and logs, and a JupyterHub subprocess.

Standard library, ``requests`` and ``jupyterhub_hpc.hubprocess`` (the hub process, as the tests'
and the demo's): it runs with the project venv, also when a hub runs from the benchmark venv.
Runs as root: it reads ``slurmctld``'s log, resets ``sdiag`` and creates the benchmark hubs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from jupyterhub_hpc.hubprocess import API_PATH, HubProcess, free_port, hub_environment, log_offset

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
OUR_VENV = Path(os.environ.get("VENV", "/opt/jupyterhub-hpc/venv"))
BENCH_VENV = Path(os.environ.get("BENCH_VENV", "/opt/jupyterhub-hpc/bench-venv"))
#: the spawn-time, N=1/5, queued and failure scenarios use an ordinary partition (one core per job)
PARTITION = os.environ.get("BENCH_PARTITION", "debug")
#: N=20 servers and N=10/50 sleep jobs need more job slots than the node's 8 CPUs: a partition with
#: OverSubscribe=FORCE (setup.sh creates it at run time). Slurm never lets jobs of such a partition
#: share a node with jobs of an ordinary one, so those scenarios wait for a quiet machine and stop
#: early when they hold up anybody else's job (see ``wait_quiet`` and ``blocked_foreign_jobs``)
SHARED_PARTITION = os.environ.get("BENCH_SHARED_PARTITION", "benchshared")
#: jobs per core there: 20 light servers per spawner (both hubs at once) + 50 sleep jobs on 8 cores
SHARE = 12
SLURMCTLD_LOG = Path(os.environ.get("SLURMCTLD_LOG", "/var/log/slurm/slurmctld.log"))
HUB_ROOT = Path(os.environ.get("BENCH_HUB_ROOT", "/tmp/jupyterhub-hpc-bench"))
LIGHT_SERVER = HERE / "lightserver.py"
#: benchmark accounts (created by setup.sh): server owners, two failing-spawn owners, and the
#: account our watcher runs squeue as, so that Slurm counts its RPCs apart from everyone else
BENCH_USERS = [f"benchuser{i}" for i in range(1, 21)]
FAIL_USERS = ["benchfail1", "benchfail2"]
STATUS_USER = "benchstat"
#: owner of the sleep jobs of the registered-jobs run, and the account its watcher queries as
REGISTERED_USER = "benchstat2"
ALL_BENCH_USERS = [*BENCH_USERS, *FAIL_USERS, STATUS_USER, REGISTERED_USER]
#: squeue = one REQUEST_FED_INFO + one REQUEST_JOB_INFO (several ids) or REQUEST_JOB_INFO_SINGLE
JOB_INFO_TYPES = ("REQUEST_JOB_INFO", "REQUEST_JOB_INFO_SINGLE")
STATUS_TYPES = (*JOB_INFO_TYPES, "REQUEST_FED_INFO")
ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(argv: list[str], check: bool = True, timeout: float = 60) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout).stdout


# -- sdiag ------------------------------------------------------------------------------------
class CountersReset(RuntimeError):
    """sdiag's counters went down during a window (someone reset them, or slurmctld restarted)."""


@dataclass
class RpcCounts:
    """One ``sdiag`` reading: RPC counts by message type and by user."""

    by_type: dict[str, int] = field(default_factory=dict)
    by_user: dict[str, int] = field(default_factory=dict)
    taken: float = 0.0
    #: sdiag's "Data since" (changes when the counters are reset or slurmctld restarts)
    since: str = ""

    def minus(self, earlier: RpcCounts) -> RpcCounts:
        """The counts since ``earlier``; raises if someone reset the counters in between."""
        if self.since != earlier.since:
            raise CountersReset(f"sdiag's counters were reset during the window (data since {self.since})")
        diff = RpcCounts(taken=self.taken - earlier.taken, since=self.since)
        for mine, theirs, out in (
            (self.by_type, earlier.by_type, diff.by_type),
            (self.by_user, earlier.by_user, diff.by_user),
        ):
            for key in set(mine) | set(theirs):
                delta = mine.get(key, 0) - theirs.get(key, 0)
                if delta < 0:
                    raise CountersReset(
                        f"sdiag counter {key} went down: reset by someone else during the window"
                    )
                if delta:
                    out[key] = delta
        return diff


_SDIAG_ROW = re.compile(r"^\s+(\S+)\s+\(\s*\d+\)\s+count:(\d+)")


def ctld_run(argv: list[str], patience: float = 120) -> str:
    """``run`` for a command that needs slurmctld: retried while the controller is down (another
    engineer's outage test stops it now and then)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return run(argv)
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            log(f"{argv[0]} failed (slurmctld down?); trying again")
            time.sleep(3)


def sdiag() -> RpcCounts:
    counts = RpcCounts(taken=time.time())
    section: dict[str, int] | None = None
    output = ctld_run(["sdiag"])
    counts.taken = time.time()
    for line in output.splitlines():
        if line.startswith("Data since"):
            counts.since = line.split(":", 1)[1].strip()
        elif line.startswith("Remote Procedure Call statistics by message type"):
            section = counts.by_type
        elif line.startswith("Remote Procedure Call statistics by user"):
            section = counts.by_user
        elif line and not line[0].isspace():
            section = None
        elif section is not None:
            match = _SDIAG_ROW.match(line)
            if match:
                section[match.group(1)] = int(match.group(2))
    return counts


def sdiag_reset() -> None:
    ctld_run(["sdiag", "--reset"])


def rpcs_per_call(user: str, argv: list[str], calls: int = 10) -> dict[str, Any]:
    """slurmctld RPCs one run of ``argv`` as ``user`` costs (from ``user``'s own counter, so other
    people's traffic does not count): squeue sends 2 or 3 depending on its options and job count."""
    before = sdiag()
    for _ in range(calls):
        subprocess.run(["sudo", "-n", "-u", user, "--", *argv], capture_output=True, check=False)
    after = sdiag()
    if after.since != before.since:
        raise CountersReset("sdiag's counters were reset during the calibration")
    rpcs = after.by_user.get(user, 0) - before.by_user.get(user, 0)
    if rpcs < calls:  # at least one RPC per squeue: some of them did not reach slurmctld
        raise CountersReset(f"only {rpcs} RPCs for {calls} calls: slurmctld was not answering")
    return {"argv": argv, "as": user, "calls": calls, "rpcs": rpcs, "rpcs_per_call": rpcs / calls}


# -- Slurm ------------------------------------------------------------------------------------
def job_state(job_id: str) -> str:
    """The job's Slurm state ('' once Slurm forgot it)."""
    out = run(["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T"], check=False)
    return out.strip()


def job_states(job_ids: Iterable[str]) -> dict[str, str]:
    """{job id: Slurm state} for the jobs Slurm still lists (one squeue for all)."""
    ids = ",".join(job_ids)
    if not ids:
        return {}
    out = run(["squeue", "--noheader", "--states=all", f"--jobs={ids}", "--format=%i|%T"], check=False)
    return dict(line.split("|", 1) for line in out.split())


def jobs_of(users: Iterable[str], states: str = "PENDING,RUNNING,COMPLETING,CONFIGURING") -> dict[str, str]:
    """{job id: state} of these users' live jobs."""
    out = run(
        ["squeue", "--noheader", f"--user={','.join(users)}", f"--states={states}", "--format=%i|%T"],
        check=False,
    )
    return dict(line.split("|", 1) for line in out.split())


def foreign_jobs() -> int:
    """Live jobs of anybody but the benchmark accounts (other people's tests)."""
    out = run(["squeue", "--noheader", "--format=%u"], check=False)
    return sum(1 for user in out.split() if user not in ALL_BENCH_USERS)


def ensure_shared_partition() -> None:
    """(Re-)create the shared partition: created at run time, it is lost when slurmctld restarts
    (another engineer's outage test does that)."""
    if subprocess.run(["scontrol", "show", "partition", SHARED_PARTITION], capture_output=True).returncode:
        log(f"creating partition {SHARED_PARTITION} (OverSubscribe=FORCE:{SHARE}, run-time only)")
        run(
            [
                "scontrol",
                "create",
                f"PartitionName={SHARED_PARTITION}",
                "Nodes=ALL",
                f"OverSubscribe=FORCE:{SHARE}",
                "MaxTime=02:00:00",
                "Hidden=YES",
                "State=UP",
            ]
        )


def blocked_foreign_jobs() -> list[str]:
    """Other people's jobs waiting for resources (possibly held up by a shared-partition run)."""
    out = run(["squeue", "--noheader", "--states=PENDING", "--format=%i|%u|%r"], check=False)
    blocked = []
    for line in out.splitlines():  # a reason may contain spaces
        if line.count("|") < 2:
            continue
        job, user, reason = line.split("|", 2)
        if user not in ALL_BENCH_USERS and reason in ("Resources", "Priority"):
            blocked.append(job)
    return blocked


def busy_foreign_jobs() -> list[str]:
    """Other people's jobs that run or wait for resources now."""
    out = run(["squeue", "--noheader", "--format=%i|%u|%T"], check=False)
    busy = [
        line.split("|")[0]
        for line in out.split()
        if line.split("|")[1] not in ALL_BENCH_USERS and line.split("|")[2] != "PENDING"
    ]
    return busy + blocked_foreign_jobs()


def wait_quiet(max_wait: float) -> bool:
    """Wait (up to ``max_wait`` s) until nobody else's job runs or waits for resources."""
    deadline = time.monotonic() + max_wait
    while busy_foreign_jobs():
        if time.monotonic() > deadline:
            return False
        time.sleep(2)
    return True


def cancel_bench_jobs(exclude: Iterable[str] = ()) -> None:
    """Cancel the live jobs of the benchmark accounts (but ``exclude``), and nobody else's."""
    for user in ALL_BENCH_USERS:
        if user in exclude:
            continue
        subprocess.run(["scancel", f"--user={user}"], check=False, capture_output=True)


def job_stdout(job_id: str) -> str:
    out = run(["scontrol", "show", "job", job_id], check=False)
    match = re.search(r"StdOut=(\S+)", out)
    return match.group(1) if match else ""


def _local_ts(text: str, fmt: str) -> float:
    return datetime.strptime(text, fmt).timestamp()


class CtldLog:
    """Millisecond times of job events from slurmctld's log, read from an offset on."""

    SUBMIT = re.compile(r"^\[(\S+)\] _slurm_rpc_submit_batch_job: JobId=(\d+) ")
    START = re.compile(
        r"^\[(\S+)\] (?:sched: Allocate JobId=(\d+) |sched/backfill: _start_job: Started JobId=(\d+) )"
    )

    def __init__(self) -> None:
        self.offset = SLURMCTLD_LOG.stat().st_size if SLURMCTLD_LOG.exists() else 0

    def events(self) -> dict[str, dict[str, float]]:
        found: dict[str, dict[str, float]] = {}
        try:
            with open(SLURMCTLD_LOG, errors="replace") as f:
                f.seek(self.offset)
                text = f.read()
        except OSError:
            return found
        for line in text.splitlines():
            match = self.SUBMIT.match(line)
            if match:
                found.setdefault(match.group(2), {}).setdefault("submitted", _ctld_ts(match.group(1)))
                continue
            match = self.START.match(line)
            if match:
                job = match.group(2) or match.group(3)
                found.setdefault(job, {}).setdefault("allocated", _ctld_ts(match.group(1)))
        return found


def _ctld_ts(text: str) -> float:
    return _local_ts(text, "%Y-%m-%dT%H:%M:%S.%f")


_JUPYTER_RUNNING = re.compile(r"^\[[A-Z] (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) [^\]]*\] .*is running at")
_LIGHT_RUNNING = re.compile(r"^BENCH_SERVER_LISTENING (\d+\.\d+)")
_JOB_START = re.compile(r"^BENCH_JOB_START (\d+\.\d+)")


def job_output_times(path: str) -> dict[str, float]:
    """``job_start`` (the script's first line) and ``listening`` (the server is up) from a job's output."""
    times: dict[str, float] = {}
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return times
    for line in text.splitlines():
        if (m := _JOB_START.match(line)) and "job_start" not in times:
            times["job_start"] = float(m.group(1))
        elif (m := _LIGHT_RUNNING.match(line)) and "listening" not in times:
            times["listening"] = float(m.group(1))
        elif (m := _JUPYTER_RUNNING.match(line)) and "listening" not in times:
            times["listening"] = _local_ts(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
    return times


_HUB_LINE = re.compile(r"^\[[A-Z] (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) [^\]]*\] (.*)$")


def hub_log_times(path: Path, offset: int, patterns: dict[str, str]) -> dict[str, float]:
    """First time each regex of ``patterns`` matched a hub log line after ``offset``."""
    times: dict[str, float] = {}
    compiled = {name: re.compile(p) for name, p in patterns.items()}
    with open(path, errors="replace") as f:
        f.seek(offset)
        for line in f:
            m = _HUB_LINE.match(line)
            if not m:
                continue
            for name, pattern in compiled.items():
                if name not in times and pattern.search(m.group(2)):
                    times[name] = _local_ts(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
    return times


# -- a JupyterHub subprocess -------------------------------------------------------------------------
class BenchHub:
    """A JupyterHub (and its configurable-http-proxy) run from ``venv`` with ``hub_config.py``."""

    def __init__(self, name: str, venv: Path, spawner: str, config: dict[str, Any]) -> None:
        self.root = HUB_ROOT / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.root.mkdir(parents=True, mode=0o700)
        self.venv = venv
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        self.settings = {
            "spawner": spawner,
            "config": config,
            "bind_url": self.url,
            "hub_port": free_port(),
            "proxy_api_url": f"http://127.0.0.1:{free_port()}",
            "proxy_token": secrets.token_hex(16),
            "root": str(self.root),
            "admin_token": self.token,
            "per_user": str(self.root / "per_user.json"),
        }
        (self.root / "settings.json").write_text(json.dumps(self.settings))
        self.log_path = self.root / "hub.log"
        self.process: HubProcess | None = None
        self.per_user({})

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The hub's process, once started."""
        return self.process.proc if self.process is not None else None

    def per_user(self, values: dict[str, dict[str, Any]]) -> None:
        """Spawner settings per user, read at each spawn (a pre_spawn_hook)."""
        Path(self.settings["per_user"]).write_text(json.dumps(values))

    def start(self, timeout: float = 90) -> None:
        self.process = HubProcess.start(
            HERE / "hub_config.py",
            log_path=self.log_path,
            command=[str(self.venv / "bin" / "jupyterhub")],
            env=hub_environment(self.venv / "bin", {"BENCH_HUB_SETTINGS": str(self.root / "settings.json")}),
            cwd=self.root,
        )
        self.process.wait_ready(f"{self.url}{API_PATH}", timeout)

    def stop(self) -> None:
        """SIGTERM the hub (it stops its proxy), SIGKILL after 30 s; then what is left in its
        process group."""
        if self.process is not None:
            self.process.stop(timeout=30)

    def log_offset(self) -> int:
        return log_offset(self.log_path)

    # -- REST -------------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(
            method, f"{self.url}/hub/api{path}", headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs
        )

    def ensure_user(self, name: str) -> None:
        if self.api("GET", f"/users/{name}").status_code == 404:
            self.api("POST", f"/users/{name}").raise_for_status()

    def server(self, name: str) -> dict[str, Any] | None:
        r = self.api("GET", f"/users/{name}")
        r.raise_for_status()
        server: dict[str, Any] | None = r.json()["servers"].get("")
        return server

    def metrics(self) -> str:
        r = requests.get(
            f"{self.url}/hub/metrics", headers={"Authorization": f"token {self.token}"}, timeout=30
        )
        r.raise_for_status()
        return r.text

    def progress_message(self, name: str, timeout: float) -> str:
        """The last message of the spawn's progress stream (until failed/ready or ``timeout``)."""
        last = ""
        try:
            with self.api("GET", f"/users/{name}/server/progress", stream=True, timeout=timeout) as r:
                deadline = time.monotonic() + timeout
                for line in r.iter_lines():
                    if line.startswith(b"data:"):
                        event = json.loads(line[5:])
                        last = str(event.get("message", ""))
                        if event.get("failed") or event.get("ready"):
                            break
                    if time.monotonic() > deadline:
                        break
        except requests.RequestException as exc:
            last = last or f"(progress stream: {exc})"
        return last

    def user_token(self, name: str) -> str:
        r = self.api("POST", f"/users/{name}/tokens", json={"scopes": [f"access:servers!user={name}"]})
        r.raise_for_status()
        return str(r.json()["token"])

    def reach(self, name: str) -> int:
        """HTTP status of ``/user/NAME/api/status`` through the proxy with the user's token."""
        r = requests.get(
            f"{self.url}/user/{name}/api/status",
            headers={"Authorization": f"token {self.user_token(name)}"},
            timeout=30,
        )
        return r.status_code


def metric_value(text: str, name: str, labels: str = "") -> float:
    """Sum of the samples of ``name`` whose label text contains ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, value = line.rpartition(" ")
            if labels in head:
                total += float(value)
    return total


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(what or "condition not met in time")


def median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def write_json(name: str, data: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    log(f"wrote {path}")
    return path


def conditions() -> dict[str, Any]:
    """What else ran on the machine (results taken under load must say so)."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg": list(os.getloadavg()),
        "foreign_jobs": foreign_jobs(),
    }
