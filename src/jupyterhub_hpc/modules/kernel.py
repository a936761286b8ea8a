"""``jupyterhub-hpc-kernel``: start a kernel with its own modules, leaving the server untouched.

A kernelspec made by :func:`kernelspec` runs::

    python -m jupyterhub_hpc.modules.launch [--purge] --module M ... \\
        --connection-file {connection_file} -- python -m ipykernel_launcher -f {connection_file}

The launcher loads the modules in a child bash through the server's module system (from
``JUPYTERHUB_HPC_MODULE_SYSTEM``; after a purge the server's sticky modules are loaded again),
then replaces itself by the kernel with that environment: signals (interrupts) reach the kernel
as before, and only this kernel sees the modules. Either way it leaves a status file beside the
connection file, ``hpc-modules-<connection file name>`` (0600): ``{"ok", "modules", "loaded"}`` or
``{"ok": false, "modules", "message"}`` with the tool's own words, which the server extension
shows in JupyterLab instead of a bare "kernel died".
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .catalogue import check_module_name
from .system import (
    MODULE_SYSTEM_ENV,
    SERVER_MODULES_ENV,
    ModuleLoadError,
    ModuleSystem,
    ServerModules,
    dumps,
    load_environment,
    loaded_modules,
)

__all__ = ["EXIT_LOAD_FAILED", "kernelspec", "main", "status_path"]

#: the launcher's exit status when the modules did not load
EXIT_LOAD_FAILED = 3
STATUS_PREFIX = "hpc-modules-"


def status_path(connection_file: str | os.PathLike[str]) -> Path:
    """Where the launcher of the kernel with ``connection_file`` leaves its status."""
    path = Path(connection_file)
    return path.with_name(STATUS_PREFIX + path.name)


def write_status(path: Path, status: Mapping[str, Any]) -> None:
    """Write ``status`` as JSON, readable by the user only, replacing any earlier one at once."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(dumps(dict(status)))
    os.replace(tmp, path)


def kernelspec(
    display_name: str,
    modules: Sequence[str],
    *,
    purge: bool = False,
    python: str = sys.executable,
    kernel_argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The ``kernel.json`` of a Python kernel started with ``modules`` (checked names)."""
    names = [check_module_name(m) for m in modules]
    launcher = [python, "-m", "jupyterhub_hpc.modules.launch"]
    for name in names:
        launcher += ["--module", name]
    if purge:
        launcher.append("--purge")
    kernel = list(kernel_argv or [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    return {
        "argv": [*launcher, "--connection-file", "{connection_file}", "--", *kernel],
        "display_name": display_name,
        "language": "python",
        "metadata": {"jupyterhub_hpc": {"modules": names, "purge": purge}, "debugger": True},
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="jupyterhub-hpc-kernel", description=__doc__.split("\n")[0])
    parser.add_argument("--module", action="append", default=[], help="a module to load (repeatable)")
    parser.add_argument("--purge", action="store_true", help="module purge first (sticky modules stay)")
    parser.add_argument("--connection-file", required=True, help="the kernel's connection file")
    parser.add_argument("kernel", nargs=argparse.REMAINDER, help="-- the kernel's command")
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
    """The kernel's environment and the status to record (raises ModuleLoadError)."""
    modules = [check_module_name(m) for m in args.module]
    if not modules and not args.purge:  # nothing to load: the kernel as it is
        return dict(env), {"ok": True, "modules": [], "loaded": loaded_modules(env)}
    text = env.get(MODULE_SYSTEM_ENV, "")
    if not text:
        raise ModuleLoadError(
            f"this server has no module system ({MODULE_SYSTEM_ENV} is not set): the kernel's modules "
            f"{', '.join(modules)} cannot be loaded",
            modules,
        )
    system = ModuleSystem.from_env(text)
    server = (
        ServerModules.from_env(env[SERVER_MODULES_ENV]) if env.get(SERVER_MODULES_ENV) else ServerModules()
    )
    to_load = list(dict.fromkeys([*server.sticky, *modules])) if args.purge else modules
    loaded_env = load_environment(system, to_load, purge=args.purge, env=env)
    return loaded_env, {"ok": True, "modules": modules, "loaded": loaded_modules(loaded_env)}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command = list(args.kernel)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise SystemExit("jupyterhub-hpc-kernel: no kernel command after --")
    status = status_path(args.connection_file)
    try:
        env, record = prepare(args, os.environ)
    except (ModuleLoadError, ValueError) as exc:
        message = str(exc)
        write_status(status, {"ok": False, "modules": list(args.module), "message": message})
        print(f"jupyterhub-hpc-kernel: loading {' '.join(args.module)} failed:\n{message}", file=sys.stderr)
        raise SystemExit(EXIT_LOAD_FAILED) from None
    write_status(status, record)
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        write_status(
            status,
            {
                "ok": False,
                "modules": list(args.module),
                "message": f"cannot run {command[0]}: {exc.strerror}",
            },
        )
        raise SystemExit(127) from None
