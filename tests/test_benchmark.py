"""The benchmark's reference and FLOP counts (no timing assertions: timings are noisy)."""

from __future__ import annotations

import json

from mri_helpers import benchmark, models
from mri_helpers._tf import keras


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


def test_items_report_what_the_table_needs(tmp_path) -> None:
    row = benchmark.measure("pipeline", 1)
    assert row["seconds_per_step"] > 0 and row["images_per_step"] > 0
    rows = {
        item: {"seconds_per_step": 1.0, "images_per_step": 2, "peak_memory_mib": 100.0}
        for item in benchmark.ITEMS
    }
    for item in ("ceiling", "reference", *benchmark.FIT_ITEMS):  # the items with FLOPs
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
    json.dumps(results)
