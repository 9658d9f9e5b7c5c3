"""Tests for the built-in paired T1/T2 phantom (`mri_helpers.phantom`)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import nibabel as nib
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
    PhantomVolumes,
    make_phantom,
    make_phantom_volumes,
)

GRID_SHAPE = (197, 233, 189)  # nilearn's MNI152 2009 template at 1 mm


def _head_from_image(image: np.ndarray) -> np.ndarray:
    """The head in a course-like image: above 20, opened, holes filled."""
    return ndimage.binary_fill_holes(ndimage.binary_opening(image > 20, iterations=2))


def _grow(masks: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate each 2-D mask of a stack by `pixels`."""
    return ndimage.binary_dilation(masks, structure=np.ones((1, 3, 3)), iterations=pixels)


def _level_mm(ids: list[str]) -> list[int]:
    return [int(i.removeprefix("phantom_z")) for i in ids]


def _data(image: nib.Nifti1Image) -> np.ndarray:
    return np.asarray(image.dataobj)


def _z_index(level_mm: float) -> int:
    """The MNI152 1 mm grid's z index of an axial level (its z axis starts at -72 mm)."""
    return int(level_mm) + 72


def _plane(volume: np.ndarray, level_mm: float) -> np.ndarray:
    """The axial plane at `level_mm` as (row: posterior -> anterior, col: left -> right)."""
    return volume[:, :, _z_index(level_mm)].T


def _find_crop(image: np.ndarray, plane: np.ndarray) -> list[tuple[int, int]]:
    """Every (row, col) offset at which `image` equals the 8-bit crop of `plane`."""
    height, width = image.shape
    return [
        (r, c)
        for r in range(plane.shape[0] - height + 1)
        for c in range(plane.shape[1] - width + 1)
        if np.array_equal(image, np.clip(np.rint(plane[r : r + height, c : c + width]), 0, 255))
    ]


