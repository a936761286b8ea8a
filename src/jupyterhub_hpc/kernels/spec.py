"""Kernel presets as kernelspecs, and ``jupyterhub-hpc kernels install``.

An admin installs a preset for everybody (``--prefix /usr/local``, or a directory on
``JUPYTER_PATH``); a user for themselves (``--user``)::

    jupyterhub-hpc kernels install py-gpu --display-name "Python 3 (gpu, 4 cores, 1 GPU, 2 h)" \\
        --backend slurm --resource partition=gpu --resource cpus=4 --resource gpus=1 \\
        --resource walltime=02:00:00

The resources are validated into the spawner's job request when the preset is written (a
mistake is an error now, not at the first kernel start) and again when a kernel starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..backends import backend_class
from ..request import JobRequest, RequestError

__all__ = ["PROVISIONER_NAME", "add_arguments", "kernelspec", "run"]

PROVISIONER_NAME = "hpc-provisioner"


def kernelspec(
    display_name: str,
    *,
    backend: str = "slurm",
    resources: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    python: str = sys.executable,
    kernel_argv: Sequence[str] | None = None,
    language: str = "python",
) -> dict[str, Any]:
    """A kernelspec whose kernels run as ``backend`` jobs with ``resources``; raises
    :class:`~jupyterhub_hpc.request.RequestError` for resources outside the rules."""
    resources = dict(resources or {})
    backend_class(backend)().check_request(JobRequest.from_mapping(resources))
    argv = list(kernel_argv or [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    return {
        "argv": argv,
        "display_name": display_name,
        "language": language,
        "interrupt_mode": "message",
        "metadata": {
            "supported_encryption": ["curve"],
            "kernel_provisioner": {
                "provisioner_name": PROVISIONER_NAME,
                "config": {"backend": backend, "resources": resources, **dict(config or {})},
            },
            "jupyterhub_hpc": {"batch": True},
        },
    }


def install(name: str, spec: Mapping[str, Any], directory: Path) -> Path:
    """Write ``spec`` as kernel ``name`` under ``directory`` (``.../share/jupyter/kernels``)."""
    target = directory / name
    target.mkdir(parents=True, exist_ok=True)
    (target / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
    return target


def _resources(items: Sequence[str]) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--resource {item!r}: expected NAME=VALUE")
        resources[key.strip()] = [v for v in value.split(",") if v] if key.strip() == "gres" else value
    return resources


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kernels_command", required=True)
    inst = sub.add_parser("install", help="write a kernelspec whose kernels run as batch jobs")
    inst.add_argument("name", help="the kernelspec's directory name (letters, digits, - _ .)")
    inst.add_argument("--display-name", required=True)
    inst.add_argument("--backend", default="slurm")
    inst.add_argument("--resource", action="append", default=[], metavar="NAME=VALUE")
    inst.add_argument("--python", default=sys.executable, help="the Python that runs the kernel on the node")
    where = inst.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="in the user's Jupyter data directory")
    where.add_argument("--prefix", help="under PREFIX/share/jupyter/kernels")
    where.add_argument("--dir", help="in this kernels directory")


def run(args: argparse.Namespace) -> int:
    from jupyter_core.paths import jupyter_data_dir

    try:
        spec = kernelspec(
            args.display_name,
            backend=args.backend,
            resources=_resources(args.resource),
            python=args.python,
        )
    except RequestError as exc:
        print(f"jupyterhub-hpc kernels: {exc}", file=sys.stderr)
        return 2
    if args.dir:
        directory = Path(args.dir)
    elif args.prefix:
        directory = Path(args.prefix) / "share" / "jupyter" / "kernels"
    elif args.user:
        directory = Path(jupyter_data_dir()) / "kernels"
    else:
        directory = Path(sys.prefix) / "share" / "jupyter" / "kernels"
    target = install(args.name, spec, directory)
    print(os.fspath(target / "kernel.json"))
    return 0
