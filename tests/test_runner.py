"""The papermill batch runner on small crafted notebooks, and the `mri-course run` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from mri_helpers import runner
from mri_helpers.cli import main as cli_main


def write_notebook(path: Path, *sources: str, parameters: str = "SEED = 1\nRUN_DIR = '.'") -> Path:
    notebook = new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.metadata["language_info"] = {"name": "python"}
    cell = new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    notebook.cells = [cell, *(new_code_cell(s) for s in sources)]
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(
        folder / "01_first.ipynb",
        "import json, os, pathlib\n"
        "pathlib.Path(RUN_DIR, 'first.json').write_text(json.dumps({'seed': SEED, "
        "'cwd': os.getcwd()}))",
    )
    write_notebook(
        folder / "02_second.ipynb",
        "import json, pathlib\n"
        "seed = json.loads(pathlib.Path(RUN_DIR, 'first.json').read_text())['seed']\n"
        "pathlib.Path(RUN_DIR, 'second.txt').write_text(str(seed * 2))",
    )
    return folder


def test_runs_notebooks_in_order_into_a_new_folder(notebooks: Path, tmp_path: Path) -> None:
    committed = {p: p.read_bytes() for p in notebooks.iterdir()}
    out = tmp_path / "run"
    result = runner.run_course("smoke", "phantom", out, seed=21, notebooks_dir=notebooks)
    assert [p.name for p in result.notebooks] == ["01_first.ipynb", "02_second.ipynb"]
    assert (out / "second.txt").read_text() == "42"  # 02 read what 01 wrote, seed injected
    first = json.loads((out / "first.json").read_text())
    assert Path(first["cwd"]) == notebooks  # notebooks run from their own folder
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["parameters"]["SEED"] == 21 and manifest["parameters"]["DATA"] == "phantom"
    assert {p: p.read_bytes() for p in notebooks.iterdir()} == committed


def test_refuses_to_overwrite_an_earlier_run(notebooks: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("earlier results")
    with pytest.raises(runner.CourseRunError, match="already holds an earlier run.*--overwrite"):
        runner.run_course("smoke", "phantom", out, notebooks_dir=notebooks)
    assert (out / "precious.txt").read_text() == "earlier results"
    runner.run_course("smoke", "phantom", out, overwrite=True, notebooks_dir=notebooks)
    assert (out / "second.txt").exists()


def test_a_failing_cell_names_notebook_cell_and_error(notebooks: Path, tmp_path: Path) -> None:
    write_notebook(notebooks / "03_broken.ipynb", "x = 1", "raise ValueError('bad slice #7')")
    with pytest.raises(runner.CourseRunError) as caught:
        runner.run_course("smoke", "phantom", tmp_path / "run", notebooks_dir=notebooks)
    message = str(caught.value)
    assert "03_broken.ipynb failed at cell [4]" in message  # [1] is the injected parameters
    assert "ValueError: bad slice #7" in message and "raise ValueError" in message


def test_bad_parameters_fail_before_any_work(notebooks: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="SEED=-3 is out of range"):
        runner.run_course("smoke", "phantom", out, seed=-3, notebooks_dir=notebooks)
    assert not out.exists()
    assert cli_main(["run", "--profile", "smoke", "--set", "SEED=-3", "--out", str(out)]) == 2
    assert not out.exists()


def test_unwritable_output_is_a_clear_error(notebooks: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(runner.CourseRunError, match="is not a folder|cannot write"):
        runner.run_course("smoke", "phantom", blocker, notebooks_dir=notebooks)
    with pytest.raises(runner.CourseRunError, match="cannot write"):
        runner.run_course("smoke", "phantom", blocker / "sub", notebooks_dir=notebooks)


def test_unknown_profile_is_rejected_by_the_command(capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        cli_main(["run", "--profile", "huge"])
    assert caught.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_course_smoke_batch_end_to_end(course_zip: Path, tmp_path: Path) -> None:
    """`mri-course run --profile smoke` on the real notebooks, as a user would run it."""
    out = tmp_path / "smoke-run"
    command = [sys.executable, "-m", "mri_helpers.cli", "run", "--profile", "smoke"]
    done = subprocess.run(
        [*command, "--data", str(course_zip), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    executed = sorted(p.name for p in out.glob("*.ipynb"))
    committed = sorted(p.name for p in (runner.project_root() / "notebooks").glob("*.ipynb"))
    assert executed == committed and executed[0] == "01_data_understanding.ipynb"
    data_manifest = json.loads((out / "01_data.json").read_text())
    assert data_manifest["kind"] == "course" and len(data_manifest["ids"]["t1"]) == 43
    assert json.loads((out / "run.json").read_text())["parameters"]["PROFILE"] == "smoke"
