"""The losses on small tensors whose values are computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mri_helpers import losses


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
