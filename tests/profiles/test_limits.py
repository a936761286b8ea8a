"""Live limits: the sinfo/sacctmgr parsers on recorded (and clearly hand-written) outputs, and the
shared TTL cache with stand-in scheduler programs (real processes, run through run_command)."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest

from jupyterhub_hpc.backends.limits import ClusterLimits, parse_gres
from jupyterhub_hpc.backends.slurm import SlurmBackend
from jupyterhub_hpc.backends.slurm_limits import (
    parse_sacctmgr_associations,
    parse_sinfo_nodes,
    parse_slurm_duration,
    sinfo_argv,
)
from jupyterhub_hpc.client import ClientSettings, SchedulerClient, get_client
from jupyterhub_hpc.profiles.limits import LimitsCache, get_limits_cache

from .conftest import DATA, data


def test_sinfo_recorded_on_the_test_machine() -> None:
    idle = parse_sinfo_nodes(data("sinfo-node-idle.txt"))
    assert list(idle) == ["debug", "short", "gpu"]
    debug, short, gpu = idle["debug"], idle["short"], idle["gpu"]
    assert debug.default and not gpu.default
    assert (debug.max_walltime, short.max_walltime, gpu.max_walltime) == (None, 300, 4 * 3600)
    assert (gpu.cpus_per_node, gpu.memory_per_node, dict(gpu.gpus_per_node)) == (8, 8000, {"tesla": 2})
    assert (gpu.nodes, gpu.idle_nodes, gpu.idle_cpus, gpu.idle_gpus) == (1, 1, 8, 2)
    busy = parse_sinfo_nodes(data("sinfo-node-gpu-job.txt"))["gpu"]
    # job 44 holds 2 cores and one of the two GPUs: the node is "mixed", not idle
    assert (busy.idle_nodes, busy.idle_cpus, busy.idle_gpus) == (0, 6, 1)
    assert busy.max_gpus("tesla") == 2 and busy.max_gpus(None) == 2 and busy.max_gpus("a100") == 0


def test_sinfo_hand_written_multinode_sample() -> None:
    parts = parse_sinfo_nodes(data("sinfo-node-multinode.HAND-WRITTEN.txt"))
    cpu, bigmem, gpu, maint = parts["cpu"], parts["bigmem"], parts["gpu"], parts["maint"]
    assert cpu.default and cpu.max_walltime == 2 * 86400 and cpu.default_walltime == 3600
    # the drained node counts as capacity, but not as idle
    assert (cpu.nodes, cpu.idle_nodes, cpu.idle_cpus) == (3, 1, 56)
    assert bigmem.memory_per_node == 2048000 and bigmem.idle_nodes == 1
    assert dict(gpu.gpus_per_node) == {"a100": 4, "v100": 2, "": 2}
    assert gpu.gpu_types == ["a100", "v100"]
    # g001: 4-1 free, g002: 4 (the nvme GRES is not a GPU), g003: 2, g004 is down
    assert gpu.idle_gpus == 3 + 4 + 2
    assert gpu.default_walltime == 30 * 60 and gpu.max_walltime == 12 * 3600
    assert not maint.up and maint.idle_nodes == 0 and maint.idle_cpus == 0


def test_recorded_multinode_cluster_with_accounting() -> None:
    parts = parse_sinfo_nodes(data("live-multi-sinfo-node.txt"))
    debug, short, gpu = parts["debug"], parts["short"], parts["gpu"]
    assert debug.default and (debug.nodes, debug.idle_nodes, debug.idle_cpus, debug.cpus_per_node) == (
        3,
        3,
        6,
        2,
    )
    assert short.max_walltime == 60 and short.default_walltime == 60
    assert (gpu.nodes, dict(gpu.gpus_per_node), gpu.idle_gpus, gpu.max_walltime) == (
        1,
        {"tesla": 2},
        2,
        4 * 3600,
    )
    assoc = parse_sacctmgr_associations(data("live-multi-sacctmgr-assoc.txt"))
    # the rows of accounts (no user) are not users; root has its own association
    assert set(assoc) == {"root", "hpcuser3", "hpcuser4"}
    assert assoc["hpcuser3"].accounts == ("chemistry", "physics") and assoc["hpcuser3"].qos == (
        "long",
        "normal",
    )
    assert assoc["hpcuser4"].accounts == ("physics",) and assoc["hpcuser4"].qos == ("normal",)


def test_sacctmgr_hand_written_associations() -> None:
    assoc = parse_sacctmgr_associations(data("sacctmgr-assoc.HAND-WRITTEN.txt"))
    assert set(assoc) == {"hpcuser1", "hpcuser2", "hpcuser3"}
    assert assoc["hpcuser1"].accounts == ("physics", "chem")
    assert assoc["hpcuser1"].qos == ("normal", "long", "gpu-normal")
    assert assoc["hpcuser3"].qos == ("debug", "normal")
    # accounting off (this machine): exit 1 and a message; the parser is not even asked
    assert "not running a supported accounting_storage plugin" in data("sacctmgr-disabled.stderr")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("infinite", None),
        ("UNLIMITED", None),
        ("n/a", None),
        ("5:00", 300),
        ("30", 1800),
        ("4:00:00", 14400),
        ("2-00:00:00", 172800),
        ("1-12:30:00", 131400),
    ],
)
def test_slurm_durations(text: str, seconds: int | None) -> None:
    assert parse_slurm_duration(text) == seconds


def test_gres_strings() -> None:
    assert parse_gres("gpu:a100:4(S:0-1),gpu:v100:1,nvme:1") == {"a100": 4, "v100": 1}
    assert parse_gres("gpu:tesla:0(IDX:N/A)") == {"tesla": 0}
    assert parse_gres("(null)") == {}


def test_configured_limits_win_over_live_ones() -> None:
    live = ClusterLimits(partitions=parse_sinfo_nodes(data("sinfo-node-idle.txt")), live=True)
    merged = live.with_config(
        {"gpu": {"max_walltime": "02:00:00", "max_gpus": 1}, "viz": {"max_cpus": 4, "max_memory": "16G"}}
    )
    assert merged.partitions["gpu"].max_walltime == 7200
    assert dict(merged.partitions["gpu"].gpus_per_node) == {"": 1}
    assert merged.partitions["gpu"].cpus_per_node == 8  # not configured: live value kept
    assert merged.partitions["viz"].memory_per_node == 16384  # a partition sinfo does not show
    assert live.partitions["gpu"].max_walltime == 14400  # the live snapshot is not changed
    with pytest.raises(ValueError, match="unknown keys"):
        live.with_config({"gpu": {"maxtime": 1}})


def _program(path: Path, body: str) -> str:
    """A stand-in scheduler program: a real executable that run_command starts."""
    path.write_text(f"#!{sys.executable}\nimport os, sys, time\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _counting_sinfo(
    tmp_path: Path, output: str, *, fail: bool = False, delay: float = 0.0
) -> tuple[str, Path]:
    count = tmp_path / "calls"
    count.write_text("")
    (tmp_path / "out.txt").write_text(output)
    body = (
        f"open({str(count)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"time.sleep({delay})\n"
        + (
            "sys.stderr.write('sinfo: error: Unable to contact slurm controller\\n'); sys.exit(1)\n"
            if fail
            else ""
        )
        + f"sys.stdout.write(open({str(tmp_path / 'out.txt')!r}).read())"
    )
    return _program(tmp_path / "sinfo", body), count


def slurm_cache(**commands: str) -> LimitsCache:
    """A cache of its own (not the registry's) for Slurm with these program paths."""
    return LimitsCache(SchedulerClient(SlurmBackend(commands=commands), ClientSettings(timeout=20)))


async def test_one_scheduler_call_per_ttl_for_all_callers(tmp_path: Path) -> None:
    sinfo, calls = _counting_sinfo(tmp_path, data("sinfo-node-idle.txt"), delay=0.3)
    sacctmgr = _program(tmp_path / "sacctmgr", "sys.stderr.write('no accounting\\n'); sys.exit(1)")
    cache = slurm_cache(sinfo=sinfo, sacctmgr=sacctmgr)
    results = await asyncio.gather(*(cache.get(ttl=60, timeout=10) for _ in range(20)))
    assert all(r is results[0] for r in results)
    assert results[0].live and results[0].associations is None and "gpu" in results[0].partitions
    assert calls.read_text().splitlines() == [" ".join(sinfo_argv("x", "")[1:])]
    await cache.get(ttl=60, timeout=10)
    assert len(calls.read_text().splitlines()) == 1


async def test_a_failing_scheduler_keeps_the_last_data_and_never_raises(tmp_path: Path) -> None:
    good, _ = _counting_sinfo(tmp_path, data("sinfo-node-idle.txt"))
    cache = slurm_cache(sinfo=good, sacctmgr="/nonexistent/sacctmgr")
    first = await cache.get(ttl=0, timeout=10)
    assert first.live and first.error is None
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad, _ = _counting_sinfo(bad_dir, "", fail=True)
    cache.client.backend.commands["sinfo"] = bad
    stale = await cache.get(ttl=0, timeout=10)  # the last data at once; a refresh starts
    assert stale is first
    assert cache._refresh is not None
    refreshed = await cache._refresh
    assert not refreshed.live and "Unable to contact slurm controller" in (refreshed.error or "")
    assert refreshed.partitions == first.partitions
    # never answered at all: no partitions, an error, no exception
    empty = slurm_cache(sinfo="/nonexistent/sinfo")
    result = await empty.get(ttl=60, timeout=10)
    assert result.partitions == {} and "cannot run" in (result.error or "")


async def test_a_hanging_scheduler_is_cut_off_by_the_timeout(tmp_path: Path) -> None:
    slow, _ = _counting_sinfo(tmp_path, data("sinfo-node-idle.txt"), delay=30)
    cache = slurm_cache(sinfo=slow)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    result = await cache.get(ttl=60, timeout=1)
    assert loop.time() - t0 < 5
    assert result.partitions == {} and "did not finish" in (result.error or "")


async def test_real_sinfo_and_the_process_wide_registry() -> None:
    """The real sinfo of this machine (scripts/slurm.sh), through the shared registry."""
    cache = get_limits_cache(get_client(SlurmBackend()))
    assert get_limits_cache(get_client(SlurmBackend())) is cache
    assert get_limits_cache(get_client(SlurmBackend(cluster="other"))) is not cache
    assert get_limits_cache(get_client(SlurmBackend(), ClientSettings(timeout=5))) is not cache
    result = await cache.get(ttl=60, timeout=20)
    assert result.live, result.error
    assert {"debug", "short", "gpu"} <= set(result.partitions)
    assert result.partitions["short"].max_walltime == 300
    assert result.associations is None  # accounting is off here: handled, not an error
    assert result.default_partition() == "debug"


def test_recorded_files_are_documented() -> None:
    readme = (DATA / "README.md").read_text()
    for name in os.listdir(DATA):
        stem = name.split(".")[0]
        assert name == "README.md" or stem in readme, name
    assert all(
        "HAND-WRITTEN" in n for n in os.listdir(DATA) if n.startswith(("sacctmgr-assoc", "sinfo-node-multi"))
    )
