"""``jupyterhub-hpc modules``: check a cluster's module system as the hub and the jobs will use it.

Prints the catalogue users will be offered (hidden modules left out, defaults marked) and, with
``--load``, loads a module set the way a job or a kernel does and shows what it changed, or the
tool's own message and exit status 1. Run it as the hub's account for the catalogue, and on a
compute node as a user for ``--load``.

    jupyterhub-hpc modules --config jupyterhub_config.py
    jupyterhub-hpc modules --system '{"kind": "lmod", "modulepath": ["/apps/modulefiles"]}' --load gcc/12
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pydantic import ValidationError
from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader

from .system import ModuleLoadError, ModuleSystem, load_environment

__all__ = ["add_arguments", "run", "system_from_config"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, help="a jupyterhub_config.py whose module_system to use")
    where.add_argument("--system", help="the module system as JSON (ModuleSystem fields)")
    parser.add_argument("--load", nargs="+", metavar="MODULE", help="load these, as a job would")
    parser.add_argument("--purge", action="store_true", help="with --load: module purge first")
    parser.add_argument("--json", action="store_true", help="print the catalogue as JSON")


def system_from_config(path: Path) -> ModuleSystem:
    """The first ``module_system`` set in a JupyterHub config file (any spawner class)."""
    config = PyFileConfigLoader(path.name, path=str(path.parent or ".")).load_config()
    for section in sorted(config):
        value = config[section].get("module_system") if hasattr(config[section], "get") else None
        if isinstance(value, dict):
            return ModuleSystem.model_validate(value)
    raise ValueError(f"{path}: no c.<Spawner>.module_system is set")


def _changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    lines = []
    for key in sorted(set(before) | set(after)):
        if key.startswith(("_", "__LMOD", "_ModuleTable", "BASH_FUNC_")) or before.get(key) == after.get(key):
            continue
        lines.append(f"  {key}={after[key]}" if key in after else f"  unset {key}")
    return lines


def run(args: argparse.Namespace) -> int:
    try:
        system = (
            system_from_config(args.config) if args.config else ModuleSystem.model_validate_json(args.system)
        )
    except (ValidationError, ValueError, OSError, ConfigFileNotFound) as exc:
        print(f"jupyterhub-hpc modules: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    done = subprocess.run(system.catalogue_argv(), capture_output=True, text=True, timeout=600, check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        print(f"catalogue: {' '.join(system.catalogue_argv()[:1])} failed ({done.returncode}): {done.stderr}")
        return 1
    try:
        catalogue = system.parse_catalogue(done.stdout)
    except ValueError as exc:
        print(f"catalogue: cannot read the tool's output: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(catalogue.to_json(), indent=1))
    else:
        print(f"{system.kind}: {len(catalogue.modules)} modules offered (listed in {took:.2f} s)")
        versions: dict[str, int] = {}
        for module in catalogue.modules:
            versions[module.package] = versions.get(module.package, 0) + 1
        for module in catalogue.modules:
            mark = " (default)" if module.default and versions[module.package] > 1 else ""
            print(f"  {module.name}{mark}  {module.description}".rstrip())
    if not args.load:
        return 0
    before = dict(os.environ)
    try:
        after = load_environment(system, args.load, purge=args.purge, env=before)
    except (ModuleLoadError, ValueError) as exc:
        print(f"module load {' '.join(args.load)} failed:\n{exc}")
        return 1
    print(f"module load {' '.join(args.load)}: LOADEDMODULES={after.get('LOADEDMODULES', '')}")
    print("\n".join(_changes(before, after)))
    return 0
