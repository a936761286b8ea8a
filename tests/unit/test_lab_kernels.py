"""jupyterhub_hpc.lab.kernels without a server: the "New batch kernel…" dialog's request validated into
a batch kernelspec through the spawner's job request (the route itself in a real Lab:
tests/lab/test_kernel_jobs_live.py)."""

from __future__ import annotations

import pytest

from jupyterhub_hpc.lab.kernels import BATCH_PREFIX, batch_kernelspec


def test_a_valid_request_becomes_a_batch_kernelspec() -> None:
    name, spec = batch_kernelspec(
        {"display_name": "Py GPU, 4 cores", "partition": "gpu", "cpus": "4", "memory": "8G",
         "walltime": "02:00:00", "gpus": 1}
    )  # fmt: skip
    assert name == f"{BATCH_PREFIX}py-gpu-4-cores"
    meta = spec["metadata"]
    assert meta["jupyterhub_hpc"]["batch"] is True
    assert meta["kernel_provisioner"]["provisioner_name"] == "hpc-provisioner"
    config = meta["kernel_provisioner"]["config"]
    assert config["backend"] == "slurm"
    assert config["resources"] == {
        "partition": "gpu",
        "cpus": "4",
        "memory": "8G",
        "walltime": "02:00:00",
        "gpus": 1,
    }


def test_empty_fields_are_left_to_the_site() -> None:
    _, spec = batch_kernelspec({"display_name": "Small", "partition": "", "cpus": None})
    assert spec["metadata"]["kernel_provisioner"]["config"]["resources"] == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"display_name": ""}, "display_name"),
        ({"display_name": "a\x07b"}, "display_name"),
        ({"display_name": "x", "walltime": "soon"}, "walltime"),
        ({"display_name": "x", "cpus": "-3"}, "cpus"),
        ({"display_name": "x", "memory": "lots"}, "memory"),
        ({"display_name": "x", "partition": "debug --wrap=id"}, "partition"),
        ({"display_name": "x", "account": "other"}, "account: not a field"),
        ({"display_name": "x", "gpus": True}, "gpus"),
    ],
)
def test_bad_values_are_refused_with_the_field(body: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        batch_kernelspec(body)
    assert str(caught.value).startswith(message.split(":")[0])


class _Client:
    def __init__(self, limits: object) -> None:
        self._limits = limits

    async def limits(self, timeout: float | None = None) -> object:
        if isinstance(self._limits, Exception):
            raise self._limits
        return self._limits


class _Provisioner:
    """What :func:`check_live_limits` uses of a provisioner: its scheduler client."""

    def __init__(self, limits: object) -> None:
        self.client = _Client(limits)


def test_the_dialogs_values_are_checked_against_the_live_partitions() -> None:
    import asyncio
    import logging

    from jupyterhub_hpc.backends.limits import ClusterLimits, PartitionInfo
    from jupyterhub_hpc.commands import CommandError
    from jupyterhub_hpc.lab.kernels import check_live_limits

    parts = {
        "debug": PartitionInfo(
            "debug", default=True, max_walltime=3600, cpus_per_node=8, memory_per_node=4096
        ),
        "down": PartitionInfo("down", up=False),
        "gpu": PartitionInfo("gpu", cpus_per_node=8, gpus_per_node={"": 2}),
    }
    live = ClusterLimits(partitions=parts, live=True)
    log = logging.getLogger("test")

    def check(resources: dict[str, object], limits: object = live) -> str:
        try:
            asyncio.run(check_live_limits(resources, _Provisioner(limits), log))
        except ValueError as exc:
            return str(exc)
        return "ok"

    assert check({"partition": "debug", "cpus": 8, "walltime": "01:00:00"}) == "ok"
    assert check({"cpus": 2, "walltime": "00:30:00"}) == "ok"  # the default partition
    # no walltime asked: the job request's 8 h, which the partition's limit refuses
    assert check({"cpus": 2}) == "walltime: 08:00:00 is more than the debug partition's limit of 01:00:00"
    assert check({"partition": "nosuch"}).startswith("partition: there is no partition 'nosuch'")
    assert check({"partition": "down"}) == "partition: partition down is not accepting jobs now"
    assert (
        check({"partition": "debug", "cpus": 9, "walltime": "00:30:00"})
        == "cpus: 9 CPUs: nodes of partition debug have at most 8"
    )
    assert check({"partition": "debug", "walltime": "02:00:00"}).startswith("walltime: 02:00:00 is more than")
    assert check({"partition": "debug", "memory": "8G", "walltime": "1"}).startswith("memory: 8192 MiB")
    assert check({"partition": "gpu", "gpus": 3}) == "gpus: 3 GPUs: nodes of partition gpu have at most 2"
    # no live answer: nothing is refused here, the scheduler decides at submit
    assert check({"partition": "nosuch"}, CommandError("sinfo: not found")) == "ok"
    assert check({"partition": "nosuch"}, ClusterLimits()) == "ok"
