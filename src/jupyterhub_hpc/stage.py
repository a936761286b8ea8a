"""Hand a job script to a submit program that wants a *file*, without a shell.

``sbatch``, ``qsub`` and ``bsub`` read the job script on standard input;
``oarsub -S`` and ``condor_submit`` need a file. The spawner pipes the script to
this small program, run *as the user* (behind the same ``submit_prefix``)::

    python -m jupyterhub_hpc.stage [--description PREFIX] [--env-file] -- PROGRAM ARG...

It writes standard input to a new file ``~/.jupyterhub-hpc/jobs/job-<time>-<random>.sh``
(mode 0700; files older than :data:`KEEP_DAYS` days are removed), replaces
``{script}`` in the arguments by its path, and runs PROGRAM (no shell) from the
home directory with ``PWD`` set (``oarsub`` refuses to work without it). Its exit
status, standard output and error are PROGRAM's.

``--description PREFIX`` builds a submit description for PROGRAM's standard input
from the script lines starting with PREFIX (HTCondor: ``#HTCONDOR request_cpus = 1``),
followed by ``executable = <script>`` and ``queue``.

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

__all__ = ["KEEP_DAYS", "main", "write_script"]

KEEP_DAYS = 14
#: variables of a login session that are not passed on through ``--env-file``
SESSION_VARIABLES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "TERM", "MAIL", "SHLVL", "_", "LANG"}
)


def write_script(text: str, directory: Path) -> Path:
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
    with os.fdopen(fd, "w") as f:
        f.write(text)
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


def description(script: str, prefix: str, path: Path) -> str:
    """The submit description: the script's ``PREFIX`` lines, the executable, ``queue``."""
    lines = [ln[len(prefix) :].strip() for ln in script.splitlines() if ln.startswith(prefix + " ")]
    return "\n".join([*lines, f"executable = {path}", "queue", ""])


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    prefix: str | None = None
    env_file = False
    while args and args[0] != "--":
        option = args.pop(0)
        if option == "--description" and args:
            prefix = args.pop(0)
        elif option == "--env-file":
            env_file = True
        else:
            print(f"jupyterhub_hpc.stage: unknown option {option!r}", file=sys.stderr)
            return 2
    if not args or len(args) < 2:
        print("usage: python -m jupyterhub_hpc.stage [options] -- PROGRAM ARG...", file=sys.stderr)
        return 2
    program = args[1:]
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    script = sys.stdin.read()
    path = write_script(script, home / ".jupyterhub-hpc" / "jobs")
    if env_file:
        _env_file(Path(f"{path}.env"))
    env = {**os.environ, "PWD": str(home)}
    stdin = description(script, prefix, path) if prefix else None
    try:
        done = subprocess.run(
            [part.replace("{script}", str(path)) for part in program],
            input=stdin,
            text=True,
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
