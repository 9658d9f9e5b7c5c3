"""The lessons' `# @save` cells and `mri_helpers` are one: the package's copy is their export."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from mri_course import lesson_export


def test_the_package_is_the_lessons_export() -> None:
    assert lesson_export.differences() == []


def test_every_module_says_it_is_generated_and_each_cell_its_lesson() -> None:
    cells = lesson_export.marked_cells()
    assert {c.module for c in cells} == set(lesson_export.MODULES)
    for name in lesson_export.MODULES:
        text = (lesson_export.PACKAGE / f"{name}.py").read_text()
        assert "never this file" in text
        lessons = {c.notebook for c in cells if c.module == name}
        assert all(f"# Defined in {lesson}, " in text for lesson in lessons)


def test_a_changed_lesson_cell_is_found(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    shutil.copytree(lesson_export.NOTEBOOKS, notebooks, ignore=shutil.ignore_patterns("solutions"))
    path = notebooks / "03_model_building.ipynb"
    notebook = nbformat.read(path, as_version=4)
    cell = next(c for c in notebook.cells if c.source.startswith("# @save losses"))
    cell.source = cell.source.replace("LAMBDA_CYCLE = 10.0", "LAMBDA_CYCLE = 5.0")
    nbformat.write(notebook, path)
    assert lesson_export.differences(notebooks) == ["losses"]


def test_an_edited_module_is_found(tmp_path: Path) -> None:
    package = tmp_path / "mri_helpers"
    shutil.copytree(lesson_export.PACKAGE, package)
    path = package / "models.py"
    path.write_text(path.read_text().replace("INIT_STDDEV = 0.02", "INIT_STDDEV = 0.03"))
    assert lesson_export.differences(package=package) == ["models"]
