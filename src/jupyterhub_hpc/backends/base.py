"""The scheduler-backend contract: argv builders, pure parsers, a state map and a template.

A backend is mostly data. Everything that runs processes, caches or waits
lives once in shared code (:mod:`jupyterhub_hpc.client`, :mod:`jupyterhub_hpc.commands`,
:mod:`jupyterhub_hpc.watcher`, :mod:`jupyterhub_hpc.spawner`); a backend only says
*which* argv to run and *how to read* what comes back:

- ``submit_argv(request)`` / ``parse_submit(result) -> job id``: the job script
  goes to standard input (``submit_input``: HTCondor's submit description first);
- ``status_argv(job_ids)`` / ``parse_status(result, job_ids) -> {id: JobStatus}``:
  **one** call for every job of the hub; a job the scheduler answered about but
  does not list is ``NOT_FOUND``; a failed call raises :class:`QueryError`;
- ``cancel_argv(job_id)`` / ``parse_cancel(result)``;
- optionally ``accounting_argv(job_ids)`` / ``parse_accounting`` for jobs that
  left the live queue, and ``limits_argv()`` / ``parse_limits`` (partitions and node
  sizes, :mod:`.limits`) and ``associations_argv()`` / ``parse_associations``, and
  ``reservations_argv()`` / ``parse_reservations`` (maintenance windows,
  :mod:`.reservations`) with ``partition_nodes_argv()`` / ``parse_partition_nodes``;
- ``directives(request, job)``: the scheduler directive arguments for a validated
  request; the template (``template``) writes them, quoted values everywhere else.
"""

from __future__ import annotations

import abc
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ..commands import CommandResult
from ..render import Safe, directive_lines, render_script
from ..request import JobRequest, RequestError
from ..states import JobState, JobStatus
from .limits import Associations, PartitionInfo
from .reservations import Reservation

__all__ = ["OPTIONAL_FIELDS", "Backend", "JobScript", "QueryError", "SubmitError", "asked_fields"]

#: request fields that not every scheduler has, in the words a refusal uses for them
OPTIONAL_FIELDS: Mapping[str, str] = {
    "nodes": "more than one node",
    "partition": "several partitions",
    "ntasks": "a task count (ntasks)",
    "ntasks_per_node": "tasks per node (ntasks_per_node)",
    "gpus_per_task": "GPUs per task (gpus_per_task)",
    "gres": "generic resources (gres)",
}


def asked_fields(request: JobRequest) -> list[str]:
    """The :data:`OPTIONAL_FIELDS` that ``request`` asks for (a value other than the default)."""
    asked = {
        "nodes": request.nodes > 1,
        "partition": len(request.partitions) > 1,
        "ntasks": request.ntasks is not None,
        "ntasks_per_node": request.ntasks_per_node is not None,
        "gpus_per_task": request.gpus_per_task is not None,
        "gres": bool(request.gres),
    }
    return [name for name in OPTIONAL_FIELDS if asked[name]]


class SubmitError(RuntimeError):
    """The scheduler refused a job; the message is the scheduler's own words."""


class QueryError(RuntimeError):
    """A status query failed: every job it asked about is UNKNOWN, none is gone."""


@dataclass(frozen=True)
class JobScript:
    """Everything but the resources that goes into a job script.

    ``environment`` is written into the script as quoted ``export`` lines; it
    must not contain secrets (those travel in the submit process's environment).
    ``command`` is the launcher argv, ``path_prepend`` directories put in front of
    ``PATH`` inside the job, ``prologue``/``epilogue`` admin-written shell text.
    """

    workdir: str
    output_path: str
    command: Sequence[str]
    environment: Mapping[str, str] = field(default_factory=dict)
    path_prepend: Sequence[str] = ()
    prologue: str = ""
    epilogue: str = ""
    extra_directives: Sequence[str] = ()
    directives_skip: Sequence[str] = ()
    #: the server's umask (the script starts with 077, so that its output is private)
    umask: str = "0022"


#: The line a job script writes last, from an EXIT trap, so that an exit status
#: survives the scheduler forgetting the job. Read back by :func:`parse_exit_marker`.
EXIT_MARKER = "jupyterhub-hpc-exit-status="


def parse_exit_marker(text: str) -> int | None:
    """The exit status from the last marker line of a job's output, if any.

    >>> parse_exit_marker("hello\\njupyterhub-hpc-exit-status=3\\n")
    3
    """
    for line in reversed(text.splitlines()):
        if line.startswith(EXIT_MARKER):
            value = line[len(EXIT_MARKER) :].strip()
            return int(value) if value.isdigit() else None
    return None


