"""Slurm: ``sbatch`` / one batched ``squeue`` / ``scancel`` / ``sacct``.

Status uses ``squeue --Format`` with a ``|`` suffix after every field (a fixed,
machine-readable layout that works from Slurm 22.05 to 25.x) and
``--states=all``, so jobs that ended within ``MinJobAge`` are still reported
with their final state and exit code.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..commands import CommandResult
from ..request import JobRequest, format_walltime, parse_walltime_seconds
from ..states import JobState, JobStatus
from .base import Backend, JobScript, QueryError, SubmitError
from .limits import Associations, PartitionInfo
from .slurm_limits import parse_sacctmgr_associations, parse_sinfo_nodes, sacctmgr_argv, sinfo_argv

__all__ = [
    "SlurmBackend",
    "expand_hostlist",
    "parse_exit_code",
    "parse_slurm_time",
    "parse_time_limit",
    "parse_wait_status",
]

#: squeue fields, in order; each is written as ``Name:|`` (no width limit, ``|`` after it)
SQUEUE_FIELDS = (
    "JobID",
    "State",
    "Reason",
    "BatchHost",
    "exit_code",
    "StartTime",
    "EndTime",
    "Partition",
    "NodeList",
    "TimeLimit",
)

SLURM_STATES: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "SUSPENDED": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.COMPLETING,
    "COMPLETING": JobState.COMPLETING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "DEADLINE": JobState.TIMEOUT,
    "TIMEOUT": JobState.TIMEOUT,
    "PREEMPTED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "CANCELLED": JobState.CANCELLED,
    "SPECIAL_EXIT": JobState.FAILED,
}

SLURM_REASONS: dict[str, str] = {
    "Priority": "other jobs have priority",
    "Resources": "waiting for free resources",
    "BeginTime": "the job's start time has not been reached",
    "Dependency": "waiting for another job to finish",
    "DependencyNeverSatisfied": "a job it depends on failed",
    "JobHeldUser": "held by the user",
    "JobHeldAdmin": "held by an administrator",
    "ReqNodeNotAvail": "the requested nodes are not available",
    "NodeDown": "a node it needs is down",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "PartitionTimeLimit": "the time limit exceeds the partition's maximum",
    "PartitionNodeLimit": "the node count exceeds the partition's limits",
    "Reservation": "waiting for its reservation",
    "Licenses": "waiting for licenses",
    "QOSMaxJobsPerUserLimit": "you already run the most jobs your QoS allows",
    "QOSMaxCpuPerUserLimit": "you already use the most CPUs your QoS allows",
    "QOSMaxWallDurationPerJobLimit": "the time limit exceeds your QoS maximum",
    "AssocGrpCpuLimit": "your group's CPU limit is reached",
    "AssocGrpJobsLimit": "your group's job limit is reached",
    "AssocMaxJobsLimit": "your account's job limit is reached",
    "InvalidAccount": "the account is not valid",
    "InvalidQOS": "the QoS is not valid",
    "BadConstraints": "no node matches the requested features",
    "launch failed requeued held": "the job failed to launch and is held",
    "NonZeroExitCode": "the job exited with an error",
    "TimeLimit": "the job reached its time limit",
    "RaisedSignal": "the job was killed by a signal",
    "OutOfMemory": "the job ran out of memory",
    "NodeFail": "its node failed",
}

_NO_TIME = {"", "N/A", "NONE", "UNKNOWN", "(NULL)", "INVALID"}


def parse_slurm_time(text: str) -> datetime | None:
    """Slurm's ``YYYY-MM-DDTHH:MM:SS`` (local time) or None for N/A, Unknown, None."""
    if text.strip().upper() in _NO_TIME:
        return None
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None


def parse_time_limit(text: str) -> int | None:
    """squeue's ``TimeLimit`` (``"1:00:00"``, ``"30:00"``, ``"1-00:00:00"``) in seconds; None for
    ``UNLIMITED``, ``NOT_SET``, ``INVALID`` or anything else."""
    try:
        return int(parse_walltime_seconds(text.strip()))
    except ValueError:
        return None


#: bounded: a node list of a huge job is summarised by its first nodes
MAX_NODES = 4096


