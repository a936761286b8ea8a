"""Helpers of the security tests: what root can see of a job (its token, its settings,
its stored script) and of every process on the machine."""

from __future__ import annotations

import glob
import os
import pwd
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub import Hub, wait_for
from jupyterhub_hpc.singleuser.listeners import listeners, socket_inodes

USERS = ["hpcuser1", "hpcuser2", "hpcuser3"]
HOLD = {"job_extra_directives": ["--begin=now+600"]}  # per-user: the job stays PENDING
FAST = {
    "memory": "400M",
    "status_interval": 3.0,
    "command_timeout": 20.0,
    "poll_interval": 3,
    "job_name": "sectest",
}


def scontrol_job(job_id: str) -> dict[str, str]:
    """``scontrol show job -o`` as a dict (fields without spaces only)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True
    ).stdout
    return dict(part.split("=", 1) for part in out.split() if "=" in part)


def batch_script(job_id: str) -> str:
    """The job script as Slurm stores it (root can read every job's)."""
    return subprocess.run(
        ["scontrol", "write", "batch_script", job_id, "-"], capture_output=True, text=True, check=True
    ).stdout


def spool_token(job_id: str) -> str:
    """The API token Slurm keeps in the job's stored environment (root-only files)."""
    [path] = glob.glob(f"/var/spool/slurmctld/hash.*/job.{job_id}/environment")
    match = re.search(rb"\0JUPYTERHUB_API_TOKEN=([^\0]+)\0", Path(path).read_bytes())
    assert match, f"no token in {path}"
    return match.group(1).decode()


def proc_environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def uid_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def in_job(pid: int, job: str) -> bool:
    """Is ``pid`` a process of Slurm job ``job`` (other tests may run servers too)?"""
    return re.search(rb"(?:^|\0)SLURM_JOB_ID=" + job.encode() + rb"\0", proc_environ(pid)) is not None


def server_token(user: str, job: str) -> str:
    """The API token in the environment of the user's Jupyter server of job ``job``."""
    pid = server_pid(user, job)
    match = re.search(rb"(?:^|\0)JUPYTERHUB_API_TOKEN=([^\0]+)", proc_environ(pid))
    assert match, f"the server of job {job} has no JUPYTERHUB_API_TOKEN"
    return match.group(1).decode()


def pending_job(user: str, timeout: float = 60) -> str:
    """The id of the user's pending job, once it is there."""

    def find() -> str | None:
        out = subprocess.run(
            ["squeue", "--noheader", f"--user={user}", "--name=sectest", "--states=PENDING", "--format=%i"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return out[0] if out else None

    return str(wait_for(find, timeout, message=f"{user} has no pending job"))


#: the job name of every job these tests submit: clean-up and checks touch only those
JOB_NAME = "sectest"


def live_jobs(user: str) -> list[str]:
    """The user's queued or running jobs submitted by these tests."""
    out = subprocess.run(
        [
            "squeue",
            "--noheader",
            f"--user={user}",
            f"--name={JOB_NAME}",
            "--states=PENDING,RUNNING,COMPLETING",
            "--format=%i",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def server_state(hub: Hub, user: str) -> dict[str, Any] | None:
    """The spawner state the hub reports (``admin:server_state``), None without a server."""
    server = hub.user_model(user)["servers"].get("")
    return dict(server["state"]) if server else None


def wait_no_server(hub: Hub, user: str, timeout: float = 60) -> None:
    wait_for(lambda: not hub.user_model(user)["servers"], timeout, message=f"{user}'s server still there")


def files_under(root: str) -> Iterator[Path]:
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


def contains(path: Path, needle: bytes) -> bool:
    try:
        return needle in path.read_bytes()
    except OSError:
        return False


def settle(seconds: float) -> None:
    time.sleep(seconds)


def cancel_test_jobs() -> None:
    for user in USERS:
        cancel_test_jobs_of(user, check=False)


def listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket of process ``pid`` (from /proc)."""
    inodes = socket_inodes([pid])
    return [(sock.address, sock.port) for sock in listeners() if sock.inode in inodes]


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def server_pid(user: str, job: str) -> int:
    """The pid of the user's jupyterhub-singleuser process in job ``job`` (not the
    launcher, its parent, whose command line names it after ``--``)."""
    uid = pwd.getpwnam(user).pw_uid
    for pid in pids():
        line = cmdline(pid)
        if uid_of(pid) != uid or b"jupyterhub-hpc-singleuser" in line:
            continue
        if b"jupyterhub-singleuser" in line and in_job(pid, job):
            return pid
    raise AssertionError(f"no jupyterhub-singleuser of {user} in job {job}")


def cancel_test_jobs_of(user: str, check: bool = True) -> None:
    subprocess.run(["scancel", f"--user={user}", f"--name={JOB_NAME}"], check=check)
