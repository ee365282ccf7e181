"""The house's one-way doors (../shared/ARCHITECTURE.md), checked on the source's import statements.

Every import counts, also one inside a function: a lazy import still makes two modules depend on
each other, and a circle of them is what made the CLI's modules fragile to reorder.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("curation", "selection", "labeling", "training", "dashboard")
# The front rooms: they wire the steps together, so they may import every wing.
FRONT = (
    "curation.cli",
    "curation.pipeline",
    "curation.quality",
    "curation.stop_set",
    "curation.pool_drift",
    "curation.ray_engine",
    "curation.adapter_proxy",
    "curation.nightly",
    "curation.nightly_steps",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    modules = {
        _module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_tarjan_helper_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_two_modules_import_each_other_in_a_circle() -> None:
    assert _cycles(_import_graph()) == []


def test_selection_imports_nothing_of_the_project() -> None:
    graph = _import_graph()
    leaks = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith("selection")
        for target in targets
        if not target.startswith("selection")
    }
    assert leaks == set()


def test_data_rooms_import_no_step_and_no_front_room() -> None:
    graph = _import_graph()
    steps = ("selection", "labeling", "training", "dashboard", *FRONT)
    leaks = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith("curation") and not _in(module, FRONT)
        for target in targets
        if _in(target, steps)
    }
    assert leaks == set()


def test_labeling_and_training_meet_only_in_the_store() -> None:
    graph = _import_graph()
    leaks = {
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if (_in(module, ("labeling",)) and _in(target, ("training", *FRONT)))
        or (_in(module, ("training",)) and _in(target, ("labeling", *FRONT)))
    }
    assert leaks == set()


def test_the_entry_point_registers_every_command() -> None:
    from curation.cli import app

    names = {command.name or command.callback.__name__ for command in app.registered_commands}
    assert {
        "ingest",
        "status",
        "quarantine",
        "embed",
        "index",
        "search",
        "export",
        "select",
        "simulate",
        "push",
        "pull",
        "adjudicate",
        "train",
        "run",
    } <= names
