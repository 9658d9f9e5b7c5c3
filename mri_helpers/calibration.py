"""Output intensity calibration (explained in 04_training, "Calibrating the grey scale").

A CycleGAN trained for minutes gets the anatomy and the contrast right but compresses the
grey scale at both ends: its darkest and brightest tissue are not quite as dark and bright as
in real scans (the adversarial loss, judging small patches, hardly notices). The fix is the
one MRI pipelines use to standardise scanners (Nyúl & Udupa's landmark method): a fixed,
monotone grey-level mapping fitted once on training slices, quantile to quantile, from the
generator's output to real images of the target contrast. It is appended to the exported
generator as a layer, so the `.keras` file and the SavedModel both apply it.

Monotone means it never makes a darker pixel brighter than a lighter one, so it keeps every
edge where it is and every contrast's order; and it is the same for every image. It only
re-spaces the grey levels, which can still lower a structure-sensitive score such as SSIM
where it stretches small differences (lesson 04 shows both effects).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._tf import keras, tf
from .processing import from_unit_range, head_mask
from .test_time import wrapped_network

TABLE_SIZE = 257  # grey levels of the lookup table over [-1, 1]: one per 8-bit step, both ends
LANDMARKS = np.linspace(0.01, 0.99, 99)  # the 1st to 99th percentiles inside the head


# Keras has no lookup-with-interpolation layer (Discretization only bins), and the
# standardisation packages (intensity-normalization, TorchIO) work on arrays outside the
# model, so the mapping would be lost in the SavedModel; hence this small layer.
@keras.saving.register_keras_serializable(package="mri_helpers")
class IntensityCalibration(keras.layers.Layer):
    """A fixed monotone grey-level mapping of [-1, 1]: `table` holds its values at
    TABLE_SIZE evenly spaced levels, linearly interpolated in between. It always computes in
    float32 (any `dtype` given is ignored), like the generator's output it follows."""

    def __init__(self, table: Sequence[float], **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        values = np.asarray(table, np.float64)
        if values.shape != (TABLE_SIZE,) or not np.all(np.isfinite(values)):
            raise ValueError(f"a calibration table holds {TABLE_SIZE} finite values")
        if np.any(np.diff(values) < 0) or values.min() < -1 or values.max() > 1:
            raise ValueError("a calibration table rises monotonically within [-1, 1]")
        self.table = tuple(float(v) for v in values)

    def call(self, images: tf.Tensor) -> tf.Tensor:
        table = tf.constant(self.table, tf.float32)
        steps = TABLE_SIZE - 1
        position = (tf.clip_by_value(tf.cast(images, tf.float32), -1.0, 1.0) + 1.0) * (steps / 2)
        lower = tf.minimum(tf.floor(position), steps - 1)
        fraction = position - lower
        index = tf.cast(lower, tf.int32)
        return tf.gather(table, index) * (1 - fraction) + tf.gather(table, index + 1) * fraction

    def get_config(self) -> dict:
        return {**super().get_config(), "table": list(self.table)}


def quantile_table(generated: np.ndarray, real: np.ndarray) -> np.ndarray:
    """The lookup table that moves the LANDMARKS percentiles of `generated` grey levels onto
    those of `real` ones (both in [-1, 1]), linear in between, with -1 and 1 kept in place."""
    generated, real = np.ravel(generated), np.ravel(real)
    if generated.size == 0 or real.size == 0:
        raise ValueError("calibration needs grey levels of both generated and real images")
    x = np.clip(np.r_[-1.0, np.quantile(generated, LANDMARKS), 1.0], -1, 1)
    y = np.clip(np.r_[-1.0, np.quantile(real, LANDMARKS), 1.0], -1, 1)
    # Landmarks on the same grey level (output that is flat there) map to their mean target.
    levels, group = np.unique(x, return_inverse=True)
    targets = np.bincount(group, weights=y) / np.bincount(group)
    targets[0], targets[-1] = -1.0, 1.0  # levels[0] == -1 and levels[-1] == 1: kept in place
    return np.interp(np.linspace(-1, 1, TABLE_SIZE), levels, targets)


def head_values(images: np.ndarray, masks_from: np.ndarray | None = None) -> np.ndarray:
    """Grey levels inside the head of prepared images (N, S, S, 1) in [-1, 1]; the head is
    found on `masks_from` (default: the images themselves), e.g. a generator's inputs."""
    masks_from = images if masks_from is None else masks_from
    masks = np.stack([head_mask(from_unit_range(image[..., 0])) for image in masks_from])
    return np.asarray(images)[..., 0][masks]


def fit_calibration(
    generator: keras.Model, sources: np.ndarray, targets: np.ndarray, batch_size: int = 8
) -> IntensityCalibration:
    """Fit the calibration of `generator` on training images: prepared `sources` of its input
    contrast and unrelated `targets` of its output contrast (N, S, S, 1) in [-1, 1]."""
    outputs = np.concatenate(
        [
            np.asarray(generator(sources[i : i + batch_size], training=False), np.float32)
            for i in range(0, len(sources), batch_size)
        ]
    )
    table = quantile_table(head_values(outputs, sources), head_values(targets))
    return IntensityCalibration(table, name="calibration")


def calibrated(generator: keras.Model, calibration: IntensityCalibration) -> keras.Model:
    """`generator` followed by `calibration`, as one model to export."""
    inputs = keras.Input(generator.input_shape[1:], name="image")
    return keras.Model(inputs, calibration(generator(inputs)), name=f"{generator.name}_calibrated")


def without_calibration(model: keras.Model) -> keras.Model:
    """The generator inside a `calibrated` model (any other model is returned unchanged)."""
    return model if calibration_of(model) is None else wrapped_network(model)


def calibration_of(model: keras.Model) -> IntensityCalibration | None:
    """The calibration layer of a `calibrated` model, or None."""
    found = [layer for layer in model.layers if isinstance(layer, IntensityCalibration)]
    return found[0] if found else None
