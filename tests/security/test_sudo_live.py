"""The sudoers file the tests' non-root hub runs under is the generated one, and under it the
hub account can do exactly what the spawner needs: submit (with the token kept), cancel and
read a job's output as a member of the group; nothing as root, nothing else, no -E."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import HUB_ACCOUNT

pytestmark = [pytest.mark.slurm]

INSTALLED = Path("/etc/sudoers.d/jupyterhub-hpc-test")
CLI = str(Path(sys.executable).parent / "jupyterhub-hpc")
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
        ["sudo", "-n", "-u", "hpcuser1", "--", "tail", "-n", "5", "/etc/passwd"],
        [
            "sudo",
            "-n",
            "-u",
            "hpcuser1",
            "--",
            "tail",
            "-n",
            "5",
            "/home/hpcuser1/.jupyterhub-hpc-1.log",
            "/etc/passwd",
        ],
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
        "sudo", "-n", "-u", "hpcuser1", "--", "tail", "-n", "3", "/home/hpcuser1/.jupyterhub-hpc-1.log"
    )
    # allowed by sudo; tail itself may not find the file
    assert "password is required" not in read.stderr and "not allowed" not in read.stderr, read.stderr
