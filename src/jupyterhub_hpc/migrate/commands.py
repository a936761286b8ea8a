"""batchspawner's command lines (``exec_prefix``, ``batch_*_cmd``) -> this project's settings.

batchspawner runs ``exec_prefix + " " + batch_submit_cmd`` through a shell. Here every
command is an argv: ``sudo -n -u {username} --`` in front of the scheduler's own program,
and, for a hub outside the cluster, ``ssh_host`` with the system ``ssh``. The command lines
are split with :func:`shlex.split` (their structure is a shell's words) and read word by
word: ``env``/``VAR=value`` assignments, ``ssh HOST``, ``sudo -u {username}``, then the
program. What has a counterpart becomes ``ssh_host``, ``scheduler_environment`` or
``scheduler_commands``; the rest is listed, with the reason.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .model import NotCarried

__all__ = ["CommandResult", "translate_commands"]

#: the program each batchspawner command runs, by backend (submit, query, cancel)
PROGRAMS = {
    "slurm": {"batch_submit_cmd": "sbatch", "batch_query_cmd": "squeue", "batch_cancel_cmd": "scancel"},
    "torque": {"batch_submit_cmd": "qsub", "batch_query_cmd": "qstat", "batch_cancel_cmd": "qdel"},
    "pbs": {"batch_submit_cmd": "qsub", "batch_query_cmd": "qstat", "batch_cancel_cmd": "qdel"},
    "sge": {"batch_submit_cmd": "qsub", "batch_query_cmd": "qstat", "batch_cancel_cmd": "qdel"},
    "lsf": {"batch_submit_cmd": "bsub", "batch_query_cmd": "bjobs", "batch_cancel_cmd": "bkill"},
    "htcondor": {
        "batch_submit_cmd": "condor_submit",
        "batch_query_cmd": "condor_q",
        "batch_cancel_cmd": "condor_rm",
    },
}
#: ssh options that take an argument (OpenSSH's ``ssh(1)``)
_SSH_ARG_OPTIONS = frozenset("BbcDEeFIiJLlmOoPpQRSWw")
_SUDO_ARG_OPTIONS = frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "--user", "--group"})


@dataclass
class CommandResult:
    values: dict[str, Any] = field(default_factory=dict)
    not_carried: list[NotCarried] = field(default_factory=list)


@dataclass
class _Words:
    """One command line, read word by word."""

    env: dict[str, str] = field(default_factory=dict)
    ssh_host: str | None = None
    ssh_problem: str | None = None
    ssh_user: str | None = None
    sudo: list[str] = field(default_factory=list)
    program: list[str] = field(default_factory=list)


def _assignment(word: str) -> tuple[str, str] | None:
    name, sep, value = word.partition("=")
    if sep and name and (name[0].isalpha() or name[0] == "_") and all(c.isalnum() or c == "_" for c in name):
        return name, value
    return None


def _read(words: list[str]) -> _Words:
    out = _Words()
    i = 0
    while i < len(words):
        word = words[i]
        assignment = _assignment(word)
        if word == "env":
            i += 1
        elif assignment is not None:
            out.env[assignment[0]] = assignment[1]
            i += 1
        elif posixpath.basename(word) in ("ssh", "gsissh") and out.ssh_host is None and not out.sudo:
            i += 1
            login: str | None = None
            while i < len(words) and words[i].startswith("-"):
                option = words[i]
                takes = len(option) == 2 and option[1] in _SSH_ARG_OPTIONS
                if option in ("-l", "-i") and i + 1 < len(words) and "{" in words[i + 1]:
                    login = f"{option} {words[i + 1]}"
                i += 2 if takes else 1
            host = words[i] if i < len(words) else ""
            i += 1
            if posixpath.basename(word) == "gsissh":
                out.ssh_problem = (
                    "runs over gsissh (GSI proxy certificates): no counterpart; ssh_host runs the "
                    "commands on a login node with the system ssh and a key of the hub's"
                )
            elif login is not None or "{" in host:
                out.ssh_problem = (
                    f"logs in per user ({login or host}): here the hub logs in as one ssh_user and "
                    "submits with sudo on the login node"
                )
            elif "@" in host:
                out.ssh_user, _, out.ssh_host = host.rpartition("@")
            else:
                out.ssh_host = host
        elif posixpath.basename(word) == "sudo" and not out.sudo:
            out.sudo.append(word)
            i += 1
            while i < len(words) and words[i].startswith("-"):
                out.sudo.append(words[i])
                if words[i] in _SUDO_ARG_OPTIONS and i + 1 < len(words):
                    out.sudo.append(words[i + 1])
                    i += 1
                i += 1
                if out.sudo[-1] == "--":
                    break
        else:
            out.program = words[i:]
            break
    return out


def translate_commands(commands: Mapping[str, str], backend: str, where: str) -> CommandResult:
    """Read ``exec_prefix`` and the ``batch_*_cmd`` lines of one mapping together."""
    result = CommandResult()
    programs = PROGRAMS.get(backend, {})
    prefix = commands.get("exec_prefix")
    try:
        prefix_words = shlex.split(prefix) if prefix else []
    except ValueError as exc:
        result.not_carried.append(NotCarried(f"{where}.exec_prefix", f"not a command line: {exc}"))
        return result
    environment: dict[str, str] = {}
    paths: dict[str, str] = {}
    for key in ("batch_submit_cmd", "batch_query_cmd", "batch_cancel_cmd"):
        line = commands.get(key)
        if line is None and prefix is None:
            continue
        setting = f"{where}.{key}" if line is not None else f"{where}.exec_prefix"
        try:
            words = _read(prefix_words + shlex.split(line or ""))
        except ValueError as exc:
            result.not_carried.append(NotCarried(setting, f"not a command line: {exc}"))
            continue
        if words.ssh_problem:
            result.not_carried.append(NotCarried(setting, words.ssh_problem))
            continue
        if words.ssh_host:
            result.values["ssh_host"] = words.ssh_host
        if words.ssh_user and "{" not in words.ssh_user:
            result.values["ssh_user"] = words.ssh_user
        for name, value in words.env.items():
            if "{" in value:
                result.not_carried.append(
                    NotCarried(setting, f"{name}={value}: filled in per user or per job, no counterpart")
                )
            else:
                environment[name] = value
        sudo_flags = [w for w in words.sudo[1:] if w not in ("-u", "--user", "{username}", "-n", "--")]
        if any(f in ("-E", "--preserve-env") or f.startswith("--preserve-env=") for f in sudo_flags):
            result.not_carried.append(
                NotCarried(
                    setting,
                    "sudo -E / --preserve-env: only secret_env_names reach the submit command here; the "
                    "job's environment is written into its script",
                )
            )
        if line is None:
            continue
        if not words.program:
            result.not_carried.append(NotCarried(setting, "runs no program"))
            continue
        expected = programs.get(key)
        program = words.program[0]
        if expected is None or posixpath.basename(program) != expected:
            result.not_carried.append(
                NotCarried(
                    setting,
                    f"runs {' '.join(words.program[:3])!r}, not {expected or 'the scheduler'}: "
                    "the watcher and the spawner run the scheduler's own commands "
                    "(scheduler_commands names their paths)",
                )
            )
            continue
        if "/" in program and "{" not in program:
            paths[expected] = program
        extra = [w for w in words.program[1:] if w not in ("--parsable", "{job_id}", "{{job_id}}")]
        if key == "batch_submit_cmd" and extra:
            result.not_carried.append(
                NotCarried(
                    setting, f"options {' '.join(extra)!r}: submitted as sbatch --parsable, script on stdin"
                )
            )
    if environment:
        result.values["scheduler_environment"] = environment
    if paths:
        result.values["scheduler_commands"] = paths
    return result
