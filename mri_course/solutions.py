"""Publishing the worked solutions with their outputs (`mri-course publish-solutions`).

Each solution notebook runs once with papermill at its own defaults (the `course` profile),
from `notebooks/solutions` as its working directory, into a temporary folder; its executed
copy then replaces the committed one, cleaned as `mri-course publish` cleans the lessons (no
papermill metadata, execution counts 1..N, no paths of this machine). Everything is run and
checked first; then all solutions are written, or none.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from mri_helpers.datafiles import find_data, project_root
from mri_helpers.errors import CourseRunError

from .runner import PrintedLines, _strip_run_metadata, _write_all_or_nothing, local_kernel_manager


def solution_notebooks(notebooks_dir: Path | None = None) -> list[Path]:
    """The committed solution notebooks, in lesson order."""
    folder = (notebooks_dir or project_root() / "notebooks") / "solutions"
    return sorted(folder.glob("[0-9][0-9]_solutions.ipynb"))


def publish_solutions(notebooks_dir: Path | None = None) -> dict[Path, float]:
    """Run every solution notebook once at its defaults and commit its outputs; return the
    seconds each took. Refuses to run without the course data (the outputs show it)."""
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    if find_data() is None:
        raise CourseRunError(
            "the course data was not found, so the solutions would show the phantom; put the "
            "zip into data/ (or set MRI_DATA) and publish again."
        )
    seconds, ready = {}, []
    with tempfile.TemporaryDirectory(prefix="mri-solutions-") as scratch:
        for path in solution_notebooks(notebooks_dir):
            target = Path(scratch) / path.name
            print(f"Running {path.name} ...", flush=True)
            start = time.perf_counter()
            try:
                pm.execute_notebook(
                    str(path),
                    str(target),
                    kernel_name="python3",
                    language="python",
                    cwd=str(path.parent),
                    progress_bar=False,
                    stdout_file=PrintedLines(path.stem),
                    kernel_manager_class=local_kernel_manager(),
                )
            except PapermillExecutionError as error:
                raise CourseRunError(
                    f"{path.name} failed at cell [{error.exec_count}]: {error.ename}: "
                    f"{error.evalue}; nothing was published."
                ) from None
            seconds[path] = round(time.perf_counter() - start, 1)
            print(f"  done in {seconds[path]:.0f} s")
            executed = nbformat.read(target, as_version=4)
            if [c.source for c in executed.cells] != [
                c.source for c in nbformat.read(path, as_version=4).cells
            ]:
                raise CourseRunError(f"{path.name} changed while it ran; nothing was published.")
            _strip_run_metadata(executed)
            text = nbformat.writes(executed)
            ready.append((path, (text if text.endswith("\n") else text + "\n").encode()))
    _write_all_or_nothing(ready)
    return seconds
