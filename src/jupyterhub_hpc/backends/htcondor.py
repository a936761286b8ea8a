"""HTCondor: ``condor_submit`` / one ``condor_q -json`` / ``condor_history -json`` / ``condor_rm``.

HTCondor takes a *submit description*, not a job script. The backend renders
both (:meth:`HTCondorBackend.submit_input`): the description (``key = value``
commands, each value written by HTCondor's rules, :func:`condor_value`; the
admin's ``job_extra_directives`` are description commands, e.g.
``["+ProjectName = \\"physics\\""]``; then ``queue``) and a job script without
directives. :mod:`jupyterhub_hpc.singleuser.stage` (``--description``), run as
the user, writes the script to a file and runs ``condor_submit -terse -append
executable=<that file> -`` with the description on standard input: no shell.

Job ids are ``cluster.proc`` (``123.0``). ``condor_q`` lists a job while it is
in the queue; a job that left it is looked up with ``condor_history``. There is
no job-id placeholder in output paths: the script redirects its own output to
``job_output`` (the description sets ``JUPYTERHUB_HPC_JOB_ID``). There is no
native time limit: the walltime becomes a ``periodic_remove`` expression, and
a job removed by it is reported as TIMEOUT.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..commands import CommandResult
from ..render import check_directive
from ..request import JobRequest
from ..singleuser.stage import pack
from ..states import JobState, JobStatus
from .base import Backend, JobScript, QueryError, SubmitError

__all__ = ["CONDOR_ATTRIBUTES", "HTCondorBackend", "condor_value"]

CONDOR_ATTRIBUTES = (
    "ClusterId",
    "ProcId",
    "JobStatus",
    "RemoteHost",
    "LastRemoteHost",
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
    "HoldReason",
    "RemoveReason",
    "EnteredCurrentStatus",
)

CONDOR_STATES: dict[str, JobState] = {
    "1": JobState.PENDING,  # Idle
    "2": JobState.RUNNING,  # Running
    "3": JobState.CANCELLED,  # Removed
    "4": JobState.COMPLETED,  # Completed
    "5": JobState.FAILED,  # Held: never runs again without an administrator
    "6": JobState.COMPLETING,  # Transferring output
    "7": JobState.PENDING,  # Suspended
}

CONDOR_REASONS: dict[str, str] = {
    "idle": "waiting for a matching machine",
    "suspended": "the job is suspended",
    "walltime": "the job reached its time limit",
}


def condor_value(value: object) -> str:
    """``value`` as the right-hand side of a submit command.

    HTCondor takes the rest of the line, blanks at both ends trimmed; a backslash
    at the end continues the line, and ``$(NAME)`` is a macro: a literal ``$`` is
    ``$(DOLLAR)``. A value that cannot be written so (empty, blanks at an end, a
    trailing backslash, a line break or another control character) is refused.

    >>> condor_value("/home/a b/$x")
    '/home/a b/$(DOLLAR)x'
    """
    text = str(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(f"control character in a submit description value: {text!r}")
    if not text or text != text.strip() or text.endswith("\\"):
        raise ValueError(f"not a value a submit description can hold: {text!r}")
    return text.replace("$", "$(DOLLAR)")


def _host(value: object) -> str | None:
    """``slot1@node1.example.org`` -> ``node1.example.org``."""
    text = str(value or "").strip()
    return text.rpartition("@")[2] or None


class HTCondorBackend(Backend):
    """HTCondor 10.x-24.x (recorded formats and a fake CLI; not tested live)."""

    name = "htcondor"
    template = "htcondor.sh.j2"
    directive_prefix = "#HTCONDOR"
    state_map = CONDOR_STATES
    reasons = CONDOR_REASONS
    job_id_placeholder = "$(Cluster).$(Process)"
    job_id_variable = "JUPYTERHUB_HPC_JOB_ID"
    directives_in_script = False
    default_commands = {
        "condor_submit": "condor_submit",
        "condor_q": "condor_q",
        "condor_history": "condor_history",
        "condor_rm": "condor_rm",
    }
    cancel_gone_markers = ("Couldn't find", "already")
    lacks = {
        "nodes": "an HTCondor vanilla job runs in one slot",
        "partition": "HTCondor has no partitions",
        "ntasks": "an HTCondor vanilla job is one task",
        "ntasks_per_node": "an HTCondor vanilla job is one task",
        "gpus_per_task": "an HTCondor vanilla job is one task: set gpus (request_gpus)",
        "gres": "custom machine resources are site-defined: add request_NAME with job_extra_directives",
    }

    def submit_argv(self, request: JobRequest) -> list[str]:
        # stage: the description (standard input) to condor_submit, the script to a file
        submit = [self.cmd("condor_submit"), "-terse", "-append", "executable={script}", "-"]
        return self.stage_argv(submit, description=True)

    def description(self, request: JobRequest, job: JobScript) -> str:
        """The submit description: the commands of :meth:`directives` (less those
        ``job_directives_skip`` names), the admin's ``job_extra_directives``, ``queue``.
        The executable is the script's file, named on the command line."""
        commands = [d for d in self.directives(request, job) if not any(s in d for s in job.directives_skip)]
        lines = [check_directive(command) for command in [*commands, *job.extra_directives]]
        return "\n".join([*lines, "queue", ""])

    def submit_input(self, request: JobRequest, job: JobScript, template: str | None = None) -> str:
        """The description, then the job script, framed for ``stage --description``."""
        return pack(self.description(request, job), self.render(request, job, template))

    def parse_submit(self, result: CommandResult) -> str:
        # -terse prints "123.0 - 123.0" (first and last job of the cluster)
        words = result.stdout.split()
        job_id = words[0] if words else ""
        if not result.ok or not job_id.replace(".", "").isdigit():
            raise SubmitError(result.stderr.strip() or f"condor_submit printed no job id: {result.stdout!r}")
        return job_id

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        return [self.cmd("condor_q"), "-json", "-attributes", ",".join(CONDOR_ATTRIBUTES), *job_ids]

    def _status(self, ad: Mapping[str, Any]) -> JobStatus:
        job_id = f"{ad.get('ClusterId')}.{ad.get('ProcId')}"
        native = str(ad.get("JobStatus", ""))
        state = self.map_state(native)
        reason: str | None = {"1": "idle", "7": "suspended"}.get(native)
        exit_code: int | None = None
        if ad.get("ExitBySignal") is True and isinstance(ad.get("ExitSignal"), int):
            exit_code = 128 + int(ad["ExitSignal"])
        elif isinstance(ad.get("ExitCode"), int):
            exit_code = int(ad["ExitCode"])
        if state is JobState.COMPLETED and exit_code:
            state = JobState.FAILED
        elif state is JobState.CANCELLED and "PeriodicRemove" in str(ad.get("RemoveReason", "")):
            state, reason = JobState.TIMEOUT, "walltime"
        elif state is JobState.CANCELLED:
            reason = str(ad.get("RemoveReason") or "") or None
        elif native == "5":
            reason = str(ad.get("HoldReason") or "held") or None
        host = _host(ad.get("RemoteHost")) or (_host(ad.get("LastRemoteHost")) if state.is_final else None)
        return JobStatus(
            job_id=job_id,
            state=state,
            host=host if state is not JobState.PENDING else None,
            reason=reason,
            exit_code=exit_code if state.is_final else None,
            native_state=native,
        )

    def _parse_ads(self, result: CommandResult, program: str) -> dict[str, JobStatus]:
        if not result.ok:
            raise QueryError(result.stderr.strip() or f"{program} exited {result.returncode}")
        if not result.stdout.strip():
            return {}  # no job matched: condor_q prints nothing at all
        try:
            ads = json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise QueryError(f"{program} -json printed no JSON: {exc}") from None
        if not isinstance(ads, list):
            raise QueryError(f"{program} -json printed no list of job ads")
        found: dict[str, JobStatus] = {}
        for ad in ads:
            if isinstance(ad, dict) and "ClusterId" in ad:
                status = self._status(ad)
                found[status.job_id] = status
        return found

    def parse_status(self, result: CommandResult, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        found = self._parse_ads(result, "condor_q")
        return {j: found.get(j, JobStatus(job_id=j, state=JobState.NOT_FOUND)) for j in job_ids}

    def accounting_argv(self, job_ids: Sequence[str]) -> list[str] | None:
        return [self.cmd("condor_history"), "-json", "-attributes", ",".join(CONDOR_ATTRIBUTES), *job_ids]

    def parse_accounting(self, result: CommandResult, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        found = self._parse_ads(result, "condor_history")
        return {j: s for j, s in found.items() if j in job_ids}

    def cancel_argv(self, job_id: str) -> list[str]:
        return [self.cmd("condor_rm"), job_id]

    def directives(self, request: JobRequest, job: JobScript) -> list[str]:
        d = [
            "universe = vanilla",
            f"batch_name = {condor_value(request.job_name)}",
            # the script writes its own output (one file for both streams, named by the job id)
            "output = /dev/null",
            "error = /dev/null",
            f"initialdir = {condor_value(job.workdir)}",
            "getenv = True",
            f'environment = "{self.job_id_variable}=$(Cluster).$(Process)"',
            f"request_cpus = {request.cpus}",
            f"request_memory = {request.memory}",
            f"periodic_remove = (JobStatus == 2) && (time() - EnteredCurrentStatus > {request.walltime})",
        ]
        if request.gpus:
            d.append(f"request_gpus = {request.gpus}")
        if request.account:
            d.append(f"accounting_group = {condor_value(request.account)}")
        return d
