"""No import cycles in ``jupyterhub_hpc``: statically (every import statement, at module
level, in a function or under ``TYPE_CHECKING``) and dynamically (each module imported
alone, first, in a fresh interpreter)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "jupyterhub_hpc"
#: import cycles allowed on purpose, as (module, module) edges; keep it empty
ALLOWED: frozenset[tuple[str, str]] = frozenset()


def module_names() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    modules: dict[str, Path] = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported(tree: ast.AST, name: str, is_package: bool, known: set[str]) -> Iterator[str]:
    """The package's modules an import statement anywhere in ``tree`` names."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            yield target
            for alias in node.names:  # ``from . import x``: x is a module when it is one
                if f"{target}.{alias.name}" in known:
                    yield f"{target}.{alias.name}"


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        targets = set(_imported(tree, name, path.name == "__init__.py", known))
        unknown = {t for t in targets if t not in known}
        assert not unknown, f"{name} imports modules that do not exist: {sorted(unknown)}"
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if (node, succ) in ALLOWED:
                continue
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_imports() -> None:
    graph = import_graph()
    assert len(graph) > 40
    assert "jupyterhub_hpc.watcher" in graph["jupyterhub_hpc.metrics"]
    assert "jupyterhub_hpc.backends.base" in graph["jupyterhub_hpc.watcher"]
    assert "jupyterhub_hpc.metrics" in graph["jupyterhub_hpc.scheduler_access"]  # ``from . import metrics``
    assert "jupyterhub_hpc.singleuser.listeners" in graph["jupyterhub_hpc.singleuser.launcher"]


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_in_the_package() -> None:
    assert cycles(import_graph()) == []


def test_the_watcher_knows_nothing_of_metrics() -> None:
    graph = import_graph()
    assert "jupyterhub_hpc.metrics" not in graph["jupyterhub_hpc.watcher"]
    tree = ast.parse((SRC / PACKAGE / "watcher.py").read_text())
    names = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {n for n in names if n and n.split(".")[0] == "prometheus_client"}


def _import_alone(name: str) -> tuple[str, int, str]:
    result = subprocess.run(
        [sys.executable, "-c", f"import {name}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        timeout=120,
        check=False,
    )
    return name, result.returncode, result.stderr[-2000:]


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    # a ``__main__`` is its program: importing it runs it
    names = [n for n in sorted(module_names()) if not n.endswith(".__main__")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        failed = [(n, err) for n, rc, err in pool.map(_import_alone, names) if rc != 0]
    assert failed == []
