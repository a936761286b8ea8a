"""``jupyterhub-hpc sudoers``: the minimal sudoers file for a hub that does not run as root.

The hub account may run, without a password and only as a member of one group
(never root), exactly the commands the configured spawner runs through ``sudo``:

- the submit command of each backend, with exactly its arguments (the job
  script arrives on standard input), and ``env_keep`` of the secret variables
  (``secret_env_names``: the server's API token) on this command only;
- the cancel command, with a job id as its only free argument;
- the output reader (``output_reader``: ``jupyterhub-hpc-read-output --lines N
  FILE``) where FILE must be a job output file (``job_output`` with ``{home}``,
  ``{username}`` and ``{job_id}`` as the only free parts, none of which can be
  empty, ``.`` or ``..``). The reader itself refuses symbolic links, anything but a
  regular file and files the user does not own.

Arguments are matched with sudoers regular expressions (sudo 1.9.10 or later),
which match the whole argument string, so no extra argument can be appended.
No ``SETENV`` tag and no ``sudo -E``: sudo resets the environment, and only the
listed variables pass. Status queries run as the hub account, without sudo.

The rules are derived from the spawner the hub would build from its own
``jupyterhub_config.py`` (``--config``), so what the file allows is what the
hub runs, and nothing else.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .request import JobRequest

__all__ = ["SudoRule", "SudoersError", "add_arguments", "render_sudoers", "rules_for_spawner", "run"]

#: sudo's ``secure_path`` on Debian, Ubuntu and the RHEL family: where ``sudo -- prog`` finds ``prog``
DEFAULT_SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ALIAS = "JUPYTERHUB_HPC"
#: a job id (both backends refuse anything else at submit time)
JOB_ID_RE = "[0-9]+"
#: one path component of a home directory or a user name: no slash, no white space, and
#: neither ``.`` nor ``..`` (one or two dots must be followed by something else)
COMPONENT_RE = r"(\.?[^/[:space:].]|\.\.[^/[:space:]])[^/[:space:]]*"
#: the line count of the output reader (the reader bounds it)
LINES_RE = "[0-9]+"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_PATH = re.compile(r"^/[A-Za-z0-9_./+@-]+$")
_LITERAL = re.compile(r"^[^\s#]*$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ALIAS_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,47}$")
_ERE_SPECIAL = set(".[]()*+?{}|^$\\")
#: sudo options a prefix may use; anything else (``-E``, ``-s``, ``-i``, ``--preserve-env``...) is refused
_SUDO_OPTIONS = {"-n", "--non-interactive", "-u", "--user", "{username}", "--"}


class SudoersError(ValueError):
    """The configuration cannot be expressed as a minimal sudoers file."""


def ere_escape(text: str) -> str:
    """``text`` as a POSIX extended regular expression matching exactly itself."""
    if not _LITERAL.match(text):
        raise SudoersError(f"argument {text!r} contains white space or '#'")
    return "".join(f"\\{ch}" if ch in _ERE_SPECIAL else ch for ch in text)


@dataclass(frozen=True)
class SudoRule:
    """One command the hub account may run as a user: ``path`` with arguments
    matching ``args`` (a sudoers regular expression ``^...$``)."""

    purpose: str
    path: str
    args: str
    description: str
    env_keep: tuple[str, ...] = field(default=())

    def cmnd(self) -> str:
        return f"{self.path} {self.args}"


def resolve_program(name: str, secure_path: str, commands: Mapping[str, str]) -> str:
    """The absolute path sudo will run for ``name`` (sudo resolves names on ``secure_path``)."""
    program = commands.get(os.path.basename(name), name)
    if not os.path.isabs(program):
        found = shutil.which(program, path=secure_path)
        if found is None:
            raise SudoersError(f"{program!r} is not on {secure_path}; give its path with --program")
        program = found
    if not _PATH.match(program):
        raise SudoersError(f"program path {program!r} has characters sudoers cannot take literally")
    return program


def argv_regex(argv: Sequence[str], free: Mapping[str, str] | None = None) -> str:
    """A sudoers argument regex for ``argv`` (without the program): literal,
    except the placeholders in ``free`` (e.g. ``{job_id}``), which become patterns.
    No argument at all is ``""`` (sudoers: the command takes no arguments)."""
    free = free or {}
    if not argv:
        return '""'
    split = re.compile("(" + "|".join(re.escape(k) for k in free) + ")") if free else None
    parts = []
    for arg in argv:
        pieces = split.split(arg) if split else [arg]
        parts.append("".join(free[p] if p in free else ere_escape(p) for p in pieces))
    return "^" + " ".join(parts) + "$"


def path_regex(pattern: str) -> str:
    """A regex for the files ``job_output`` names: ``{home}`` one or more path
    components, ``{username}`` one component, ``{job_id}`` digits."""
    out: list[str] = []
    for piece in re.split(r"(\{home\}|\{username\}|\{job_id\})", pattern):
        if piece == "{home}":
            out.append(f"(/{COMPONENT_RE})+")
        elif piece == "{username}":
            out.append(COMPONENT_RE)
        elif piece == "{job_id}":
            out.append(JOB_ID_RE)
        elif piece:
            out.append(ere_escape(piece))
    return "".join(out)


def _check_output_path(pattern: str) -> None:
    """Refuse a ``job_output`` the reader would refuse: not absolute, or with an
    empty, ``.`` or ``..`` component written literally."""
    sample = pattern.replace("{home}", "/h").replace("{username}", "u").replace("{job_id}", "1")
    parts = sample.split("/")
    if not sample.startswith("/") or any(p in ("", ".", "..") for p in parts[1:]):
        raise SudoersError(f"job_output {pattern!r}: must be absolute, without empty, '.' or '..' components")


def _check_prefix(prefix: Sequence[str], what: str) -> bool:
    """True when ``prefix`` runs the command through sudo as the user; False when
    the hub runs it itself (no rule needed). Refuses anything broader."""
    if not prefix:
        return False
    if os.path.basename(prefix[0]) != "sudo":
        raise SudoersError(f"{what}: the prefix {list(prefix)} does not start with sudo")
    extra = [p for p in prefix[1:] if p not in _SUDO_OPTIONS]
    if extra:
        raise SudoersError(
            f"{what}: sudo options {extra} are not allowed (no -E, no --preserve-env: "
            "secrets pass through env_keep on the submit command only)"
        )
    if "{username}" not in prefix:
        raise SudoersError(f"{what}: the prefix must run the command as the user (-u {{username}})")
    return True


def rules_for_spawner(
    spawner: Any,
    backends: Sequence[str] = (),
    *,
    secure_path: str = DEFAULT_SECURE_PATH,
    commands: Mapping[str, str] | None = None,
) -> list[SudoRule]:
    """The sudo rules an :class:`~jupyterhub_hpc.spawner.HPCSpawner` needs, for
    ``backends`` (default: its own ``backend``)."""
    secrets = tuple(spawner.secret_env_names)
    bad = [name for name in secrets if not _ENV.match(name)]
    if bad:
        raise SudoersError(f"secret_env_names {bad} are not environment variable names")
    programs = {**spawner.scheduler_commands, **(commands or {})}

    rules: list[SudoRule] = []
    for name in backends or [spawner.backend]:
        # the very client the hub runs its commands with: the same argv, prefix and environment
        client = spawner.scheduler_client(name)
        backend = client.backend

        def behind_sudo(kind: str, argv: list[str], client: Any = client) -> list[str]:
            # what follows the prefix: `env NAME=value prog ...` with scheduler_environment
            full: list[str] = client.on_submit_host(argv, kind=kind, username="{username}")
            return full[len(client.settings.prefixes.of(kind)) :]

        if _check_prefix(spawner.submit_prefix, "submit_prefix"):
            submit = behind_sudo("submit", backend.submit_argv(JobRequest()))
            rules.append(
                SudoRule(
                    "SUBMIT",
                    resolve_program(submit[0], secure_path, programs),
                    argv_regex(submit[1:]),
                    f"submit ({name}); the job script on standard input",
                    env_keep=secrets,
                )
            )
        if _check_prefix(spawner.cancel_prefix, "cancel_prefix"):
            cancel = behind_sudo("cancel", backend.cancel_argv("{job_id}"))
            rules.append(
                SudoRule(
                    "CANCEL",
                    resolve_program(cancel[0], secure_path, programs),
                    argv_regex(cancel[1:], {"{job_id}": JOB_ID_RE}),
                    f"cancel ({name}) one job by its id",
                )
            )
    if _check_prefix(spawner.read_prefix, "read_prefix"):
        _check_output_path(spawner.job_output)
        reader = list(spawner.output_reader)
        if not _PATH.match(reader[0]):
            raise SudoersError(f"output_reader {reader[0]!r}: not an absolute path sudoers takes literally")
        rules.append(
            SudoRule(
                "READ",
                reader[0],
                argv_regex(
                    [*reader[1:], "--lines", "{lines}", "{path}"],
                    {"{lines}": LINES_RE, "{path}": path_regex(spawner.job_output)},
                ),
                "read the end of a job's output file (failed jobs only)",
            )
        )
    unique: dict[str, SudoRule] = {}
    for rule in rules:
        unique.setdefault(rule.cmnd(), rule)
    return list(unique.values())


def render_sudoers(
    hub_user: str, group: str, rules: Sequence[SudoRule], *, source: str = "", alias: str = ALIAS
) -> str:
    """The sudoers file text granting ``hub_user`` exactly ``rules`` as members of ``group``.
    ``alias`` prefixes the alias names: sudo refuses an alias defined twice, so files that
    sit side by side in ``/etc/sudoers.d`` (e.g. one per cluster) each need their own."""
    if not _ALIAS_NAME.match(alias):
        raise SudoersError(f"alias {alias!r}: use upper-case letters, digits and '_', starting with a letter")
    for label, value in (("hub user", hub_user), ("group", group)):
        if not _NAME.match(value):
            raise SudoersError(f"{label} {value!r}: use letters, digits, '_', '.', '-'")
    if hub_user == "root":
        raise SudoersError("the hub user must not be root: root needs no sudoers rule")
    from . import __version__

    secrets = sorted({n for r in rules for n in r.env_keep})
    lines = [
        f"# Generated by `jupyterhub-hpc sudoers` (jupyterhub-hpc {__version__}){source}.",
        "# Check and install: visudo -cf FILE && install -m 0440 FILE /etc/sudoers.d/jupyterhub-hpc",
        "#",
        f"# The hub account {hub_user!r} may run exactly these commands, without a password, as a",
        f"# member of the group {group!r} (never as root), and nothing else:",
    ]
    lines += [f"#   {r.description}: {r.cmnd()}" for r in rules]
    lines += [
        "# No SETENV, no -E: sudo resets the environment."
        + (f" Only {' '.join(secrets)} pass, to the submit command only." if secrets else ""),
        "# Status queries (squeue, sacct) run as the hub account, without sudo.",
        "",
    ]
    if not rules:
        lines.append("# This configuration runs no command through sudo: nothing to grant.")
        return "\n".join(lines) + "\n"
    lines.append(f"Runas_Alias {alias}_USERS = %{group}, !root")
    aliases: dict[str, list[SudoRule]] = {}
    for rule in rules:
        aliases.setdefault(rule.purpose, []).append(rule)
    for purpose, members in aliases.items():
        lines.append(f"Cmnd_Alias {alias}_{purpose} = " + ", ".join(r.cmnd() for r in members))
    if secrets:
        lines.append(f'Defaults!{alias}_SUBMIT env_keep += "{" ".join(secrets)}"')
    granted = ", ".join(f"{alias}_{p}" for p in aliases)
    lines.append(f"{hub_user} ALL = ({alias}_USERS) NOPASSWD: {granted}")
    return "\n".join(lines) + "\n"


def check_with_visudo(text: str, visudo: str = "visudo") -> None:
    """Raise :class:`SudoersError` unless ``visudo -cf`` accepts ``text``."""
    with tempfile.NamedTemporaryFile("w", suffix=".sudoers") as handle:
        handle.write(text)
        handle.flush()
        result = subprocess.run(
            [visudo, "-c", "-q", "-f", handle.name], capture_output=True, text=True, check=False
        )
    if result.returncode != 0:
        raise SudoersError(f"visudo refused the file: {(result.stderr or result.stdout).strip()}")


def load_spawner(config_file: str | None, spawner_class: str | None) -> Any:
    """The spawner the hub would build from ``config_file`` (no user, no hub)."""
    from jupyterhub.app import JupyterHub
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    if config_file:
        path = os.path.abspath(config_file)
        config = PyFileConfigLoader(os.path.basename(path), os.path.dirname(path)).load_config()
    name = spawner_class or config.get("JupyterHub", {}).get("spawner_class") or "slurm"
    cls = JupyterHub.class_traits()["spawner_class"].validate(None, name)
    from .spawner import HPCSpawner

    if not (isinstance(cls, type) and issubclass(cls, HPCSpawner)):
        raise SudoersError(f"spawner class {name!r} is not a jupyterhub-hpc spawner")
    from .startcheck import SpawnerConfigError, check_spawner_config

    try:
        return check_spawner_config(config, cls)
    except SpawnerConfigError as exc:  # a value the hub would refuse at start, named
        raise SudoersError(f"invalid configuration: {exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-f", help="the hub's jupyterhub_config.py (default: none)")
    parser.add_argument("--hub-user", default="jupyterhub", help="the account the hub runs as")
    parser.add_argument(
        "--group", required=True, help="users the hub may act as: members of this group (never root)"
    )
    parser.add_argument("--spawner-class", help="overrides c.JupyterHub.spawner_class (default: slurm)")
    parser.add_argument(
        "--backend", action="append", default=[], help="backend(s) to cover (default: the spawner's)"
    )
    parser.add_argument(
        "--program",
        action="append",
        default=[],
        dest="programs",
        metavar="NAME=PATH",
        help="absolute path of a program, e.g. sbatch=/opt/slurm/bin/sbatch (repeatable)",
    )
    parser.add_argument("--secure-path", default=DEFAULT_SECURE_PATH, help="sudo's secure_path")
    parser.add_argument("--check", action="store_true", help="validate the result with visudo -cf")
    parser.add_argument(
        "--alias",
        default=ALIAS,
        help=f"prefix of the alias names (default {ALIAS}); give each generated file in "
        "/etc/sudoers.d its own, e.g. one file per cluster (sudo refuses an alias defined twice)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        commands = dict(item.split("=", 1) for item in args.programs)
    except ValueError:
        print("jupyterhub-hpc sudoers: --program takes NAME=PATH", file=sys.stderr)
        return 2
    try:
        spawner = load_spawner(args.config, args.spawner_class)
        rules = rules_for_spawner(spawner, args.backend, secure_path=args.secure_path, commands=commands)
        source = f" from {args.config}" if args.config else ""
        text = render_sudoers(args.hub_user, args.group, rules, source=source, alias=args.alias)
        if args.check:
            check_with_visudo(text)
    except SudoersError as exc:
        print(f"jupyterhub-hpc sudoers: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0
