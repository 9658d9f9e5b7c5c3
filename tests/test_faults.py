"""Faults a learner meets: a run killed mid-training, bad parameters, full disks, unsafe code."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mri_helpers as mh
from conftest import REPO, gray_slice, png_bytes
from mri_course import png_slices
from mri_course.cli import main as cli_main

pytestmark = pytest.mark.slow  # batch runs and other processes: not in `make check`


def test_killed_training_resumes_and_finishes(course_zip: Path, tmp_path: Path) -> None:
    """SIGKILL the whole batch mid-training; `--resume` finishes it from the last epoch."""
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "mri_course.cli", "run", "--profile", "smoke",
        "--data", str(course_zip), "--out", str(out),
        "--set", "EPOCHS=8", "--set", "STEPS_PER_EPOCH=3",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
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

    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "--resume" in again.stderr  # no silent overwrite

    resumed = subprocess.run(
        [*command[:3], "run", "--resume", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "04_training.json").read_text())["epochs"] == 8
    executed = (out / "04_training.ipynb").read_text()
    epochs_trained = [int(n) for n in re.findall(r"epoch (\d+)/8", executed)]
    assert epochs_trained[-1] == 8 and epochs_trained[0] >= 3  # continued, not restarted
    assert (out / "models" / "t1-to-t2" / "model.json").is_file()
    assert not [p for p in (out / "models").iterdir() if p.name.startswith(".")]


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
