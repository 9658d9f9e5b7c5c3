"""The losses on small tensors whose values are computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mri_helpers import losses
from mri_helpers._tf import tf


def test_lsgan_losses_by_hand() -> None:
    fake = np.array([0.0, 0.5, 1.0, 2.0], np.float32)
    real = np.array([1.0, 0.0], np.float32)
    # (0-1)^2, (0.5-1)^2, 0, 1 -> mean 2.25 / 4
    assert float(losses.generator_adversarial_loss(fake)) == pytest.approx(0.5625)
    # real: ((0)^2 + (1)^2)/2 = 0.5 ; fake: (0 + .25 + 1 + 4)/4 = 1.3125 ; half the sum
    assert float(losses.discriminator_loss(real, fake)) == pytest.approx(0.5 * (0.5 + 1.3125))


def test_bce_losses_by_hand() -> None:
    logits = np.array([0.0, math.log(3.0)], np.float32)  # sigmoid: 0.5, 0.75
    expected_gen = -(math.log(0.5) + math.log(0.75)) / 2
    assert float(losses.generator_adversarial_loss(logits, "bce")) == pytest.approx(
        expected_gen, rel=1e-5
    )
    expected_disc = 0.5 * (expected_gen + -(math.log(0.5) + math.log(0.25)) / 2)
    assert float(losses.discriminator_loss(logits, logits, "bce")) == pytest.approx(
        expected_disc, rel=1e-5
    )
    with pytest.raises(ValueError, match="use one of"):
        losses.generator_adversarial_loss(logits, "wgan")


def test_cycle_and_identity_losses_by_hand() -> None:
    real = np.array([[0.0, 1.0], [-1.0, 0.5]], np.float32)
    cycled = np.array([[0.5, 1.0], [-0.5, 0.5]], np.float32)  # mean |diff| = 0.25
    assert float(losses.cycle_loss(real, cycled)) == pytest.approx(2.5)
    assert float(losses.identity_loss(real, cycled)) == pytest.approx(1.25)
    assert float(losses.cycle_loss(real, real)) == 0.0


def test_histogram_loss_is_the_wasserstein_distance() -> None:
    real = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    generated = np.array([[3.0, 2.0], [1.0, 1.0]], np.float32)  # sorted: 1 1 2 3 vs 0 1 2 3
    assert float(losses.histogram_loss(real, generated)) == pytest.approx(0.25)
    assert float(losses.histogram_loss(real, generated, weight=4.0)) == pytest.approx(1.0)
    # Where each pixel is does not matter, only the distribution of values.
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 8, 8, 1)).astype(np.float32)
    shuffled = rng.permutation(image.ravel()).reshape(image.shape)
    assert float(losses.histogram_loss(image, shuffled)) == 0.0
    # Equal-size samples: exactly scipy's Wasserstein distance; other sizes: close to it.
    a, b = rng.normal(0, 1, 4096), rng.normal(0.3, 2, 4096)
    assert float(losses.histogram_loss(a, b)) == pytest.approx(
        stats.wasserstein_distance(a, b), rel=1e-4
    )
    c = rng.normal(0.3, 2, 1000)
    assert float(losses.histogram_loss(a, c)) == pytest.approx(
        stats.wasserstein_distance(a, c), abs=0.05
    )


def test_histogram_loss_gradient_moves_intensities_towards_the_real_range() -> None:
    real = tf.constant(np.linspace(-1, 1, 64, dtype=np.float32))
    generated = tf.Variable(np.linspace(-0.5, 0.5, 64, dtype=np.float32))  # compressed range
    with tf.GradientTape() as tape:
        loss = losses.histogram_loss(real, generated)
    gradient = tape.gradient(loss, generated).numpy()
    # Descending the gradient stretches the range: the darkest get darker, brightest brighter.
    assert gradient[0] > 0 and gradient[-1] < 0
