"""The project's import graph, read from the source with ``ast`` (nothing is imported).

No module imports itself through others, the model never reaches into the pipelines, the DAG
files stay cheap for Airflow's parser, and only the command line reaches the commands.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipelines", "model", "dags")


@dataclass(frozen=True)
class Import:
    """One project-internal import: who imports what, where, and whether at import time."""

    importer: str
    imported: str
    line: int
    at_import_time: bool  # False inside a function body, which runs only when called


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if ".venv" not in path.parts
    }


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, known) -> list:
    """The project modules an import statement loads (the most specific one it names)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in known]
    if node.level:  # relative: from the importer's package, up level - 1 packages
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    found = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        if candidate in known:
            found.append(candidate)  # ``from pkg import module``
        elif base in known:
            found.append(base)  # ``from module import name``
    return sorted(set(found))


def _walk(node: ast.AST, in_function: bool):
    """Every node under ``node``, with whether it sits in a function body."""
    for child in ast.iter_child_nodes(node):
        deferred = in_function or isinstance(
            child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
        )
        yield child, in_function
        yield from _walk(child, deferred)


def project_imports() -> list[Import]:
    known = project_modules()
    found = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, in_function in _walk(tree, False):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, name, is_package, known):
                    if target != name:
                        found.append(Import(name, target, node.lineno, not in_function))
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_path_within(group, edges) for group in groups]


def _path_within(group: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the group's first module, staying inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(edges.get(node, set()) & group):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


def graph(imports: list[Import]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for each in imports:
        edges.setdefault(each.importer, set()).add(each.imported)
    return edges


def describe(imports: list[Import]) -> list[str]:
    return [f"{i.importer} imports {i.imported} (line {i.line})" for i in imports]


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def test_the_walk_sees_the_project_and_its_imports():
    """Guards the walk itself: a walk that found nothing would pass every rule below."""
    modules = project_modules()
    assert {"pipelines.cli", "pipelines.scan.run", "model.bundle", "dags.deeptrust_tasks"} <= set(
        modules
    )
    edges = graph(project_imports())
    assert "pipelines.console" in edges["pipelines.scan.run"]
    assert "pipelines.scan.run" in edges["pipelines.cli"]  # a function-level import counts


def test_the_cycle_finder_names_a_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(edges) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(graph(project_imports()))
    assert found == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_model_never_imports_the_pipelines():
    wrong = [
        i
        for i in project_imports()
        if in_package(i.importer, "model") and in_package(i.imported, "pipelines")
    ]
    assert wrong == [], describe(wrong)


def test_dags_import_the_project_only_inside_their_tasks():
    """Airflow parses the DAG files often; the pipelines and the model load when a task runs."""
    wrong = [
        i
        for i in project_imports()
        if in_package(i.importer, "dags")
        and i.at_import_time
        and (in_package(i.imported, "pipelines") or in_package(i.imported, "model"))
    ]
    assert wrong == [], describe(wrong)


def is_command(module: str) -> bool:
    return (
        module in ("pipelines.demo", "pipelines.scan.run", "pipelines.watch.run")
        or in_package(module, "pipelines.bench")
        or in_package(module, "pipelines.moderation")
    )


def may_import_command(importer: str, command: str) -> bool:
    """Only the command line reaches the commands; commands that run a scan reach the scan (the
    watcher runs its pipeline as a scan does), and the measurement tools and the moderators'
    tools each share their own modules."""
    if importer == "pipelines.cli":
        return True
    if (importer, command) == ("pipelines.watch.__main__", "pipelines.watch.run"):
        return True
    runs_a_scan = importer in (
        "pipelines.demo",
        "pipelines.scan.__main__",
        "pipelines.watch.run",
    ) or in_package(importer, "pipelines.bench")
    if command == "pipelines.scan.run" and runs_a_scan:
        return True
    return any(
        in_package(importer, package) and in_package(command, package)
        for package in ("pipelines.bench", "pipelines.moderation")
    )


def test_only_the_command_line_imports_the_commands():
    wrong = [
        i
        for i in project_imports()
        if is_command(i.imported)
        and not in_package(i.importer, i.imported)  # a package's __init__ and its own modules
        and not may_import_command(i.importer, i.imported)
    ]
    assert wrong == [], describe(wrong)
