"""OAR 2.5: ``oarsub -S`` / one ``oarstat -f -J`` / ``oardel``.

``oarsub -S`` reads the directives from a script *file* and runs that file, with
a clean environment, from the directory in ``$PWD`` (it fails without one). So
the spawner submits through :mod:`jupyterhub_hpc.singleuser.stage`, which writes the script
and a 0600 ``<script>.env`` holding the secrets (the script reads and deletes
it), sets ``PWD`` and runs ``oarsub``.

Status is one ``oarstat -f -J -j A -j B ...``: a JSON object keyed by job id;
an unknown id is simply absent. ``exit_code`` is a wait status (768 = exit 3).
A job cancelled with ``oardel`` ends in state ``Error`` with a
``FRAG_JOB_REQUEST`` event; one killed at its walltime has a ``WALLTIME`` event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ..commands import CommandResult
from ..request import JobRequest, format_walltime
from ..states import JobState, JobStatus
from .base import Backend, JobScript, QueryError, SubmitError
from .slurm import parse_wait_status

__all__ = ["OARBackend"]

OAR_STATES: dict[str, JobState] = {
    "WAITING": JobState.PENDING,
    "HOLD": JobState.PENDING,
    "TOLAUNCH": JobState.PENDING,
    "TOACKRESERVATION": JobState.PENDING,
    "LAUNCHING": JobState.PENDING,
    "SUSPENDED": JobState.PENDING,
    "RESUMING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "FINISHING": JobState.COMPLETING,
    "TOERROR": JobState.COMPLETING,
    "TERMINATED": JobState.COMPLETED,
    "ERROR": JobState.FAILED,
}

OAR_REASONS: dict[str, str] = {
    "Hold": "held (by you or an administrator)",
    "Launching": "the job is being started on its node",
    "Suspended": "the job is suspended",
    "walltime": "the job reached its time limit",
    "cancelled": "the job was cancelled",
}


def _event_types(attrs: Mapping[str, Any]) -> set[str]:
    events = attrs.get("events")
    if not isinstance(events, list):
        return set()
    return {str(e.get("type", "")) for e in events if isinstance(e, dict)}


class OARBackend(Backend):
    """OAR 2.5.9 (tested live)."""

    name = "oar"
    template = "oar.sh.j2"
    directive_prefix = "#OAR"
    state_map = OAR_STATES
    reasons = OAR_REASONS
    job_id_placeholder = "%jobid%"
    job_id_env = "OAR_JOB_ID"
    default_commands = {"oarsub": "oarsub", "oarstat": "oarstat", "oardel": "oardel"}
    cancel_gone_markers = ("already killed", "is not running", "Terminated")
    renders = frozenset({"nodes", "ntasks_per_node"})
    lacks = {
        "partition": "an OAR job goes to one queue (-q)",
        "ntasks": "OAR asks for resources, not tasks: set nodes and ntasks_per_node",
        "gpus_per_task": "this OAR (2.5) has no GPU resource type",
        "gres": "OAR resource properties are site-defined: add them with job_extra_directives",
    }

    def submit_argv(self, request: JobRequest) -> list[str]:
        return self.stage_argv([self.cmd("oarsub"), "-S", "{script}"], env_file=True)

    def parse_submit(self, result: CommandResult) -> str:
        match = re.search(r"^OAR_JOB_ID=(\d+)\s*$", result.stdout, re.MULTILINE)
        if not result.ok or not match:
            lines = [ln for ln in (result.stderr + "\n" + result.stdout).splitlines() if ln.strip()]
            useful = [ln for ln in lines if not ln.startswith(("[ADMISSION RULE]", "OAR_JOB_ID="))]
            raise SubmitError("\n".join(useful) or f"oarsub exited {result.returncode}")
        return match.group(1)

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        argv = [self.cmd("oarstat"), "-f", "-J"]
        for job_id in job_ids:
            argv += ["-j", job_id]
        return argv

    def _status(self, job_id: str, attrs: Mapping[str, Any]) -> JobStatus:
        native = str(attrs.get("state", ""))
        state = self.map_state(native)
        events = _event_types(attrs)
        reason: str | None = native if native in OAR_REASONS else None
        if state is JobState.FAILED and "FRAG_JOB_REQUEST" in events:
            state, reason = JobState.CANCELLED, "cancelled"
        elif state.is_final and "WALLTIME" in events:
            state, reason = JobState.TIMEOUT, "walltime"
        elif state is JobState.FAILED:
            reason = str(attrs.get("message") or "") or None
        elif state is JobState.PENDING and native == "Waiting":
            reason = str(attrs.get("message") or "") or None
        raw_exit = attrs.get("exit_code")
        exit_code = parse_wait_status(str(raw_exit)) if raw_exit is not None else None
        if state is JobState.COMPLETED and exit_code:
            state = JobState.FAILED
        hosts = attrs.get("assigned_network_address")
        host = str(hosts[0]) if isinstance(hosts, list) and hosts else None
        start = attrs.get("scheduledStart")
        stop = attrs.get("stopTime")
        return JobStatus(
            job_id=job_id,
            state=state,
            host=host if state is not JobState.PENDING else None,
            reason=reason,
            exit_code=exit_code if state.is_final else None,
            expected_start=datetime.fromtimestamp(start) if isinstance(start, int) and start > 0 else None,
            end_time=datetime.fromtimestamp(stop) if isinstance(stop, int) and stop > 0 else None,
            partition=str(attrs.get("queue") or "") or None,
            native_state=native,
        )

    def parse_status(self, result: CommandResult, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if not result.ok:
            raise QueryError(result.stderr.strip() or f"oarstat exited {result.returncode}")
        data: Any = {}
        if result.stdout.strip():  # no known id: oarstat prints nothing
            try:
                data = json.loads(result.stdout)
            except json.JSONDecodeError as exc:
                raise QueryError(f"oarstat -J printed no JSON: {exc}") from None
        if not isinstance(data, dict):
            raise QueryError("oarstat -J printed no JSON object")
        found = {str(k): self._status(str(k), v) for k, v in data.items() if isinstance(v, dict)}
        return {j: found.get(j, JobStatus(job_id=j, state=JobState.NOT_FOUND)) for j in job_ids}

    def cancel_argv(self, job_id: str) -> list[str]:
        return [self.cmd("oardel"), job_id]

    def directives(self, request: JobRequest, job: JobScript) -> list[str]:
        # OAR has no memory request: cores (and their cpusets) are the unit
        cores = request.cpus * (request.ntasks_per_node or 1)
        resources = f"/nodes={request.nodes}/core={cores},walltime={format_walltime(request.walltime)}"
        d = [
            f"-n {request.job_name}",
            f"-O {job.output_path}",
            f"-E {job.output_path}",
            f"-l {resources}",
        ]
        if request.partition:
            d.append(f"-q {request.partition}")
        if request.account:
            d.append(f"--project {request.account}")
        return d
