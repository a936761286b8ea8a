"""Grid Engine (Son of Grid Engine 8.1.x, Univa/Altair Grid Engine): ``qsub -terse`` /
one ``qstat -xml`` / ``qdel``.

Status is **one** ``qstat -u '*' -xml`` for every job of the cluster (Grid Engine
cannot list several given job ids in the short format; ``qstat -j`` is one
detailed record per job). Jobs leave ``qstat`` the moment they end, so the exit
status comes from the marker the job script writes last (accounting, ``qacct``,
is written up to ~15 s late and answers about one job per call).

Grid Engine states are letter sets, case-sensitive: ``qw``, ``hqw``, ``Eqw``,
``r``, ``t``, ``Rr``, ``dr``, ``s``/``S``/``T`` (suspended). The parser reads
every ``job_list`` element wherever it is nested, so the flat layout of SGE 8.1
and the per-queue layout of ``qstat -f -xml`` (and of Univa/Altair GE) both work;
Univa's fractional seconds in times are accepted.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import ClassVar

from ..commands import CommandResult
from ..request import JobRequest, format_walltime
from ..states import JobState, JobStatus
from .base import Backend, JobScript, QueryError, SubmitError

__all__ = ["SGEBackend", "parse_sge_state", "parse_sge_time"]

SGE_REASONS: dict[str, str] = {
    "held": "held (by you, an administrator or a dependency)",
    "error": "the job is in an error state: the scheduler could not start it (see `qstat -j` for why)",
    "suspended": "the job is suspended",
    "waiting": "waiting for free slots",
}


def parse_sge_state(native: str) -> tuple[JobState, str | None]:
    """A Grid Engine state letter set -> (state, reason key).

    >>> parse_sge_state("Eqw"), parse_sge_state("dr")[0], parse_sge_state("hqw")[1]
    ((<JobState.FAILED: 'FAILED'>, 'error'), <JobState.COMPLETING: 'COMPLETING'>, 'held')
    """
    letters = native.strip()
    if not letters:
        return JobState.UNKNOWN, None
    if "E" in letters:
        return JobState.FAILED, "error"
    if "d" in letters:
        return JobState.COMPLETING, None
    if any(c in letters for c in "sST"):
        return JobState.PENDING, "suspended"
    if "h" in letters:
        return JobState.PENDING, "held"
    if "r" in letters or "t" in letters:
        return JobState.RUNNING, None
    if "q" in letters or "w" in letters:
        return JobState.PENDING, "waiting"
    return JobState.UNKNOWN, None


def parse_sge_time(text: str | None) -> datetime | None:
    """``2026-11-26T01:41:24`` (SGE) or ``2019-03-28T11:25:33.574`` (Univa) -> datetime."""
    if not text or not text.strip():
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


class SGEBackend(Backend):
    """Son of Grid Engine 8.1.9 (tested live), Univa/Altair Grid Engine (recorded format)."""

    name = "sge"
    template = "sge.sh.j2"
    directive_prefix = "#$"
    state_map: ClassVar[Mapping[str, JobState]] = {}
    reasons = SGE_REASONS
    job_id_placeholder = "$JOB_ID"
    job_id_env = "JOB_ID"
    default_commands = {"qsub": "qsub", "qstat": "qstat", "qdel": "qdel"}
    # qdel writes its answers, errors included, to standard output
    cancel_gone_markers = ("does not exist",)
    lacks = {
        "nodes": "its jobs take slots on one host (-pe smp); multi-host environments are site-defined",
        "partition": "a Grid Engine job is given one queue here (-q)",
        "ntasks": "Grid Engine counts slots, not tasks: set cpus",
        "ntasks_per_node": "Grid Engine counts slots, not tasks: set cpus",
        "gpus_per_task": "Grid Engine has no tasks: set gpus",
        "gres": "Grid Engine consumables are site-defined: add them with job_extra_directives (-l NAME=N)",
    }

    def map_state(self, native: str) -> JobState:
        return parse_sge_state(native)[0]

    def submit_argv(self, request: JobRequest) -> list[str]:
        return [self.cmd("qsub"), "-terse"]

    def parse_submit(self, result: CommandResult) -> str:
        if not result.ok:
            message = (result.stderr.strip() or result.stdout.strip()).removesuffix("Exiting.").strip()
            raise SubmitError(message or f"qsub exited {result.returncode}")
        lines = [ln.strip() for ln in result.stdout.splitlines() if ln.strip()]
        # -terse prints "7" (or "7.1-10:1" for an array job)
        job_id = lines[-1].split(".")[0] if lines else ""
        if not job_id.isdigit():
            raise SubmitError(f"qsub printed no job id: {result.stdout.strip()!r}")
        return job_id

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        return [self.cmd("qstat"), "-u", "*", "-xml"]

    def parse_status(self, result: CommandResult, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if not result.ok:
            raise QueryError(result.stderr.strip() or f"qstat exited {result.returncode}")
        try:
            root = ET.fromstring(result.stdout)
        except ET.ParseError as exc:
            raise QueryError(f"qstat -xml printed no XML: {exc}") from None
        wanted = set(job_ids)
        found: dict[str, JobStatus] = {}
        for element in root.iter("job_list"):
            job_id = (element.findtext("JB_job_number") or "").strip()
            if job_id not in wanted or job_id in found:
                continue  # an array job lists one element per task: the first one speaks
            native = (element.findtext("state") or "").strip()
            state, reason = parse_sge_state(native)
            queue = (element.findtext("queue_name") or "").strip()
            found[job_id] = JobStatus(
                job_id=job_id,
                state=state,
                host=queue.partition("@")[2] or None,
                reason=reason,
                partition=queue.partition("@")[0] or None,
                native_state=native,
            )
        return {j: found.get(j, JobStatus(job_id=j, state=JobState.NOT_FOUND)) for j in job_ids}

    def cancel_argv(self, job_id: str) -> list[str]:
        return [self.cmd("qdel"), job_id]

    def directives(self, request: JobRequest, job: JobScript) -> list[str]:
        d = [
            f"-N {request.job_name}",
            f"-o {job.output_path}",
            "-j y",
            f"-wd {job.workdir}",
            "-S /bin/bash",
            "-V",
            f"-l h_rt={format_walltime(request.walltime)}",
        ]
        if request.cpus > 1:
            d.append(f"-pe smp {request.cpus}")
        # h_vmem is per slot in Grid Engine
        d.append(f"-l h_vmem={-(-request.memory // request.cpus)}M")
        if request.partition:
            d.append(f"-q {request.partition}")
        if request.account:
            d.append(f"-A {request.account}")
        if request.gpus:
            d.append(f"-l gpu={request.gpus}")
        return d
