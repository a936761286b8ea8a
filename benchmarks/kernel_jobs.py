"""Kernels as Slurm jobs (``hpc-provisioner``): ready time against its floor, and status queries.

Measured on the real Slurm of this machine, as the test user ``hpcuser1`` (run as root, the
script re-executes itself with ``runuser -u hpcuser1``, from a world-readable copy in a temp dir
under /tmp, and at the end cancels every job it submitted, listed in ``work/jobs``):

1. **Kernel ready time**, ``--reps`` repetitions of each, interleaved, median and max:

   * *floor*: a 0600 connection file (node address, five ports 0, random HMAC key, a CurveZMQ key
     pair), ``sbatch --parsable -p debug -t 00:05:00 --mem=500M --wrap "exec python -m
     ipykernel_launcher -f FILE"``, then the seconds from before ``sbatch`` until the kernel has
     written its ports and a ``jupyter_client`` ``AsyncKernelClient`` loaded with the file answers
     ``wait_for_ready``; then ``scancel``;
   * *provisioner*: ``await AsyncKernelManager.start_kernel()`` plus the client's
     ``wait_for_ready`` for a kernelspec of ``hpc-provisioner`` with partition=debug,
     walltime=00:05:00, memory=500M; then ``shutdown_kernel``.

   The overhead is provisioner - floor (target: at most 0.5 s).

2. **Status queries per minute** with N = 1, 10 and 50 kernel jobs followed by one server
   process: N cheap real jobs (``sbatch --wrap "sleep 300" --mem=10M -t 00:10:00``; they may stay
   PENDING) are registered with the process's queue watcher, the way the provisioner does it
   (``get_watcher(get_client(SlurmBackend(), ClientSettings()), WatcherSettings(interval=15))``,
   the provisioner's own client and watcher), for ``--seconds``; the ``squeue`` invocations are
   the client's ``counts["status"]``. Next to them, what batchspawner-style polling (one
   ``squeue`` per kernel per interval) would cost: computed, not measured.

    /opt/jupyterhub-hpc/venv/bin/python benchmarks/kernel_jobs.py [--reps 5] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

USER = "hpcuser1"
PARTITION = "debug"
INTERVAL = 15.0
#: every job id this run submitted, one a line (what the end cancels; other users' jobs are left alone)
JOBS = "jobs"


# -- 1. kernel ready time ------------------------------------------------------------------------
def record(work: Path, job_id: str) -> None:
    if job_id:
        with (work / JOBS).open("a") as jobs:
            jobs.write(job_id + "\n")


def sbatch(argv: list[str], cwd: Path) -> str:
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=True, timeout=60)
    job_id = out.stdout.strip().split(";")[0]
    record(cwd, job_id)
    return job_id


def scancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, check=False, timeout=60)


async def floor_once(work: Path, run: int) -> float:
    import zmq
    from jupyter_client.asynchronous.client import AsyncKernelClient

    from jupyterhub_hpc.kernels.files import ports_bound, read_json, write_private
    from jupyterhub_hpc.kernels.node import node_address

    public, secret = zmq.curve_keypair()
    connection_file = work / "floor" / f"kernel-floor-{run}.json"
    info: dict[str, object] = {
        "ip": node_address(),
        "transport": "tcp",
        "signature_scheme": "hmac-sha256",
        "key": secrets.token_hex(32),
        "curve_publickey": public.decode(),
        "curve_secretkey": secret.decode(),
        "shell_port": 0,
        "iopub_port": 0,
        "stdin_port": 0,
        "control_port": 0,
        "hb_port": 0,
    }
    write_private(connection_file, info)
    argv = ["sbatch", "--parsable", "-p", PARTITION, "-t", "00:05:00", "--mem=500M"]
    argv += ["-o", str(work / "floor" / "floor-%j.log")]
    argv += ["--wrap", f"exec {sys.executable} -m ipykernel_launcher -f {connection_file}"]
    began = time.monotonic()
    job_id = sbatch(argv, work)
    try:
        while not ports_bound(read_json(connection_file)):
            if time.monotonic() - began > 300:
                raise RuntimeError(f"floor job {job_id}: no ports after 300 s")
            await asyncio.sleep(0.05)
        client = AsyncKernelClient()
        client.load_connection_file(str(connection_file))
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=120)
            return time.monotonic() - began
        finally:
            client.stop_channels()
    finally:
        scancel([job_id])


async def provisioner_once(work: Path, name: str) -> float:
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name=name)
    began = time.monotonic()
    await km.start_kernel()
    record(work, str(getattr(km.provisioner, "job_id", "")))
    try:
        client = km.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=120)
            return time.monotonic() - began
        finally:
            client.stop_channels()
    finally:
        await km.shutdown_kernel()


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f} s, max {max(values):6.2f} s"


async def ready_times(work: Path, reps: int) -> None:
    from jupyterhub_hpc.kernels.spec import install, kernelspec

    kernels = work / "share" / "kernels"
    spec = kernelspec(
        "Python 3 (bench)",
        resources={"partition": PARTITION, "walltime": "00:05:00", "memory": "500M"},
    )
    install("hpc-bench", spec, kernels)
    os.environ["JUPYTER_PATH"] = str(work / "share")
    (work / "floor").mkdir(mode=0o700, exist_ok=True)
    floor: list[float] = []
    ours: list[float] = []
    for run in range(reps):
        floor.append(await floor_once(work, run))
        ours.append(await provisioner_once(work, "hpc-bench"))
        print(f"  run {run + 1}: floor {floor[-1]:6.2f} s, provisioner {ours[-1]:6.2f} s", flush=True)
    overhead = [o - f for o, f in zip(ours, floor, strict=True)]
    print(f"kernel ready time, {reps} runs each (partition {PARTITION}, 500M, 00:05:00):")
    print(f"  floor (sbatch + ipykernel_launcher): {summary(floor)}")
    print(f"  hpc-provisioner:                     {summary(ours)}")
    print(
        f"  overhead (provisioner - floor): median of medians "
        f"{statistics.median(ours) - statistics.median(floor):+.2f} s, "
        f"median per run {statistics.median(overhead):+.2f} s, max per run {max(overhead):+.2f} s "
        f"(target <= 0.5 s)",
        flush=True,
    )


# -- 2. status queries per minute --------------------------------------------------------------------
async def status_queries(work: Path, counts: list[int], seconds: float) -> None:
    from jupyterhub_hpc.backends import backend_class
    from jupyterhub_hpc.client import ClientSettings, get_client
    from jupyterhub_hpc.watcher import WatcherSettings, get_watcher

    # the provisioner's client and watcher (HPCProvisioner.client / .watcher with its defaults)
    client = get_client(backend_class("slurm")(), ClientSettings())
    watcher = get_watcher(client, settings=WatcherSettings(interval=INTERVAL))
    interval = watcher.settings.interval
    print(f"status queries of one server process, watcher interval {interval:.0f} s, {seconds:.0f} s each:")
    header = f"  {'N':>3}  {'squeue/min (measured)':>21}  {'accounting/min':>14}"
    print(f"{header}  {'per-kernel polling/min':>22}")
    for n in counts:
        argv = ["sbatch", "--parsable", "-p", PARTITION, "--mem=10M", "-t", "00:10:00", "-o", "/dev/null"]
        ids = [sbatch([*argv, "--wrap", "sleep 300"], work) for _ in range(n)]
        try:
            status_before = client.counts.get("status", 0)
            accounting_before = client.counts.get("accounting", 0)
            began = time.monotonic()
            for job_id in ids:
                watcher.register(job_id)
            await asyncio.sleep(seconds)
            taken = time.monotonic() - began
            status = client.counts.get("status", 0) - status_before
            accounting = client.counts.get("accounting", 0) - accounting_before
        finally:
            for job_id in ids:
                watcher.unregister(job_id)
            scancel(ids)
        per_kernel = n * 60 / interval
        print(
            f"  {n:>3}  {status * 60 / taken:>21.1f}  {accounting * 60 / taken:>14.1f}  "
            f"{per_kernel:>13.0f} (computed)   [{status} squeue in {taken:.0f} s]",
            flush=True,
        )
    watcher.stop()


# -- the two processes ---------------------------------------------------------------------------------
async def child(args: argparse.Namespace) -> None:
    work = Path(args.dir)
    os.chdir(work)
    if args.reps > 0:
        await ready_times(work, args.reps)
        print()
    await status_queries(work, [int(n) for n in args.counts.split(",") if n], args.seconds)


def cancel_recorded(work: Path) -> None:
    """Cancel every job this run submitted (those still queued or running)."""
    try:
        ids = (work / JOBS).read_text().split()
    except OSError:
        return
    scancel(ids)


def parent(args: argparse.Namespace) -> int:
    user = pwd.getpwnam(USER)
    tmp = Path(tempfile.mkdtemp(prefix="kernel-jobs-", dir="/tmp"))
    try:
        tmp.chmod(0o755)
        script = tmp / Path(__file__).name
        shutil.copy(__file__, script)
        script.chmod(0o644)
        work = tmp / "work"
        work.mkdir(mode=0o700)
        os.chown(work, user.pw_uid, user.pw_gid)
        argv = ["runuser", "-u", USER, "--", sys.executable, str(script), "--child", "--dir", str(work)]
        argv += ["--reps", str(args.reps), "--seconds", str(args.seconds), "--counts", args.counts]
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
        env.update(HOME=user.pw_dir, USER=USER, LOGNAME=USER)
        return subprocess.run(argv, env=env, check=False).returncode
    finally:
        cancel_recorded(tmp / "work")
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="ready-time runs of each (0: skip)")
    parser.add_argument("--seconds", type=float, default=60.0, help="status window per N")
    parser.add_argument("--counts", default="1,10,50", help="numbers of kernel jobs, comma-separated")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args))
        return 0
    if os.getuid() == 0:
        return parent(args)
    if pwd.getpwuid(os.getuid()).pw_name != USER:
        parser.error(f"run as root (it re-executes itself as {USER}) or as {USER}")
    args.dir = tempfile.mkdtemp(prefix="kernel-jobs-")
    try:
        asyncio.run(child(args))
    finally:
        cancel_recorded(Path(args.dir))
        shutil.rmtree(args.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
