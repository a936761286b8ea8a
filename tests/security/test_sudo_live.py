"""The sudoers file the tests' non-root hub runs under is the generated one, and under it the
hub account can do exactly what the spawner needs: submit (with the token kept), cancel and
read a job's output as a member of the group; nothing as root, nothing else, no -E. The output
is read by jupyterhub-hpc-read-output, which reads the user's own file and refuses a symbolic
link the user planted (to a file of another user, to a root file; or a directory), a path with
'..' and a file of another owner."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import HUB_ACCOUNT

pytestmark = [pytest.mark.slurm]

INSTALLED = Path("/etc/sudoers.d/jupyterhub-hpc-test")
CLI = str(Path(sys.executable).parent / "jupyterhub-hpc")
READER = str(Path(sys.executable).parent / "jupyterhub-hpc-read-output")
SCRIPT = """#!/bin/bash
#SBATCH --job-name=sectest
#SBATCH --output=/tmp/sectest-sudo-%j.out
#SBATCH --mem=50M
#SBATCH --time=1
echo "token=${JUPYTERHUB_API_TOKEN:-unset} other=${OTHER_VAR:-unset}"
"""


def as_hub(*argv: str, input: str = "") -> subprocess.CompletedProcess[str]:
    """Run argv as the hub account, with a token and another variable in its environment."""
    return subprocess.run(
        [
            "runuser",
            "-u",
            HUB_ACCOUNT,
            "--",
            "env",
            "JUPYTERHUB_API_TOKEN=tok-sudo-test",
            "OTHER_VAR=x",
            *argv,
        ],
        input=input,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_the_installed_file_is_the_generated_one() -> None:
    generated = subprocess.run(
        [CLI, "sudoers", "--hub-user", HUB_ACCOUNT, "--group", "jupyterhub-users"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert INSTALLED.read_text() == generated
    assert INSTALLED.stat().st_mode & 0o777 == 0o440
    assert subprocess.run(["visudo", "-c", "-q"], check=False).returncode == 0


def test_the_hub_account_may_submit_with_the_token_and_nothing_more() -> None:
    result = as_hub("sudo", "-n", "-u", "hpcuser1", "--", "sbatch", "--parsable", input=SCRIPT)
    assert result.returncode == 0, result.stderr
    job = result.stdout.strip()
    output = Path(f"/tmp/sectest-sudo-{job}.out")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "token=" not in (output.read_text() if output.exists() else ""):
        time.sleep(0.5)
    try:
        # the token is kept (env_keep, submit only); any other variable of the hub is not
        assert output.read_text().strip() == "token=tok-sudo-test other=unset"
    finally:
        output.unlink(missing_ok=True)


@pytest.mark.parametrize(
    "argv",
    [
        ["sudo", "-n", "-u", "root", "--", "sbatch", "--parsable"],
        ["sudo", "-n", "-u", HUB_ACCOUNT, "--", "sbatch", "--parsable"],
        ["sudo", "-n", "-u", "nobody", "--", "sbatch", "--parsable"],
        ["sudo", "-n", "-g", "root", "-u", "hpcuser1", "--", "sbatch", "--parsable"],
        ["sudo", "-n", "-E", "-u", "hpcuser1", "--", "sbatch", "--parsable"],
        ["sudo", "-n", "--preserve-env=OTHER_VAR", "-u", "hpcuser1", "--", "sbatch", "--parsable"],
        ["sudo", "-n", "-u", "hpcuser1", "--", "env", "OTHER_VAR=x", "sbatch", "--parsable"],
        ["sudo", "-n", "-u", "hpcuser1", "--", "sbatch", "--parsable", "--wrap=id"],
        ["sudo", "-n", "-u", "hpcuser1", "--", "sbatch", "--wrap=id"],
        ["sudo", "-n", "-u", "hpcuser1", "--", "scancel", "--user=hpcuser2"],
        ["sudo", "-n", "-u", "hpcuser1", "--", "scancel", "1", "2"],
        ["sudo", "-n", "-u", "hpcuser1", "--", "tail", "-n", "5", "/home/hpcuser1/.jupyterhub-hpc-1.log"],
        ["sudo", "-n", "-u", "hpcuser1", "--", READER, "--lines", "5", "/etc/passwd"],
        ["sudo", "-n", "-u", "hpcuser1", "--", READER, "--lines", "5", "/home/hpcuser1/../../etc/passwd"],
        [
            "sudo",
            "-n",
            "-u",
            "hpcuser1",
            "--",
            READER,
            "--lines",
            "5",
            "/home/hpcuser1/.jupyterhub-hpc-1.log",
            "/etc/passwd",
        ],
        ["sudo", "-n", "-u", "root", "--", READER, "--lines", "5", "/root/.jupyterhub-hpc-1.log"],
        ["sudo", "-n", "-u", "hpcuser1", "--", "id"],
        ["sudo", "-n", "-u", "hpcuser1", "--", "/bin/sh", "-c", "id"],
        ["sudo", "-n", "-u", "hpcuser1", "-s"],
        ["sudo", "-n", "-i", "-u", "hpcuser1"],
        ["sudo", "-n", "-e", "/etc/hosts"],
    ],
)
def test_everything_else_is_refused(argv: list[str]) -> None:
    result = as_hub(*argv, input=SCRIPT)
    assert result.returncode != 0, (argv, result.stdout)
    assert result.stdout.strip() == "", result.stdout


def test_cancel_and_read_are_allowed_with_their_exact_arguments() -> None:
    cancel = as_hub("sudo", "-n", "-u", "hpcuser1", "--", "scancel", "999999")
    assert "password is required" not in cancel.stderr and "not allowed" not in cancel.stderr, cancel.stderr
    read = as_hub(
        "sudo", "-n", "-u", "hpcuser1", "--", READER, "--lines", "3", "/home/hpcuser1/.jupyterhub-hpc-0.log"
    )
    # allowed by sudo; the reader itself does not find the file
    assert "password is required" not in read.stderr and "not allowed" not in read.stderr, read.stderr
    assert read.returncode == 1 and "No such file" in read.stderr, read.stderr


#: job ids of the files below: no real job of the tests has them
FAKE_JOB = 900_000_000 + os.getpid() % 1_000_000


def as_user(user: str, *argv: str) -> None:
    subprocess.run(["runuser", "-u", user, "--", *argv], check=True, timeout=30)


def output_of(user: str, job: int) -> Path:
    return Path(pwd.getpwnam(user).pw_dir) / f".jupyterhub-hpc-{job}.log"


def hub_reads(user: str, path: str | Path, lines: int = 5) -> subprocess.CompletedProcess[str]:
    """What the spawner runs (read_prefix + output_reader), as the hub account."""
    return as_hub("sudo", "-n", "-u", user, "--", READER, "--lines", str(lines), str(path))


@pytest.fixture
def planted() -> Iterator[list[Path]]:
    """Paths the test creates; removed afterwards."""
    paths: list[Path] = []
    yield paths
    for path in reversed(paths):
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink(missing_ok=True)


def write_as(user: str, path: Path, text: str, planted: list[Path]) -> None:
    planted.append(path)
    as_user(user, "sh", "-c", 'umask 022 && printf %s "$1" > "$2"', "sh", text, str(path))


def test_the_hub_reads_the_users_own_output(planted: list[Path]) -> None:
    path = output_of("hpcuser1", FAKE_JOB)
    write_as("hpcuser1", path, "".join(f"line {i}\n" for i in range(30)) + "jupyterhub-hpc-exit 0\n", planted)
    result = hub_reads("hpcuser1", path, 3)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "line 28\nline 29\njupyterhub-hpc-exit 0\n"


def test_a_symlink_the_user_planted_is_not_followed(planted: list[Path]) -> None:
    # another user's readable output, and a root file anyone may read: the reader opens neither
    other = output_of("hpcuser2", FAKE_JOB)
    write_as("hpcuser2", other, "secret of hpcuser2\n", planted)
    root_file = Path(f"/var/tmp/jupyterhub-hpc-sectest-{FAKE_JOB}")
    planted.append(root_file)
    root_file.write_text("secret of root\n")
    root_file.chmod(0o644)
    link = output_of("hpcuser1", FAKE_JOB + 1)
    planted.append(link)
    for target in (other, root_file, Path("/etc/shadow")):
        link.unlink(missing_ok=True)
        as_user("hpcuser1", "ln", "-s", str(target), str(link))
        result = hub_reads("hpcuser1", link)
        assert result.returncode == 1, (target, result)
        assert result.stdout == "" and "is a symbolic link" in result.stderr, (target, result)


def test_a_symlinked_directory_is_not_followed(planted: list[Path]) -> None:
    home = Path(pwd.getpwnam("hpcuser1").pw_dir)
    real, alias = home / f"jhpc-real-{FAKE_JOB}", home / f"jhpc-alias-{FAKE_JOB}"
    planted.append(real)
    as_user("hpcuser1", "mkdir", str(real))
    write_as("hpcuser1", real / f".jupyterhub-hpc-{FAKE_JOB}.log", "mine\n", planted)
    planted.append(alias)
    as_user("hpcuser1", "ln", "-s", str(real), str(alias))
    assert hub_reads("hpcuser1", real / f".jupyterhub-hpc-{FAKE_JOB}.log").stdout == "mine\n"
    result = hub_reads("hpcuser1", alias / f".jupyterhub-hpc-{FAKE_JOB}.log")
    assert result.returncode == 1 and result.stdout == "", result
    assert "is a symbolic link" in result.stderr


@pytest.mark.parametrize(
    "shape",
    [
        "/home/hpcuser2/../hpcuser1/.jupyterhub-hpc-{job}.log",
        "/home/hpcuser1/./.jupyterhub-hpc-{job}.log",
        "/home//hpcuser1/.jupyterhub-hpc-{job}.log",
        "/home/hpcuser1/.jupyterhub-hpc-{job}.log/",
    ],
)
def test_dot_dot_and_empty_components_are_refused(planted: list[Path], shape: str) -> None:
    write_as("hpcuser1", output_of("hpcuser1", FAKE_JOB), "mine\n", planted)
    result = hub_reads("hpcuser1", shape.format(job=FAKE_JOB))
    assert result.returncode != 0 and result.stdout == "", result
    assert "a password is required" in result.stderr, result  # sudo's rule cannot match them
    # and the reader refuses them too
    direct = subprocess.run(
        ["runuser", "-u", "hpcuser1", "--", READER, "--lines", "5", shape.format(job=FAKE_JOB)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert direct.returncode == 1 and direct.stdout == "" and "component" in direct.stderr, direct


def test_a_file_of_another_owner_is_refused(planted: list[Path]) -> None:
    path = output_of("hpcuser1", FAKE_JOB + 2)
    write_as("hpcuser1", path, "not hpcuser1's any more\n", planted)
    os.chown(path, pwd.getpwnam("hpcuser2").pw_uid, -1)  # readable by hpcuser1 (0644), not theirs
    result = hub_reads("hpcuser1", path)
    assert result.returncode == 1 and result.stdout == "", result
    assert "is owned by uid" in result.stderr
