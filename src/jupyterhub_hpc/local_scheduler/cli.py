"""``jupyterhub-hpc-local``: the command line of the local scheduler.

::

    jupyterhub-hpc-local [--state-dir DIR] submit [OPTIONS] < script   # prints the job id
    jupyterhub-hpc-local [--state-dir DIR] status [ID ...]             # one JSON object a line
    jupyterhub-hpc-local [--state-dir DIR] cancel ID [ID ...]

``submit`` reads the job script on standard input. Its options may also be
written in the script, one or more per ``#LOCAL`` line before the first
command (as ``#SBATCH`` lines are); options on the command line win:

``--job-name NAME``, ``--output PATH`` (``%j`` is the job id; relative to the
working directory), ``--chdir DIR``, ``--walltime SECONDS`` (or
``[D-]HH:MM:SS``), ``--max-running N`` (the job waits while N jobs run),
``--kill-wait SECONDS`` (between SIGTERM and SIGKILL at the walltime or on cancel).

``status`` prints, for every id it knows (every job without ids), a JSON object
with the keys ``id state reason host exit_code submitted started ended walltime
name user output`` (times in seconds since the epoch; ``ended`` is the expected
end while the job runs). ``state`` is one of ``PENDING RUNNING COMPLETED FAILED
CANCELLED TIMEOUT``; unknown ids are left out. ``cancel`` is asynchronous, like
``scancel``: ``status`` shows CANCELLED once the job has ended.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .store import DEFAULT_STATE_DIR, JobSpec, StateDir, StateDirError, write_json
from .supervisor import sweep

__all__ = ["main", "parse_directives", "parse_duration"]

DIRECTIVE = "#LOCAL"
#: ended jobs of the submitting user are forgotten after a week
KEEP_SECONDS = 7 * 86400
#: how long ``submit`` waits for the supervisor to take charge of a job
HANDOVER_TIMEOUT = 10.0


def parse_duration(text: str) -> int:
    """Seconds from ``"90"`` (seconds) or ``"[D-]HH:MM:SS"``.

    >>> parse_duration("90"), parse_duration("01:00:00"), parse_duration("1-00:00:01")
    (90, 3600, 86401)
    """
    days = 0
    value = text.strip()
    if "-" in value:
        day_text, value = value.split("-", 1)
        if not day_text.isdigit():
            raise argparse.ArgumentTypeError(f"not a duration: {text!r}")
        days = int(day_text)
    parts = value.split(":")
    if not all(p.isdigit() for p in parts) or len(parts) > 3 or (days and len(parts) != 3):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use SECONDS or HH:MM:SS)")
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    seconds += days * 86400
    if seconds < 1:
        raise argparse.ArgumentTypeError("a duration must be at least one second")
    return seconds


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("seconds cannot be negative")
    return value


def add_job_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The job options, with their defaults (directives) or without (command line)."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--job-name", default=default("job"), help="name shown by status")
    parser.add_argument(
        "--output", default=default("jupyterhub-hpc-local-%j.out"), help="output file (%%j: the job id)"
    )
    parser.add_argument("--chdir", default=default(os.getcwd()), help="working directory of the job")
    parser.add_argument(
        "--walltime",
        type=parse_duration,
        default=default(86400),
        help="time limit: SECONDS or [D-]HH:MM:SS (default one day)",
    )
    parser.add_argument(
        "--max-running", type=_positive, default=default(4), help="wait while this many jobs run (default 4)"
    )
    parser.add_argument(
        "--kill-wait",
        type=_seconds,
        default=default(10.0),
        help="seconds between SIGTERM and SIGKILL (default 10)",
    )


class _DirectiveParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)


def parse_directives(script: str) -> list[str]:
    """The arguments of the ``#LOCAL`` lines before the script's first command."""
    args: list[str] = []
    for line in script.splitlines():
        text = line.strip()
        if text.startswith(DIRECTIVE + " ") or text == DIRECTIVE:
            args += shlex.split(text[len(DIRECTIVE) :])
        elif text and not text.startswith("#"):
            break
    return args


def job_options(script: str, given: argparse.Namespace) -> argparse.Namespace:
    """Directive values overridden by the command line's."""
    parser = _DirectiveParser(prog=DIRECTIVE, add_help=False)
    add_job_options(parser, defaults=True)
    try:
        options = parser.parse_args(parse_directives(script))
    except ValueError as exc:
        raise SystemExit(f"jupyterhub-hpc-local: bad {DIRECTIVE} line: {exc}") from None
    for key, value in vars(given).items():
        if key in vars(options):
            setattr(options, key, value)
    return options


