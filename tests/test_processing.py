"""Geometry, intensities, augmentation, the held-out split and the tf.data pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mri_helpers as mh
from mri_helpers import processing as P


@pytest.fixture(scope="module")
def course(course_zip: Path) -> mh.MRIDataset:
    return mh.load_dataset(course_zip)


def test_geometry_pads_symmetrically() -> None:
    g = P.Geometry(217, 181)
    assert g.side == 217 and g.pads == (0, 0, 18, 18)
    assert P.Geometry(100, 131).pads == (15, 16, 0, 0)  # odd pixel at the bottom


@pytest.mark.parametrize("size", [64, 128, 224])
def test_round_trip_returns_the_slice_up_to_interpolation(course, size: int) -> None:
    errors = []
    for s in course.t1[::7] + course.t2[::7]:
        model = P.to_model_geometry(P.to_unit_range(s.image), size)
        assert model.shape == (size, size) and model.dtype == np.float32
        assert model.min() >= -1.0 - 1e-5 and model.max() <= 1.0 + 1e-5
        back = P.from_unit_range(P.to_original_geometry(model, P.Geometry(*s.shape)))
        assert back.shape == (217, 181) and back.dtype == np.uint8
        errors.append(np.abs(back.astype(int) - s.image).mean())
    # Interpolation error shrinks as the model size approaches the slice size; from the
    # slice's own size on, the slice is only padded and comes back exactly.
    assert np.mean(errors) < {64: 14.0, 128: 7.5, 224: 1e-9}[size]  # measured: 12.8, 6.5, 0


def test_padding_uses_the_background_value_and_keeps_proportions() -> None:
    image = np.full((60, 30), 10.0, np.float32)
    image[20:40, 5:25] = 200.0  # a square "head" stays square after padding and resizing
    model = P.to_model_geometry(image, 60)
    assert model[:, :15].max() == pytest.approx(10.0) and model[:, -15:].max() == 10.0
    rows, cols = np.nonzero(model > 100)
    assert np.ptp(rows) == np.ptp(cols)


def test_any_size_round_trips() -> None:
    rng = np.random.default_rng(0)
    for shape in [(217, 181), (181, 217), (100, 100), (64, 300), (600, 520)]:
        image = rng.uniform(-1, 1, shape).astype(np.float32)
        back = P.to_original_geometry(P.to_model_geometry(image, 512), P.Geometry(*shape))
        assert back.shape == shape
        if max(shape) <= 512:  # padded only: exact
            np.testing.assert_array_equal(back, image)


def test_intensity_scaling_8_and_16_bit() -> None:
    eight = np.array([[0, 127, 255]], np.uint8)
    np.testing.assert_allclose(P.to_unit_range(eight), [[-1.0, -0.003921, 1.0]], atol=1e-5)
    np.testing.assert_array_equal(P.from_unit_range(P.to_unit_range(eight)), eight)
    twelve_bit = np.array([[0, 2048, 4095]], np.uint16)  # 12-bit data in a 16-bit file
    np.testing.assert_allclose(P.to_unit_range(twelve_bit), [[-1.0, 0.0002442, 1.0]], atol=1e-5)
    with pytest.raises(TypeError, match="uint8 or uint16"):
        P.to_unit_range(np.zeros((2, 2), np.float64))
    assert P.from_unit_range(np.array([-3.0, 3.0])).tolist() == [0, 255]


def test_augmentation_is_seeded_and_keeps_values_in_range(course) -> None:
    image = P.prepare(course.t1[:1], 64)[0]
    seed = np.array([3, 4])
    a, b = P.augment(image, seed).numpy(), P.augment(image, seed).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, P.augment(image, np.array([3, 5])).numpy())
    assert a.shape == image.shape and a.min() >= -1.0 - 1e-5 and a.max() <= 1.0 + 1e-5


def test_mirroring_alone_never_changes_intensities(course) -> None:
    image = P.prepare(course.t2[:1], 64)[0]
    only_mirror = P.Augmentation(jitter=1.0, mirror=True, max_rotation=0.0)
    outputs = [P.augment(image, np.array([0, i]), only_mirror).numpy() for i in range(8)]
    assert any(np.array_equal(o, image[:, ::-1]) for o in outputs)
    assert any(np.array_equal(o, image) for o in outputs)
    for o in outputs:
        np.testing.assert_array_equal(np.sort(o.ravel()), np.sort(image.ravel()))


def test_rotation_fills_with_background() -> None:
    image = np.ones((32, 32, 1), np.float32)
    rotated = P._rotate(image, np.float32(np.pi / 4)).numpy()
    assert rotated[0, 0, 0] == -1.0 and rotated[16, 16, 0] == pytest.approx(1.0)


def test_holdout_split_course(course) -> None:
    split = P.holdout_split(course, 0.1, seed=0)
    assert [len(split.test[m]) for m in mh.MODALITIES] == [4, 5]
    for m in mh.MODALITIES:
        assert not set(split.test[m]) & set(split.train[m])
        assert sorted(split.test[m] + split.train[m]) == sorted(course.ids(m))
    assert P.holdout_split(course, 0.1, seed=0) == split
    assert P.holdout_split(course, 0.1, seed=1).test != split.test
    with pytest.raises(ValueError, match="between 0 and 1"):
        P.holdout_split(course, 1.5)


def test_holdout_split_phantom_is_paired_for_test_and_disjoint_for_training() -> None:
    phantom = mh.load_dataset("phantom", num_slices=20)
    split = P.holdout_split(phantom, 0.1, seed=0)
    assert split.test["t1"] == split.test["t2"] and len(split.test["t1"]) == 2
    assert not set(split.train["t1"]) & set(split.train["t2"])
    assert len(split.train["t1"]) + len(split.train["t2"]) == 18


def test_pipeline_is_deterministic_and_unpaired(course) -> None:
    t1 = P.prepare(course.t1[:6], 64)
    t2 = P.prepare(course.t2[:5], 64)
    first = list(P.training_pipeline(t1, t2, batch_size=2, seed=7).take(4).as_numpy_iterator())
    again = list(P.training_pipeline(t1, t2, batch_size=2, seed=7).take(4).as_numpy_iterator())
    other = list(P.training_pipeline(t1, t2, batch_size=2, seed=8).take(4).as_numpy_iterator())
    for (a1, a2), (b1, b2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(a1, b1)
        np.testing.assert_array_equal(a2, b2)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    spec = P.training_pipeline(t1, t2, batch_size=2, seed=7).element_spec
    assert [tuple(s.shape) for s in spec] == [(2, 64, 64, 1), (2, 64, 64, 1)]
    assert P.steps_per_epoch(43, 46, 4) == 11


def test_pipeline_without_augmentation_yields_the_prepared_images(course) -> None:
    t1 = P.prepare(course.t1[:3], 32)
    batches = P.training_pipeline(t1, t1, batch_size=3, seed=0, augmentation=None)
    x, _ = next(iter(batches.as_numpy_iterator()))
    assert sorted(map(float, x.sum(axis=(1, 2, 3)))) == pytest.approx(
        sorted(map(float, t1.sum(axis=(1, 2, 3)))), rel=1e-5
    )


def test_denoising_only_the_heads_box_changes_nothing_in_the_head() -> None:
    """With the background masked, non-local means runs on the head's box and its reach
    only: inside the head the result is the whole slice's, up to float rounding."""
    from skimage.restoration import denoise_nl_means

    image = mh.phantom.make_phantom(4, seed=3).t1[2].astype(np.float32)  # Rician noise
    mask = P.head_mask(image)
    rows = np.flatnonzero(mask.any(axis=1))
    assert rows[0] > P.NLM_REACH or rows[-1] < len(image) - P.NLM_REACH  # a box to cut
    sigma = P.noise_sigma(image, mask)
    whole = denoise_nl_means(
        image, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True
    )
    given = image.copy()
    cleaned = P.clean_slice(image, P.Cleaning(denoise=True, mask_background=True))
    np.testing.assert_array_equal(image, given)  # the input is left as it was
    np.testing.assert_allclose(cleaned[mask], whole[mask], atol=1e-3)
    assert np.all(cleaned[~mask] == 0) and np.abs(cleaned[mask] - image[mask]).mean() > 1
    unmasked = P.clean_slice(image, P.Cleaning(denoise=True, mask_background=False))
    np.testing.assert_allclose(unmasked, whole, atol=1e-3)  # the background denoised too


def test_a_slice_of_noise_with_nothing_above_its_noise_floor_has_no_head() -> None:
    """Uniform noise: the noise floor (1st percentile + HEAD_OVER_NOISE noise levels) lies
    above every pixel, so the second look finds nothing at all; no head, and no error."""
    image = np.random.default_rng(0).uniform(0, 50, (181, 217)).astype(np.float32)
    assert P.above_noise(image) > image.max()
    assert not P.head_mask(image).any()
