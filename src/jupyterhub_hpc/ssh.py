"""Scheduler commands on a remote submit host, over the system ``ssh``.

A hub outside the cluster reaches the scheduler through a login node: every
scheduler command (submit, cancel, reading a job's output, the shared status
query, the partition limits) runs there as ``ssh [options] HOST -- REMOTE``, built
by the scheduler client (:meth:`jupyterhub_hpc.client.SchedulerClient.command`).

``ssh`` does not pass an argv: it joins its arguments into **one string** that
the remote account's shell parses. So ``REMOTE`` is built here from the argv
with every element shell-quoted (:func:`remote_command`); user names, paths and
``squeue --Format=...|...`` arrive as the same arguments on the other side.

The server's API token is never on a command line, local or remote: it goes to
the remote side on **standard input**, one line per secret variable before the
job script, read by a fixed ``sh -c 'IFS= read -r NAME ...; exec "$@"'`` that
exports it to the submit command (``sudo`` keeps it with ``env_keep``, exactly as
on a local submit host). No ``SendEnv``/``AcceptEnv`` change on the login node is
needed.

Defaults: ``BatchMode=yes`` (never a password prompt), ``StrictHostKeyChecking=yes``
(the host key must be in ``ssh_known_hosts``, or the user's known_hosts),
``IdentitiesOnly=yes`` with ``ssh_key``, no forwarding of agent, X11 or ports,
and connection reuse with ``ControlMaster=auto`` / ``ControlPersist``, so the
status query every few seconds does not open a new SSH connection each time.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from traitlets import Integer, List, Unicode
from traitlets.config import Configurable

__all__ = [
    "SSHSettings",
    "SubmitHostOptions",
    "remote_argv",
    "remote_command",
    "secrets_on_stdin",
]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: the argv[0] the remote ``sh -c`` reader runs under (shown by ``ps`` on the login node)
READER_NAME = "jupyterhub-hpc-submit"


def remote_command(argv: Sequence[str]) -> str:
    """The one string ``ssh`` sends: each argument shell-quoted, so the remote
    shell rebuilds exactly ``argv``.

    >>> remote_command(["squeue", "--Format=JobID:|,State:|", "it's"])
    "squeue '--Format=JobID:|,State:|' 'it'\\"'\\"'s'"
    """
    if not argv:
        raise ValueError("empty remote command")
    if any("\0" in a for a in argv):
        raise ValueError("a NUL byte cannot be passed as an argument")
    return " ".join(shlex.quote(a) for a in argv)


def remote_argv(prefix: Sequence[str], argv: Sequence[str], environment: Mapping[str, str]) -> list[str]:
    """The argv to run on the submit host: ``prefix`` (``sudo -u USER --``), then
    ``env NAME=value ...`` for ``scheduler_environment`` (sudo resets the
    environment; ssh never forwards it), then the scheduler command."""
    bad = [name for name in environment if not _ENV_NAME.match(name)]
    if bad:
        raise ValueError(f"not environment variable names: {bad}")
    assignments = [f"{name}={value}" for name, value in sorted(environment.items())]
    return [*prefix, *(["env", *assignments] if assignments else []), *argv]


def secrets_on_stdin(
    argv: Sequence[str], secrets: Mapping[str, str], input: str | None
) -> tuple[list[str], str | None]:
    """``argv`` wrapped so that the remote side reads ``secrets`` from standard
    input (one line each, in a fixed order, before ``input``) and exports them
    to the command: the values are never part of any argv."""
    if not secrets:
        return list(argv), input
    names = sorted(secrets)
    for name in names:
        if not _ENV_NAME.match(name):
            raise ValueError(f"not an environment variable name: {name!r}")
        if "\n" in secrets[name] or "\0" in secrets[name]:
            raise ValueError(f"{name} cannot be passed on a line of standard input")
    reads = " && ".join(f"IFS= read -r {name}" for name in names)
    # umask 077: the scheduler creates the job's output file private (as on a local submit)
    script = f'umask 077 && {reads} && export {" ".join(names)} && exec "$@"'
    lines = "".join(f"{secrets[name]}\n" for name in names)
    return ["sh", "-c", script, READER_NAME, *argv], lines + (input or "")


@dataclass(frozen=True)
class SSHSettings:
    """How to reach the submit host (see :class:`SubmitHostOptions`)."""

    host: str
    user: str = ""
    port: int = 22
    key: str = ""
    known_hosts: str = ""
    control_dir: str = ""
    control_persist: int = 600
    options: tuple[str, ...] = ()
    program: str = "ssh"

    def control_path(self) -> str:
        base = self.control_dir or os.path.join(os.path.expanduser("~"), ".ssh", "jupyterhub-hpc")
        return os.path.join(base, "%C")

    def ensure_control_dir(self) -> None:
        """The socket directory, private to the hub's account (0700)."""
        directory = os.path.dirname(self.control_path())
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)

    def argv(self, remote: Sequence[str]) -> list[str]:
        """``ssh ... HOST -- 'quoted' 'remote' 'argv'``. The admin's ``options``
        come first: ssh takes the first value of each option, so they override
        the defaults that follow."""
        if not self.host or self.host.startswith("-") or any(c.isspace() for c in self.host):
            raise ValueError(f"not a host name: {self.host!r}")
        opts: list[str] = []
        for option in self.options:
            opts += ["-o", option]
        defaults = [
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            "ForwardAgent=no",
            "ForwardX11=no",
            "ClearAllForwardings=yes",
            "ConnectTimeout=15",
            "ServerAliveInterval=30",
            "LogLevel=ERROR",
            "ControlMaster=auto",
            f"ControlPath={self.control_path()}",
            f"ControlPersist={self.control_persist}",
        ]
        if self.known_hosts:
            defaults.append(f"UserKnownHostsFile={self.known_hosts}")
        if self.key:
            defaults += [f"IdentityFile={self.key}", "IdentitiesOnly=yes"]
        for option in defaults:
            opts += ["-o", option]
        if self.port != 22:
            opts += ["-p", str(self.port)]
        if self.user:
            opts += ["-l", self.user]
        return [self.program, "-T", *opts, self.host, "--", remote_command(remote)]


