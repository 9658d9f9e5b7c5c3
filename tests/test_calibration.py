"""Output intensity calibration: the fitted table, the layer, export, and real course slices."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

import mri_helpers as mh
from mri_course import callbacks
from mri_course.evaluate import evaluate_export
from mri_helpers import calibration, export, models, processing, test_time, training
from mri_helpers._tf import keras, tf

GRID = np.linspace(-1, 1, calibration.TABLE_SIZE)


def apply(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.interp(values, GRID, table)


def affine(scale: float, offset: float, size: int) -> keras.Model:
    """A 'generator' that squeezes grey levels: scale * x + offset."""
    inputs = keras.Input((size, size, 1))
    return keras.Model(inputs, keras.layers.Rescaling(scale, offset)(inputs))


def test_table_undoes_a_compressed_grey_scale() -> None:
    rng = np.random.default_rng(0)
    real = np.clip(rng.normal(-0.1, 0.45, 200_000), -1, 1)
    generated = 0.6 * real + 0.15  # dark and bright ends squeezed, everything a little lighter
    table = calibration.quantile_table(generated, real)
    assert table[0] == -1 and table[-1] == 1 and np.all(np.diff(table) >= 0)
    restored = apply(table, generated)
    central = (real > np.quantile(real, 0.01)) & (real < np.quantile(real, 0.99))
    assert np.abs(restored - real)[central].max() < 0.02
    before = stats.wasserstein_distance(generated, real)
    assert stats.wasserstein_distance(restored, real) < before / 10


def test_flat_saturated_and_out_of_range_outputs_give_valid_tables() -> None:
    real = np.linspace(-1, 1, 1001)
    flat = calibration.quantile_table(np.full(1000, 0.3), real)
    assert apply(flat, 0.3) == pytest.approx(0.0, abs=0.01)  # the flat level -> real median
    saturated = np.r_[np.linspace(-0.5, 0.5, 900), np.ones(100)]  # 10 % stuck at white
    wide = np.linspace(-1.5, 1.5, 1000)  # outside the tanh range
    for generated in (flat, saturated, wide):
        table = calibration.quantile_table(generated, real)
        assert table[0] == -1 and table[-1] == 1 and np.all(np.diff(table) >= 0)
        calibration.IntensityCalibration(table)  # accepted
    assert apply(calibration.quantile_table(saturated, real), 0.0) == pytest.approx(-0.1, 0.05)
    with pytest.raises(ValueError, match="needs grey levels"):
        calibration.quantile_table(np.array([]), real)


@pytest.mark.parametrize(
    "table, message",
    [
        (np.linspace(-1, 1, 10), "holds 257"),
        (np.linspace(1, -1, calibration.TABLE_SIZE), "monotonically"),
        (np.linspace(-2, 1, calibration.TABLE_SIZE), "within"),
        (np.r_[np.nan, np.zeros(calibration.TABLE_SIZE - 1)], "finite"),
    ],
)
def test_bad_tables_are_refused(table, message) -> None:
    with pytest.raises(ValueError, match=message):
        calibration.IntensityCalibration(table)


def test_layer_interpolates_and_survives_safe_reload_and_saved_model(tmp_path: Path) -> None:
    size = 32
    table = calibration.quantile_table(np.linspace(-0.5, 0.5, 999) ** 3, np.linspace(-1, 1, 999))
    layer = calibration.IntensityCalibration(table)
    x = np.random.default_rng(1).uniform(-1, 1, (2, size, size, 1)).astype(np.float32)
    np.testing.assert_allclose(layer(x), apply(table, x), atol=1e-5)
    generator = models.unet_generator(models.GeneratorConfig((8, 16)), size, name="g")
    model = calibration.calibrated(generator, layer)
    np.testing.assert_allclose(
        model(x), apply(table, generator(x, training=False).numpy()), atol=1e-5
    )
    assert calibration.without_calibration(model) is generator
    assert calibration.without_calibration(generator) is generator
    assert calibration.calibration_of(generator) is None

    folder = export.export_generator(model, tmp_path, "t1-to-t2", size)
    loaded, _ = export.load_generator(folder)  # safe mode
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)
    assert list(calibration.calibration_of(loaded).table) == pytest.approx(list(table))
    np.testing.assert_allclose(
        calibration.without_calibration(loaded)(x), generator(x, training=False), atol=1e-5
    )
    saved_model = tf.saved_model.load(str(folder / "saved_model"))
    served = saved_model.serve(tf.constant(x))
    np.testing.assert_allclose(served, model(x), atol=1e-5)  # serving applies it too


@pytest.fixture(scope="module")
def course_t1(course_zip: Path) -> np.ndarray:
    dataset = mh.load_dataset(course_zip)
    return processing.prepare(dataset.t1[:8], 64, processing.Cleaning())


def test_fit_undoes_a_squeezing_generator_on_course_slices(course_t1) -> None:
    squeeze = affine(0.5, -0.2, 64)
    layer = calibration.fit_calibration(squeeze, course_t1, course_t1)
    restored = calibration.calibrated(squeeze, layer)(course_t1).numpy()
    truth = calibration.head_values(course_t1)
    error = np.abs(calibration.head_values(restored, course_t1) - truth)
    squeezed = np.abs(calibration.head_values(squeeze(course_t1).numpy(), course_t1) - truth)
    assert squeezed.mean() > 0.15 and error.mean() < 0.01  # 0.01: about one grey level


@pytest.mark.slow  # other processes, or long: not in `make check`
def test_exports_are_calibrated_on_training_images_and_scored_both_ways(
    course_zip: Path, tmp_path: Path
) -> None:
    size = 64
    dataset = mh.load_dataset(course_zip)
    split = processing.holdout_split(dataset, 0.1, seed=0)
    cleaning = processing.Cleaning()
    train = {
        m: processing.prepare(processing.select(dataset, m, split.train[m][:6]), size, cleaning)
        for m in ("t1", "t2")
    }
    g = models.GeneratorConfig((8, 16, 32))
    d = models.DiscriminatorConfig((8, 16))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # as trained on this CPU
    try:
        cyclegan = training.CycleGAN(
            models.unet_generator(g, size),
            models.unet_generator(g, size),
            models.patchgan_discriminator(d, size),
            models.patchgan_discriminator(d, size),
            training.TrainingConfig(epochs=1, steps_per_epoch=1),
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    extra = {"holdout_fraction": 0.1, "seed": 0, "cleaning": vars(cleaning)}
    for folder, data in (("calibrated", (train["t1"], train["t2"])), ("plain", None)):
        # As the course exports: averaged over copies, then calibrated on the average.
        averaged = data is not None
        callback = callbacks.PeriodicExport(tmp_path / folder, 1, size, extra, data, averaged)
        callback.set_model(cyclegan)
        callback.export(1)

    for direction, (source, target) in export.DIRECTIONS.items():
        shipped, config = export.load_generator(tmp_path / "calibrated", direction)
        assert config["calibrated"] is True and config["test_time_augmentation"] is True
        # On its training images, the export's grey levels land on the target contrast's.
        made = calibration.head_values(shipped(train[source]).numpy(), train[source])
        real = calibration.head_values(train[target])
        landmarks = [0.1, 0.25, 0.5, 0.75, 0.9]
        np.testing.assert_allclose(
            np.quantile(made, landmarks), np.quantile(real, landmarks), atol=0.03
        )
        network = calibration.without_calibration(shipped)(train[source]).numpy()
        before = calibration.head_values(network, train[source])
        assert stats.wasserstein_distance(made, real) < stats.wasserstein_distance(before, real)
        plain, config = export.load_generator(tmp_path / "plain", direction)
        assert config["calibrated"] is False and calibration.calibration_of(plain) is None
        assert config["test_time_augmentation"] is False and not test_time.is_averaged(plain)

    result = evaluate_export(str(tmp_path / "calibrated"), str(course_zip))
    ratio = result["course"]["histogram_distance_ratio"]
    assert ratio < result["course_uncalibrated"]["histogram_distance_ratio"] / 2
    assert any("without calibration" in line for line in result["summary"])
    assert any("network alone" in line for line in result["summary"])
    # The bare network and the averaged one are different models, scored separately.
    assert result["course_network"] != result["course_uncalibrated"]
    json.dumps(result)  # what --json writes
    plain = evaluate_export(str(tmp_path / "plain"), str(course_zip))
    assert "course_uncalibrated" not in plain and "course_network" not in plain
    # An export that records its held-out slices is scored on them, or refused on other data.
    for direction in export.DIRECTIONS:
        config_path = tmp_path / "plain" / direction / "model.json"
        config = json.loads(config_path.read_text())
        config_path.write_text(json.dumps({**config, "held_out": plain["held_out"]}))
    assert evaluate_export(str(tmp_path / "plain"), str(course_zip)) == plain
    for direction in export.DIRECTIONS:
        config_path = tmp_path / "plain" / direction / "model.json"
        config = json.loads(config_path.read_text())
        config["held_out"]["t1"] = config["held_out"]["t1"][1:]
        config_path.write_text(json.dumps(config))
    with pytest.raises(mh.DataError, match="held-out slices recorded in .* are not the ones"):
        evaluate_export(str(tmp_path / "plain"), str(course_zip))


@pytest.mark.slow  # other processes, or long: not in `make check`
def test_translate_command_loads_a_calibrated_export_in_a_new_process(
    course_zip: Path, tmp_path: Path
) -> None:
    size = 32
    table = calibration.quantile_table(np.linspace(-1, 0, 100), np.linspace(-1, 1, 100))
    generator = models.unet_generator(models.GeneratorConfig((8, 16)), size, name="g")
    model = calibration.calibrated(generator, calibration.IntensityCalibration(table))
    extra = {"holdout_fraction": 0.1, "seed": 0}
    export.export_generator(model, tmp_path / "models", "t1-to-t2", size, extra, False)
    with zipfile.ZipFile(course_zip) as archive:
        (tmp_path / "in.png").write_bytes(archive.read("Tr1/TrainT1/Image #10.png"))
    command = [sys.executable, "-m", "mri_course.cli", "translate", "--model"]
    command += [str(tmp_path / "models"), "--direction", "t1-to-t2", str(tmp_path / "in.png")]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "out")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "out" / "in.png").size == (181, 217)
