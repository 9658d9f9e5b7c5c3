"""The paired upper bound (`mri_course.paired`): pix2pix on the phantom's pairs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import mri_helpers as mh
from mri_course import cli, paired
from mri_helpers import manifest, models, processing
from mri_helpers.errors import CourseError

SIZE = 64


def phantom_run(folder: Path, data: str = "phantom") -> Path:
    """The record of a finished tiny phantom run: what lessons 01-03 and the runner write."""
    dataset = mh.load_dataset("phantom", num_slices=12)
    split = processing.holdout_split(dataset, 0.1, seed=0)
    manifest.write(folder, "01_data", {"data": data, "num_phantom_slices": 12})
    manifest.write(folder, "02_processing", {
        "split": dataclasses.asdict(split), "cleaning": vars(processing.Cleaning()),
        "image_size": SIZE, "batch_size": 2, "seed": 0, "holdout_fraction": 0.1,
    })  # fmt: skip
    manifest.write(folder, "03_models", {"generator": "tiny", "discriminator": "tiny"})
    parameters = {"DATA": data, "EPOCHS": 2, "STEPS_PER_EPOCH": 3, "WARM_START_STEPS": 3,
                  "BATCH_SIZE": 2, "LEARNING_RATE": 2e-4}  # fmt: skip
    (folder / "run.json").write_text(json.dumps({"parameters": parameters}))
    return folder


def test_pairs_stay_aligned_through_the_augmentation() -> None:
    images = np.random.default_rng(0).uniform(-1, 1, (6, SIZE, SIZE, 1)).astype(np.float32)
    for t1, t2 in paired.paired_pipeline(images, images.copy(), 3, seed=1).take(4):
        np.testing.assert_array_equal(t1.numpy(), t2.numpy())  # one move for both
    moved = next(iter(paired.paired_pipeline(images, images, 6, seed=1)))[0].numpy()
    assert not any(np.array_equal(moved[0], image) for image in images)  # moved at all


def test_pix2pix_learns_the_pairs_it_is_given() -> None:
    """On the phantom's pairs, the L1 to the true T2 falls well below the untrained one's."""
    mh.set_seed(0)
    dataset = mh.load_dataset("phantom", num_slices=8)
    t1, t2 = (processing.prepare(dataset[c], SIZE) for c in ("t1", "t2"))
    model = paired.Pix2Pix(
        {d: models.unet_generator("tiny", SIZE) for d in paired.DIRECTIONS},
        {d: models.patchgan_discriminator("tiny", SIZE, channels=2) for d in paired.DIRECTIONS},
    )
    model.compile_for_training(paired.PairedBudget(150, 4, 2e-3, 100))

    def l1() -> float:
        return float(np.abs(model.generators["t1-to-t2"].predict(t1, verbose=0) - t2).mean())

    before = l1()
    history = model.fit(
        paired.paired_pipeline(t1, t2, 4, 0), epochs=1, steps_per_epoch=150, verbose=0
    )
    assert set(history.history) >= {"l1_t1-to-t2", "g_t2-to-t1", "d_t1-to-t2"}
    assert l1() < 0.5 * before


def test_the_budget_is_the_runs_and_only_phantom_runs_have_pairs(tmp_path: Path) -> None:
    run = phantom_run(tmp_path / "run")
    budget = paired.budget_of(run)
    assert (budget.steps, budget.batch_size, budget.decay_start) == (3 + 6, 2, 3 + 3)
    with pytest.raises(CourseError, match="needs the phantom's pairs"):
        paired.budget_of(phantom_run(tmp_path / "course", data="course.zip"))
    (run / "run.json").unlink()
    with pytest.raises(CourseError, match="finished course run"):
        paired.budget_of(run)


def test_the_command_trains_exports_and_scores_like_the_cyclegan(tmp_path: Path, capsys) -> None:
    run = phantom_run(tmp_path / "run")
    assert cli.main(["paired-bound", str(run), "--steps", "4"]) == 0
    report = json.loads((run / "paired" / "metrics.json").read_text())
    assert report["budget"]["steps"] == 4
    for direction in paired.DIRECTIONS:
        record = json.loads((run / "paired" / "models" / direction / "model.json").read_text())
        assert record["trained_on_pairs"] and record["held_out"] == report["scores"]["held_out"]
        assert record["calibrated"] and record["test_time_augmentation"]
    scores = report["scores"]["phantom"]["t1-to-t2"]
    assert 0.0 < scores["model"]["head"]["ssim"] <= 1.0  # the held-out slices, as evaluate
    assert "pix2pix, 4 steps of 2 pairs" in capsys.readouterr().out
    assert cli.main(["paired-bound", str(run), "--steps", "0"]) == 2
