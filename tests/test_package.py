"""The two packages read like the course: `mri_helpers` (the lessons' code) never imports the
tooling (`mri_course`), neither has import cycles or overlong functions, one name per meaning."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGES = ("mri_helpers", "mri_course")
LONGEST_FUNCTION = 80  # lines, decorators and docstring included


def modules() -> dict[str, Path]:
    """Every module of both packages, by dotted name (a subpackage by its `__init__`)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if len(parts) > 1:
                found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """The modules of both packages that a module imports anywhere in it (also inside
    functions), as dotted names."""
    package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    typing_only = {  # `if TYPE_CHECKING:` imports name types; they run nothing
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
        for child in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or id(node) in typing_only:
            continue
        base = node.module or ""
        if node.level:  # from .data import x / from . import models / from ..precision
            parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            base = f"{parent}.{base}".rstrip(".")
        found.add(base)
        found.update(f"{base}.{alias.name}" for alias in node.names)  # from . import models
    known = modules()
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    return {name: imports_of(name, path) for name, path in modules().items()}


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


def test_the_packages_have_no_import_cycles() -> None:
    graph = import_graph()
    assert graph["mri_course.callbacks"] >= {"mri_helpers.calibration", "mri_helpers.test_time"}
    assert "mri_course.scans.geometry" in graph["mri_course.scans.translation"]
    assert "mri_course.runner" in graph["mri_course.cli"]  # the graph sees real imports
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_lessons_package_never_imports_the_tooling() -> None:
    graph = import_graph()
    assert "mri_helpers.models" in graph["mri_course.benchmark"]
    upward = {
        name: sorted(m for m in imported if m.startswith("mri_course."))
        for name, imported in graph.items()
        if name.startswith("mri_helpers.")
    }
    assert {name: found for name, found in upward.items() if found} == {}
    for path in (REPO / "mri_helpers").rglob("*.py"):
        assert "import mri_course" not in path.read_text(), path.name


def test_importing_the_lessons_package_loads_no_tooling() -> None:
    """`import mri_helpers` is light (no TensorFlow, no DICOM reader); with all its modules it
    loads no batch runner, notebook executor, notebook tester or DICOM library of the tooling.
    (nibabel, which the phantom uses, imports pydicom by itself when pydicom is installed.)"""
    check = (
        "import importlib, pkgutil, sys\n"
        "import mri_helpers\n"
        "light = [m for m in ('tensorflow', 'pydicom', 'papermill') if m in sys.modules]\n"
        "for info in pkgutil.iter_modules(mri_helpers.__path__):\n"
        "    importlib.import_module('mri_helpers.' + info.name)\n"
        "tools = ('papermill', 'nbval', 'SimpleITK', 'mri_course')\n"
        "heavy = [m for m in tools if m in sys.modules]\n"
        "print(light, heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "[] []"


def test_no_function_is_overlong() -> None:
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - start + 1 > LONGEST_FUNCTION:
                    long.append(f"{name}.{node.name}: {node.end_lineno - start + 1} lines")
    assert long == []


def test_public_functions_have_one_name_per_meaning() -> None:
    """No two modules define a public top-level function of the same name (cli.py's handlers
    are named after the commands they run, and call the function that does the work)."""
    owners: dict[str, list[str]] = {}
    for name, path in modules().items():
        if name == "mri_course.cli":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                owners.setdefault(node.name, []).append(name)
    shared = {name: where for name, where in owners.items() if len(where) > 1}
    assert shared == {}


def test_every_module_of_both_packages_imports() -> None:
    """A name moved between modules and left behind in an import fails here, at once."""
    import importlib

    for name in modules():
        importlib.import_module(name)
