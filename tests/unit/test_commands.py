"""run_command and expand_prefix, with real processes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from jupyterhub_hpc.commands import CommandError, expand_prefix, run_command


def process_gone(pid: int, within: float = 3.0) -> bool:
    """True once ``pid`` no longer runs (exited, or a zombie waiting to be reaped)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.02)
    return False


async def test_stdout_stderr_and_exit_status() -> None:
    result = await run_command(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.returncode, result.stdout, result.stderr, result.ok) == (3, "out\n", "err\n", False)
    assert result.argv == ("sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.duration >= 0


async def test_input_goes_to_stdin() -> None:
    text = "#!/bin/bash\necho 'hello $(id)'\n" * 1000
    result = await run_command(["cat"], input=text)
    assert result.ok and result.stdout == text


async def test_without_input_stdin_is_empty() -> None:
    result = await run_command(["cat"], timeout=5)
    assert result.ok and result.stdout == ""


async def test_env_replaces_the_environment() -> None:
    os.environ["JUPYTERHUB_HPC_TEST_LEAK"] = "leaked"
    try:
        result = await run_command(["/usr/bin/env"], env={"ONLY": "this one", "TOKEN": "$(id)"})
    finally:
        del os.environ["JUPYTERHUB_HPC_TEST_LEAK"]
    assert sorted(result.stdout.splitlines()) == ["ONLY=this one", "TOKEN=$(id)"]


async def test_without_env_the_environment_is_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_HPC_TEST_INHERIT", "yes")
    result = await run_command(["/usr/bin/env"])
    assert "JUPYTERHUB_HPC_TEST_INHERIT=yes" in result.stdout.splitlines()


async def test_cwd(tmp_path: Path) -> None:
    result = await run_command(["pwd"], cwd=str(tmp_path))
    assert result.stdout.strip() == str(tmp_path)


async def test_arguments_are_never_interpreted_by_a_shell(tmp_path: Path) -> None:
    args = ["$(touch pwned)", "`touch pwned2`", "a b", "; touch pwned3", "*"]
    result = await run_command(["printf", "[%s]\\n", *args], cwd=str(tmp_path))
    assert result.stdout.splitlines() == [f"[{a}]" for a in args]
    assert list(tmp_path.iterdir()) == []


async def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    with pytest.raises(CommandError, match=r"did not finish within 0\.3 s") as info:
        await run_command(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], timeout=0.3)
    assert time.monotonic() - started < 3
    assert info.value.result is None
    child = int(pidfile.read_text())
    assert process_gone(child), "the hanging grandchild must be killed with its group"


async def test_timeout_on_a_process_that_ignores_sigterm() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"
    started = time.monotonic()
    with pytest.raises(CommandError):
        await run_command([sys.executable, "-c", code], timeout=0.5)
    assert time.monotonic() - started < 3


async def test_missing_program() -> None:
    with pytest.raises(CommandError, match="cannot run /nonexistent/squeue"):
        await run_command(["/nonexistent/squeue", "--jobs=1"])


async def test_empty_command() -> None:
    with pytest.raises(CommandError, match="empty command"):
        await run_command([])


async def test_arguments_are_stringified() -> None:
    result = await run_command(["printf", "%s-%s", 1, Path("x")])  # type: ignore[list-item]
    assert result.stdout == "1-x"


# -- expand_prefix -------------------------------------------------------------------------------


def test_expand_prefix_fills_each_element() -> None:
    prefix = ["sudo", "-n", "-u", "{username}", "--"]
    assert expand_prefix(prefix, username="alice") == ["sudo", "-n", "-u", "alice", "--"]
    assert prefix == ["sudo", "-n", "-u", "{username}", "--"]


@pytest.mark.parametrize("username", ["two words", "a -u root", "x; id", "{other}", "$(id)", "", "a\nb"])
async def test_expand_prefix_keeps_one_argument_per_element(username: str) -> None:
    argv = expand_prefix(["printf", "[%s]\\n", "--user={username}", "{username}", "x"], username=username)
    assert len(argv) == 5
    assert argv[3] == username
    result = await run_command(argv)
    assert result.stdout.split("]\n")[:3] == [f"[--user={username}", f"[{username}", "[x"]


def test_expand_prefix_unknown_field_is_an_error() -> None:
    with pytest.raises(KeyError):
        expand_prefix(["ssh", "{host}"], username="alice")
