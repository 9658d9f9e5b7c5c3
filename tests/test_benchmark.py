"""The benchmark's reference and FLOP counts (no timing assertions: timings are noisy)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mri_course import benchmark, scans
from mri_helpers import export, models, profiles, training
from mri_helpers._tf import keras
from mri_helpers.processing import Cleaning


def test_reference_is_the_tutorials_architecture() -> None:
    generator, discriminator = benchmark.reference_networks(256)
    assert generator.count_params() == 54_408_833
    assert discriminator.count_params() == 2_763_521
    ours = models.unet_generator("tutorial", 256)
    assert benchmark.forward_flops(generator) == benchmark.forward_flops(ours)


def test_flops_are_counted_from_the_layers() -> None:
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)  # 8x8x8 out
    outputs = keras.layers.Conv2DTranspose(4, 4, strides=2, padding="same")(x)  # 16x16x4
    model = keras.Model(inputs, outputs)
    conv = 2 * 8 * 8 * 8 * 3 * 9
    transposed = 2 * 8 * 8 * 8 * 4 * 16
    assert benchmark.forward_flops(model) == conv + transposed
    assert benchmark.step_flops(model, model, 2, 3) == 3 * 2 * (
        6 * benchmark.forward_flops(model) + 6 * benchmark.forward_flops(model)
    )
    # Without an identity loss each generator sees each image twice (translate, cycle).
    assert benchmark.step_flops(model, model, 2, 3, 2) == 3 * 2 * (
        4 * benchmark.forward_flops(model) + 6 * benchmark.forward_flops(model)
    )


def test_course_items_train_with_the_course_settings() -> None:
    """The `course` items use the settings notebook 04 passes to TrainingConfig."""
    course = profiles.load_profile("course")
    settings = benchmark.course_settings(course)
    assert settings == {
        "learning_rate": course["LEARNING_RATE"],
        "lambda_cycle": course["LAMBDA_CYCLE"],
        "identity_weight": course["IDENTITY_WEIGHT"],
        "generator_average": course["GENERATOR_AVERAGE"],
    }
    training.TrainingConfig(1, 1, **settings)  # all of them are TrainingConfig's


def test_course_minutes_add_the_head_start_and_the_steps() -> None:
    course = profiles.load_profile("course")
    minutes = benchmark._course_minutes(
        {"seconds_per_step": 0.5}, {"seconds_per_step": 0.2, "setup_seconds": 30.0}
    )
    steps = course["EPOCHS"] * course["STEPS_PER_EPOCH"]
    head_start = 2 * course["WARM_START_STEPS"]
    assert minutes == pytest.approx((30.0 + 0.2 * head_start + 0.5 * steps) / 60)


def test_the_volume_item_translates_with_a_course_export(tmp_path) -> None:
    """The export the volume item times is the course's (copies averaged, calibrated, cleaned)
    and `translate_volume` accepts it (on a few slices here)."""
    generator, config = export.load_generator(benchmark._course_export(tmp_path))
    assert config["test_time_augmentation"] and config["calibrated"]
    assert export.cleaning_of(config) == Cleaning()
    assert scans.copies_of(generator) is not None
    data = np.zeros((40, 48, 3), np.float32)
    data[8:32, 8:40] = 100.0
    result, _, record = scans.translate_volume(generator, config, data, np.eye(4), batch_size=3)
    assert result.shape == data.shape and record["geometry"]["slices"] == 3


def test_items_report_what_the_table_needs(tmp_path) -> None:
    row = benchmark.measure("pipeline", 1)
    assert row["seconds_per_step"] > 0 and row["images_per_step"] > 0
    rows = {
        item: {"seconds_per_step": 1.0, "images_per_step": 2, "peak_memory_mib": 100.0}
        for item in benchmark.ITEMS
    }
    for item in ("ceiling", "reference", *benchmark.FIT_ITEMS, *benchmark.HEAD_START_ITEMS):
        rows[item]["flops_per_step"] = 4e9
        rows[item]["gflops"], rows[item]["fraction_of_ceiling"] = 4.0, 0.5
    rows["project"]["precision"] = "mixed_bfloat16"
    for row in rows.values():
        row["images_per_s"] = 2.0
    results = {
        "ceiling_gflops": 8.0,
        "speedup_vs_reference": 1.0,
        "fraction_of_ceiling": 0.5,
        "project_precision": "mixed_bfloat16",
        "speedup_vs_reference_float32": 1.0,
        "fraction_of_ceiling_float32": 0.5,
        "course_images_per_s": 2.0,
        "course_precision": "mixed_bfloat16",
        "course_fraction_of_ceiling": 0.5,
        "course_float32_images_per_s": 1.0,
        "course_float32_fraction_of_ceiling": 0.25,
        "course_float32_vs_course": 0.5,
        "course_training_minutes": 20.0,
        "course_float32_training_minutes": 30.0,
        "head_start_images_per_s": 2.0,
        "head_start_float32_images_per_s": 1.0,
        "volume_slices_per_s": 21.0,
        "volume_precision": "mixed_bfloat16",
        "volume_float32_slices_per_s": 18.0,
        "reproducible_vs_course": 1.0,
        "pipeline_vs_training": 1.0,
        "translate_slices_per_s": 2.0,
        "items": rows,
    }
    table = benchmark.markdown_table(results)
    assert table.count("\n| ") == len(benchmark.ITEMS)  # one row per item after the header
    assert "| reference | 1.0000 | 2.0 | 4.0 | 4 | 50% | 100 MiB |" in table
    assert "| project (mixed_bfloat16) | 1.0000 |" in table
    assert "project (mixed_bfloat16) vs tutorial reference (float32)" in table
    assert "`REPRODUCIBLE` (ops one at a time) vs without, images/s: 1.00x" in table
    assert "course step in float32 vs mixed_bfloat16, images/s: 0.50x" in table
    assert "50% (mixed_bfloat16), 25% (float32)" in table
    assert "20.0 min (mixed_bfloat16), 30.0 min (float32)" in table
    assert "volume translation: 21 axial slices/s (mixed_bfloat16), 18 (float32)" in table
    json.dumps(results)


@pytest.mark.slow  # two items, each in a process of its own
@pytest.mark.parametrize("item", ["course", "head_start"])
def test_the_training_items_run_as_the_benchmark_runs_them(item: str) -> None:
    """A fit item and a head-start item, each in a fresh interpreter as `mri-course bench`
    runs them: each reports its step time, work and precision."""
    row = benchmark._run_item(item, 1)
    assert row["images_per_step"] > 0 and row["flops_per_step"] > 0
    assert row["precision"] in ("float32", "mixed_bfloat16", "mixed_float16")
    assert row["peak_memory_mib"] > 0
