"""Running scheduler commands: argv lists only, never a shell, always a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

__all__ = ["CommandError", "CommandResult", "expand_prefix", "run_command", "with_environment"]


@dataclass(frozen=True)
class CommandResult:
    """What a finished command returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class CommandError(RuntimeError):
    """A command could not be run, timed out, or failed where failure is not expected."""

    def __init__(self, message: str, result: CommandResult | None = None) -> None:
        super().__init__(message)
        self.result = result


def expand_prefix(prefix: Sequence[str], **values: str) -> list[str]:
    """Fill ``{name}`` fields in each argv element of a command prefix.

    Each element is formatted on its own, so a value can never add or split
    arguments: ``["sudo", "-u", "{username}"]`` stays three arguments.

    >>> expand_prefix(["sudo", "-n", "-u", "{username}", "--"], username="alice")
    ['sudo', '-n', '-u', 'alice', '--']
    """
    return [part.format(**values) for part in prefix]


def with_environment(
    prefix: Sequence[str],
    argv: Sequence[str],
    environment: Mapping[str, str],
    env: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str] | None]:
    """The argv and process environment that give a scheduler command ``environment``
    (e.g. ``SLURM_CONF``).

    Behind a prefix (``sudo``, which resets the environment) the variables become
    ``env NAME=value`` arguments after it; without one they are set in the
    process environment (``env``, or the hub's own when ``env`` is None).

    >>> with_environment(["sudo", "-u", "a", "--"], ["squeue"], {"SLURM_CONF": "/x"})
    (['sudo', '-u', 'a', '--', 'env', 'SLURM_CONF=/x', 'squeue'], None)
    >>> with_environment([], ["squeue"], {"SLURM_CONF": "/x"}, {"PATH": "/bin"})
    (['squeue'], {'PATH': '/bin', 'SLURM_CONF': '/x'})
    """
    if not environment:
        return [*prefix, *argv], dict(env) if env is not None else None
    if prefix:
        assignments = [f"{name}={value}" for name, value in sorted(environment.items())]
        return [*prefix, "env", *assignments, *argv], dict(env) if env is not None else None
    base = dict(env) if env is not None else dict(os.environ)
    return list(argv), {**base, **environment}


async def run_command(
    argv: Sequence[str],
    *,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    cwd: str | None = None,
    umask: int = -1,
) -> CommandResult:
    """Run ``argv`` (no shell) and return its result, whatever its exit status.

    ``env`` replaces the environment entirely when given (so the hub's own
    environment does not leak into a job). Raises :class:`CommandError` when the
    program cannot be started or does not finish within ``timeout`` seconds (it
    is killed then). Only the program name and arguments are logged, never the
    environment or standard input. ``umask`` (e.g. ``0o077``) is the program's
    umask; -1 keeps the hub's.
    """
    args = [str(a) for a in argv]
    if not args:
        raise CommandError("empty command")
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            umask=umask,
        )
    except OSError as exc:
        raise CommandError(f"cannot run {args[0]}: {exc}") from exc
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(input.encode() if input is not None else None), timeout
        )
    except asyncio.TimeoutError:
        _kill(proc)
        await proc.wait()
        raise CommandError(f"{args[0]} did not finish within {timeout:g} s") from None
    except asyncio.CancelledError:
        _kill(proc)
        # reap it, so its transport is not left to a closed loop
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.shield(asyncio.wait_for(proc.wait(), 5))
        raise
    result = CommandResult(
        argv=tuple(args),
        returncode=proc.returncode if proc.returncode is not None else -1,
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
        duration=time.monotonic() - started,
    )
    log.debug("ran %s: exit %d in %.3f s", " ".join(args[:6]), result.returncode, result.duration)
    return result


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass
