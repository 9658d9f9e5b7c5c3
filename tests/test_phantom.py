"""Tests for the built-in paired T1/T2 phantom (`mri_helpers.phantom`)."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage, stats

from mri_helpers import phantom
from mri_helpers.phantom import (
    INTENSITY_MAX,
    LEVELS_MM,
    PHANTOM_SHAPE,
    TISSUES,
    PhantomSlices,
    make_phantom,
)


def _head_from_image(image: np.ndarray) -> np.ndarray:
    """The head in a course-like image: above 20, opened, holes filled."""
    return ndimage.binary_fill_holes(ndimage.binary_opening(image > 20, iterations=2))


def _grow(masks: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate each 2-D mask of a stack by `pixels`."""
    return ndimage.binary_dilation(masks, structure=np.ones((1, 3, 3)), iterations=pixels)


def _level_index(ids: list[str]) -> list[int]:
    return [LEVELS_MM.index(int(i.removeprefix("phantom_z"))) for i in ids]


@pytest.fixture(scope="module")
def default() -> PhantomSlices:
    return make_phantom()


@pytest.fixture(scope="module")
def clean() -> PhantomSlices:
    return make_phantom(noise=0.0, bias=0.0)


@pytest.fixture(scope="module")
def fractions(clean: PhantomSlices) -> dict[str, np.ndarray]:
    levels = _level_index(clean.ids)
    return {n: f[levels] for n, f in phantom._tissue_fractions(PHANTOM_SHAPE).items()}


@pytest.fixture(scope="module")
def course(course_zip: Path) -> dict[str, np.ndarray]:
    """The course slices (the shared fixture: a failure under CI, a skip elsewhere)."""
    path = course_zip
    images: dict[str, list[np.ndarray]] = {"t1": [], "t2": []}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            key = "t1" if "TrainT1" in name else "t2" if "TrainT2" in name else None
            if key and name.lower().endswith(".png"):
                images[key].append(
                    np.array(Image.open(io.BytesIO(archive.read(name))).convert("L"))
                )
    return {k: np.stack(v) for k, v in images.items()}


