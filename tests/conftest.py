"""Shared fixtures: the real course zip, crafted PNGs and zips, and nbval's environment."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED_ZIP = REPO.parent / "shared" / "data" / "MRI+T1_T2+Dataset.zip"


def course_zip_path() -> Path | None:
    """The real course zip: $MRI_DATA, else ../shared/data, else data/."""
    for candidate in (os.environ.get("MRI_DATA"), SHARED_ZIP, REPO / "data" / SHARED_ZIP.name):
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    return None


def pytest_configure(config: pytest.Config) -> None:
    # nbval runs the committed notebooks at the smoke size, writing into a scratch run folder;
    # their kernels inherit this environment.
    os.environ["MRI_COURSE_PROFILE"] = "smoke"
    scratch = Path(config.rootpath) / ".pytest_cache" / "nbval-run"
    scratch.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MRI_RUN_DIR", str(scratch))
    if course_zip_path() is not None:
        os.environ.setdefault("MRI_DATA", str(course_zip_path()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The notebooks' checked outputs are those of the course data; without it they cannot match.
    if course_zip_path() is not None or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="course zip not found: set MRI_DATA to run the notebooks")
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(skip)


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
