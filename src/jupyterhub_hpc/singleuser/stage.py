"""Hand a job script to a submit program that wants a *file*, without a shell.

``sbatch``, ``qsub`` and ``bsub`` read the job script on standard input;
``oarsub -S`` and ``condor_submit`` need a file. The spawner pipes the script to
this small program, run *as the user* (behind the same ``submit_prefix``)::

    jupyterhub-hpc-stage [--description] [--env-file] -- PROGRAM ARG...
    python -m jupyterhub_hpc.singleuser.stage ...   # what the hub runs

It writes standard input to a new file ``~/.jupyterhub-hpc/jobs/job-<time>-<random>.sh``
(mode 0700; files older than :data:`KEEP_DAYS` days are removed), replaces
``{script}`` in the arguments by its path, and runs PROGRAM (no shell) from the
home directory with ``PWD`` set (``oarsub`` refuses to work without it). Its exit
status, standard output and error are PROGRAM's.

``--description``: standard input holds a submit description for PROGRAM's own
standard input, then the script, framed by :func:`pack` (the byte length of the
description on the first line). HTCondor's backend renders its description
itself; stage passes it on unread (``condor_submit -terse -append
executable={script} -``).

``--env-file`` writes this process's environment (less the login-session
variables) as quoted ``export`` lines to ``<script>.env`` (mode 0600), for
schedulers that start jobs with a clean environment (OAR): the job script reads
and deletes it. This is how the server's API token reaches such a job without
ever being written into the script or onto a command line.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["KEEP_DAYS", "main", "pack", "unpack", "write_script"]

KEEP_DAYS = 14
#: the longest submit description taken (bytes)
MAX_DESCRIPTION = 1 << 20
#: variables of a login session that are not passed on through ``--env-file``
SESSION_VARIABLES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "TERM", "MAIL", "SHLVL", "_", "LANG"}
)


def pack(description: str, script: str) -> str:
    """Standard input for ``--description``: the description's length in bytes on
    one line, the description, then the script.

    >>> pack("queue\\n", "#!/bin/bash\\n")
    '6\\nqueue\\n#!/bin/bash\\n'
    """
    return f"{len(description.encode())}\n{description}{script}"


def unpack(data: bytes) -> tuple[bytes, bytes]:
    """(description, script) from what :func:`pack` made; ValueError when it is not that."""
    header, newline, rest = data.partition(b"\n")
    if not newline or not header.isdigit() or len(header) > 8:
        raise ValueError("standard input does not start with the description's length")
    size = int(header)
    if size > MAX_DESCRIPTION or size > len(rest):
        raise ValueError(f"a description of {size} bytes announced, {len(rest)} bytes follow")
    return rest[:size], rest[size:]


def write_script(text: bytes | str, directory: Path) -> Path:
    """Write ``text`` to a new, user-only executable file in ``directory``."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cutoff = time.time() - KEEP_DAYS * 86400
    for old in directory.glob("job-*"):
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass
    name = f"job-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}.sh"
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    return path


def _env_file(path: Path) -> None:
    lines = [
        f"export {name}={shlex.quote(value)}\n"
        for name, value in sorted(os.environ.items())
        if name not in SESSION_VARIABLES
        and not name.startswith(("SUDO_", "LC_"))
        and name.replace("_", "a").isalnum()
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    framed = env_file = False
    while args and args[0] != "--":
        option = args.pop(0)
        if option == "--description":
            framed = True
        elif option == "--env-file":
            env_file = True
        else:
            print(f"jupyterhub-hpc-stage: unknown option {option!r}", file=sys.stderr)
            return 2
    if len(args) < 2:
        print("usage: jupyterhub-hpc-stage [--description] [--env-file] -- PROGRAM ARG...", file=sys.stderr)
        return 2
    program = args[1:]
    data = sys.stdin.buffer.read()
    stdin: bytes | None = None
    if framed:
        try:
            stdin, data = unpack(data)
        except ValueError as exc:
            print(f"jupyterhub-hpc-stage: {exc}", file=sys.stderr)
            return 2
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    path = write_script(data, home / ".jupyterhub-hpc" / "jobs")
    if env_file:
        _env_file(Path(f"{path}.env"))
    env = {**os.environ, "PWD": str(home)}
    try:
        done = subprocess.run(
            [part.replace("{script}", str(path)) for part in program],
            input=stdin,
            cwd=home,
            env=env,
            check=False,
        )
    except OSError as exc:
        print(f"cannot run {program[0]}: {exc}", file=sys.stderr)
        return 127
    if done.returncode != 0:
        path.unlink(missing_ok=True)
        Path(f"{path}.env").unlink(missing_ok=True)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
