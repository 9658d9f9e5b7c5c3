"""Small JSON manifests through which the notebooks of one run talk to each other.

Each notebook writes `<RUN_DIR>/<name>.json`; the next one reads it, and says which notebook
to run first when it is missing. Files are written to a temporary name and renamed, so a reader
never sees half a manifest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import fileio
from .errors import CourseError, DataError, MissingManifestError


def write(run_dir: str | os.PathLike, name: str, content: dict[str, Any]) -> Path:
    """Write `content` as `<run_dir>/<name>.json` atomically; return the path."""
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.json"
    try:
        fileio.write_text(target, json.dumps(content, indent=2, sort_keys=True, default=str))
    except OSError as error:
        raise CourseError(
            f"cannot write {target}: {error.strerror}. Choose a writable RUN_DIR or free some "
            "space, then run the notebook again."
        ) from None
    return target


def read(run_dir: str | os.PathLike, name: str) -> dict[str, Any]:
    """Read the manifest `name` of this run, or say which notebook writes it."""
    path = Path(run_dir) / f"{name}.json"
    if fileio.kind_of(path) == "missing":
        raise MissingManifestError(
            f"{path} is missing: run notebook {name.split('_')[0]} first with the same RUN_DIR "
            "(or run the whole course with `mri-course run`)."
        )
    try:
        content = fileio.read_json(path)
    except DataError as error:
        raise CourseError(
            f"{error} It was damaged. Run notebook {name.split('_')[0]} again with the same "
            "RUN_DIR, or start a new run."
        ) from None
    if not isinstance(content, dict):
        raise CourseError(f"{path} holds {type(content).__name__}, not a manifest; run again.")
    return content
