"""The package reads like the course: no import cycles, one name per meaning."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "mri_helpers"


def imports_of(path: Path) -> set[str]:
    """The package modules a module imports anywhere in it (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:  # from .data import x
                found.add(node.module.split(".")[0])
            else:  # from . import models, training
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mri_helpers."):
            found.add(node.module.split(".")[1])
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return {name for name in found if name in modules and name != path.stem}


def import_graph() -> dict[str, set[str]]:
    return {p.stem: imports_of(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for neighbour in sorted(graph.get(node, ())):
            if state.get(neighbour) == "open":
                return path[path.index(neighbour) :] + [neighbour]
            if neighbour not in state and (cycle := visit(neighbour)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_package_has_no_import_cycles() -> None:
    graph = import_graph()
    assert {"data", "processing", "models", "training", "export", "evaluation"} <= set(graph)
    assert graph["export"] >= {"calibration", "test_time"}  # the graph sees real imports
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_public_functions_have_one_name_per_meaning() -> None:
    """No two modules define a public top-level function of the same name (cli.py's handlers
    are named after the commands they run, and call the function that does the work)."""
    owners: dict[str, list[str]] = {}
    for path in sorted(p for p in PACKAGE.glob("*.py") if p.stem != "cli"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                owners.setdefault(node.name, []).append(path.stem)
    shared = {name: where for name, where in owners.items() if len(where) > 1}
    assert shared == {}
