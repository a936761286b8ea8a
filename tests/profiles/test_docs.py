"""docs/profiles.md: the example configuration is valid as written, and does what the page says,
on the hand-written multi-node sinfo sample (partitions cpu, bigmem and gpu, as in the example)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from traitlets.config import Config

from jupyterhub_hpc.backends.base import JobScript
from jupyterhub_hpc.backends.limits import ClusterLimits
from jupyterhub_hpc.backends.slurm import SlurmBackend
from jupyterhub_hpc.backends.slurm_limits import parse_sinfo_nodes
from jupyterhub_hpc.profiles.model import parse_profile_list
from jupyterhub_hpc.profiles.validate import Context, resolve
from jupyterhub_hpc.request import RequestError
from jupyterhub_hpc.spawner import SlurmSpawner

from .conftest import data

DOC = Path(__file__).resolve().parents[2] / "docs" / "profiles.md"


def site_config() -> Config:
    """Run the example's code block as JupyterHub would run jupyterhub_config.py."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    example = next(b for b in blocks if "ENVIRONMENTS = {" in b)
    c = Config()
    exec(compile(example, str(DOC), "exec"), {"c": c})  # includes check_profiles(c)
    return c


@pytest.fixture(scope="module")
def site() -> tuple[SlurmSpawner, Any]:
    c = site_config()
    user = SimpleNamespace(name="alice", groups=[], url="/user/alice/")
    spawner = SlurmSpawner(config=c, user=user)
    return spawner, parse_profile_list(spawner.profile_list, frozenset(spawner.trait_names()))


def context(spawner: SlurmSpawner, groups: tuple[str, ...] = ()) -> Context:
    live = ClusterLimits(
        partitions=parse_sinfo_nodes(data("sinfo-node-multinode.HAND-WRITTEN.txt")), live=True
    )
    return Context(
        user="alice",
        groups=frozenset(groups),
        base_job=spawner.profile_base_job(),
        base_backend="slurm",
        limits={"slurm/": live.with_config(spawner.partition_limits)},
    )


def refused(site: Any, options: dict[str, Any], groups: tuple[str, ...] = ()) -> RequestError:
    spawner, profiles = site
    with pytest.raises(RequestError) as info:
        resolve(profiles, options, context(spawner, groups))
    return info.value


def test_the_documented_refusals(site: Any) -> None:
    error = refused(site, {"profile": "gpu", "walltime": "12:00:00"})
    assert str(error) == "walltime: 12:00:00 is more than the gpu partition's limit of 08:00:00"
    error = refused(site, {"profile": "gpu", "gpus": 4, "gpu_type": "v100"})
    assert str(error) == "gpus: 4 GPUs: nodes of partition gpu have at most 2"
    assert refused(site, {"profile": "gpu", "gpus": 0, "gpu_type": "a100"}).field == "gpu_type"
    assert refused(site, {"profile": "bigmem"}).field == "profile"  # not in bigmem-users
    assert refused(site, {"profile": "bigmem", "cpus": 6}, ("bigmem-users",)).field == "cpus"  # step 4


def test_the_documented_job_request(site: Any) -> None:
    spawner, profiles = site
    res = resolve(profiles, {"profile": "gpu", "gpus": 2, "cpus": 16}, context(spawner))
    directives = SlurmBackend().directives(
        res.job_request(), JobScript(workdir="/h", output_path="/o", command=[])
    )
    for expected in (
        "--partition=gpu",
        "--gres=gpu:a100:2",
        "--cpus-per-task=16",
        "--mem=32768M",
        "--time=02:00:00",
    ):
        assert expected in directives, directives
    cpu = resolve(profiles, {}, context(spawner)).job_request()
    assert (cpu.partition, cpu.cpus, cpu.memory, cpu.walltime, cpu.account) == (
        "cpu",
        2,
        8192,
        4 * 3600,
        None,
    )
    big = resolve(profiles, {"profile": "bigmem", "memory": "1T"}, context(spawner, ("bigmem-users",)))
    assert big.job_request().memory == 1024 * 1024
    env = resolve(profiles, {"env--unlisted-choice": "my_env"}, context(spawner))
    assert ("environment", {"JUPYTER_CONDA_ENV": "my_env"}) in env.overrides
