"""Output intensity calibration: the fitted table, the layer, export, and real course slices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import mri_helpers as mh
from mri_helpers import calibration, evaluation, export, models, processing, training
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


def test_a_flat_output_still_gives_a_valid_table() -> None:
    table = calibration.quantile_table(np.full(1000, 0.3), np.linspace(-1, 1, 1000))
    assert np.all(np.isfinite(table)) and np.all(np.diff(table) >= 0)
    calibration.IntensityCalibration(table)  # accepted
    with pytest.raises(ValueError, match="needs grey levels"):
        calibration.quantile_table(np.array([]), np.linspace(-1, 1, 10))


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
    assert calibration.network_of(model) is generator
    assert calibration.network_of(generator) is generator
    assert calibration.calibration_of(generator) is None

    folder = export.export_generator(model, tmp_path, "t1-to-t2", size)
    loaded, _ = export.load_generator(folder)  # safe mode
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)
    assert calibration.calibration_of(loaded).table == pytest.approx(list(table))
    np.testing.assert_allclose(
        calibration.network_of(loaded)(x), generator(x, training=False), atol=1e-5
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
    truth = calibration.head_levels(course_t1)
    error = np.abs(calibration.head_levels(restored, course_t1) - truth)
    squeezed = np.abs(calibration.head_levels(squeeze(course_t1).numpy(), course_t1) - truth)
    assert squeezed.mean() > 0.15 and error.mean() < 0.01  # 0.01: about one grey level


def test_exports_are_calibrated_on_training_images_and_scored_both_ways(
    course_zip: Path, tmp_path: Path
) -> None:
    size = 64
    dataset = mh.load_dataset(course_zip)
    split = processing.holdout_split(dataset, 0.1, seed=0)
    cleaning = processing.Cleaning()
    t1, t2 = (
        processing.prepare(processing.select(dataset, m, split.train[m][:6]), size, cleaning)
        for m in ("t1", "t2")
    )
    g = models.GeneratorConfig((8, 16, 32))
    d = models.DiscriminatorConfig((8, 16))
    cyclegan = training.CycleGAN(
        models.unet_generator(g, size),
        models.unet_generator(g, size),
        models.patchgan_discriminator(d, size),
        models.patchgan_discriminator(d, size),
        training.TrainingConfig(epochs=1, steps_per_epoch=1),
    )
    extra = {"holdout_fraction": 0.1, "seed": 0, "cleaning": vars(cleaning)}
    callback = training.PeriodicExport(tmp_path / "models", 1, size, extra, (t1, t2))
    callback.set_model(cyclegan)
    callback.export(1)

    shipped, config = export.load_generator(tmp_path / "models", "t1-to-t2")
    assert config["calibrated"] is True
    fitted = calibration.fit_calibration(cyclegan.generator_g, t1, t2)
    assert calibration.calibration_of(shipped).table == pytest.approx(fitted.table)

    result = evaluation.evaluate_export(str(tmp_path / "models"), str(course_zip))
    ratio = result["course"]["histogram_distance_ratio"]
    assert ratio < result["course_uncalibrated"]["histogram_distance_ratio"] / 2
    assert any("without calibration" in line for line in result["summary"])
    json.dumps(result)  # what --json writes
