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