def _fit_quadratic(ratio: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares 3-D quadratic in (x, y, z) through `ratio` at `where`: its coefficients
    and the largest residual (every third voxel, coordinates in 100 mm)."""
    x, y, z = (a[::3] / 100.0 for a in np.nonzero(where))
    terms = np.stack([np.ones_like(x), x, y, z, x * x, y * y, z * z, x * y, x * z, y * z], 1)
    values = ratio[where][::3]
    coefficients, *_ = np.linalg.lstsq(terms, values, rcond=None)
    return coefficients, float(np.abs(terms @ coefficients - values).max())


@pytest.fixture(scope="module")
def default() -> PhantomSlices:
    return make_phantom()


@pytest.fixture(scope="module")
def clean() -> PhantomSlices:
    return make_phantom(noise=0.0, bias=0.0)


@pytest.fixture(scope="module")
def volumes() -> PhantomVolumes:
    return make_phantom_volumes()


@pytest.fixture(scope="module")
def fractions(clean: PhantomSlices) -> dict[str, np.ndarray]:
    """Tissue fractions in the frame of the default slices."""
    indices = np.array([_z_index(level) for level in _level_mm(clean.ids)])
    return {
        name: phantom._to_frame(fraction, indices, PHANTOM_SHAPE)
        for name, fraction in phantom._template_fractions(phantom.LAYERS_MM).items()
    }


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


def test_bias_field_is_one_smooth_3d_field_per_volume_and_contrast() -> None:
    """Without noise, observed / clean is one quadratic in (x, y, z) over the whole head, the
    same polynomial on every slice, spanning exactly [1 - bias, 1 + bias]; T1 and T2 differ."""
    volumes = make_phantom_volumes(noise=0.0, seed=3)
    head = _data(volumes.head_mask) > 0
    fits = []
    for observed, image in ((volumes.t1, volumes.t1_clean), (volumes.t2, volumes.t2_clean)):
        clean_values = _data(image)
        where = head & (clean_values > 1.0)
        ratio = np.divide(
            _data(observed), clean_values, where=clean_values > 0, out=np.ones(where.shape)
        )
        assert ratio[where].min() == pytest.approx(0.85, abs=1e-4)
        assert ratio[where].max() == pytest.approx(1.15, abs=1e-4)
        coefficients, residual = _fit_quadratic(ratio, where)
        assert residual < 1e-5  # one polynomial explains every voxel of every slice
        assert np.abs(coefficients[1:]).max() > 0.01  # and it is not flat
        fits.append(coefficients)
        # The same field on the course slices: planes 20 mm apart are not independent draws.
        low, high = _plane(ratio, 0), _plane(ratio, 20)
        both = _plane(where, 0) & _plane(where, 20)
        assert np.abs(low - high)[both].max() < 0.1
    assert np.abs(fits[0] - fits[1]).max() > 0.01  # T1 and T2 get their own field
    other = make_phantom_volumes(noise=0.0, seed=4)
    assert not np.allclose(_data(other.t1), _data(volumes.t1))  # a seed draws another field
    strong = make_phantom_volumes(noise=0.0, bias=0.3, seed=3)
    clean_values = _data(strong.t1_clean)
    where = head & (clean_values > 1.0)
    ratio = _data(strong.t1)[where] / clean_values[where]
    assert ratio.min() == pytest.approx(0.7, abs=1e-4) and ratio.max() == pytest.approx(
        1.3, abs=1e-4
    )


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
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": "0"}, "seed"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name} must .*\[") as info:
        make_phantom(**kwargs)
    assert name in str(info.value)
    if name in ("noise", "bias", "seed"):
        with pytest.raises(ValueError, match=rf"{name} must .*\["):
            make_phantom_volumes(**kwargs)


def test_repeat_calls_reuse_the_cached_rendering(default: PhantomSlices) -> None:
    renders = phantom._clean_volumes.cache_info().misses
    make_phantom(2)
    make_phantom_volumes(seed=1)
    assert phantom._clean_volumes.cache_info().misses == renders  # the head is built once
    assert set(TISSUES) >= {"csf", "gm", "wm", "fat", "bone"}


# --- the whole head as volumes ---------------------------------------------------------------
def test_volumes_lie_on_the_mni152_grid(volumes: PhantomVolumes) -> None:
    from nilearn import datasets

    mni = datasets.load_mni152_brain_mask(resolution=1).affine
    for name in phantom.VOLUME_FILES:
        image = getattr(volumes, name)
        assert isinstance(image, nib.Nifti1Image) and image.shape == GRID_SHAPE, name
        np.testing.assert_array_equal(image.affine, mni)
        assert int(image.header["qform_code"]) == int(image.header["sform_code"]) == 4
        dtype = np.uint8 if name.endswith("_mask") or name == "labels" else np.float32
        assert image.get_data_dtype() == dtype and _data(image).dtype == dtype, name
    assert list(volumes.level_indices()) == [_z_index(level) for level in LEVELS_MM]
    assert nib.aff2axcodes(volumes.t1.affine) == ("R", "A", "S")


def test_volume_masks_cover_the_whole_head(volumes: PhantomVolumes) -> None:
    head, brain = (_data(m) for m in (volumes.head_mask, volumes.brain_mask))
    assert set(np.unique(head)) == set(np.unique(brain)) == {0, 1}
    assert (brain <= head).all()
    with_head = np.flatnonzero(head.any(axis=(0, 1)))
    with_brain = np.flatnonzero(brain.any(axis=(0, 1)))
    # Every level from the lowest plane of the grid (the brain reaches it) to above the
    # vertex has head, and the head is closed at the top by the skull and scalp.
    assert with_head[0] == with_brain[0] == 0
    assert np.array_equal(with_head, np.arange(with_head[-1] + 1))
    assert with_head[-1] - with_brain[-1] >= 10  # >= 10 mm of layers above the brain
    assert not head[:, :, -1].any() and not head[[0, -1]].any() and not head[:, [0, -1]].any()
    neck = _data(volumes.t1_clean)[:, :, : _z_index(-60)]
    assert (neck[head[:, :, : _z_index(-60)] > 0] > 5).all()  # below the skull: no bone
    for level in range(-60, 90, 10):  # a bone ring around the brain's section at every level
        t1, t2 = (_plane(_data(v), level) for v in (volumes.t1_clean, volumes.t2_clean))
        plane_head, plane_brain = _plane(head, level) > 0, _plane(brain, level) > 0
        assert ndimage.binary_fill_holes(plane_head).sum() == plane_head.sum(), level
        shell = plane_head & ~ndimage.binary_dilation(plane_brain, iterations=2)
        assert (shell & (t1 < 5) & (t2 < 5)).sum() > 50, level  # bone: no signal
        assert (shell & (t1 > 0.8 * INTENSITY_MAX)).sum() > 50, level  # fat: bright in T1
    for image in (volumes.t1_clean, volumes.t2_clean):
        values = _data(image)
        assert values.min() >= 0 and values.max() <= INTENSITY_MAX + 1e-3
        grown = ndimage.binary_dilation(head > 0, iterations=2)
        assert (values[~grown] == 0).all()


def test_volumes_are_reproducible_and_exact_without_noise_and_bias(
    volumes: PhantomVolumes,
) -> None:
    again, other = make_phantom_volumes(seed=0), make_phantom_volumes(seed=1)
    for name in ("t1", "t2"):
        np.testing.assert_array_equal(_data(getattr(again, name)), _data(getattr(volumes, name)))
        assert (_data(getattr(other, name)) != _data(getattr(volumes, name))).mean() > 0.9
    np.testing.assert_array_equal(_data(other.t1_clean), _data(volumes.t1_clean))
    plain = make_phantom_volumes(noise=0.0, bias=0.0)
    np.testing.assert_array_equal(_data(plain.t1), _data(plain.t1_clean))
    np.testing.assert_array_equal(_data(plain.t2), _data(plain.t2_clean))
    # Each call gets its own arrays: changing one does not reach the next call.
    _data(again.t1)[0, 0, 0] = -1.0
    assert _data(make_phantom_volumes(seed=0).t1)[0, 0, 0] >= 0.0
    unseeded = make_phantom_volumes(seed=None)
    assert _data(unseeded.t1).shape == GRID_SHAPE


def test_write_round_trips_through_nibabel(volumes: PhantomVolumes, tmp_path: Path) -> None:
    paths = volumes.write(tmp_path / "phantom")
    assert {name: path.name for name, path in paths.items()} == {
        "t1": "phantom_t1w.nii.gz",
        "t2": "phantom_t2w.nii.gz",
        "t1_clean": "phantom_t1w_clean.nii.gz",
        "t2_clean": "phantom_t2w_clean.nii.gz",
        "head_mask": "phantom_head_mask.nii.gz",
        "brain_mask": "phantom_brain_mask.nii.gz",
        "labels": "phantom_labels.nii.gz",
    }
    for name, path in paths.items():
        original, loaded = getattr(volumes, name), nib.load(path)
        assert loaded.shape == GRID_SHAPE
        np.testing.assert_array_equal(loaded.affine, original.affine)
        np.testing.assert_array_equal(loaded.get_qform(), original.affine)
        np.testing.assert_array_equal(loaded.get_sform(), original.affine)
        assert loaded.get_qform(coded=True)[1] == loaded.get_sform(coded=True)[1] == 4
        assert loaded.header.get_xyzt_units()[0] == "mm"
        assert loaded.get_data_dtype() == original.get_data_dtype()
        np.testing.assert_array_equal(np.asarray(loaded.dataobj), _data(original))
    written = json.loads((tmp_path / "phantom" / phantom.ACQUISITION_FILE).read_text())
    assert written == volumes.acquisition.to_json()
    assert written["sequences_tr_te_ms"]["t1"] == list(phantom.SEQUENCES["t1"])


def test_slices_are_exact_1mm_crops_of_the_volume_planes(
    default: PhantomSlices, volumes: PhantomVolumes
) -> None:
    """The default slices are the observed volumes' axial planes at their levels, cut at one
    integer offset (no resampling, so the noise is the volume's own), and so are the clean
    images and masks."""
    levels = _level_mm(default.ids)
    assert levels == sorted(levels) and set(levels) <= set(LEVELS_MM)
    t1 = _data(volumes.t1)
    offsets = _find_crop(default.t1[0], _plane(t1, levels[0]))
    assert len(offsets) == 1
    (row, col), (height, width) = offsets[0], PHANTOM_SHAPE
    for i, level in enumerate(levels):
        crop = (slice(row, row + height), slice(col, col + width))
        for sliced, volume in (
            (default.t1, volumes.t1),
            (default.t2, volumes.t2),
            (default.t1_clean, volumes.t1_clean),
            (default.t2_clean, volumes.t2_clean),
            (default.head_mask, volumes.head_mask),
            (default.brain_mask, volumes.brain_mask),
        ):
            plane = _plane(_data(volume), level)[crop]
            if sliced.dtype == np.uint8:
                plane = np.clip(np.rint(plane), 0, 255)
            np.testing.assert_array_equal(sliced[i], plane.astype(sliced.dtype), err_msg=level)
    assert (_data(volumes.head_mask)[:, :, [_z_index(level) for level in levels]] > 0).sum() == (
        default.head_mask.sum()
    )  # the crop loses no head


def test_volume_reslicing_gives_the_slices_the_model_was_trained_on(
    default: PhantomSlices, volumes: PhantomVolumes, tmp_path: Path
) -> None:
    """Read back as a scan, the phantom's T1 volume is cut by `mri_course.scans` into the
    axial planes a course model expects (1 mm, rows posterior -> anterior, columns left ->
    right): the planes on its model grid are make_phantom's slices, up to the frame's crop."""
    from mri_course import scans as volume_io

    scan = volume_io.read_nifti(volumes.write(tmp_path)["t1"])
    config = {"image_size": 256, "direction": "t1-to-t2"}  # model.json with the course geometry
    assert volume_io.model_geometry(config) == ((1.0, 1.0), "AR")
    plan = volume_io.plan_volume(scan.voxels(), scan.affine, config, "t1")
    assert plan.orientation.input_codes == ("R", "A", "S") and plan.orientation.obliquity == 0
    assert plan.orientation.spacing == (1.0, 1.0, 1.0)
    assert plan.grid.pixel == plan.grid.spacing == (1.0, 1.0)  # no in-plane resampling
    oriented = plan.orientation.apply(scan.voxels())  # (slice, row, column)
    assert oriented.shape == (GRID_SHAPE[2], GRID_SHAPE[1], GRID_SHAPE[0])
    (start_row, start_col), (rows, cols) = plan.grid.start, plan.grid.size
    head = plan.orientation.apply(_data(volumes.head_mask)).any(axis=0)
    inside = head[start_row : start_row + rows, start_col : start_col + cols]
    assert inside.sum() == head.sum()  # the model's crop holds the whole head
    (row, col) = _find_crop(default.t1[0], oriented[_z_index(_level_mm(default.ids)[0])])[0]
    # The overlap of the model's crop and the slice frame, in the plane's pixels.
    top, left = max(start_row, row), max(start_col, col)
    bottom = min(start_row + rows, row + PHANTOM_SHAPE[0])
    right = min(start_col + cols, col + PHANTOM_SHAPE[1])
    assert bottom - top >= 0.95 * PHANTOM_SHAPE[0] and right - left >= 0.95 * PHANTOM_SHAPE[1]
    for i, level in enumerate(_level_mm(default.ids)):
        on_model_grid = plan.grid.to_model(oriented[_z_index(level)])
        seen = on_model_grid[
            top - start_row : bottom - start_row, left - start_col : right - start_col
        ]
        trained = default.t1[i, top - row : bottom - row, left - col : right - col]
        np.testing.assert_array_equal(np.clip(np.rint(seen), 0, 255), trained, err_msg=level)


def test_the_default_acquisition_is_the_phantoms_own_scan(default: PhantomSlices) -> None:
    own = make_phantom(acquisition=phantom.Acquisition())
    np.testing.assert_array_equal(own.t1, default.t1)
    np.testing.assert_array_equal(own.t2, default.t2)
    assert phantom.Acquisition().timing("t2") == phantom.SEQUENCES["t2"]
    # noise and bias given beside an acquisition replace its own
    quiet = make_phantom(2, acquisition=phantom.Acquisition(noise=0.04), noise=0.0, bias=0.0)
    np.testing.assert_array_equal(quiet.t1, make_phantom(2, noise=0.0, bias=0.0).t1)


def test_drawn_acquisitions_lie_in_their_ranges_and_keep_each_contrasts_tissue_order() -> None:
    train, unseen = (phantom.ACQUISITION_RANGES[k] for k in ("training", "unseen"))
    assert phantom.draw_acquisition(3) == phantom.draw_acquisition(3)
    assert phantom.draw_acquisition(3) != phantom.draw_acquisition(4)
    for seed in range(40):
        drawn = {k: phantom.draw_acquisition(seed, k) for k in ("training", "unseen")}
        for kind, acquisition in drawn.items():
            ranges = phantom.ACQUISITION_RANGES[kind]
            (t1_tr, t1_te), (t2_tr, t2_te) = (acquisition.timing(c) for c in ("t1", "t2"))
            assert ranges.t1w_tr[0] <= t1_tr <= ranges.t1w_tr[1]
            assert ranges.t2w_te[0] <= t2_te <= ranges.t2w_te[1]
            assert ranges.noise[0] <= acquisition.noise <= ranges.noise[1]
            for name, pd, t1, t2 in acquisition.tissues:
                base = TISSUES[name]
                low, high = ranges.proton_density
                assert low * base[0] - 1e-4 <= pd <= high * base[0] + 1e-4
                assert (
                    ranges.relaxation_t1[0] - 1e-3
                    <= t1 / base[1]
                    <= ranges.relaxation_t1[1] + 1e-3
                )
                assert (
                    ranges.relaxation_t2[0] - 1e-3
                    <= t2 / base[2]
                    <= ranges.relaxation_t2[1] + 1e-3
                )
            signal = {
                (t, c): phantom.tissue_signal(t, c, acquisition)
                for t in ("csf", "gm", "wm", "lesion")
                for c in ("t1", "t2")
            }
            assert signal["wm", "t1"] > signal["gm", "t1"] > signal["lesion", "t1"]
            assert signal["lesion", "t1"] > signal["csf", "t1"]
            assert signal["csf", "t2"] > signal["gm", "t2"] > signal["wm", "t2"]
            assert signal["lesion", "t2"] > signal["gm", "t2"]  # T1-dark, T2-bright
    # "unseen" lies outside the training intervals on every axis
    for axis in ("t1w_tr", "t1w_te", "t2w_tr", "t2w_te", "relaxation_t1", "relaxation_t2"):
        low, high = getattr(train, axis)
        other = getattr(unseen, axis)
        assert other[0] > high or other[1] < low, axis
    for axis in ("proton_density", "layers", "noise", "bias"):
        low, high = getattr(train, axis)
        assert getattr(unseen, axis)[0] > high or getattr(unseen, axis)[1] < low, axis


def test_volumes_of_another_acquisition_carry_its_tissue_values() -> None:
    acquisition = phantom.draw_acquisition(0, "unseen")
    volumes = make_phantom_volumes(acquisition=acquisition, noise=0.0, bias=0.0)
    default = make_phantom_volumes(noise=0.0, bias=0.0)
    labels, ours = _data(volumes.labels), _data(default.labels)
    np.testing.assert_array_equal(labels, ours)  # the same brain
    head = _data(volumes.head_mask).astype(bool)
    assert head.sum() > _data(default.head_mask).sum()  # thicker layers: a larger head
    for contrast in ("t1", "t2"):
        clean = _data(getattr(volumes, f"{contrast}_clean"))
        gain = INTENSITY_MAX / max(
            phantom.tissue_signal(t, contrast, acquisition) for t in TISSUES
        )
        # deep in the white matter (no partial volume) the value is the tissue's signal
        deep = ndimage.binary_erosion(labels == 3, iterations=3)
        expected = gain * phantom.tissue_signal("wm", contrast, acquisition)
        assert abs(float(np.median(clean[deep])) - expected) < 0.02 * INTENSITY_MAX
        # and not the default scan's: the acquisition changed the contrast
        assert not np.allclose(clean, _data(getattr(default, f"{contrast}_clean")), atol=1.0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: phantom.Acquisition(noise=0.9), "noise"),
        (
            lambda: phantom.Acquisition(sequences=(("t1", -5.0, 10.0), ("t2", 3000.0, 90.0))),
            "positive",
        ),
        (lambda: phantom.Acquisition(tissues=()), "tissues"),
        (lambda: phantom.draw_acquisition(0, "3T"), "ranges"),
        (lambda: make_phantom(2, acquisition={"noise": 0.0}), "acquisition"),
    ],
)
def test_bad_acquisitions_raise_value_error_naming_them(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()