def submit(state: StateDir, args: argparse.Namespace) -> int:
    script = sys.stdin.read()
    if not script.strip():
        raise SystemExit("jupyterhub-hpc-local: no job script on standard input")
    options = job_options(script, args)
    workdir = os.path.abspath(options.chdir)
    state.ensure()
    account = pwd.getpwuid(os.getuid())
    state.purge(account.pw_uid, KEEP_SECONDS)
    job_id, job_dir = state.new_job_dir()
    output = os.path.join(workdir, str(options.output).replace("%j", job_id))
    fd = os.open(job_dir / "script", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    with os.fdopen(fd, "w") as f:
        f.write(script)
    spec = JobSpec(
        job_id=job_id,
        name=str(options.job_name),
        user=account.pw_name,
        uid=account.pw_uid,
        submitted=time.time(),
        walltime=int(options.walltime),
        kill_wait=float(options.kill_wait),
        max_running=int(options.max_running),
        output=output,
        workdir=workdir,
    )
    write_json(job_dir / "job.json", asdict(spec))
    with open(job_dir / "supervisor.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "jupyterhub_hpc.local_scheduler.supervisor", str(job_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd="/",
            start_new_session=True,
        )
    deadline = time.monotonic() + HANDOVER_TIMEOUT
    while not (job_dir / "state.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            detail = (job_dir / "supervisor.log").read_text(errors="replace").strip()
            raise SystemExit(f"jupyterhub-hpc-local: job {job_id} did not start its supervisor: {detail}")
        time.sleep(0.01)
    print(job_id, flush=True)
    return 0


def _ids(values: Sequence[str]) -> list[str]:
    return [part for value in values for part in value.split(",") if part]


def status(state: StateDir, args: argparse.Namespace) -> int:
    if state.path.exists():
        state.check()
    ids = _ids(args.ids) or state.job_ids()
    for job_id in ids:
        job = state.load(job_id)
        if job is not None:
            print(json.dumps(job.describe(), sort_keys=True))
    return 0


def cancel(state: StateDir, args: argparse.Namespace) -> int:
    failed = 0
    for job_id in _ids(args.ids):
        job = state.load(job_id)
        if job is None:
            print(f"jupyterhub-hpc-local: unknown job {job_id}", file=sys.stderr)
            failed += 1
            continue
        run = job.effective()
        if run.final and run.reason != "SupervisorLost":
            print(f"jupyterhub-hpc-local: job {job_id} already ended ({run.state})", file=sys.stderr)
            continue
        if job.run.supervisor is not None and job.run.supervisor.alive():
            try:
                os.kill(job.run.supervisor.pid, signal.SIGTERM)
            except PermissionError:
                print(f"jupyterhub-hpc-local: job {job_id} belongs to {job.spec.user}", file=sys.stderr)
                failed += 1
        else:
            sweep(state.marker(job_id))
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="jupyterhub-hpc-local", description="A batch scheduler for this machine (jupyterhub-hpc)."
    )
    parser.add_argument(
        "--state-dir",
        default=os.environ.get("JUPYTERHUB_HPC_LOCAL_DIR", DEFAULT_STATE_DIR),
        help=f"the scheduler's state directory (default $JUPYTERHUB_HPC_LOCAL_DIR or {DEFAULT_STATE_DIR})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_job_options(
        sub.add_parser("submit", help="queue the job script read from standard input"), defaults=False
    )
    sub.add_parser("status", help="the state of jobs, as JSON lines").add_argument("ids", nargs="*")
    sub.add_parser("cancel", help="cancel jobs").add_argument("ids", nargs="+")
    args = parser.parse_args(argv)
    # the queue's records are read by every user's supervisor (who runs, who waits), whatever
    # umask the caller has (jobs are submitted with 077); the job's output is opened 0600 itself
    os.umask(0o022)
    state = StateDir(Path(args.state_dir))
    command = {"submit": submit, "status": status, "cancel": cancel}[args.command]
    try:
        code = command(state, args)
    except StateDirError as exc:
        raise SystemExit(f"jupyterhub-hpc-local: {exc}") from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
