"""The scheduler client: the one place a backend's argv becomes a command (prefix, environment,
SSH), shared by the spawner, the watcher, the limits cache and the sudoers generator; real
stand-in programs for what it runs."""

from __future__ import annotations

import ast
import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from jupyterhub_hpc.backends.slurm import SlurmBackend
from jupyterhub_hpc.client import ClientSettings, Prefixes, SchedulerClient, get_client
from jupyterhub_hpc.profiles.limits import get_limits_cache
from jupyterhub_hpc.spawner import SlurmSpawner
from jupyterhub_hpc.sudoers import rules_for_spawner

SRC = Path(__file__).resolve().parents[2] / "src" / "jupyterhub_hpc"
USER = SimpleNamespace(name="hpcuser1", groups=[], url="/user/hpcuser1/")
SUDO = ("sudo", "-n", "-u", "{username}", "--")


def test_a_local_command_gets_its_prefix_and_environment() -> None:
    client = SchedulerClient(
        SlurmBackend(),
        ClientSettings(prefixes=Prefixes(submit=SUDO), environment=(("SLURM_CONF", "/etc/c"),)),
    )
    # behind sudo (which resets the environment): env NAME=value after the prefix
    submit = client.command(["sbatch", "--parsable"], kind="submit", username="alice", env={"PATH": "/bin"})
    assert submit.argv == (
        "sudo",
        "-n",
        "-u",
        "alice",
        "--",
        "env",
        "SLURM_CONF=/etc/c",
        "sbatch",
        "--parsable",
    )
    assert submit.env == {"PATH": "/bin"}
    # without a prefix: in the process environment
    status = client.command(["squeue"], kind="status")
    assert status.argv == ("squeue",) and status.env is not None and status.env["SLURM_CONF"] == "/etc/c"
    # the output reader is no scheduler program: no scheduler_environment
    read = client.command(["reader", "x"], kind="read", username="alice", env={})
    assert read.argv == ("reader", "x") and read.env == {}
    with pytest.raises(ValueError, match="unknown command kind"):
        client.command(["x"], kind="shell")


async def test_it_runs_real_programs_and_counts_them(tmp_path: Path) -> None:
    sinfo = tmp_path / "sinfo"
    sinfo.write_text(
        f"#!{sys.executable}\nimport os, sys\n"
        "print('debug|debug*|up|n1|idle|2|0/2/0/2|1000|0|(null)|(null)|5:00|1:00|')\n"
        "sys.stderr.write(os.environ.get('SLURM_CONF', ''))\n"
    )
    sinfo.chmod(sinfo.stat().st_mode | stat.S_IXUSR)
    backend = SlurmBackend(commands={"sinfo": str(sinfo), "sacctmgr": "/nonexistent/sacctmgr"})
    client = SchedulerClient(backend, ClientSettings(environment=(("SLURM_CONF", "/x"),), timeout=10))
    limits = await client.limits()
    assert limits.live and limits.partitions["debug"].max_walltime == 300
    assert limits.associations is None  # the association query could not run: not an error
    assert client.counts == {"limits": 1, "associations": 1}
    result = await client.run(backend.limits_argv() or [])
    assert result.stderr == "/x"  # scheduler_environment reached the program


def test_spawners_watcher_limits_and_sudoers_share_one_client() -> None:
    config = {"submit_prefix": list(SUDO), "cancel_prefix": list(SUDO), "scheduler_environment": {"A": "1"}}
    one, two = (SlurmSpawner(user=USER, **config) for _ in range(2))  # type: ignore[arg-type]
    assert one.client is two.client
    assert one.watcher is two.watcher and one.watcher.client is one.client
    # the limits of the spawner's own scheduler: the same client, so the same key
    assert get_limits_cache(one.scheduler_client()).client is one.client
    # another cluster, another client (and watcher)
    other = SlurmSpawner(user=USER, cluster="c2", **config)  # type: ignore[arg-type]
    assert other.client is not one.client and other.watcher is not one.watcher
    # an ssh_host: another client whose every command goes over ssh
    remote = SlurmSpawner(user=USER, ssh_host="login1", **config)  # type: ignore[arg-type]
    assert remote.client is not one.client and remote.client.remote
    assert remote.client.command(["sinfo"]).argv[0] == "ssh"
    # the sudoers rules are built from the client's own argv
    rules = {r.purpose: r for r in rules_for_spawner(one)}
    assert rules["SUBMIT"].path.endswith("/env") and "A=1" in rules["SUBMIT"].cmnd()


def test_the_registry_keys_on_everything_that_changes_a_command() -> None:
    base = get_client(SlurmBackend(), ClientSettings(timeout=11))
    assert get_client(SlurmBackend(), ClientSettings(timeout=11)) is base
    for different in (
        get_client(SlurmBackend(cluster="c2"), ClientSettings(timeout=11)),
        get_client(SlurmBackend(commands={"squeue": "/opt/squeue"}), ClientSettings(timeout=11)),
        get_client(SlurmBackend(), ClientSettings(timeout=12)),
        get_client(SlurmBackend(), ClientSettings(timeout=11, prefixes=Prefixes(status=("sudo",)))),
        get_client(SlurmBackend(), ClientSettings(timeout=11, environment=(("A", "1"),))),
    ):
        assert different is not base


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.update(f"{'.' * node.level}{node.module or ''}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("path", sorted((SRC / "profiles").glob("*.py")), ids=os.path.basename)
def test_the_profiles_run_no_command_themselves(path: Path) -> None:
    """Only the client runs scheduler commands: profiles/ imports no process runner."""
    imported = _imports(path)
    runners = {"subprocess", "asyncio.subprocess"}
    assert not [n for n in imported if n in runners or n.endswith((".run_command", ".with_environment"))]
