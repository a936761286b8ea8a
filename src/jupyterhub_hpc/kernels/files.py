"""The files a kernel job and the server that submitted it share, all private (0600).

Beside the connection file ``kernel-<id>.json`` (in the user's Jupyter runtime directory, 0700,
on a file system the compute nodes see, like the user's home):

- ``kernel-<id>.hpc-state.json``, written by the job (:mod:`.node`): :class:`NodeState`, the
  kernel generation it runs, whether its ports are bound, the node's address, its exit status;
- ``kernel-<id>.hpc-request.json``, written by the server (:mod:`.provisioner`):
  :class:`NodeRequest`, the generation the job should run (a restart asks for the next one), a
  signal for the kernel process, or stop;
- ``kernel-<id>.hpc-<job id>.log``, the job's output (made private before anything is written);
- ``kernel-<id>.hpc-attach.json``, written by the server once the kernel is ready: what a restarted
  server needs to take the job back (:mod:`.adopt`).

Nothing secret travels on a command line or in the job script: the HMAC key and the CurveZMQ
keys are only in the connection file. Every file is replaced at once (``os.replace``), so a
reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ..modules.kernel import write_status

__all__ = [
    "ATTACH_SUFFIX",
    "PORT_NAMES",
    "NodeRequest",
    "NodeState",
    "attach_path",
    "default_kernel_directory",
    "forget",
    "log_path",
    "ports_bound",
    "read_json",
    "read_model",
    "remember",
    "request_path",
    "state_path",
    "write_private",
]

M = TypeVar("M", bound=BaseModel)

PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


class NodeState(BaseModel):
    """What the job says about its kernel (``state``: the kernel process of ``generation``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    generation: int
    state: Literal["starting", "ready", "exited", "failed", "stopped"]
    #: the address the kernel's ports are bound on (the node's)
    address: str = ""
    hostname: str = ""
    job_id: str = ""
    pid: int | None = None
    returncode: int | None = None
    message: str = ""


class NodeRequest(BaseModel):
    """What the server asks of the job: run ``generation``, deliver signal number ``signal_seq``
    (``signum``) to the kernel, or ``stop`` once the kernel has exited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generation: int = 1
    stop: bool = False
    signal_seq: int = 0
    signum: int = 0


def _sibling(connection_file: str | os.PathLike[str], suffix: str) -> Path:
    path = Path(connection_file)
    stem = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
    return path.with_name(stem + suffix)


def state_path(connection_file: str | os.PathLike[str]) -> Path:
    return _sibling(connection_file, ".hpc-state.json")


def request_path(connection_file: str | os.PathLike[str]) -> Path:
    return _sibling(connection_file, ".hpc-request.json")


def log_path(connection_file: str | os.PathLike[str], job_id: str = "{job_id}") -> Path:
    """The job's output file (``{job_id}`` is left for the backend to fill in when rendering)."""
    return _sibling(connection_file, f".hpc-{job_id}.log")


def write_private(path: Path, data: BaseModel | dict[str, object]) -> None:
    """Write ``data`` as JSON, readable by the user only, replacing any earlier file at once."""
    write_status(path, data.model_dump() if isinstance(data, BaseModel) else data)


def read_json(path: Path) -> dict[str, object] | None:
    """The JSON object in ``path``; None while it is missing or half written (a kernel writes
    its connection file in place)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_model(path: Path, model: type[M]) -> M | None:
    data = read_json(path)
    if data is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def ports_bound(info: dict[str, object] | None) -> bool:
    """Whether a connection file's five ports are all set (the kernel wrote them back)."""
    if not info:
        return False
    ports = [info.get(name) for name in PORT_NAMES]
    return all(type(port) is int and port > 0 for port in ports)


ATTACH_SUFFIX = ".hpc-attach.json"


def attach_path(connection_file: str | os.PathLike[str]) -> Path:
    return _sibling(connection_file, ATTACH_SUFFIX)


def remember(connection_file: str, kernel_name: str, cwd: str, provisioner_info: dict[str, object]) -> None:
    """Leave the attach record of a ready kernel job (read back by :mod:`.adopt`)."""
    record: dict[str, object] = {"kernel_name": kernel_name, "cwd": cwd, "provisioner": provisioner_info}
    write_private(attach_path(connection_file), record)


def forget(connection_file: str) -> None:
    attach_path(connection_file).unlink(missing_ok=True)


def default_kernel_directory() -> str:
    """``~/.local/share/jupyter/hpc-kernels/<server>``: one directory per server of the user (the
    JupyterHub server name, ``default`` for the unnamed one), so that a restarted server takes back
    its own kernel jobs only."""
    from jupyter_core.paths import jupyter_data_dir

    name = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name.startswith("."):
        name = "default" if not name else "server-" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return os.path.join(jupyter_data_dir(), "hpc-kernels", name)