def expand_hostlist(text: str) -> tuple[str, ...]:
    """Slurm's compressed node list, expanded in order: ``"n[1-3,07],gpu1"`` -> ``n1 n2 n3 n07
    gpu1`` (zero padding kept); ``""``, ``"(null)"`` and ``"n/a"`` -> ``()``. At most
    :data:`MAX_NODES` names."""
    text = text.strip()
    if text.upper() in _NO_TIME or text.lower() == "n/a":
        return ()
    names: list[str] = []
    depth = 0
    start = 0
    items: list[str] = []
    for i, ch in enumerate(text):  # split on the commas outside brackets
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    for item in items:
        head, bracket, rest = item.partition("[")
        if not bracket:
            names.append(item)
            continue
        body, _, tail = rest.partition("]")
        for part in body.split(","):
            low, _, high = part.partition("-")
            if not low.isdigit() or (high and not high.isdigit()):
                names.append(f"{head}[{part}]{tail}")
                continue
            for number in range(int(low), int(high or low) + 1):
                names.append(f"{head}{number:0{len(low)}d}{tail}")
                if len(names) >= MAX_NODES:
                    return tuple(names)
    return tuple(n for n in names if n)[:MAX_NODES]


def parse_wait_status(text: str) -> int | None:
    """squeue's ``exit_code`` field. Slurm 22.05 prints a raw wait status: ``"768"`` (exit 3) -> 3,
    ``"15"`` (killed by SIGTERM) -> 143, ``"0"`` -> 0; Slurm 24.11 prints ``code:signal`` as sacct
    does (``"3:0"`` -> 3, ``"0:15"`` -> 143; tests/data/slurm/24.11)."""
    text = text.strip()
    if ":" in text:
        return parse_exit_code(text)
    if not text.isdigit():
        return None
    status = int(text)
    if status & 0x7F:
        return 128 + (status & 0x7F)
    return (status >> 8) & 0xFF


def parse_exit_code(text: str) -> int | None:
    """sacct's ``ExitCode``: ``"3:0"`` (status:signal) -> 3; ``"0:15"`` (killed by signal 15) -> 143."""
    parts = text.strip().split(":")
    if not parts[0].isdigit():
        return None
    code = int(parts[0])
    if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) and not code:
        return 128 + int(parts[1])
    return code


