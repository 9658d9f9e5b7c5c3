"""Whether lesson 04 trains: a finished training of the same settings is used as it is, the
published model stands in when there is no run, and RESTART always trains anew."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import mri_helpers as mh
from conftest import REPO
from mri_course import checkpoints, training_run
from mri_helpers import lessons
from mri_helpers._tf import keras, tf
from mri_helpers.errors import MissingManifestError

PUBLISHED = REPO / "published"
CONFIGURATION = {"EPOCHS": 2, "SEED": 42, "data": "course", "split": {"test": {"t1": ["a"]}}}


def fit_and_record(run_dir: Path, epochs: int, initial_epoch: int = 0) -> None:
    """A tiny fit whose last callback records a finished training, as lesson 04's does."""
    mh.set_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((4, 3), np.float32)
    callback = checkpoints.TrainingFinished(run_dir, CONFIGURATION)
    model.fit(x, x[:, :1], epochs=epochs, initial_epoch=initial_epoch, verbose=0,
              callbacks=[callback])  # fmt: skip


def write_exports(run_dir: Path, epoch: int) -> None:
    for direction in ("t1-to-t2", "t2-to-t1"):
        folder = run_dir / "models" / direction
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.json").write_text(json.dumps({"direction": direction, "epoch": epoch}))


def test_a_finished_training_is_recorded_and_recognised_only_as_it_was(tmp_path: Path) -> None:
    fit_and_record(tmp_path, epochs=2)
    record = json.loads((tmp_path / checkpoints.FINISHED_FILE).read_text())
    assert record == {"epochs": 2, "configuration": CONFIGURATION}
    assert checkpoints.finished_epochs(tmp_path, CONFIGURATION) is None  # no exports yet
    write_exports(tmp_path, epoch=2)
    assert checkpoints.finished_epochs(tmp_path, CONFIGURATION) == 2
    assert checkpoints.finished_epochs(tmp_path, {**CONFIGURATION, "EPOCHS": 3}) is None
    write_exports(tmp_path, epoch=1)  # exports of another, later-interrupted training
    assert checkpoints.finished_epochs(tmp_path, CONFIGURATION) is None
    write_exports(tmp_path, epoch=2)
    (tmp_path / checkpoints.FINISHED_FILE).write_text("{not json")
    assert checkpoints.finished_epochs(tmp_path, CONFIGURATION) is None


def test_a_fit_that_trains_no_epoch_records_nothing(tmp_path: Path) -> None:
    fit_and_record(tmp_path, epochs=2, initial_epoch=2)
    assert not (tmp_path / checkpoints.FINISHED_FILE).exists()


def earlier_of(run_dir: Path, published: Path | None = None) -> lessons.EarlierLessons:
    manifests = {
        "01_data": {"data": CONFIGURATION["data"], "num_phantom_slices": 48},
        "02_processing": {"split": CONFIGURATION["split"]},
    }
    return lessons.EarlierLessons(run_dir, manifests, published=published)


def plan(run_dir: Path, restart: bool = False, published: Path | None = None):
    run = training_run.TrainingRun(tf.distribute.get_strategy(), str(run_dir), False)
    parameters = {"EPOCHS": 2, "SEED": 42, "RUN_DIR": str(run_dir), "RESTART": restart}
    return training_run.plan_training(run, earlier_of(run_dir, published), parameters)


def test_lesson_04_trains_uses_or_retrains_as_its_run_folder_says(tmp_path: Path) -> None:
    assert plan(tmp_path).action == "train"  # nothing there
    write_exports(tmp_path, epoch=2)
    fit_and_record(tmp_path, epochs=2)
    used = plan(tmp_path)
    assert (used.action, used.epochs, used.trains) == ("use", 2, False)
    assert used.models == str(tmp_path / "models") and used.trained_in == str(tmp_path)
    assert used.message.startswith("training skipped") and "RESTART = True" in used.message
    retrained = plan(tmp_path, restart=True)
    assert retrained.action == "train" and retrained.trains
    assert not (tmp_path / checkpoints.FINISHED_FILE).exists()  # the new training's own now
    assert plan(tmp_path).action == "train"


def test_without_a_run_the_published_model_is_studied(tmp_path: Path) -> None:
    studied = plan(tmp_path / "run", published=PUBLISHED)
    record = json.loads((PUBLISHED / "t1-to-t2" / "model.json").read_text())
    assert (studied.action, studied.epochs, studied.trained_in) == ("use", record["epoch"], None)
    assert studied.models == str(PUBLISHED) and "published model" in studied.message
    assert plan(tmp_path / "run", restart=True, published=PUBLISHED).action == "train"


def test_the_published_record_stands_in_for_lessons_01_to_03(
    course_zip: Path, tmp_path: Path
) -> None:
    earlier = lessons.earlier_lessons(tmp_path / "empty", published=PUBLISHED)
    record = json.loads((PUBLISHED / "t1-to-t2" / "model.json").read_text())
    assert earlier.published == PUBLISHED and earlier.dataset.kind == "course"
    assert earlier.split.test == record["held_out"] and earlier.image_size == record["image_size"]
    assert earlier.networks["GENERATOR"] == record["generator"]
    with pytest.raises(MissingManifestError, match="run notebook 01 first"):
        lessons.earlier_lessons(tmp_path / "empty")  # no published model: run the lessons
    # A model trained on other data (another split held out) is refused, with the way out.
    other = tmp_path / "other"
    shutil.copytree(PUBLISHED, other)
    moved = {**record, "held_out": {"t1": ["Image #10.png"], "t2": ["Image #70.png"]}}
    (other / "t1-to-t2" / "model.json").write_text(json.dumps(moved))
    with pytest.raises(MissingManifestError, match="not that data.*course zip"):
        lessons.earlier_lessons(tmp_path / "empty", published=other)


def test_the_published_generators_are_committed_and_load() -> None:
    """Lesson 04 without a run studies these: both load, with the sizes their records name."""
    generator_g, generator_f = training_run.exported_networks(PUBLISHED)
    record = json.loads((PUBLISHED / "t1-to-t2" / "model.json").read_text())
    for network in (generator_g, generator_f):
        assert network.input_shape[1:3] == (record["image_size"], record["image_size"])
    assert set(record["grey_levels"]) == {"t1", "t2"}  # translate checks inputs against them
