"""`jupyterhub-hpc sudoers`: the file it prints is valid (visudo), minimal, and derived from
the hub's own configuration. The regular expressions are checked with grep -E (POSIX ERE,
what sudo uses); the live behaviour under sudo is in test_sudo_live.py."""

from __future__ import annotations

import contextlib
import functools
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jupyterhub_hpc import cli
from jupyterhub_hpc.sudoers import (
    SudoersError,
    check_with_visudo,
    load_spawner,
    render_sudoers,
    rules_for_spawner,
)

CLI = [str(Path(sys.executable).parent / "jupyterhub-hpc"), "sudoers"]
#: the default ``output_reader``: the program next to the hub's (here: the tests') Python
READER = str(Path(sys.executable).parent / "jupyterhub-hpc-read-output")
#: what the {home}, {username} placeholders become: one or more components, none empty, '.' or '..'
COMPONENT = r"(\.?[^/[:space:].]|\.\.[^/[:space:]])[^/[:space:]]*"


@functools.cache
def generate(*args: str) -> subprocess.CompletedProcess[str]:
    """``jupyterhub-hpc sudoers ARGS``, in this process (cached: same arguments, same file);
    the installed command itself is run in test_default_file_is_valid_and_minimal."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(["sudoers", *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return subprocess.CompletedProcess(["sudoers", *args], code, out.getvalue(), err.getvalue())


def ere_match(regex: str, text: str) -> bool:
    """Does the sudoers argument regex match ``text`` (the arguments joined by spaces)?"""
    result = subprocess.run(["grep", "-Eq", "--", regex], input=text + "\n", text=True, check=False)
    return result.returncode == 0


def test_default_file_is_valid_and_minimal() -> None:
    result = subprocess.run(
        [*CLI, "--group", "jupyterhub-users", "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == generate("--group", "jupyterhub-users").stdout
    text = result.stdout
    check_with_visudo(text)
    rules = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert rules == [
        "Runas_Alias JUPYTERHUB_HPC_USERS = %jupyterhub-users, !root",
        "Cmnd_Alias JUPYTERHUB_HPC_SUBMIT = /usr/bin/sbatch ^--parsable$",
        "Cmnd_Alias JUPYTERHUB_HPC_CANCEL = /usr/bin/scancel ^[0-9]+$",
        f"Cmnd_Alias JUPYTERHUB_HPC_READ = {READER} "
        rf"^--lines [0-9]+ (/{COMPONENT})+/\.jupyterhub-hpc-[0-9]+\.log$",
        "Defaults!JUPYTERHUB_HPC_SUBMIT env_keep += "
        '"JPY_API_TOKEN JUPYTERHUB_API_TOKEN JUPYTERHUB_HPC_SSL_KEY"',
        "jupyterhub ALL = (JUPYTERHUB_HPC_USERS) NOPASSWD: "
        "JUPYTERHUB_HPC_SUBMIT, JUPYTERHUB_HPC_CANCEL, JUPYTERHUB_HPC_READ",
    ]
    for word in ("SETENV", "ALL)", "(ALL", "-E", "!env_reset", "NOPASSWD: ALL"):
        assert word not in "\n".join(rules), word


@pytest.mark.parametrize(
    ("regex_of", "allowed", "refused"),
    [
        ("SUBMIT", ["--parsable"], ["", "--parsable --wrap=id", "--wrap=id --parsable", "--parsable x"]),
        ("CANCEL", ["12", "7"], ["", "--user=alice", "12 13", "12;id", "-s 9 12", "--signal=KILL 12"]),
        (
            "READ",
            [
                "--lines 21 /home/alice/.jupyterhub-hpc-12.log",
                "--lines 5 /data/home/a.b/.jupyterhub-hpc-1.log",
                "--lines 5 /home/.alice/.jupyterhub-hpc-1.log",
                "--lines 5 /home/...alice/a..b/x../.../.jupyterhub-hpc-1.log",
                "--lines 5 /h/.a/..a/.jupyterhub-hpc-1.log",
            ],
            [
                "--lines 21 /etc/shadow",
                "--lines 21 /home/alice/.jupyterhub-hpc-12.log /etc/shadow",
                "--lines 21 /etc/shadow /home/alice/.jupyterhub-hpc-12.log",
                "--lines 21 /home/alice/.jupyterhub-hpc-12.log --lines 3",
                "--lines 21 --lines 3 /home/alice/.jupyterhub-hpc-12.log",
                "--lines=21 /home/alice/.jupyterhub-hpc-12.log",
                "--lines /home/alice/.jupyterhub-hpc-12.log",
                "-n 21 /home/alice/.jupyterhub-hpc-12.log",
                "/home/alice/.jupyterhub-hpc-12.log",
                "--lines 21 /home/alice/.jupyterhub-hpc-12.log.bak",
                "--lines 21 /home/alice/x.jupyterhub-hpc-12.log",
                "--lines 21 relative/.jupyterhub-hpc-12.log",
                "--lines 21 --follow /home/alice/.jupyterhub-hpc-12.log",
                # no '..', '.' or empty component anywhere in the free parts
                "--lines 21 /home/alice/../bob/.jupyterhub-hpc-12.log",
                "--lines 21 /home/../.jupyterhub-hpc-12.log",
                "--lines 21 /../.jupyterhub-hpc-12.log",
                "--lines 21 /home/alice/./.jupyterhub-hpc-12.log",
                "--lines 21 /./.jupyterhub-hpc-12.log",
                "--lines 21 /home//alice/.jupyterhub-hpc-12.log",
                "--lines 21 //home/alice/.jupyterhub-hpc-12.log",
                "--lines 21 /home/alice//.jupyterhub-hpc-12.log",
                "--lines 21 /.jupyterhub-hpc-12.log",
                "--lines 21 /home/al ice/.jupyterhub-hpc-12.log",
            ],
        ),
    ],
)
def test_argument_patterns_allow_exactly_the_spawners_commands(
    regex_of: str, allowed: list[str], refused: list[str]
) -> None:
    text = generate("--group", "g").stdout
    line = next(ln for ln in text.splitlines() if ln.startswith(f"Cmnd_Alias JUPYTERHUB_HPC_{regex_of} "))
    regex = line.split(" ", 4)[4]
    assert regex.startswith("^") and regex.endswith("$")
    for args in allowed:
        assert ere_match(regex, args), (regex, args)
    for args in refused:
        assert not ere_match(regex, args), (regex, args)


def test_rules_follow_the_hub_configuration(tmp_path: Path) -> None:
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(
        "c.JupyterHub.spawner_class = 'slurm'\n"
        "c.SlurmSpawner.cluster = 'alpha'\n"
        "c.SlurmSpawner.scheduler_commands = "
        "{'sbatch': '/opt/slurm/bin/sbatch', 'scancel': '/opt/slurm/bin/scancel'}\n"
        "c.SlurmSpawner.job_output = '/scratch/{username}/jupyter-{job_id}.out'\n"
        "c.SlurmSpawner.secret_env_names = ['JUPYTERHUB_API_TOKEN']\n"
    )
    result = generate("-f", str(config), "--hub-user", "hubsvc", "--group", "hpc")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    check_with_visudo(text)
    assert "/opt/slurm/bin/sbatch ^--parsable --clusters=alpha$" in text
    assert "/opt/slurm/bin/scancel ^--clusters=alpha [0-9]+$" in text
    read = rf"{READER} ^--lines [0-9]+ /scratch/{COMPONENT}/jupyter-[0-9]+\.out$"
    assert read in text
    regex = read.split(" ", 1)[1]
    assert ere_match(regex, "--lines 21 /scratch/alice/jupyter-12.out")
    for path in ("/scratch/../jupyter-12.out", "/scratch/./jupyter-12.out", "/scratch//jupyter-12.out"):
        assert not ere_match(regex, f"--lines 21 {path}"), path
    assert 'env_keep += "JUPYTERHUB_API_TOKEN"' in text
    assert "hubsvc ALL = (JUPYTERHUB_HPC_USERS) NOPASSWD:" in text
    assert f"from {config}" in text


def test_scheduler_environment_is_part_of_the_allowed_argv(tmp_path: Path) -> None:
    config = tmp_path / "c.py"
    config.write_text("c.SlurmSpawner.scheduler_environment = {'SLURM_CONF': '/etc/slurm-b/slurm.conf'}\n")
    text = generate("-f", str(config), "--group", "g", "--check").stdout
    assert r"/usr/bin/env ^SLURM_CONF=/etc/slurm-b/slurm\.conf sbatch --parsable$" in text
    assert r"/usr/bin/env ^SLURM_CONF=/etc/slurm-b/slurm\.conf scancel [0-9]+$" in text


def test_a_hub_that_runs_commands_itself_gets_no_rules(tmp_path: Path) -> None:
    config = tmp_path / "c.py"
    config.write_text("c.SlurmSpawner.submit_prefix = []\nc.SlurmSpawner.cancel_prefix = []\n")
    text = generate("-f", str(config), "--group", "g", "--check").stdout
    assert "SUBMIT" not in text and "CANCEL" not in text
    assert "Cmnd_Alias JUPYTERHUB_HPC_READ" in text


@pytest.mark.parametrize(
    "prefix",
    [
        ["sudo", "-E", "-u", "{username}", "--"],
        ["sudo", "--preserve-env", "-u", "{username}", "--"],
        ["sudo", "-n", "-s", "-u", "{username}", "--"],
        ["sudo", "-n", "--"],
        ["ssh", "login", "sudo", "-u", "{username}"],
    ],
)
def test_broad_prefixes_are_refused(tmp_path: Path, prefix: list[str]) -> None:
    config = tmp_path / "c.py"
    config.write_text(f"c.SlurmSpawner.submit_prefix = {prefix!r}\n")
    result = generate("-f", str(config), "--group", "g")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "submit_prefix" in result.stderr


@pytest.mark.parametrize(
    ("hub_user", "group"),
    [("root", "g"), ("hub", "g, ALL"), ("hub", "g\nALL ALL=(ALL) ALL"), ("a b", "g"), ("hub", "%g")],
)
def test_names_that_would_widen_the_file_are_refused(hub_user: str, group: str) -> None:
    spawner = load_spawner(None, None)
    with pytest.raises(SudoersError):
        render_sudoers(hub_user, group, rules_for_spawner(spawner))


def test_program_paths_must_be_literal(tmp_path: Path) -> None:
    config = tmp_path / "c.py"
    config.write_text("c.SlurmSpawner.scheduler_commands = {'sbatch': '/opt/my slurm/sbatch'}\n")
    result = generate("-f", str(config), "--group", "g")
    assert result.returncode == 1 and "sbatch" in result.stderr


def test_visudo_check_catches_a_broken_file() -> None:
    with pytest.raises(SudoersError):
        check_with_visudo("jupyterhub ALL = (%g NOPASSWD: /usr/bin/sbatch\n")


def test_local_backend_rules_are_exact(tmp_path: Path) -> None:
    config = tmp_path / "c.py"
    config.write_text(
        "c.JupyterHub.spawner_class = 'local-hpc'\n"
        f"c.LocalHPCSpawner.local_state_dir = {str(tmp_path / 'state')!r}\n"
        "c.LocalHPCSpawner.submit_prefix = ['sudo', '-n', '-u', '{username}', '--']\n"
        "c.LocalHPCSpawner.cancel_prefix = ['sudo', '-n', '-u', '{username}', '--']\n"
    )
    result = generate("-f", str(config), "--group", "g", "--check")
    assert result.returncode == 0, result.stderr
    state = re.escape(str(tmp_path / "state")).replace("\\-", "-")
    assert re.search(rf"jupyterhub-hpc-local \^--state-dir={state} submit\$", result.stdout), result.stdout
    assert re.search(r"jupyterhub-hpc-local \^--state-dir=\S+ cancel \[0-9\]\+\$", result.stdout)


def test_the_reader_and_its_arguments_follow_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "c.py"
    config.write_text(
        "c.SlurmSpawner.output_reader = ['/opt/site/bin/read-output', '--quiet']\n"
        "c.SlurmSpawner.job_output = '/scratch/{username}.{job_id}.log'\n"
    )
    result = generate("-f", str(config), "--group", "g", "--check")
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("Cmnd_Alias JUPYTERHUB_HPC_READ "))
    assert line == (
        f"Cmnd_Alias JUPYTERHUB_HPC_READ = /opt/site/bin/read-output ^--quiet --lines [0-9]+ "
        rf"/scratch/{COMPONENT}\.[0-9]+\.log$"
    )
    regex = line.split(" ", 4)[4]
    assert ere_match(regex, "--quiet --lines 21 /scratch/alice.12.log")
    assert not ere_match(regex, "--quiet --lines 21 /scratch/...12.log")  # user name '.'
    assert not ere_match(regex, "--lines 21 /scratch/alice.12.log")


@pytest.mark.parametrize(
    "job_output",
    [
        "{home}/../{username}/.jupyterhub-hpc-{job_id}.log",
        "{home}/./.jupyterhub-hpc-{job_id}.log",
        "{home}//.jupyterhub-hpc-{job_id}.log",
        "/scratch/{username}/",
        "jupyter-{job_id}.log",
    ],
)
def test_job_output_paths_the_reader_refuses_get_no_rule(tmp_path: Path, job_output: str) -> None:
    config = tmp_path / "c.py"
    config.write_text(f"c.SlurmSpawner.job_output = {job_output!r}\n")
    result = generate("-f", str(config), "--group", "g")
    assert result.returncode == 1 and result.stdout == ""
    assert "job_output" in result.stderr


def test_the_documented_file_is_what_the_command_prints() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "slurm.md").read_text()
    block = doc.split("For the default configuration it prints", 1)[1].split("```", 2)[1]
    documented = [ln for ln in block.splitlines()[1:] if ln.strip()]
    # the reader's path is that of the hub's venv: the documentation shows /opt/jupyterhub-hpc/venv
    text = generate("--group", "jupyterhub-users").stdout.replace(
        READER, "/opt/jupyterhub-hpc/venv/bin/jupyterhub-hpc-read-output"
    )
    assert documented == [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