class SlurmBackend(Backend):
    """Slurm 22.05 through 25.x."""

    name = "slurm"
    template = "slurm.sh.j2"
    directive_prefix = "#SBATCH"
    state_map = SLURM_STATES
    reasons = SLURM_REASONS
    job_id_placeholder = "%j"
    job_id_env = "SLURM_JOB_ID"
    script_changes_directory = False  # --chdir
    default_commands = {
        "sbatch": "sbatch",
        "squeue": "squeue",
        "scancel": "scancel",
        "sacct": "sacct",
        "sinfo": "sinfo",
        "sacctmgr": "sacctmgr",
    }
    cancel_gone_markers = ("Invalid job id", "already completing")
    renders = frozenset({"nodes", "partition", "ntasks", "ntasks_per_node", "gpus_per_task", "gres"})

    def _cluster_args(self) -> list[str]:
        return [f"--clusters={self.cluster}"] if self.cluster else []

    def submit_argv(self, request: JobRequest) -> list[str]:
        return [self.cmd("sbatch"), "--parsable", *self._cluster_args()]

    def parse_submit(self, result: CommandResult) -> str:
        if not result.ok:
            raise SubmitError(result.stderr.strip() or f"sbatch exited {result.returncode}")
        lines = [ln for ln in result.stdout.strip().splitlines() if ln.strip()]
        job_id = lines[-1].split(";")[0].strip() if lines else ""
        if not job_id.isdigit():
            raise SubmitError(f"sbatch printed no job id: {result.stdout.strip()!r}")
        return job_id

    def parse_submit_cluster(self, result: CommandResult) -> str | None:
        """``sbatch --parsable --clusters=a,b`` prints ``id;cluster``: the cluster it chose."""
        lines = [ln for ln in result.stdout.strip().splitlines() if ln.strip()]
        if not lines or ";" not in lines[-1]:
            return None
        return lines[-1].split(";", 1)[1].strip() or None

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        fmt = ",".join(f"{f}:|" for f in SQUEUE_FIELDS)
        return [
            self.cmd("squeue"),
            "--noheader",
            "--states=all",
            f"--jobs={','.join(job_ids)}",
            f"--Format={fmt}",
            *self._cluster_args(),
        ]

    def parse_status(self, result: CommandResult, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if not result.ok:
            # squeue fails outright when *every* id asked about is unknown to it
            if "Invalid job id" in result.stderr:
                return {j: JobStatus(job_id=j, state=JobState.NOT_FOUND) for j in job_ids}
            raise QueryError(result.stderr.strip() or f"squeue exited {result.returncode}")
        if "error" in result.stderr.lower():
            # e.g. a --Format field this Slurm does not know: exit 0, an empty column
            raise QueryError(result.stderr.strip())
        found: dict[str, JobStatus] = {}
        for line in result.stdout.splitlines():
            if not line.strip() or line.startswith("CLUSTER:"):
                continue
            parts = line.split("|")
            if len(parts) < len(SQUEUE_FIELDS):
                raise QueryError(f"unexpected squeue line: {line!r}")
            job_id, state, reason, host, exit_code, start, end, partition, nodes, limit = (
                p.strip() for p in parts[: len(SQUEUE_FIELDS)]
            )
            mapped = self.map_state(state)
            found[job_id] = JobStatus(
                job_id=job_id,
                state=mapped,
                host=host if host and host.upper() not in _NO_TIME else None,
                reason=reason if reason not in ("None", "") else None,
                exit_code=parse_wait_status(exit_code) if mapped.is_final else None,
                expected_start=parse_slurm_time(start),
                end_time=parse_slurm_time(end),
                partition=partition or None,
                native_state=state,
                nodes=expand_hostlist(nodes),
                time_limit_seconds=parse_time_limit(limit),
            )
        return {j: found.get(j, JobStatus(job_id=j, state=JobState.NOT_FOUND)) for j in job_ids}

    def cancel_argv(self, job_id: str) -> list[str]:
        return [self.cmd("scancel"), *self._cluster_args(), job_id]

    def accounting_argv(self, job_ids: Sequence[str]) -> list[str] | None:
        return [
            self.cmd("sacct"),
            "--noheader",
            "--parsable2",
            "--allocations",
            f"--jobs={','.join(job_ids)}",
            "--format=JobID,State,ExitCode,NodeList,End",
            *self._cluster_args(),
        ]

    def parse_accounting(self, result: CommandResult, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if not result.ok:
            raise QueryError(result.stderr.strip() or f"sacct exited {result.returncode}")
        found: dict[str, JobStatus] = {}
        for line in result.stdout.splitlines():
            parts = line.split("|")
            if len(parts) < 5 or parts[0] not in job_ids:
                continue
            # "CANCELLED by 1001" -> CANCELLED
            native = parts[1].split()[0] if parts[1].strip() else ""
            found[parts[0]] = JobStatus(
                job_id=parts[0],
                state=self.map_state(native),
                host=parts[3] or None,
                exit_code=parse_exit_code(parts[2]),
                end_time=parse_slurm_time(parts[4]),
                native_state=native,
            )
        return found

    def limits_argv(self) -> list[str] | None:
        return sinfo_argv(self.cmd("sinfo"), self.cluster)

    def parse_limits(self, result: CommandResult) -> dict[str, PartitionInfo]:
        return parse_sinfo_nodes(result.stdout)

    def associations_argv(self) -> list[str] | None:
        return sacctmgr_argv(self.cmd("sacctmgr"), self.cluster)

    def parse_associations(self, result: CommandResult) -> dict[str, Associations]:
        return parse_sacctmgr_associations(result.stdout)

    @staticmethod
    def task_directives(request: JobRequest) -> list[str]:
        """``--ntasks``/``--ntasks-per-node`` as asked; neither asked: one task per node."""
        if request.ntasks is None and request.ntasks_per_node is None:
            return ["--ntasks-per-node=1"]
        d = [] if request.ntasks is None else [f"--ntasks={request.ntasks}"]
        if request.ntasks_per_node is not None:
            d.append(f"--ntasks-per-node={request.ntasks_per_node}")
        return d

    def directives(self, request: JobRequest, job: JobScript) -> list[str]:
        d = [
            f"--job-name={request.job_name}",
            f"--output={job.output_path}",
            f"--chdir={job.workdir}",
            "--export=ALL",
            f"--nodes={request.nodes}",
            *self.task_directives(request),
            f"--cpus-per-task={request.cpus}",
            f"--mem={request.memory}M",
            f"--time={format_walltime(request.walltime)}",
        ]
        for option, value in (
            ("partition", request.partition),
            ("account", request.account),
            ("qos", request.qos),
            ("reservation", request.reservation),
            ("constraint", request.constraint),
        ):
            if value:
                d.append(f"--{option}={value}")
        if request.gpus_per_task is not None:
            d.append(f"--gpus-per-task={request.gpus_per_task}")
        gres = list(request.gres)
        if request.gpus:
            kind = f"gpu:{request.gpu_type}" if request.gpu_type else "gpu"
            gres.insert(0, f"{kind}:{request.gpus}")
        if gres:
            d.append(f"--gres={','.join(gres)}")
        if self.cluster:
            d.append(f"--clusters={self.cluster}")
        return d
