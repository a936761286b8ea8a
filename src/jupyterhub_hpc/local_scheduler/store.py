"""The on-disk state of the local scheduler: one directory, one sub-directory per job.

Layout of a state directory (default ``/tmp/jupyterhub-hpc-local``)::

    lock            flock(2)ed while a job takes a slot (readable by all)
    <id>/job.json   what was asked: written once by ``submit``
    <id>/state.json where it is: written (atomically) by the job's supervisor only
    <id>/script     the job script (mode 0700)

The directory is created mode ``1777`` (world-writable and sticky, like
``/tmp``): jobs of a root hub are submitted by each user through ``sudo`` and
create their own job directories, which nobody else may remove, while the hub
reads every job's state. A hub that runs as an ordinary user owns it alone.
Nothing here is secret: the API token never touches the disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_STATE_DIR",
    "ENV_MARKER",
    "FINAL_STATES",
    "JobSpec",
    "ProcessId",
    "RunState",
    "StateDir",
    "StateDirError",
    "job_processes",
]

DEFAULT_STATE_DIR = "/tmp/jupyterhub-hpc-local"
#: every process of a job inherits this variable; it finds the job's stragglers
ENV_MARKER = "JUPYTERHUB_HPC_LOCAL_JOB"
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
#: a job directory without a state this long after submission never started
_START_GRACE = 30.0


class StateDirError(RuntimeError):
    """The state directory is missing, unsafe or unreadable."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, None if it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], int(fields[19])


@dataclass(frozen=True)
class ProcessId:
    """A process, identified so that a recycled pid (or a reboot) is not taken for it."""

    pid: int
    start: int
    boot: str

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        info = _proc_stat(pid)
        return None if info is None else cls(pid=pid, start=info[1], boot=_boot_id())

    @classmethod
    def from_json(cls, data: Any) -> ProcessId | None:
        if not isinstance(data, dict):
            return None
        return cls(pid=int(data["pid"]), start=int(data["start"]), boot=str(data["boot"]))

    def alive(self) -> bool:
        """True while this very process runs (a zombie has ended)."""
        info = _proc_stat(self.pid)
        return info is not None and info[0] != "Z" and info[1] == self.start and self.boot == _boot_id()


