"""The remote command ssh sends is one string parsed by the remote shell: every argument must
arrive unchanged, whatever it contains, and secrets go on standard input, never in an argv.
Checked by running the very string through a real POSIX shell (dash and bash)."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyterhub_hpc.backends.slurm import SlurmBackend
from jupyterhub_hpc.client import ClientSettings, Prefixes, SchedulerClient
from jupyterhub_hpc.request import JobRequest
from jupyterhub_hpc.ssh import (
    READER_NAME,
    SSHSettings,
    remote_argv,
    remote_command,
    secrets_on_stdin,
)

SHELLS = ["/bin/sh", "/bin/bash"]
HOSTILE = ["$(id)", "`id`", "a b", "it's", '"q"', "\n#SBATCH --x", "*", "~root", ";id", "|", "&", "\\", "-"]
arg = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=40)


def run_remote(shell: str, command: str, stdin: str = "") -> bytes:
    """What sshd does with the command string: ``$SHELL -c STRING``."""
    return subprocess.run(
        [shell, "-c", command], input=stdin.encode(), capture_output=True, check=True
    ).stdout


@pytest.mark.parametrize("shell", SHELLS)
@settings(max_examples=150, deadline=None)
@given(args=st.lists(st.one_of(arg, st.sampled_from(HOSTILE)), max_size=6))
def test_every_argument_arrives_unchanged(shell: str, args: list[str]) -> None:
    out = run_remote(shell, remote_command(["printf", "%s\\0", "--", *args]))
    assert out.split(b"\0")[:-1] == [a.encode() for a in ["--", *args]]


def test_status_query_keeps_its_pipes() -> None:
    argv = SlurmBackend().status_argv(["1", "2"])
    assert shlex.split(remote_command(argv)) == argv
    assert "|" in remote_command(argv) and "'--Format=" in remote_command(argv)


def test_nul_cannot_be_sent() -> None:
    with pytest.raises(ValueError):
        remote_command(["echo", "a\0b"])


@pytest.mark.parametrize("shell", SHELLS)
def test_secrets_travel_on_stdin_and_reach_the_command_environment(shell: str) -> None:
    secrets = {"JUPYTERHUB_API_TOKEN": "tok-123", "JPY_API_TOKEN": "tok-123"}
    script = "#!/bin/bash\n#SBATCH --mem=1G\necho 'line with $(x) and `y`'\n"
    inner = ["sh", "-c", 'printf "%s|%s|" "$JUPYTERHUB_API_TOKEN" "$JPY_API_TOKEN"; cat']
    argv, stdin = secrets_on_stdin(inner, secrets, script)
    command = remote_command(argv)
    assert "tok-123" not in command and all("tok-123" not in a for a in argv)
    assert argv[3] == READER_NAME
    assert run_remote(shell, command, stdin or "").decode() == "tok-123|tok-123|" + script


def test_secrets_with_line_breaks_are_refused() -> None:
    with pytest.raises(ValueError):
        secrets_on_stdin(["true"], {"JUPYTERHUB_API_TOKEN": "a\nb"}, "")
    with pytest.raises(ValueError):
        secrets_on_stdin(["true"], {"BAD NAME": "x"}, "")


def test_no_secrets_no_wrapper() -> None:
    assert secrets_on_stdin(["sbatch"], {}, "script") == (["sbatch"], "script")


def test_remote_argv_puts_the_environment_behind_the_prefix() -> None:
    argv = remote_argv(["sudo", "-n", "-u", "alice", "--"], ["sbatch"], {"SLURM_CONF": "/a b"})
    assert argv == ["sudo", "-n", "-u", "alice", "--", "env", "SLURM_CONF=/a b", "sbatch"]
    with pytest.raises(ValueError):
        remote_argv([], ["x"], {"A=B": "c"})


def test_ssh_argv_defaults_are_strict() -> None:
    settings_ = SSHSettings(
        host="login1", user="hub", port=2222, key="/k", known_hosts="/kh", control_dir="/run/c"
    )
    argv = settings_.argv(["squeue", "--jobs=1"])
    options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    for expected in (
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "UserKnownHostsFile=/kh",
        "IdentityFile=/k",
        "IdentitiesOnly=yes",
        "ControlMaster=auto",
        "ControlPath=/run/c/%C",
        "ControlPersist=600",
        "ForwardAgent=no",
    ):
        assert expected in options, expected
    assert argv[0] == "ssh" and argv[-3:] == ["login1", "--", "squeue --jobs=1"]
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "hub"


def test_admin_options_come_first_so_they_win() -> None:
    argv = SSHSettings(host="h", options=("ProxyJump=bastion",)).argv(["true"])
    assert argv[1:4] == ["-T", "-o", "ProxyJump=bastion"]


@pytest.mark.parametrize("host", ["", "-oProxyCommand=id", "a b"])
def test_host_names_that_are_options_are_refused(host: str) -> None:
    with pytest.raises(ValueError):
        SSHSettings(host=host).argv(["true"])


def test_every_scheduler_command_runs_on_the_submit_host() -> None:
    """One client builds every command: over SSH, behind its prefix, with the environment."""
    backend = SlurmBackend()
    how = ClientSettings(
        prefixes=Prefixes(status=("sudo", "-u", "x", "--"), submit=("sudo", "-u", "{username}", "--")),
        environment=(("SLURM_CONF", "/c"),),
        ssh=SSHSettings(host="login1"),
        secret_env_names=("JUPYTERHUB_API_TOKEN",),
    )
    client = SchedulerClient(backend, how)
    status = client.command(backend.status_argv(["5"]), kind="status")
    assert status.argv[0] == "ssh" and "login1" in status.argv
    assert shlex.split(status.argv[-1]) == [
        "sudo",
        "-u",
        "x",
        "--",
        "env",
        "SLURM_CONF=/c",
        *backend.status_argv(["5"]),
    ]
    accounting = backend.accounting_argv(["5"])
    assert accounting is not None
    assert shlex.split(client.command(accounting, kind="status").argv[-1])[-1].startswith("--format=")
    # the limits query too: as the hub's account on the login node, with the environment
    limits = backend.limits_argv()
    assert limits is not None and limits[0] == "sinfo"
    assert shlex.split(client.command(limits).argv[-1]) == ["env", "SLURM_CONF=/c", *limits]
    # a submit: the user's prefix, the token on standard input only
    submit = client.command(
        backend.submit_argv(JobRequest()),
        kind="submit",
        username="alice",
        env={"JUPYTERHUB_API_TOKEN": "t0ken", "PATH": "/bin"},
        input="#!/bin/sh\n",
    )
    assert "t0ken" not in " ".join(submit.argv) and submit.input == "t0ken\n#!/bin/sh\n"
    remote = shlex.split(submit.argv[-1])
    assert remote[:2] == ["sh", "-c"] and remote[3:8] == [READER_NAME, "sudo", "-u", "alice", "--"]
    assert submit.env is not None and "JUPYTERHUB_API_TOKEN" not in submit.env
    # the key names the host, so a remote scheduler has a watcher of its own
    assert client.key != SchedulerClient(backend).key
    assert backend.status_argv(["5"])[0] == "squeue"  # the backend is untouched
