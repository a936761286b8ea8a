"""The supervisor of one local job: queue, run, enforce the walltime, record the end.

``jupyterhub-hpc-local submit`` starts one supervisor per job, detached (its own
session, standard streams closed), as the submitting user; it outlives the
submitter and the hub. It

1. waits while the scheduler already runs ``max_running`` jobs, or while an
   earlier job waits (first come, first served): PENDING with a reason;
2. runs the script with ``bash`` in its own session, output to the job's output
   file, in the job's working directory: RUNNING;
3. on ``SIGTERM`` (``cancel``) or at the walltime sends ``SIGTERM`` to the job,
   then ``SIGKILL`` after ``kill_wait`` seconds: CANCELLED or TIMEOUT;
4. records the exit status (``128 + N`` for a signal ``N``) and the final state
   in ``state.json``, after killing the job's stragglers (processes carrying the
   job's environment marker, e.g. kernels started in their own session).
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType

from .store import ENV_MARKER, JobSpec, ProcessId, RunState, StateDir, job_processes, write_json

__all__ = ["Supervisor", "main"]

#: seconds between two looks at the queue or at the job
TICK = 0.2
#: seconds stragglers get between SIGTERM and SIGKILL after the job's main process ended
STRAGGLER_WAIT = 2.0


def exit_status(returncode: int) -> int:
    """A shell-style exit status: ``-15`` (killed by SIGTERM) becomes 143."""
    return 128 - returncode if returncode < 0 else returncode


def _signal_all(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def sweep(marker: str, wait: float = STRAGGLER_WAIT) -> None:
    """SIGTERM, then SIGKILL, every process left that carries the job's marker."""
    pids = job_processes(marker)
    if not pids:
        return
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        pids = job_processes(marker)
        if not pids:
            return
        time.sleep(0.1)
    _signal_all(pids, signal.SIGKILL)


class Supervisor:
    """Runs the job ``job_id`` of ``state_dir`` from queue to its recorded end."""

    def __init__(self, state_dir: StateDir, job_id: str) -> None:
        self.state_dir = state_dir
        self.job_id = job_id
        job = state_dir.load(job_id)
        if job is None:
            raise SystemExit(f"jupyterhub-hpc-local: no job {job_id} in {state_dir.path}")
        self.spec: JobSpec = job.spec
        self.dir = state_dir.job_dir(job_id)
        self.marker = state_dir.marker(job_id)
        self.me = ProcessId.of(os.getpid())
        self.cancelled = False
        self.running = RunState(state="PENDING")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.cancelled = True

    def record(self, run: RunState) -> None:
        write_json(self.dir / "state.json", run.to_json())

    # -- queue ---------------------------------------------------------------------------
    def blocker(self) -> str | None:
        """Why this job may not start now (a reason code), or None. Call under the lock."""
        running = 0
        earlier = False
        for job in self.state_dir.jobs():
            if job.spec.job_id == self.job_id:
                continue
            run = job.effective()
            if run.state == "RUNNING":
                running += 1
            elif run.state == "PENDING" and run.supervisor is not None:
                earlier = earlier or int(job.spec.job_id) < int(self.job_id)
        if running >= self.spec.max_running:
            return "JobLimit"
        return "Priority" if earlier else None

    def wait_for_slot(self) -> subprocess.Popen[bytes] | None:
        """Queue until a slot is free, then launch; None when cancelled or not launchable."""
        reason: str | None = "Submitting"
        while not self.cancelled:
            with self.state_dir.lock():
                blocker = self.blocker()
                if blocker is None:
                    return self.launch()
            if blocker != reason:
                reason = blocker
                self.record(RunState(state="PENDING", reason=reason, supervisor=self.me))
            time.sleep(TICK)
        self.record(RunState(state="CANCELLED", supervisor=self.me, ended=time.time()))
        return None

    # -- run -------------------------------------------------------------------------------
    def job_environment(self) -> dict[str, str]:
        env = dict(os.environ)
        account = pwd.getpwuid(os.getuid())
        env.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
        env["JUPYTERHUB_HPC_JOB_ID"] = self.job_id
        env[ENV_MARKER] = self.marker
        return env

    def launch(self) -> subprocess.Popen[bytes] | None:
        """Start the script; record RUNNING, or FAILED when it cannot start."""
        try:
            out = os.open(self.spec.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            os.fchmod(out, 0o600)  # private even when the file existed
        except OSError as exc:
            print(f"jupyterhub-hpc-local: cannot open {self.spec.output}: {exc}", file=sys.stderr)
            self.record(
                RunState(state="FAILED", reason="OutputUnwritable", supervisor=self.me, ended=time.time())
            )
            return None
        try:
            proc = subprocess.Popen(
                ["/bin/bash", str(self.dir / "script")],
                cwd=self.spec.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.job_environment(),
                start_new_session=True,
            )
        except OSError as exc:
            os.write(out, f"jupyterhub-hpc-local: cannot start job {self.job_id}: {exc}\n".encode())
            self.record(
                RunState(state="FAILED", reason="LaunchFailed", supervisor=self.me, ended=time.time())
            )
            return None
        finally:
            os.close(out)
        self.running = RunState(
            state="RUNNING",
            supervisor=self.me,
            process=ProcessId.of(proc.pid),
            host=socket.gethostname(),
            started=time.time(),
        )
        self.record(self.running)
        return proc

    def terminate(self, proc: subprocess.Popen[bytes]) -> int:
        """SIGTERM to the job's session, SIGKILL after ``kill_wait``; the exit status."""
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=self.spec.kill_wait)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            return proc.wait()

    def follow(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait for the job's end (or end it) and record how it ended."""
        running = self.running
        deadline = (running.started or time.time()) + self.spec.walltime
        state, reason = "", None
        while True:
            code = proc.poll()
            if code is not None:
                state, reason = ("COMPLETED", None) if code == 0 else ("FAILED", "NonZeroExitCode")
                break
            if self.cancelled:
                code, state = self.terminate(proc), "CANCELLED"
                break
            if time.time() >= deadline:
                code, state, reason = self.terminate(proc), "TIMEOUT", "TimeLimit"
                break
            time.sleep(TICK)
        sweep(self.marker)
        self.record(
            replace(running, state=state, reason=reason, ended=time.time(), exit_code=exit_status(code))
        )

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.record(RunState(state="PENDING", reason="Submitting", supervisor=self.me))
        proc = self.wait_for_slot()
        if proc is not None:
            self.follow(proc)


def main(argv: Sequence[str] | None = None) -> None:
    """``jupyterhub-hpc-local-supervisor JOB_DIR``, which ``submit`` starts as
    ``python -I -m jupyterhub_hpc.local_scheduler.supervisor JOB_DIR``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        raise SystemExit("usage: jupyterhub-hpc-local-supervisor JOB_DIR")
    job_dir = Path(args[0])
    Supervisor(StateDir(job_dir.parent), job_dir.name).run()


if __name__ == "__main__":
    main()
