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

from .errors import CourseError, MissingManifestError


def write(run_dir: str | os.PathLike, name: str, content: dict[str, Any]) -> Path:
    """Write `content` as `<run_dir>/<name>.json` atomically; return the path."""
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.json"
    partial = target.with_suffix(".json.partial")
    try:
        partial.write_text(json.dumps(content, indent=2, sort_keys=True, default=str))
        os.replace(partial, target)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise CourseError(
            f"cannot write {target}: {error.strerror}. Choose a writable RUN_DIR or free some "
            "space, then run the notebook again."
        ) from None
    return target


def read(run_dir: str | os.PathLike, name: str) -> dict[str, Any]:
    """Read the manifest `name` of this run, or say which notebook writes it."""
    path = Path(run_dir) / f"{name}.json"
    if not path.is_file():
        raise MissingManifestError(
            f"{path} is missing: run notebook {name.split('_')[0]} first with the same RUN_DIR "
            "(or run the whole course with `mri-course run`)."
        )
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CourseError(
            f"{path} is not readable JSON ({error}); it was damaged. Run notebook "
            f"{name.split('_')[0]} again with the same RUN_DIR, or start a new run."
        ) from None
    if not isinstance(content, dict):
        raise CourseError(f"{path} holds {type(content).__name__}, not a manifest; run again.")
    return content