class SubmitHostOptions(Configurable):
    """Options of the remote submit host (all unused while ``ssh_host`` is empty)."""

    ssh_host = Unicode(
        "",
        help="""
        Run every scheduler command on this host over SSH (a login node), for a
        hub outside the cluster. Empty (default): commands run on the hub's host.
        The hub's account logs in there (``ssh_user``) and the prefixes
        (``submit_prefix`` ...) run on that host, so the sudoers file from
        ``jupyterhub-hpc sudoers`` belongs there. Its login shell must be a POSIX
        shell (sh, bash, zsh): the remote command is one shell-quoted string.
        """,
    ).tag(config=True)

    ssh_user = Unicode("", help="""Account on ``ssh_host``; empty: the hub's own user name.""").tag(
        config=True
    )

    ssh_port = Integer(22, help="""SSH port of ``ssh_host``.""").tag(config=True)

    ssh_key = Unicode(
        "",
        help="""
        Private key file the hub logs in with (``IdentityFile``, with
        ``IdentitiesOnly=yes``); readable by the hub's account only. Empty:
        ssh's own defaults (``~/.ssh/id_*``).
        """,
    ).tag(config=True)

    ssh_known_hosts = Unicode(
        "",
        help="""
        known_hosts file holding ``ssh_host``'s host key (``UserKnownHostsFile``).
        Host keys are always checked (``StrictHostKeyChecking=yes``): an unknown
        or changed key fails the command, it is never accepted silently. Empty:
        the hub account's ``~/.ssh/known_hosts``.
        """,
    ).tag(config=True)

    ssh_control_dir = Unicode(
        "",
        help="""
        Directory of the connection-sharing sockets (``ControlPath``), created
        with mode 0700. Keep it short: a socket path has at most ~100 bytes.
        Empty: ``~/.ssh/jupyterhub-hpc`` of the hub's account.
        """,
    ).tag(config=True)

    ssh_control_persist = Integer(
        600,
        help="""
        Seconds the shared connection stays open after its last command
        (``ControlPersist``): commands within it reuse one SSH connection.
        """,
    ).tag(config=True)

    ssh_options = List(
        Unicode(),
        help="""
        Further ``-o`` options, e.g. ``["ProxyJump=bastion.example.org"]``. ssh
        uses the first value given for an option and these come before the
        defaults, so they can override them (including ``StrictHostKeyChecking``:
        do not).
        """,
    ).tag(config=True)

    ssh_command = Unicode("ssh", help="""The ssh client program.""").tag(config=True)

    def ssh_settings(self) -> SSHSettings:
        return SSHSettings(
            host=self.ssh_host,
            user=self.ssh_user,
            port=self.ssh_port,
            key=self.ssh_key,
            known_hosts=self.ssh_known_hosts,
            control_dir=self.ssh_control_dir,
            control_persist=self.ssh_control_persist,
            options=tuple(self.ssh_options),
            program=self.ssh_command,
        )


def local_environment() -> dict[str, str]:
    """The environment of the local ``ssh`` process: nothing of the hub's own."""
    keep = ("PATH", "HOME", "USER", "LOGNAME", "LANG")
    return {k: os.environ[k] for k in keep if k in os.environ}
