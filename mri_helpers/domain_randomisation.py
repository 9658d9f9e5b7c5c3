"""Random acquisitions for the generators' inputs: domain randomisation while training.

A generator trained on one scanner's slices learns that scanner's grey levels: the same
anatomy from another scanner (other TR/TE, field strength, coil, noise) is a new input, and
the translation falls apart. SynthSeg and SynthSR (Billot et al., 2023; Iglesias et al., 2023)
train on images whose contrast, bias field, noise and resolution are drawn at random, so the
network learns what does not change: the anatomy and the order of the tissues' grey levels.

Here each input of a generator may be re-acquired at random while training:

- a **monotone contrast curve** (piecewise linear through random knots, then a random gamma):
  the tissues keep their order, as every T1-weighted scan has WM > GM > CSF, but not their
  spacing; 0 stays 0, so the air stays dark;
- a **smooth bias field** (a coarse random grid, interpolated, exponentiated);
- **blur** (a Gaussian of random width: thicker slices, lower resolution);
- **Rician noise** of a random level (the magnitude of a complex signal, so never negative).

Only the input changes: the cycle loss still compares the way back with the image as stored,
and the discriminators judge the stored images. So a generator learns to translate any
acquisition of its contrast into the training set's look of the other, and the other
generator learns to bring it back to the stored image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._tf import keras, tf


@dataclass(frozen=True)
class RandomAcquisition:
    """How strongly inputs are re-acquired; each image draws its own settings."""

    probability: float = 0.8  # share of inputs changed; the rest stay as stored
    knots: int = 4  # segments of the monotone curve
    gamma: float = 0.4  # the curve's gamma is exp(U(-gamma, gamma))
    bias: float = 0.3  # the log-field's largest amplitude
    bias_grid: int = 4  # the field's coarse grid: a few bumps across the head
    blur: float = 1.5  # the Gaussian's largest standard deviation, in pixels
    noise: float = 0.04  # the largest noise sigma, a share of the brightest grey level

    def __post_init__(self) -> None:
        checks = {
            "probability": 0.0 <= self.probability <= 1.0,
            "knots": isinstance(self.knots, int) and 1 <= self.knots <= 32,
            "gamma": 0.0 <= self.gamma <= 2.0,
            "bias": 0.0 <= self.bias <= 1.0,
            "bias_grid": isinstance(self.bias_grid, int) and 2 <= self.bias_grid <= 32,
            "blur": 0.0 <= self.blur <= 5.0,
            "noise": 0.0 <= self.noise <= 0.3,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"RandomAcquisition: {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)} out of "
                "range (probability 0-1, knots 1-32, gamma 0-2, bias 0-1, bias_grid 2-32, "
                "blur 0-5 px, noise 0-0.3)."
            )


def randomise_acquisition(
    images: tf.Tensor, seed: keras.random.SeedGenerator, config: RandomAcquisition
) -> tf.Tensor:
    """(B, S, S, 1) images in [-1, 1] (background -1), each re-acquired at random with
    probability `config.probability`; the same shape and dtype."""
    dtype = images.dtype
    unit = (tf.cast(images, tf.float32) + 1.0) / 2.0
    shape = tf.shape(unit)
    batch = shape[0]

    def uniform(size, low=0.0, high=1.0):
        return keras.random.uniform(size, low, high, seed=seed)

    out = _contrast_curve(unit, uniform, config)
    if config.bias:
        coarse = keras.random.normal((batch, config.bias_grid, config.bias_grid, 1), seed=seed)
        field = tf.image.resize(coarse, shape[1:3], method="bicubic")
        out *= tf.exp(field * uniform((batch, 1, 1, 1), 0.0, config.bias) / 2.0)
    if config.blur:
        out = _blur(out, uniform((batch, 1, 1, 1)), config.blur)
    if config.noise:
        sigma = uniform((batch, 1, 1, 1), 0.0, config.noise)
        real = out + sigma * keras.random.normal(shape, seed=seed)
        out = tf.sqrt(real**2 + (sigma * keras.random.normal(shape, seed=seed)) ** 2)
    changed = uniform((batch, 1, 1, 1)) < config.probability
    out = tf.cast(tf.clip_by_value(out, 0.0, 1.0) * 2.0 - 1.0, dtype)
    return tf.where(changed, out, images)


def _contrast_curve(unit: tf.Tensor, uniform, config: RandomAcquisition) -> tf.Tensor:
    """A random increasing map of [0, 1] onto itself per image: piecewise linear through
    `knots` segments of random rise, then a random gamma."""
    batch, knots = tf.shape(unit)[0], config.knots
    rise = uniform((batch, knots), 0.2, 1.0)  # no flat segment: tissues stay apart
    heights = tf.concat([tf.zeros((batch, 1)), tf.cumsum(rise, axis=1)], axis=1)
    heights /= heights[:, -1:]
    position = tf.clip_by_value(unit, 0.0, 1.0) * knots
    index = tf.minimum(tf.cast(tf.floor(position), tf.int32), knots - 1)
    flat_index = tf.reshape(index, (batch, -1))
    low = tf.gather(heights, flat_index, batch_dims=1)
    high = tf.gather(heights, flat_index + 1, batch_dims=1)
    fraction = tf.reshape(position, (batch, -1)) - tf.cast(flat_index, tf.float32)
    curve = tf.reshape(low + fraction * (high - low), tf.shape(unit))
    gamma = tf.exp(uniform((batch, 1, 1, 1), -config.gamma, config.gamma))
    return tf.pow(curve + 1e-6, gamma)


def _blur(images: tf.Tensor, amount: tf.Tensor, largest_sigma: float) -> tf.Tensor:
    """Each image between itself (amount 0) and a Gaussian blur of `largest_sigma` pixels
    (amount 1): one convolution for the batch, a per-image share of it."""
    radius = max(1, math.ceil(2.5 * largest_sigma))
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-(taps**2) / (2.0 * largest_sigma**2))
    kernel /= tf.reduce_sum(kernel)
    rows = tf.reshape(kernel, (-1, 1, 1, 1))
    cols = tf.reshape(kernel, (1, -1, 1, 1))
    padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], "SYMMETRIC")
    blurred = tf.nn.conv2d(tf.nn.conv2d(padded, rows, 1, "VALID"), cols, 1, "VALID")
    return images + amount * (blurred - images)
