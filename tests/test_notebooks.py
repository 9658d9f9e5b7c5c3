"""The committed notebooks are ready for papermill and nbval, read as lessons, and carry a real
run's outputs without a trace of the machine that ran them."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
SOLUTIONS = sorted((REPO / "notebooks" / "solutions").glob("*.ipynb"))
# Where a machine's own files live; no committed output or document may name them.
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|home|root|tmp|Users|mnt|opt|var|private)/\S")


def code_cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def parameters_cell(path: Path):
    tagged = [c for c in code_cells(path) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "papermill needs exactly one parameters cell"
    return tagged[0]


def test_notebooks_are_named_in_course_order() -> None:
    assert [p.name[:3] for p in NOTEBOOKS] == [f"{i:02d}_" for i in range(1, len(NOTEBOOKS) + 1)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_structure_and_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    assert notebook.metadata.kernelspec.name == "python3"
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in code)
    assert "papermill" not in notebook.metadata
    # Outputs come from one batch run: every code cell ran, in order, 1..N.
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    checked = [c for c in code if c.source.startswith("# NBVAL_CHECK_OUTPUT")]
    assert checked, "nbval needs cells marked # NBVAL_CHECK_OUTPUT"
    assert all(c.outputs for c in checked), "a checked cell without output checks nothing"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    # publish drops what cells tagged remove-output show (a 1 MB viewer is made by running)
    assert not any(c.outputs for c in code if "remove-output" in c.metadata.get("tags", []))
    # A title first; the summary, then exercises with their worked solutions, last.
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
    assert "## Summary" in notebook.cells[-2].source
    exercises = notebook.cells[-1].source
    assert exercises.startswith("## Exercises")
    assert 3 <= len(re.findall(r"^\d+\. ", exercises, re.MULTILINE)) <= 5
    solutions = f"solutions/{path.name[:2]}_solutions.ipynb"
    assert solutions in exercises and (path.parent / solutions).is_file()


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=lambda p: p.name)
def test_parameter_cells_hold_plain_values(path: Path) -> None:
    """The cell a learner edits holds `NAME = value` lines only: papermill injects overrides."""
    for statement in ast.parse(parameters_cell(path).source).body:
        assert isinstance(statement, ast.Assign), ast.unparse(statement)
        assert [type(t) for t in statement.targets] == [ast.Name], ast.unparse(statement)
        ast.literal_eval(statement.value)  # raises for anything but a literal
    assert not re.search(r"\benviron\b", "".join(c.source for c in code_cells(path)))


def test_solutions_carry_the_outputs_of_one_run() -> None:
    """`publish_solutions` ran each solution once: every cell, in order, without an error."""
    assert [p.name for p in SOLUTIONS] == [f"{p.name[:2]}_solutions.ipynb" for p in NOTEBOOKS]
    for path in SOLUTIONS:
        notebook = nbformat.read(path, as_version=4)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), path.name
        assert all(c.outputs for c in code if "assert mh.check(" in c.source), path.name
        assert not any(o.output_type == "error" for c in code for o in c.outputs), path.name
        assert "papermill" not in notebook.metadata, path.name
        assert not any("papermill" in c.metadata or "execution" in c.metadata for c in code)
        assert not any("injected-parameters" in c.metadata.get("tags", []) for c in code)


def normalised(text: str) -> str:
    """Text without markup or line breaks, so that neither hides a copied sentence."""
    return " ".join(re.sub(r"[>*`\[\]]", " ", text).split())


def sentences(text: str, min_words: int = 12) -> set[str]:
    """The sentences of a text with at least `min_words` words."""
    parts = re.split(r"(?<=[.?!])\s+", normalised(text))
    return {part for part in parts if len(part.split()) >= min_words}


def test_solutions_do_not_repeat_their_exercises_text() -> None:
    """Each exercise's text lives in its lesson only; the solution links to it."""
    for lesson in NOTEBOOKS:
        exercises = nbformat.read(lesson, as_version=4).cells[-1].source
        solution = lesson.parent / "solutions" / f"{lesson.name[:2]}_solutions.ipynb"
        markdown = "\n".join(c.source for c in nbformat.read(solution, as_version=4).cells)
        shared = {s for s in sentences(exercises) if s in normalised(markdown)}
        assert not shared, (solution.name, sorted(shared)[:2])
        assert f"../{lesson.name}#Exercises" in markdown
    assert sentences("One two three four five six seven eight nine ten eleven twelve. No.")


def test_no_machine_paths_in_committed_outputs_and_documents() -> None:
    texts = {
        path: "\n".join(str(o) for c in code_cells(path) for o in c.outputs)
        for path in NOTEBOOKS + SOLUTIONS
    }
    documents = [
        REPO / "README.md",
        *(REPO / "docs").rglob("*.md"),
        *(REPO / "docs").glob("*.json"),
    ]
    texts |= {path: path.read_text() for path in documents}
    found = {path.name: MACHINE_PATH.findall(text)[:3] for path, text in texts.items()}
    assert {name: hits for name, hits in found.items() if hits} == {}
    absolute = os.path.join(os.sep, "home", "learner", "x.zip")  # what the pattern must catch
    assert MACHINE_PATH.search(f"data: {absolute}")
    assert not MACHINE_PATH.search(os.path.join("a", "tmp", "b"))  # a relative path is fine


def test_a_kernel_without_the_package_says_which_to_choose() -> None:
    """The setup cell of every lesson turns a missing mri_helpers into advice."""
    for path in NOTEBOOKS:
        setup = next(c.source for c in code_cells(path) if "import mri_helpers" in c.source)
        program = "import sys\nsys.modules['mri_helpers'] = None\n" + setup  # import fails
        run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
        assert run.returncode != 0 and "make lab" in run.stderr, (path.name, run.stderr[-500:])
        assert "Kernel > Change Kernel" in run.stderr
