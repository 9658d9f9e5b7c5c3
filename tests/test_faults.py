"""Faults a learner meets: a run killed mid-training, bad parameters, full disks, unsafe code."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

import mri_helpers as mh
from conftest import REPO, gray_slice, png_bytes
from mri_course import png_slices, runner
from mri_course.cli import main as cli_main

pytestmark = pytest.mark.slow  # batch runs and other processes: not in `make check`


def test_the_smoke_batch_survives_a_kill_in_training_and_a_failure_after_it(
    course_zip: Path, tmp_path: Path
) -> None:
    """`mri-course run --profile smoke` on the real notebooks, as a user runs it, stopped twice:
    SIGKILL'd mid-training (`--resume` continues from the last epoch), then a cell after
    training fails (`--resume` finishes without training again). One batch for both, as each
    costs the four lessons' start."""
    copies = tmp_path / "notebooks"  # the lessons, with a cell that fails after training
    shutil.copytree(runner.project_root() / "notebooks", copies)
    lesson = nbformat.read(copies / "04_training.ipynb", as_version=4)
    trains = next(i for i, c in enumerate(lesson.cells) if c.source.startswith("if plan.trains"))
    lesson.cells.insert(trains + 1, new_code_cell("raise RuntimeError('after training')"))
    nbformat.write(lesson, copies / "04_training.ipynb")
    out = tmp_path / "run"
    program = (
        "import sys; from pathlib import Path; from mri_course import runner\n"
        "runner.run_course('smoke', sys.argv[1], sys.argv[2], notebooks_dir=Path(sys.argv[3]),"
        " overrides={'EPOCHS': 8, 'STEPS_PER_EPOCH': 3})"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", program, str(course_zip), str(out), str(copies)],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    metadata = out / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if (
                metadata.is_file()
                and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 2
            ):
                break
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the runner and its notebook kernel
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "run.json").exists()

    command = [sys.executable, "-m", "mri_course.cli", "run", "--profile", "smoke",
               "--data", str(course_zip), "--out", str(out)]  # fmt: skip
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "--resume" in again.stderr  # no silent overwrite

    with pytest.raises(runner.CourseRunError, match="after training"):
        runner.resume_course(out, notebooks_dir=copies)
    executed = (out / "04_training.ipynb").read_text()
    epochs_trained = [int(n) for n in re.findall(r"epoch (\d+)/8", executed)]
    assert epochs_trained[-1] == 8 and epochs_trained[0] >= 3  # continued, not restarted
    history = (out / "history.csv").read_text()

    resume = [sys.executable, "-m", "mri_course.cli", "run", "--resume", "--out", str(out)]
    done = subprocess.run(resume, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lesson = nbformat.read(out / "04_training.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in lesson.cells for o in c.get("outputs", []))
    assert "training skipped" in printed and (out / "history.csv").read_text() == history
    assert json.loads((out / "04_training.json").read_text())["epochs"] == 8
    assert (out / "models" / "t1-to-t2" / "model.json").is_file()
    assert not [p for p in (out / "models").iterdir() if p.name.startswith(".")]
    executed_names = sorted(p.name for p in out.glob("*.ipynb"))
    committed = sorted(p.name for p in (runner.project_root() / "notebooks").glob("*.ipynb"))
    assert executed_names == committed and executed_names[0] == "01_data_understanding.ipynb"
    data_manifest = json.loads((out / "01_data.json").read_text())
    assert data_manifest["kind"] == "course" and len(data_manifest["ids"]["t1"]) == 43
    parameters = json.loads((out / "run.json").read_text())["parameters"]
    assert parameters["PROFILE"] == "smoke" and parameters["EPOCHS"] == 8


def test_resume_refuses_folders_without_an_interrupted_run(tmp_path: Path, capsys) -> None:
    assert cli_main(["run", "--resume", "--out", str(tmp_path)]) != 0
    assert "no interrupted course run" in capsys.readouterr().err
    assert cli_main(["run", "--resume"]) != 0
    assert "--resume needs --out" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("EPOCHS=-1", "EPOCHS=-1 is out of range"),
        ("EPOCHS=two", "EPOCHS='two' must be a whole number"),
        ("IMAGE_SIZE=100", "multiple of 2\\*\\*6"),
        ("ADVERSARIAL=wgan", "ADVERSARIAL='wgan' is not allowed"),
        ("COLOUR=1", "unknown parameter"),
    ],
)
def test_bad_run_parameters_fail_before_any_work(tmp_path, capsys, setting, message) -> None:
    out = tmp_path / "never"
    assert cli_main(["run", "--profile", "smoke", "--set", setting, "--out", str(out)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_a_full_disk_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    from mri_helpers import manifest

    monkeypatch.setattr(Path, "write_text", no_space)
    with pytest.raises(mh.CourseError, match="No space left on device.*free some space"):
        manifest.write(tmp_path, "01_data", {"a": 1})
    assert not list(tmp_path.iterdir())


def test_translate_into_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(gray_slice()))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    from mri_helpers import export, models

    models_dir = tmp_path / "models"
    export.export_generator(
        models.unet_generator(models.GeneratorConfig((8, 8)), 16), models_dir, "t1-to-t2", 16,
        saved_model=False,
    )  # fmt: skip
    with pytest.raises(mh.DataError, match="is a file, not a folder"):
        png_slices.translate_files(models_dir, "t1-to-t2", [tmp_path / "a.png"], blocker / "out")


def test_no_pickle_eval_or_shell_strings_in_the_package() -> None:
    """The package never unpickles, evaluates strings or runs shell command lines."""
    forbidden = re.compile(
        r"\bimport pickle\b|\bpickle\.load|\beval\(|\bexec\(|shell=True|os\.system\(|"
        r"safe_mode=False|allow_pickle=True"
    )
    offenders = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted((REPO / "mri_helpers").glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line)
    ]
    assert offenders == []
