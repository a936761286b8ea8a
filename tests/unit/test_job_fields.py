"""The job fields sites set (issue 13, item 3): task counts, GPUs per task, generic resources,
several partitions, the working directory. Each is validated into the typed request, rendered
by every backend whose scheduler has it, and refused, naming the field and why, by one that
has not (before anything is submitted)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jupyterhub_hpc.backends import BUILTIN, backend_class
from jupyterhub_hpc.backends.base import OPTIONAL_FIELDS, Backend, JobScript, asked_fields
from jupyterhub_hpc.backends.limits import ClusterLimits, PartitionInfo
from jupyterhub_hpc.request import JobRequest, RequestError

JOB = JobScript(
    workdir="/home/alice", output_path="/home/alice/out-%j.log", command=["jupyterhub-singleuser"]
)


def backend(name: str) -> Backend:
    cls = backend_class(name)
    if name == "local":
        return cls(commands={"jupyterhub-hpc-local": "/nonexistent/jupyterhub-hpc-local"})
    return cls()


def directives(name: str, request: JobRequest) -> list[str]:
    b = backend(name)
    prefix = b.directive_prefix
    if name == "htcondor":
        return [line.strip() for line in b.submit_input(request, JOB).splitlines()]  # type: ignore[attr-defined]
    return [
        line[len(prefix) :].strip() for line in b.render(request, JOB).splitlines() if line.startswith(prefix)
    ]


def job(**fields: Any) -> JobRequest:
    return JobRequest.from_mapping({"cpus": 2, "memory": "4G", "walltime": "01:00:00", **fields})


# -- the typed request ----------------------------------------------------------------------------


def test_the_new_fields_are_typed_and_round_trip() -> None:
    request = job(
        partition="jupyter-long,jupyter-overflow",
        nodes=2,
        ntasks="8",
        ntasks_per_node=4,
        gpus_per_task=1,
        gres="nvme:100,shard:1",
        workdir="/scratch/{username}",
    )
    assert request.partitions == ("jupyter-long", "jupyter-overflow")
    assert (request.ntasks, request.ntasks_per_node, request.gpus_per_task) == (8, 4, 1)
    assert request.gres == ("nvme:100", "shard:1")
    assert JobRequest.from_mapping(request.as_options()) == request
    assert JobRequest.from_mapping(json.loads(json.dumps(request.as_options()))) == request
    assert request.updated({"gres": ["nvme:200"]}).gres == ("nvme:200",)
    assert set(asked_fields(request)) == set(OPTIONAL_FIELDS)
    assert asked_fields(job()) == []


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"partition": "a,,b"}, "each partition must be 1-128 letters"),
        ({"partition": "a,a"}, "a partition is named twice"),
        ({"partition": ",".join(f"p{i}" for i in range(17))}, "at most 16 partitions"),
        ({"ntasks": 0}, "between 1 and 1000000"),
        ({"ntasks_per_node": "4\u0663"}, "whole number"),
        ({"gpus_per_task": -1}, "between 1 and 1024"),
        ({"gres": "nvme 100"}, "each generic resource must be name[:type][:count]"),
        ({"gres": ["nvme:1", "nvme:2"]}, "a generic resource is named twice"),
        ({"gres": {"nvme": 1}}, "must be a list of generic resources"),
        ({"gres": ["gpu:a100:2"], "gpus": 1}, "GPUs are asked for by gpus"),
        ({"workdir": "/scratch/../etc"}, "must not contain '..'"),
        ({"workdir": "relative/dir"}, "an absolute path"),
        ({"workdir": "/scratch/$USER"}, "an absolute path"),
        ({"workdir": "/scratch/{uid}"}, "only {home} and {username}"),
    ],
)
def test_bad_values_are_refused_naming_the_rule(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(RequestError) as info:
        job(**fields)
    assert reason in str(info.value)
    assert "Value error" not in str(info.value)


# -- Slurm ----------------------------------------------------------------------------------------


def test_slurm_renders_every_field() -> None:
    d = directives(
        "slurm",
        job(
            partition="long,overflow",
            nodes=2,
            ntasks=8,
            ntasks_per_node=4,
            gpus=2,
            gpu_type="a100",
            gpus_per_task=1,
            gres=["nvme:100"],
        ),
    )
    assert "--partition=long,overflow" in d
    assert "--nodes=2" in d and "--ntasks=8" in d and "--ntasks-per-node=4" in d
    assert "--cpus-per-task=2" in d
    assert "--gpus-per-task=1" in d
    assert "--gres=gpu:a100:2,nvme:100" in d


def test_slurm_without_task_fields_keeps_one_task_per_node() -> None:
    d = directives("slurm", job(nodes=3))
    assert "--ntasks-per-node=1" in d and not any(x.startswith("--ntasks=") for x in d)
    assert not any(x.startswith("--gres") or x.startswith("--gpus-per-task") for x in d)
    only_total = directives("slurm", job(ntasks=6))
    assert "--ntasks=6" in only_total and not any(x.startswith("--ntasks-per-node") for x in only_total)


# -- the other schedulers: rendered where they have it ---------------------------------------------


def test_pbs_and_torque_render_nodes_and_tasks_per_node_as_chunks() -> None:
    d = directives("pbs", job(nodes=2, ntasks_per_node=4, gpus=1))
    assert "-l select=2:ncpus=8:mem=4096mb:mpiprocs=4:ompthreads=2:ngpus=1" in d
    assert "-l place=scatter" in d
    assert "-l place=pack" in directives("pbs", job())
    assert "-l nodes=2:ppn=8" in directives("torque", job(nodes=2, ntasks_per_node=4))


def test_lsf_renders_slots_spread_and_gpus_per_task() -> None:
    d = directives("lsf", job(nodes=2, ntasks=8, gpus_per_task=1))
    assert "-n 16" in d  # 8 tasks x 2 CPUs
    assert '-R "rusage[mem=4096MB] span[ptile=8]"' in d  # 4 tasks of 2 CPUs per host
    assert '-gpu "num=1/task"' in d
    assert '-R "rusage[mem=4096MB] span[hosts=1]"' in directives("lsf", job())


def test_oar_renders_nodes_and_cores_per_node() -> None:
    d = directives("oar", job(nodes=2, ntasks_per_node=3))
    assert any(x.startswith("-l /nodes=2/core=6,walltime=01:00:00") for x in d), d


# -- refused where the scheduler lacks it ----------------------------------------------------------

REFUSED = [
    ("pbs", {"partition": "a,b"}, "partition", "one queue"),
    ("pbs", {"ntasks": 8}, "ntasks", "select=N:mpiprocs=P"),
    ("pbs", {"gres": ["nvme:1"]}, "gres", "job_extra_directives"),
    ("torque", {"gpus_per_task": 1}, "gpus_per_task", "set gpus"),
    ("lsf", {"partition": "a,b"}, "partition", "one queue"),
    ("lsf", {"gres": ["nvme:1"]}, "gres", "job_extra_directives"),
    ("sge", {"nodes": 2}, "nodes", "one host"),
    ("sge", {"ntasks_per_node": 2}, "ntasks_per_node", "slots"),
    ("sge", {"gres": ["nvme:1"]}, "gres", "-l NAME=N"),
    ("oar", {"ntasks": 4}, "ntasks", "nodes and ntasks_per_node"),
    ("oar", {"gpus_per_task": 1}, "gpus_per_task", "no GPU"),
    ("htcondor", {"nodes": 2}, "nodes", "one slot"),
    ("htcondor", {"partition": "a,b"}, "partition", "no partitions"),
    ("local", {"ntasks": 2}, "ntasks", "one process"),
    ("local", {"gres": ["nvme:1"]}, "gres", "no resources"),
]


@pytest.mark.parametrize(("name", "fields", "field", "why"), REFUSED)
def test_a_field_the_scheduler_lacks_is_refused_naming_it(
    name: str, fields: dict[str, Any], field: str, why: str
) -> None:
    request = job(**fields)
    b = backend(name)
    with pytest.raises(RequestError) as info:
        b.check_request(request)
    assert info.value.field == field
    assert f"the {b.name} backend cannot ask for {OPTIONAL_FIELDS[field]}" in info.value.reason
    assert why in info.value.reason
    with pytest.raises(RequestError):
        b.render(request, JOB)  # never silently left out of a script


def test_every_backend_states_each_field_it_does_not_render() -> None:
    for name in BUILTIN:
        b = backend(name)
        for field in OPTIONAL_FIELDS:
            assert field in b.renders or field in b.lacks, (name, field)
        assert not set(b.renders) & set(b.lacks), name


# -- limits of several partitions -------------------------------------------------------------------


def test_several_partitions_are_limited_by_the_most_generous_of_them() -> None:
    limits = ClusterLimits(
        partitions={
            "long": PartitionInfo("long", max_walltime=86400, cpus_per_node=8, memory_per_node=16000),
            "overflow": PartitionInfo(
                "overflow",
                max_walltime=3600,
                cpus_per_node=32,
                memory_per_node=8000,
                gpus_per_node={"a100": 2},
            ),
            "down": PartitionInfo("down", up=False, max_walltime=10**6),
        }
    )
    both = limits.partition("long,overflow")
    assert both is not None
    assert (both.max_walltime, both.cpus_per_node, both.memory_per_node) == (86400, 32, 16000)
    assert both.max_gpus("a100") == 2
    assert limits.partition("long,nosuch") is None
    with_down = limits.partition("long,down")
    assert with_down is not None and with_down.max_walltime == 86400
