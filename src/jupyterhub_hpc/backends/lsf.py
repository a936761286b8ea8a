"""IBM Spectrum LSF 10.1: ``bsub`` (script on standard input) / one ``bjobs -json -o`` / ``bkill``.

Status is one ``bjobs -json -o "<fields>" <ids>``: a JSON document whose
``RECORDS`` hold one object per id, upper-case field names, every value a
string; an id LSF does not know (any more) comes back as a record with an
``ERROR`` ("Job <7> is not found") and makes ``bjobs`` exit 255 while still
printing the others. Ended jobs stay visible for ``CLEAN_PERIOD`` (1 h by
default) as ``DONE`` or ``EXIT`` with their exit code and reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..commands import CommandResult
from ..request import JobRequest
from ..states import JobState, JobStatus
from .base import Backend, JobScript, QueryError, SubmitError

__all__ = ["BJOBS_FIELDS", "LSFBackend"]

#: the ``bjobs -o`` fields asked for, in order
BJOBS_FIELDS = ("jobid", "stat", "exec_host", "exit_code", "exit_reason", "pend_reason", "queue")

LSF_STATES: dict[str, JobState] = {
    "PEND": JobState.PENDING,
    "WAIT": JobState.PENDING,
    "PSUSP": JobState.PENDING,
    "USUSP": JobState.PENDING,
    "SSUSP": JobState.PENDING,
    "PROV": JobState.PENDING,
    "RUN": JobState.RUNNING,
    "DONE": JobState.COMPLETED,
    "EXIT": JobState.FAILED,
    "ZOMBI": JobState.FAILED,
    "UNKWN": JobState.UNKNOWN,
}

LSF_REASONS: dict[str, str] = {
    "PSUSP": "held (suspended while pending)",
    "USUSP": "the job is suspended",
    "SSUSP": "the job is suspended by the system",
    "TERM_RUNLIMIT": "the job reached its time limit",
    "TERM_MEMLIMIT": "the job reached its memory limit",
    "TERM_OWNER": "the job was killed by its owner",
    "TERM_ADMIN": "the job was killed by an administrator",
}


def _minutes(seconds: int) -> str:
    minutes = -(-seconds // 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def _first_host(exec_host: str) -> str | None:
    """``4*node1:2*node2`` -> ``node1``; ``-`` or empty -> None."""
    first = exec_host.strip().split(":")[0].split("*")[-1]
    return first if first and first != "-" else None


def _slots(request: JobRequest) -> list[str]:
    """``-n`` (slots: cpus per task x tasks) and ``-R`` with the memory and the spread over hosts
    (``span[hosts=1]`` on one node, ``span[ptile=...]`` slots per host on several)."""
    per_node = request.ntasks_per_node
    tasks = request.ntasks or request.nodes * (per_node or 1)
    if per_node is None and request.nodes > 1:
        per_node = -(-tasks // request.nodes)
    span = "span[hosts=1]" if per_node is None else f"span[ptile={per_node * request.cpus}]"
    return [f"-n {tasks * request.cpus}", f'-R "rusage[mem={request.memory}MB] {span}"']


class LSFBackend(Backend):
    """IBM Spectrum LSF 10.1 (recorded formats and a fake CLI; not tested live)."""

    name = "lsf"
    template = "lsf.sh.j2"
    directive_prefix = "#BSUB"
    state_map = LSF_STATES
    reasons = LSF_REASONS
    job_id_placeholder = "%J"
    job_id_env = "LSB_JOBID"
    default_commands = {"bsub": "bsub", "bjobs": "bjobs", "bkill": "bkill"}
    cancel_gone_markers = ("already finished", "No matching job found")
    renders = frozenset({"nodes", "ntasks", "ntasks_per_node", "gpus_per_task"})
    lacks = {
        "partition": "an LSF job goes to one queue (-q)",
        "gres": "LSF resources are site-defined rusage[] strings: add them with job_extra_directives",
    }

    def submit_argv(self, request: JobRequest) -> list[str]:
        return [self.cmd("bsub")]

    def parse_submit(self, result: CommandResult) -> str:
        match = re.search(r"Job <(\d+)> is submitted", result.stdout)
        if not result.ok or not match:
            text = (result.stderr.strip() or result.stdout.strip()).removesuffix("Job not submitted.").strip()
            raise SubmitError(text or f"bsub exited {result.returncode}")
        return match.group(1)

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        return [self.cmd("bjobs"), "-json", "-o", " ".join(BJOBS_FIELDS), *job_ids]

    def _status(self, record: Mapping[str, Any]) -> JobStatus:
        job_id = str(record.get("JOBID", ""))
        native = str(record.get("STAT", "")).strip()
        state = self.map_state(native)
        exit_reason = str(record.get("EXIT_REASON", "")).strip()
        code_text = str(record.get("EXIT_CODE", "")).strip()
        exit_code: int | None = int(code_text) if code_text.isdigit() else None
        reason: str | None = native if native in LSF_REASONS else None
        if state is JobState.COMPLETED:
            exit_code = 0 if exit_code is None else exit_code
        elif state is JobState.FAILED:
            term = exit_reason.split(":")[0].strip()
            if term == "TERM_RUNLIMIT":
                state = JobState.TIMEOUT
            elif term in ("TERM_OWNER", "TERM_ADMIN"):
                state = JobState.CANCELLED
            reason = term or None
        elif state is JobState.PENDING and not reason:
            reason = str(record.get("PEND_REASON", "")).strip().rstrip(";") or None
        return JobStatus(
            job_id=job_id,
            state=state,
            host=_first_host(str(record.get("EXEC_HOST", ""))) if state is not JobState.PENDING else None,
            reason=reason,
            exit_code=exit_code if state.is_final else None,
            partition=str(record.get("QUEUE", "")) or None,
            native_state=native,
        )

    def parse_status(self, result: CommandResult, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        try:
            data = json.loads(result.stdout) if result.stdout.strip() else None
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("RECORDS"), list):
            raise QueryError(result.stderr.strip() or f"bjobs printed no JSON (exit {result.returncode})")
        found: dict[str, JobStatus] = {}
        for record in data["RECORDS"]:
            if isinstance(record, dict) and "ERROR" not in record and record.get("JOBID"):
                status = self._status(record)
                found[status.job_id] = status
        return {j: found.get(j, JobStatus(job_id=j, state=JobState.NOT_FOUND)) for j in job_ids}

    def cancel_argv(self, job_id: str) -> list[str]:
        return [self.cmd("bkill"), job_id]

    def directives(self, request: JobRequest, job: JobScript) -> list[str]:
        d = [
            f"-J {request.job_name}",
            f"-o {job.output_path}",
            f"-cwd {job.workdir}",
            *_slots(request),
            f"-M {request.memory}MB",
            f"-W {_minutes(request.walltime)}",
        ]
        if request.partition:
            d.append(f"-q {request.partition}")
        if request.account:
            d.append(f"-P {request.account}")
        if request.gpus_per_task is not None:
            d.append(f'-gpu "num={request.gpus_per_task}/task"')
        elif request.gpus:
            d.append(f'-gpu "num={request.gpus}"')
        return d
