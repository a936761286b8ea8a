"""PBS: PBS Professional / OpenPBS (``qstat -f -F json -x``) and Torque (``qstat -x`` XML).

Both read the script on standard input of ``qsub`` and cancel with ``qdel``.
Status is one ``qstat`` for every job of the hub: PBS Pro's ``-x`` also lists
finished jobs (state ``F``, with ``Exit_status``) for ``job_history_duration``;
Torque keeps completed jobs (state ``C``, ``exit_status``) for ``keep_completed``
seconds. ``qstat`` exits non-zero when one of the ids is unknown but still
prints the others; an unknown id is NOT_FOUND.

PBS cannot put the job id into an ``-o`` path, so the job script sends its own
output to ``job_output`` with ``$PBS_JOBID`` in place of ``{job_id}``
(``-o /dev/null``).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from ..commands import CommandResult
from ..request import JobRequest, format_walltime
from ..states import JobState, JobStatus
from .base import Backend, JobScript, QueryError, SubmitError

__all__ = ["PBSBackend", "TorqueBackend", "pbs_exit_code"]

PBS_STATES: dict[str, JobState] = {
    "Q": JobState.PENDING,
    "H": JobState.PENDING,
    "W": JobState.PENDING,
    "T": JobState.PENDING,
    "M": JobState.PENDING,
    "S": JobState.PENDING,
    "U": JobState.PENDING,
    "R": JobState.RUNNING,
    "B": JobState.RUNNING,
    "E": JobState.COMPLETING,
    "F": JobState.COMPLETED,
    "X": JobState.COMPLETED,
    "C": JobState.COMPLETED,
}

PBS_REASONS: dict[str, str] = {
    "H": "held (by you, an administrator or a dependency)",
    "W": "waiting for its start time",
    "S": "the job is suspended",
    "T": "the job is being moved",
    "walltime": "the job reached its time limit",
    "signal": "the job was killed by a signal",
}

#: PBS Pro's negative ``Exit_status`` values for resource-limit kills (JOB_EXEC_KILL_* in pbs_error.h);
#: every other negative value means the job could not be started
PBS_LIMIT_KILLS = {-24: "ncpus", -25: "ncpus", -26: "vmem", -27: "mem", -28: "cput", -29: "walltime"}
#: Torque's (JOB_EXEC_OVERLIMIT_* in job.h)
TORQUE_LIMIT_KILLS = {-10: "mem", -11: "walltime", -12: "cput"}

_TIME_FORMATS = ("%a %b %d %H:%M:%S %Y",)


def pbs_exit_code(value: object) -> int | None:
    """PBS's exit status -> the shell convention: ``271`` (256 + SIGTERM) -> 143,
    ``3`` -> 3, negative values (the job never ran, or a limit kill) -> None."""
    try:
        code = int(str(value).strip())
    except ValueError:
        return None
    if code < 0:
        return None
    if code > 256:
        return 128 + (code - 256)
    return code


def _pbs_time(value: object) -> datetime | None:
    if isinstance(value, (int, float)) and value > 0:
        return datetime.fromtimestamp(value)
    text = str(value or "").strip()
    if text.isdigit() and int(text) > 0:
        return datetime.fromtimestamp(int(text))
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def _first_host(exec_host: str) -> str | None:
    """``node1/0*2+node2/0*2`` or ``node1:ppn=2`` -> ``node1``."""
    first = exec_host.strip().split("+")[0]
    host = re.split(r"[/:]", first)[0]
    return host or None


class PBSBackend(Backend):
    """PBS Professional / OpenPBS 19+ (recorded formats and a fake CLI; not tested live)."""

    name = "pbs"
    template = "pbs.sh.j2"
    directive_prefix = "#PBS"
    state_map = PBS_STATES
    reasons = PBS_REASONS
    job_id_placeholder = "%j"
    job_id_variable = "PBS_JOBID"
    default_commands = {"qsub": "qsub", "qstat": "qstat", "qdel": "qdel"}
    cancel_gone_markers = ("Unknown Job Id", "finished", "in state C")
    renders = frozenset({"nodes", "ntasks_per_node"})
    lacks = {
        "partition": "a PBS job goes to one queue (-q)",
        "ntasks": "PBS counts tasks per chunk (select=N:mpiprocs=P): set nodes and ntasks_per_node",
        "gpus_per_task": "PBS counts GPUs per chunk (ngpus): set gpus",
        "gres": "PBS custom resources are site-defined: add them with job_extra_directives",
    }
    limit_kills: ClassVar[Mapping[int, str]] = PBS_LIMIT_KILLS

    def submit_argv(self, request: JobRequest) -> list[str]:
        return [self.cmd("qsub")]

    def parse_submit(self, result: CommandResult) -> str:
        if not result.ok:
            raise SubmitError(result.stderr.strip() or f"qsub exited {result.returncode}")
        lines = [ln.strip() for ln in result.stdout.splitlines() if ln.strip()]
        job_id = lines[-1] if lines else ""
        if not re.match(r"^\d+(\[\d*\])?(\.[\w.-]+)?$", job_id):
            raise SubmitError(f"qsub printed no job id: {result.stdout.strip()!r}")
        return job_id

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        return [self.cmd("qstat"), "-f", "-F", "json", "-x", *job_ids]

    def _status(self, job_id: str, attrs: Mapping[str, Any]) -> JobStatus:
        native = str(attrs.get("job_state", "")).strip()
        state = self.map_state(native)
        raw_exit = attrs.get("Exit_status", attrs.get("exit_status"))
        exit_code = pbs_exit_code(raw_exit) if raw_exit is not None else None
        reason: str | None = native if native in PBS_REASONS else None
        if state.is_final and raw_exit is not None:
            number = int(str(raw_exit).strip() or 0)
            limit = self.limit_kills.get(number)
            if limit == "walltime":
                state, reason = JobState.TIMEOUT, "walltime"
            elif limit:
                state, reason = JobState.FAILED, f"the job exceeded its {limit} limit"
            elif number < 0:
                state, reason = JobState.FAILED, f"the job could not be started (exit status {number})"
            elif number > 256:
                state, reason = JobState.CANCELLED, "signal"
            elif number != 0:
                state = JobState.FAILED
        host = _first_host(str(attrs.get("exec_host", "")))
        estimated = attrs.get("estimated")
        return JobStatus(
            job_id=job_id,
            state=state,
            host=host if state is not JobState.PENDING else None,
            reason=reason
            or (str(attrs["comment"]) if state is JobState.PENDING and attrs.get("comment") else None),
            exit_code=exit_code if state.is_final else None,
            expected_start=_pbs_time(estimated.get("start_time")) if isinstance(estimated, dict) else None,
            end_time=_pbs_time(attrs.get("obittime") or attrs.get("comp_time")),
            partition=str(attrs.get("queue") or "") or None,
            native_state=native,
        )

    def _unknown_ids(self, stderr: str) -> set[str]:
        return set(re.findall(r"Unknown Job Id(?: Error)?\s+(\S+)", stderr))

    def _match(self, found: Mapping[str, JobStatus], job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Statuses keyed by the ids as the hub knows them: ``12`` matches ``12.server``."""
        out: dict[str, JobStatus] = {}
        for job_id in job_ids:
            status = found.get(job_id) or next(
                (s for key, s in found.items() if key.split(".")[0] == job_id.split(".")[0]), None
            )
            out[job_id] = status or JobStatus(job_id=job_id, state=JobState.NOT_FOUND)
        return out

    def _nothing_listed(self, result: CommandResult) -> bool:
        """True when qstat listed no job (every id unknown); raises when it failed otherwise."""
        if not result.ok and not self._unknown_ids(result.stderr):
            raise QueryError(result.stderr.strip() or f"qstat exited {result.returncode}")
        return not result.stdout.strip()

    def parse_status(self, result: CommandResult, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if self._nothing_listed(result):
            return self._match({}, job_ids)
        try:
            data = json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise QueryError(f"qstat -F json printed no JSON: {exc}") from None
        jobs = data.get("Jobs", {}) if isinstance(data, dict) else {}
        found = {str(k): self._status(str(k), v) for k, v in jobs.items() if isinstance(v, dict)}
        return self._match(found, job_ids)

    def cancel_argv(self, job_id: str) -> list[str]:
        return [self.cmd("qdel"), job_id]

    def resource_directives(self, request: JobRequest) -> list[str]:
        # one chunk per node; cpus are per task, so a chunk has cpus x tasks-per-node cores
        tasks = request.ntasks_per_node or 1
        select = f"select={request.nodes}:ncpus={request.cpus * tasks}:mem={request.memory}mb"
        if request.ntasks_per_node is not None:
            select += f":mpiprocs={tasks}:ompthreads={request.cpus}"
        if request.gpus:
            select += f":ngpus={request.gpus}"
        if request.constraint:
            select += f":{request.constraint}"
        return [f"-l {select}", "-l place=pack" if request.nodes == 1 else "-l place=scatter"]

    def directives(self, request: JobRequest, job: JobScript) -> list[str]:
        d = [
            f"-N {request.job_name[:236]}",
            "-o /dev/null",
            "-j oe",
            "-V",
            *self.resource_directives(request),
            f"-l walltime={format_walltime(request.walltime)}",
        ]
        if request.partition:
            d.append(f"-q {request.partition}")
        if request.account:
            d.append(f"-A {request.account}")
        return d


class TorqueBackend(PBSBackend):
    """Torque 6.x / 7.x, ``qstat -x`` XML (recorded format and a fake CLI; not tested live)."""

    name = "torque"
    limit_kills = TORQUE_LIMIT_KILLS

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        return [self.cmd("qstat"), "-x", *job_ids]

    def parse_status(self, result: CommandResult, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if self._nothing_listed(result):
            return self._match({}, job_ids)
        try:
            root = ET.fromstring(result.stdout)
        except ET.ParseError as exc:
            raise QueryError(f"qstat -x printed no XML: {exc}") from None
        found: dict[str, JobStatus] = {}
        for element in root.iter("Job"):
            job_id = (element.findtext("Job_Id") or "").strip()
            attrs: dict[str, Any] = {child.tag: (child.text or "") for child in element}
            found[job_id] = self._status(job_id, attrs)
        return self._match(found, job_ids)

    def resource_directives(self, request: JobRequest) -> list[str]:
        nodes = f"nodes={request.nodes}:ppn={request.cpus * (request.ntasks_per_node or 1)}"
        if request.gpus:
            nodes += f":gpus={request.gpus}"
        if request.constraint:
            nodes += f":{request.constraint}"
        return [f"-l {nodes}", f"-l mem={request.memory}mb"]
