"""What runs in the job or as the user imports nothing of the hub.

The job-side package (``jupyterhub_hpc.singleuser``) and the local scheduler
(``jupyterhub_hpc.local_scheduler``, which runs as the user too) use the standard
library and their own package only: checked statically (every import statement, also
in functions) and by importing each module alone in a fresh interpreter. Every
program a job or a user runs is a declared console script of these packages, and runs
by module path as the hub starts it.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
#: the packages of code that runs as the user, and what each may import of this project
USER_SIDE = ("jupyterhub_hpc.singleuser", "jupyterhub_hpc.local_scheduler")
HUB_SIDE = ("jupyterhub", "traitlets", "tornado", "pydantic", "jinja2", "sqlalchemy", "prometheus_client")


def modules(package: str) -> list[str]:
    directory = SRC.joinpath(*package.split("."))
    names = [package]
    names += [f"{package}.{p.stem}" for p in sorted(directory.glob("*.py")) if p.stem != "__init__"]
    return names


def module_path(name: str) -> Path:
    path = SRC.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def package_of(name: str) -> str:
    return next(p for p in USER_SIDE if name == p or name.startswith(p + "."))


ALL = [m for p in USER_SIDE for m in modules(p)]
#: imports allowed inside a function only (never at import time), per module: the job's software
#: modules are loaded by the project's module package (pydantic), imported only when a job has some
#: and a server in a container is started by the container package (pydantic), only when a job has one
LAZY_IMPORTS = {
    "jupyterhub_hpc.singleuser.modules": {"jupyterhub_hpc.modules"},
    "jupyterhub_hpc.singleuser.launcher": {"jupyterhub_hpc.containers.launch"},
}


def test_the_package_root_imports_nothing() -> None:
    tree = ast.parse((SRC / "jupyterhub_hpc" / "__init__.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


@pytest.mark.parametrize("name", ALL)
def test_imports_are_the_standard_library_and_the_own_package(name: str) -> None:
    own = package_of(name)
    is_package = module_path(name).name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    wrong: list[str] = []
    tree = ast.parse(module_path(name).read_text())
    in_functions = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = here.split(".")[: len(here.split(".")) - node.level + 1]
            targets = [".".join([*base, *([node.module] if node.module else [])])]
        elif isinstance(node, ast.ImportFrom):
            targets = [node.module or ""]
        else:
            continue
        for target in targets:
            top = target.split(".")[0]
            if target == own or target.startswith(own + "."):
                continue
            if top == "__future__" or top in sys.stdlib_module_names:
                continue
            if id(node) in in_functions and target in LAZY_IMPORTS.get(name, set()):
                continue
            wrong.append(target)
    assert wrong == [], f"{name} imports {wrong}"


CHECK = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("name", [n for n in ALL if not n.endswith("__main__")])
def test_imported_alone_it_loads_nothing_of_the_hub(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK, name],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=False,
        timeout=60,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert [m for m in loaded if m.split(".")[0] in HUB_SIDE] == []
    own = package_of(name)
    foreign = [
        m for m in loaded if m.startswith("jupyterhub_hpc.") and not (m == own or m.startswith(own + "."))
    ]
    assert foreign == [], f"{name} loads {foreign}"


def test_every_user_side_program_is_a_declared_console_script() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    expected = {
        "jupyterhub-hpc-singleuser": "jupyterhub_hpc.singleuser.launcher:main",
        "jupyterhub-hpc-read-output": "jupyterhub_hpc.singleuser.read_output:main",
        "jupyterhub-hpc-stage": "jupyterhub_hpc.singleuser.stage:main",
        "jupyterhub-hpc-local": "jupyterhub_hpc.local_scheduler.cli:main",
        "jupyterhub-hpc-local-supervisor": "jupyterhub_hpc.local_scheduler.supervisor:main",
    }
    assert {name: scripts.get(name) for name in expected} == expected
    sys.path.insert(0, str(SRC))
    try:
        for target in expected.values():
            module, _, function = target.partition(":")
            assert callable(getattr(importlib.import_module(module), function))
    finally:
        sys.path.remove(str(SRC))
    # every module with a ``__main__`` block (a program) is one of them
    programs = {
        name
        for name in ALL
        if 'if __name__ == "__main__"' in module_path(name).read_text() or name.endswith("__main__")
    }
    declared = {t.partition(":")[0] for t in expected.values()}
    assert programs - declared <= {"jupyterhub_hpc.singleuser.__main__"}, programs - declared


def test_the_hub_starts_the_programs_of_the_job_side_package() -> None:
    sys.path.insert(0, str(SRC))
    try:
        from jupyterhub_hpc.backends.htcondor import HTCondorBackend
        from jupyterhub_hpc.backends.oar import OARBackend
        from jupyterhub_hpc.request import JobRequest
    finally:
        sys.path.remove(str(SRC))
    for backend in (HTCondorBackend(), OARBackend()):
        argv = backend.submit_argv(JobRequest())
        assert argv[1:3] == ["-m", "jupyterhub_hpc.singleuser.stage"], argv
    cli = (SRC / "jupyterhub_hpc" / "local_scheduler" / "cli.py").read_text()
    assert '"-m", "jupyterhub_hpc.local_scheduler.supervisor"' in cli


@pytest.mark.parametrize(
    ("module", "usage"),
    [
        ("jupyterhub_hpc.singleuser.stage", "usage: jupyterhub-hpc-stage"),
        ("jupyterhub_hpc.stage", "usage: jupyterhub-hpc-stage"),  # the old path still runs
        ("jupyterhub_hpc.local_scheduler.supervisor", "usage: jupyterhub-hpc-local-supervisor"),
    ],
)
def test_programs_run_by_module_path(module: str, usage: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0 and usage in result.stderr, result.stderr