class Backend(abc.ABC):
    """Base class of scheduler backends; see the module docstring for the contract."""

    #: short name, used in spawner state and the ``backend`` option
    name: ClassVar[str]
    #: template file name in ``backends/templates``
    template: ClassVar[str]
    #: the directive prefix in job scripts (``#SBATCH``)
    directive_prefix: ClassVar[str]
    #: native state code -> :class:`JobState`
    state_map: ClassVar[Mapping[str, JobState]]
    #: native reason code -> words a scientist understands
    reasons: ClassVar[Mapping[str, str]] = {}
    #: placeholder the scheduler replaces by the job id in output paths
    job_id_placeholder: ClassVar[str] = "%j"
    #: default program names; ``commands`` in the constructor overrides them
    default_commands: ClassVar[Mapping[str, str]] = {}
    #: texts in a failed cancel's output meaning the job is already gone (not an error)
    cancel_gone_markers: ClassVar[tuple[str, ...]] = ()
    #: for schedulers that cannot put the job id into an output path (PBS): the job's
    #: environment variable holding its id; the script then redirects its own output
    job_id_variable: ClassVar[str | None] = None
    #: the variable holding the job id inside a job whose output file the scheduler
    #: writes itself (``SLURM_JOB_ID``): the script makes that file private first
    job_id_env: ClassVar[str | None] = None
    #: whether the script must ``cd`` to the working directory itself (no directive for it)
    script_changes_directory: ClassVar[bool] = True
    #: whether the directives are lines of the script (``#SBATCH ...``); HTCondor's make
    #: a submit description of their own (``submit_input``)
    directives_in_script: ClassVar[bool] = True

    #: the :data:`OPTIONAL_FIELDS` this backend renders; a request asking for another one is
    #: refused by :meth:`check_request` (``lacks`` says why, per field)
    renders: ClassVar[frozenset[str]] = frozenset()
    lacks: ClassVar[Mapping[str, str]] = {}

    def __init__(self, *, cluster: str = "", commands: Mapping[str, str] | None = None) -> None:
        self.cluster = cluster
        self.commands = {**self.default_commands, **(commands or {})}

    def key(self) -> tuple[str, ...]:
        """Identifies the scheduler instance: one shared watcher per key."""
        return (self.name, self.cluster, *sorted(f"{k}={v}" for k, v in self.commands.items()))

    def cmd(self, name: str) -> str:
        return self.commands[name]

    def stage_argv(
        self, argv: Sequence[str], *, description: bool = False, env_file: bool = False
    ) -> list[str]:
        """argv that writes the job script (standard input) to a file as the user, then
        runs ``argv`` with ``{script}`` replaced by its path (``jupyterhub-hpc-stage``,
        :mod:`jupyterhub_hpc.singleuser.stage`); with ``description``, standard input is
        a submit description for ``argv``, then the script (``submit_input``). The
        Python that runs it is the command ``python`` (default: the hub's own): run by
        module path, it needs no console script on the user's ``PATH``."""
        options = [*(["--description"] if description else []), *(["--env-file"] if env_file else [])]
        return [
            self.commands.get("python", sys.executable),
            "-m",
            "jupyterhub_hpc.singleuser.stage",
            *options,
            "--",
            *argv,
        ]

    # -- argv builders and parsers (pure) -----------------------------------------
    @abc.abstractmethod
    def submit_argv(self, request: JobRequest) -> list[str]: ...

    @abc.abstractmethod
    def parse_submit(self, result: CommandResult) -> str: ...

    def parse_submit_cluster(self, result: CommandResult) -> str | None:
        """The cluster the scheduler placed the job on, when it says so (Slurm's
        ``--clusters`` with several names); the spawner keeps it with the job id."""
        return None

    @abc.abstractmethod
    def status_argv(self, job_ids: Sequence[str]) -> list[str]: ...

    @abc.abstractmethod
    def parse_status(self, result: CommandResult, job_ids: Sequence[str]) -> dict[str, JobStatus]: ...

    @abc.abstractmethod
    def cancel_argv(self, job_id: str) -> list[str]: ...

    def parse_cancel(self, result: CommandResult) -> None:
        """Raise when a cancel failed for a reason other than "already gone": a text of
        ``cancel_gone_markers`` in its output (standard output or error)."""
        text = f"{result.stdout}\n{result.stderr}"
        if result.ok or any(marker in text for marker in self.cancel_gone_markers):
            return
        raise SubmitError(text.strip() or f"{self.name} cancel exited {result.returncode}")

    def accounting_argv(self, job_ids: Sequence[str]) -> list[str] | None:
        """argv asking accounting about jobs that left the live queue; None if unsupported."""
        return None

    def parse_accounting(self, result: CommandResult, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        return {}

    def limits_argv(self) -> list[str] | None:
        """argv asking for the partitions (queues) and their node sizes; None when this
        backend has no such query (the form then shows the admin's ``partition_limits``)."""
        return None

    def parse_limits(self, result: CommandResult) -> dict[str, PartitionInfo]:
        """The partitions from :meth:`limits_argv`'s output; raises ``ValueError``."""
        return {}

    def associations_argv(self) -> list[str] | None:
        """argv asking for the accounts and QoS each user may use; None if unsupported."""
        return None

    def parse_associations(self, result: CommandResult) -> dict[str, Associations]:
        """{user: Associations} from :meth:`associations_argv`'s output."""
        return {}

    def reservations_argv(self) -> list[str] | None:
        """argv listing the scheduler's reservations; None when it has no such concept
        (then there are no reservations: nothing is made up)."""
        return None

    def parse_reservations(self, result: CommandResult) -> list[Reservation]:
        """The reservations from :meth:`reservations_argv`'s output; raises ``ValueError``."""
        return []

    def partition_nodes_argv(self) -> list[str] | None:
        """argv listing the node names of each partition (to tell which partitions a
        reservation of nodes affects); None if unsupported."""
        return None

    def parse_partition_nodes(self, result: CommandResult) -> dict[str, frozenset[str]]:
        """{partition: node names} from :meth:`partition_nodes_argv`'s output."""
        return {}

    @abc.abstractmethod
    def directives(self, request: JobRequest, job: JobScript) -> list[str]:
        """Directive arguments (without the prefix) for a validated request."""

    # -- shared behaviour ------------------------------------------------------------
    def check_request(self, request: JobRequest) -> None:
        """Raise :class:`RequestError` naming the first field of ``request`` this backend cannot
        put into a job (several partitions on PBS, ``gres`` on LSF, ...): refused before
        anything is submitted, never silently left out. Also called by :meth:`render`."""
        for name in asked_fields(request):
            if name not in self.renders:
                why = self.lacks.get(name, "its scheduler has no such request")
                raise RequestError(
                    name, f"the {self.name} backend cannot ask for {OPTIONAL_FIELDS[name]}: {why}"
                )

    def map_state(self, native: str) -> JobState:
        return self.state_map.get(native.strip().upper(), JobState.UNKNOWN)

    def describe_reason(self, reason: str | None) -> str | None:
        """Plain words for a native reason code (the code itself when unknown)."""
        if not reason or reason in ("None", "(null)", "n/a"):
            return None
        return self.reasons.get(reason, reason)

    def output_path(self, pattern: str, job_id: str | None = None) -> str:
        """The job output path: ``{job_id}`` becomes the scheduler placeholder
        (when rendering) or the real id (when the hub reads the file)."""
        return pattern.replace("{job_id}", job_id if job_id else self.job_id_placeholder)

    def _runtime_path(self, output_path: str, variable: str) -> str:
        """``output_path`` as shell text, its placeholder replaced by ``$variable``."""
        parts = output_path.split(self.job_id_placeholder)
        return f'"${{{variable}}}"'.join(shlex.quote(p) if p else "" for p in parts)

    def output_protect(self, output_path: str) -> str:
        """Shell text making the output file the scheduler created private (0600) before
        anything else is written to it; '' when the script creates it itself (under
        its ``umask 077``) or the job id variable is unknown. The submit command runs
        with umask 077 too, which Slurm applies when it creates the file."""
        if self.job_id_variable or not self.job_id_env:
            return ""
        return f"chmod 0600 -- {self._runtime_path(output_path, self.job_id_env)} 2>/dev/null || true"

    def output_redirect(self, output_path: str) -> str:
        """Shell text sending the rest of the script's output to ``output_path``, with
        the scheduler's placeholder replaced by the job-id variable; '' when the
        scheduler writes the output file itself."""
        if not self.job_id_variable:
            return ""
        return f"exec >>{self._runtime_path(output_path, self.job_id_variable)} 2>&1"

    def submit_input(self, request: JobRequest, job: JobScript, template: str | None = None) -> str:
        """What the submit command (``submit_argv``) reads on standard input: the job
        script (:meth:`render`)."""
        return self.render(request, job, template)

    def render(self, request: JobRequest, job: JobScript, template: str | None = None) -> str:
        """The complete job script for ``request``: a pure function of its inputs.
        ``template`` (a path) replaces the backend's own template."""
        self.check_request(request)
        lines = (
            directive_lines(
                self.directive_prefix,
                self.directives(request, job),
                skip=job.directives_skip,
                extra=job.extra_directives,
            )
            if self.directives_in_script
            else []
        )
        return render_script(
            template or self.template,
            {
                "directives": lines,
                "request": request,
                "job": job,
                "environment": dict(job.environment),
                "path_prepend": list(job.path_prepend),
                "prologue": Safe(job.prologue),
                "epilogue": Safe(job.epilogue),
                "command": list(job.command),
                "exit_marker": Safe(EXIT_MARKER),
                "output_redirect": Safe(self.output_redirect(job.output_path)),
                "output_protect": Safe(self.output_protect(job.output_path)),
                "change_directory": self.script_changes_directory,
            },
        )