def _pure_means(p: PhantomSlices, frac: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """Mean clean (T1, T2) over pixels where a tissue's fraction exceeds 0.9."""
    out = {}
    for name in ("csf", "gm", "wm", "fat", "muscle"):
        pure = frac[name] > 0.9
        assert pure.sum() > 100, name
        out[name] = (float(p.t1_clean[pure].mean()), float(p.t2_clean[pure].mean()))
    return out


def test_shapes_dtypes_and_ids(default: PhantomSlices) -> None:
    n = 48
    assert len(default.ids) == n == len(set(default.ids))
    assert default.ids == sorted(default.ids)
    assert all(re.fullmatch(r"phantom_z[+-]\d{3}", i) for i in default.ids)
    for array, dtype in (
        (default.t1, np.uint8),
        (default.t2, np.uint8),
        (default.t1_clean, np.float32),
        (default.t2_clean, np.float32),
        (default.head_mask, np.bool_),
        (default.brain_mask, np.bool_),
    ):
        assert array.shape == (n, *PHANTOM_SHAPE) and array.dtype == dtype
    assert (default.brain_mask <= default.head_mask).all()
    for clean_image in (default.t1_clean, default.t2_clean):
        assert clean_image.min() >= 0 and clean_image.max() <= INTENSITY_MAX + 1e-3
        assert clean_image.max() > 0.95 * INTENSITY_MAX  # one global scale, brightest near top
        assert (clean_image[~_grow(default.head_mask, 2)] == 0).all()  # background is 0
    one = make_phantom(1)
    assert one.t1.shape == (1, *PHANTOM_SHAPE) and len(one.ids) == 1


def test_seed_makes_it_deterministic_and_seeds_differ(default: PhantomSlices) -> None:
    again, other = make_phantom(seed=0), make_phantom(seed=1)
    np.testing.assert_array_equal(default.t1, again.t1)
    np.testing.assert_array_equal(default.t2, again.t2)
    assert (default.t1 != other.t1).mean() > 0.5
    assert (default.t2 != other.t2).mean() > 0.5
    np.testing.assert_array_equal(default.t1_clean, other.t1_clean)


def test_no_noise_no_bias_gives_rounded_clean(clean: PhantomSlices) -> None:
    for observed, image in ((clean.t1, clean.t1_clean), (clean.t2, clean.t2_clean)):
        assert np.abs(observed.astype(np.float32) - image).max() <= 0.5 + 1e-3


def test_bias_field_is_smooth_and_spans_the_requested_range() -> None:
    p = make_phantom(noise=0.0, seed=3)
    ratios = []
    for observed, image in ((p.t1, p.t1_clean), (p.t2, p.t2_clean)):
        ratio = np.where(image > 100, observed / np.maximum(image, 1e-3), np.nan)
        inside = ratio[np.isfinite(ratio)]
        assert inside.min() < 0.9 and inside.max() > 1.1
        assert inside.min() > 0.84 and inside.max() < 1.16
        step = np.abs(np.diff(ratio, axis=2))
        assert np.nanmax(step) < 0.02  # slowly varying: no jumps between neighbours
        ratios.append(ratio)
    both = np.isfinite(ratios[0]) & np.isfinite(ratios[1])
    assert np.abs(ratios[0] - ratios[1])[both].mean() > 0.02  # T1 and T2 get their own field
    per_slice = [np.nanmean(r) for r in ratios[0]]
    assert np.ptp(per_slice) > 0.02 or np.std(np.nan_to_num(ratios[0][0] - ratios[0][1])) > 0.02
    strong = make_phantom(4, noise=0.0, bias=0.3)
    ratio = strong.t1[strong.t1_clean > 100] / strong.t1_clean[strong.t1_clean > 100]
    assert ratio.min() < 0.75 and ratio.max() > 1.25


def test_rician_noise_level(fractions: dict[str, np.ndarray]) -> None:
    wm = fractions["wm"] > 0.9  # uniform tissue
    for level in (0.02, 0.04):
        p = make_phantom(noise=level, bias=0.0, seed=5)
        residual = p.t1.astype(np.float64) - p.t1_clean
        assert abs(residual[wm].std() / INTENSITY_MAX - level) < 0.1 * level
        assert abs(residual[wm].mean()) < 0.1 * level * INTENSITY_MAX  # high SNR: ~unbiased
        far = ~_grow(p.head_mask, 3)
        rayleigh_mean = level * INTENSITY_MAX * np.sqrt(np.pi / 2)
        assert abs(p.t2[far].mean() / rayleigh_mean - 1) < 0.15  # magnitude noise in the air


def test_head_has_csf_bone_fat_and_skin_layers(clean: PhantomSlices) -> None:
    top = 0.1 * INTENSITY_MAX
    for i in range(0, len(clean.ids), 8):
        dist = ndimage.distance_transform_edt(~clean.brain_mask[i])
        rings = range(1, int(dist[clean.head_mask[i]].max()) + 1)
        profile = []
        for r in rings:
            ring = (np.abs(dist - r) <= 0.5) & clean.head_mask[i]
            profile.append(
                [np.median(clean.t1_clean[i][ring]), np.median(clean.t2_clean[i][ring])]
            )
        t1, t2 = np.array(profile).T
        fat = int(np.argmax(t1 > 0.8 * INTENSITY_MAX))
        assert t1[fat] > 0.8 * INTENSITY_MAX, clean.ids[i]  # a bright T1 ring: fat
        assert 0.2 * INTENSITY_MAX < t2[fat] < 0.6 * INTENSITY_MAX  # fairly bright in T2
        assert ((t1[:fat] < top) & (t2[:fat] < top)).sum() >= 2  # a dark ring inside it: bone
        assert t2[0] > t1[0]  # a CSF rim around the brain, bright in T2
        assert t1[-1] < 0.7 * t1[fat]  # skin/muscle outside the fat


def test_tissue_contrast_order(clean: PhantomSlices, fractions: dict[str, np.ndarray]) -> None:
    means = _pure_means(clean, fractions)
    t1 = {k: v[0] for k, v in means.items()}
    t2 = {k: v[1] for k, v in means.items()}
    assert t1["wm"] > t1["gm"] > t1["csf"]
    assert t2["csf"] > t2["gm"] > t2["wm"]
    assert t1["fat"] > t1["wm"]


def test_no_monotone_map_turns_t1_into_t2(
    clean: PhantomSlices, fractions: dict[str, np.ndarray]
) -> None:
    means = _pure_means(clean, fractions)
    order = {
        k: np.sign(means[k][0] - means["fat"][0]) * np.sign(means[k][1] - means["fat"][1])
        for k in ("csf", "wm")
    }
    assert order["csf"] < 0  # fat vs CSF flips: rules out an increasing map
    assert order["wm"] > 0  # fat vs WM keeps its order: rules out a decreasing map
    head = clean.head_mask
    rho = stats.spearmanr(clean.t1_clean[head], clean.t2_clean[head]).statistic
    assert abs(rho) < 0.6


def test_head_fits_the_course_frame(clean: PhantomSlices) -> None:
    height, width = PHANTOM_SHAPE
    for head in clean.head_mask:
        rows, cols = np.nonzero(head)
        assert rows.min() >= 1 and cols.min() >= 1
        assert rows.max() <= height - 2 and cols.max() <= width - 2
    rows, cols = np.nonzero(clean.head_mask.any(axis=0))
    assert 160 <= np.ptp(cols) + 1 <= 179 and 195 <= np.ptp(rows) + 1 <= 215
    fraction = clean.head_mask.mean(axis=(1, 2))
    assert fraction.min() > 0.45 and 0.65 < np.median(fraction) < 0.8


def test_geometry_and_orientation_match_the_course(
    course: dict[str, np.ndarray], default: PhantomSlices
) -> None:
    for key, ours in (("t1", default.t1), ("t2", default.t2)):
        theirs = course[key]
        assert theirs.shape[1:] == ours.shape[1:] == PHANTOM_SHAPE
        area = [np.median([_head_from_image(a).mean() for a in s]) for s in (theirs, ours)]
        assert abs(area[0] - area[1]) < 0.05, area
        mean_theirs, mean_ours = theirs.mean(axis=0).ravel(), ours.mean(axis=0)
        upright = np.corrcoef(mean_theirs, mean_ours.ravel())[0, 1]
        flipped = np.corrcoef(mean_theirs, mean_ours[::-1].ravel())[0, 1]
        assert upright > 0.8 and upright > flipped + 0.01  # same way up as the course


def test_other_shape_scales_the_head_to_fit() -> None:
    p = make_phantom(3, shape=(64, 96), noise=0.0, bias=0.0)
    assert p.t1.shape == p.t2_clean.shape == p.head_mask.shape == (3, 64, 96)
    rows, cols = np.nonzero(p.head_mask.any(axis=0))
    assert rows.min() >= 1 and rows.max() <= 62 and cols.min() >= 1 and cols.max() <= 94
    assert np.ptp(rows) + 1 >= 0.9 * 64  # the height limits, the aspect ratio is kept
    assert 1.1 < (np.ptp(rows) + 1) / (np.ptp(cols) + 1) < 1.35


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_slices": 0}, "num_slices"),
        ({"num_slices": len(LEVELS_MM) + 1}, "num_slices"),
        ({"num_slices": 2.5}, "num_slices"),
        ({"noise": -0.01}, "noise"),
        ({"noise": 0.6}, "noise"),
        ({"noise": float("nan")}, "noise"),
        ({"bias": 0.51}, "bias"),
        ({"bias": -0.1}, "bias"),
        ({"shape": (31, 181)}, "shape"),
        ({"shape": (217,)}, "shape"),
        ({"shape": "217x181"}, "shape"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name} must .*\[") as info:
        make_phantom(**kwargs)
    assert name in str(info.value)


def test_repeat_calls_reuse_the_cached_rendering(default: PhantomSlices) -> None:
    hits = phantom._clean_images.cache_info().hits
    make_phantom(2)
    assert phantom._clean_images.cache_info().hits == hits + 1
    assert set(TISSUES) >= {"csf", "gm", "wm", "fat", "bone"}
