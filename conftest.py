"""Shared fixtures (the real course zip, crafted PNGs and zips), and the notebooks under nbval.

pytest runs every notebook in `notebooks/` (the lessons in order, then the worked solutions)
with nbval, at the `smoke` size: as a batch run does, papermill injects the parameters after
each notebook's parameters cell, into a copy that nbval executes; outputs of cells marked
`# NBVAL_CHECK_OUTPUT` must match the committed ones.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest
from _pytest.compat import LEGACY_PATH
from nbval.plugin import IPyNbFile
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook
from PIL import Image

REPO = Path(__file__).resolve().parent
SHARED_ZIP = REPO.parent / "shared" / "data" / "MRI+T1_T2+Dataset.zip"


def course_zip_path() -> Path | None:
    """The real course zip: $MRI_DATA, else ../shared/data, else data/."""
    for candidate in (os.environ.get("MRI_DATA"), SHARED_ZIP, REPO / "data" / SHARED_ZIP.name):
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    return None


def pytest_configure(config: pytest.Config) -> None:
    if course_zip_path() is not None:
        os.environ.setdefault("MRI_DATA", str(course_zip_path()))
    # Lesson 04 uses a finished training it finds in its run folder; under test it must train.
    finished = Path(config.rootpath) / ".pytest_cache" / "nbval-run" / "training.json"
    finished.unlink(missing_ok=True)


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    """The notebooks, each run by nbval with the smoke parameters injected."""
    if file_path.suffix == ".ipynb" and (REPO / "notebooks") in file_path.parents:
        return SmokeNotebook.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The notebooks' checked outputs are those of the course data; without it they cannot match.
    if course_zip_path() is not None or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="course zip not found: set MRI_DATA to run the notebooks")
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(skip)


class SmokeNotebook(IPyNbFile):
    """A notebook that nbval runs as a copy with papermill's injected smoke parameters, in
    lax mode (only cells marked # NBVAL_CHECK_OUTPUT are compared)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.compare_outputs = False  # nbval's --nbval-lax
        relative = self.path.relative_to(REPO)
        self.copy = Path(self.config.rootpath) / ".pytest_cache" / "nbval" / relative
        run_dir = Path(self.config.rootpath) / ".pytest_cache" / "nbval-run"
        smoke = {"PROFILE": "smoke", "RUN_DIR": str(run_dir)}
        declared = papermill.inspect_notebook(str(self.path))
        notebook = load_notebook_node(str(self.path))  # as papermill reads notebooks
        notebook = parameterize_notebook(
            notebook, {name: value for name, value in smoke.items() if name in declared}
        )
        self.copy.parent.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, self.copy)

    @property
    def fspath(self):  # nbval reads the notebook, and starts its kernel, where this points
        return LEGACY_PATH(self.copy)


@pytest.fixture(scope="session")
def course_zip() -> Path:
    """The real course zip; under CI its absence is a failure, elsewhere a skip."""
    path = course_zip_path()
    if path is None:
        message = "course zip not found: set MRI_DATA=../shared/data/MRI+T1_T2+Dataset.zip"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    """Encode an array as PNG (uint8 gray, uint16 gray, RGB or RGBA by shape and dtype)."""
    buffer = io.BytesIO()
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def gray_slice(value: int = 100, shape: tuple[int, int] = (217, 181)) -> np.ndarray:
    """A small head-like test slice: a bright ellipse on a dark background."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    inside = ((yy - shape[0] / 2) / (shape[0] * 0.4)) ** 2 + (
        (xx - shape[1] / 2) / (shape[1] * 0.4)
    ) ** 2 < 1
    return np.where(inside, value, 0).astype(np.uint8)


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    """Write a zip with the given member names and contents."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return path


def course_like_entries(prefix: str = "", n_t1: int = 3, n_t2: int = 2) -> dict[str, bytes]:
    """Members laid out like the course zip, with ids that test natural sorting."""
    entries = {}
    for i in range(n_t1):
        entries[f"{prefix}Tr1/TrainT1/Image #{9 + i}.png"] = png_bytes(gray_slice(50 + i))
    for i in range(n_t2):
        entries[f"{prefix}Tr2/TrainT2/Image #{99 + i}.png"] = png_bytes(gray_slice(150 + i))
    return entries
