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


def lesson_code(stem: str) -> str:
    path = lesson_export.NOTEBOOKS / f"{stem}.ipynb"
    cells = nbformat.read(path, as_version=4).cells
    return "\n".join(c.source for c in cells if c.cell_type == "code")


def test_the_lessons_write_the_seed_s_steps() -> None:
    """Lesson 01 reads the zip, 02 holds the tf.data chain, 03 builds the U-Net and the
    PatchGAN from Keras layers, 04 hands its own loss functions to the model fit() trains."""
    data = lesson_code("01_data_understanding")
    assert "def read_course_data(" in data and "datafiles.opened(" in data
    assert "modality_of(file.path)" in data and "tf.data.Dataset.from_generator" in data
    pipeline = lesson_code("02_image_processing")
    for step in (".cache()", ".shuffle(", ".repeat()", ".map(", ".batch(", ".prefetch("):
        assert step in pipeline, step
    networks = lesson_code("03_model_building")
    pieces = (
        "def down_block(", "def up_block(", "def unet_generator(", "keras.layers.Conv2D",
        "keras.layers.Conv2DTranspose", 'keras.layers.Concatenate(name="skip_full")',
        "def patchgan_discriminator(", "def cycle_loss(", "def discriminator_loss(",
    )  # fmt: skip
    for piece in pieces:
        assert piece in networks, piece
    training = lesson_code("04_training")
    assert "def cycle_loss(real, cycled):" in training
    assert (
        "training.CycleGANLosses(generator_loss, discriminator_loss, cycle_loss, identity_loss)"
        in training
    )
