"""Random acquisitions of the generators' inputs (`mri_helpers.domain_randomisation`)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import mri_helpers as mh
from mri_helpers import load_dataset, processing, training
from mri_helpers._tf import keras, tf
from mri_helpers.domain_randomisation import RandomAcquisition, randomise_acquisition

SIZE = 96


@pytest.fixture(scope="module")
def t1_slices(course_zip) -> np.ndarray:
    """Eight course T1 slices, prepared as the network sees them."""
    return processing.prepare(load_dataset(course_zip)["t1"][:8], SIZE)


def _run(images: np.ndarray, config: RandomAcquisition, seed: int = 0) -> np.ndarray:
    out = randomise_acquisition(tf.constant(images), keras.random.SeedGenerator(seed), config)
    return out.numpy()


def test_the_contrast_curve_keeps_the_tissue_order_and_the_dark_air(t1_slices) -> None:
    curve_only = RandomAcquisition(probability=1.0, bias=0.0, blur=0.0, noise=0.0)
    out = _run(t1_slices, curve_only)
    assert out.shape == t1_slices.shape and out.dtype == np.float32
    for before, after in zip(t1_slices, out, strict=True):
        head = before > -0.95
        # monotone: the grey levels' order is kept exactly, their spacing is not
        assert stats.spearmanr(before[head], after[head]).statistic > 0.999
        assert np.abs(after - before)[head].mean() > 0.01
        np.testing.assert_allclose(after[before <= -1.0], -1.0, atol=1e-3)  # air stays dark
    # every image draws its own curve
    shift = [float(np.mean(a - b)) for a, b in zip(out, t1_slices, strict=True)]
    assert np.std(shift) > 0.01


def test_bias_blur_and_noise_change_the_image_but_not_the_anatomy(t1_slices) -> None:
    out = _run(t1_slices, RandomAcquisition(probability=1.0))
    assert out.min() >= -1.0 and out.max() <= 1.0
    for before, after in zip(t1_slices, out, strict=True):
        head = before > -0.95
        assert stats.spearmanr(before[head], after[head]).statistic > 0.6  # the same head
    air = t1_slices <= -1.0
    assert (out[air] > -1.0).mean() > 0.5  # Rician noise lifts the air, never below 0
    np.testing.assert_array_equal(out, _run(t1_slices, RandomAcquisition(probability=1.0)))
    assert not np.array_equal(out, _run(t1_slices, RandomAcquisition(probability=1.0), seed=1))


def test_probability_zero_changes_nothing(t1_slices) -> None:
    np.testing.assert_array_equal(_run(t1_slices, RandomAcquisition(probability=0.0)), t1_slices)
    some = _run(t1_slices, RandomAcquisition(probability=0.5), seed=3)
    unchanged = [np.array_equal(a, b) for a, b in zip(some, t1_slices, strict=True)]
    assert 0 < sum(unchanged) < len(unchanged)


@pytest.mark.parametrize(
    "kwargs", [{"probability": 1.5}, {"knots": 0}, {"noise": -0.1}, {"blur": 9.0}]
)
def test_out_of_range_settings_are_refused_by_name(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RandomAcquisition(**kwargs)


def _identity_cyclegan(random_acquisition: RandomAcquisition | None) -> training.CycleGAN:
    """A CycleGAN whose generators return their input, so the cycle loss shows what they got."""
    mh.set_seed(0)

    def identity(name: str) -> keras.Model:
        inputs = keras.Input((SIZE, SIZE, 1))
        return keras.Model(inputs, keras.layers.Identity()(inputs), name=name)

    disc = mh.models.DiscriminatorConfig((8, 16))
    config = training.TrainingConfig(
        epochs=1, steps_per_epoch=1, pool_size=0, identity_weight=0.0,
        random_acquisition=random_acquisition,
    )  # fmt: skip
    return training.CycleGAN(
        identity("g"),
        identity("f"),
        mh.models.patchgan_discriminator(disc, SIZE),
        mh.models.patchgan_discriminator(disc, SIZE),
        config,
    )


def test_the_generators_see_new_acquisitions_and_the_cycle_returns_to_the_stored_image(
    t1_slices,
) -> None:
    x, y = t1_slices[:2], t1_slices[2:4]
    plain = _identity_cyclegan(None).compute_losses(x, y)["cycle"]
    assert float(plain) == 0.0  # identity generators: the cycle gives the input back
    randomised = _identity_cyclegan(RandomAcquisition(probability=1.0))
    # while training the cycle ends at the re-acquired input, and is scored against the stored
    assert float(randomised.compute_losses(x, y, training=True)["cycle"]) > 0.1
    # never at inference
    assert float(randomised.compute_losses(x, y, training=False)["cycle"]) == 0.0