@dataclass(frozen=True)
class JobSpec:
    """What was submitted (``job.json``)."""

    job_id: str
    name: str
    user: str
    uid: int
    submitted: float
    walltime: int
    kill_wait: float
    max_running: int
    output: str
    workdir: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class RunState:
    """Where a job is (``state.json``); only its supervisor writes it."""

    state: str
    reason: str | None = None
    supervisor: ProcessId | None = None
    process: ProcessId | None = None
    host: str | None = None
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        return cls(
            state=str(data["state"]),
            reason=data.get("reason"),
            supervisor=ProcessId.from_json(data.get("supervisor")),
            process=ProcessId.from_json(data.get("process")),
            host=data.get("host"),
            started=data.get("started"),
            ended=data.get("ended"),
            exit_code=data.get("exit_code"),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class Job:
    """A job as read from disk, with the state every reader must believe."""

    spec: JobSpec
    run: RunState = field(default_factory=lambda: RunState(state="PENDING"))

    def effective(self, now: float | None = None) -> RunState:
        """The recorded state, unless its supervisor is gone without recording an end."""
        run = self.run
        if run.final:
            return run
        if run.supervisor is None:
            if (now or time.time()) - self.spec.submitted < _START_GRACE:
                return RunState(state="PENDING", reason="Submitting")
            return RunState(state="FAILED", reason="NeverStarted")
        if not run.supervisor.alive():
            return RunState(
                state="FAILED",
                reason="SupervisorLost",
                host=run.host,
                started=run.started,
                process=run.process,
            )
        return run

    def describe(self) -> dict[str, Any]:
        """One line of ``status`` output (see :mod:`.cli`)."""
        run = self.effective()
        limit = run.started + self.spec.walltime if run.started is not None else None
        return {
            "id": self.spec.job_id,
            "state": run.state,
            "reason": run.reason,
            "host": run.host,
            "exit_code": run.exit_code,
            "submitted": self.spec.submitted,
            "started": run.started,
            "ended": run.ended if run.final else limit,
            "walltime": self.spec.walltime,
            "name": self.spec.name,
            "user": self.spec.user,
            "output": self.spec.output,
        }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically: readers see the old or the new text, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


class StateDir:
    """One scheduler's state directory (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> None:
        self.path = Path(path)

    def ensure(self) -> None:
        """Create the directory (mode 1777) and its lock file if missing; check it is safe."""
        if not self.path.exists():
            with contextlib.suppress(FileExistsError):
                self.path.mkdir(parents=True)
                os.chmod(self.path, 0o1777)
        self.check()
        lock = self.path / "lock"
        if not lock.exists():
            with contextlib.suppress(FileExistsError):
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                os.close(fd)

    def check(self) -> None:
        """Refuse a symlink, a non-directory, or one others may write without the sticky bit."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            raise StateDirError(f"{self.path} does not exist") from None
        if not stat.S_ISDIR(info.st_mode):
            raise StateDirError(f"{self.path} is not a directory (a symlink is not accepted)")
        if info.st_mode & (stat.S_IWOTH | stat.S_IWGRP) and not info.st_mode & stat.S_ISVTX:
            raise StateDirError(f"{self.path} is writable by others but not sticky; refusing to use it")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock of the whole scheduler (held briefly, to take a slot)."""
        fd = os.open(self.path / "lock", os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def job_ids(self) -> list[str]:
        """Every job id present, in submission order."""
        try:
            names = [entry.name for entry in os.scandir(self.path)]
        except FileNotFoundError:
            return []
        return sorted((n for n in names if n.isdigit()), key=int)

    def job_dir(self, job_id: str) -> Path:
        if not job_id.isdigit():
            raise ValueError(f"not a job id: {job_id!r}")
        return self.path / str(int(job_id))

    def new_job_dir(self) -> tuple[str, Path]:
        """Reserve the next job id by creating its directory (atomic, no shared counter)."""
        while True:
            ids = self.job_ids()
            job_id = str(int(ids[-1]) + 1 if ids else 1)
            path = self.path / job_id
            try:
                path.mkdir(mode=0o755)
            except FileExistsError:
                continue
            return job_id, path

    def load(self, job_id: str) -> Job | None:
        """The job, or None when this directory does not know it."""
        try:
            path = self.job_dir(job_id)
        except ValueError:
            return None
        try:
            spec = JobSpec.from_json(json.loads((path / "job.json").read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StateDirError(f"cannot read job {job_id}: {exc}") from exc
        try:
            run = RunState.from_json(json.loads((path / "state.json").read_text()))
        except FileNotFoundError:
            return Job(spec=spec, run=RunState(state="PENDING"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StateDirError(f"cannot read the state of job {job_id}: {exc}") from exc
        return Job(spec=spec, run=run)

    def jobs(self) -> list[Job]:
        """Every readable job, in submission order (unreadable ones are skipped)."""
        found: list[Job] = []
        for job_id in self.job_ids():
            with contextlib.suppress(StateDirError):
                job = self.load(job_id)
                if job is not None:
                    found.append(job)
        return found

    def purge(self, uid: int, older_than: float) -> list[str]:
        """Remove this user's jobs that ended more than ``older_than`` seconds ago.

        The newest job directory always stays, so that an id is never handed out twice.
        """
        removed: list[str] = []
        ids = self.job_ids()
        now = time.time()
        for job in self.jobs():
            run = job.run
            if job.spec.uid != uid or not run.final or job.spec.job_id == ids[-1]:
                continue
            if run.ended is not None and now - run.ended > older_than:
                shutil.rmtree(self.job_dir(job.spec.job_id), ignore_errors=True)
                removed.append(job.spec.job_id)
        return removed

    def marker(self, job_id: str) -> str:
        """The value of :data:`ENV_MARKER` in the processes of ``job_id``."""
        return str(self.job_dir(job_id).resolve())


def job_processes(marker: str) -> list[int]:
    """Pids of the processes (of this user, or any when root) that carry ``marker``.

    Jupyter starts kernels in new sessions, so a process group does not hold a
    whole job; the environment variable every job process inherits does.
    """
    needle = f"{ENV_MARKER}={marker}".encode()
    me = os.getpid()
    pids: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids
