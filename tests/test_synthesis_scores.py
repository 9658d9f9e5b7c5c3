"""Scored as the field scores: BraSyn's normalisation, tissue Dice of a fixed segmentation,
lesions kept and none invented; on crafted volumes first, then on a phantom head with lesions
through a tiny export and `mri-course evaluate --labels`."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from mri_course import synthesis_scores as ss

SHAPE = (40, 80, 80)  # (slices, rows, columns) at 1 mm
CENTRE = np.array([20.0, 40.0, 40.0])
LESIONS = {"large": ((20, 40, 24), 3.5), "small": ((20, 40, 56), 2.5)}  # centre, radius (mm)
T2 = {0: 0.0, 1: 200.0, 2: 90.0, 3: 60.0, 4: 190.0}  # background, CSF, GM, WM, lesion


def ball(centre, radius: float, shape=SHAPE) -> np.ndarray:
    grid = np.indices(shape, dtype=float)
    return ((grid - np.reshape(centre, (3, 1, 1, 1))) ** 2).sum(axis=0) <= radius**2


def ellipsoid(radii) -> np.ndarray:
    grid = np.indices(SHAPE, dtype=float) - CENTRE[:, None, None, None]
    return ((grid / np.reshape(radii, (3, 1, 1, 1))) ** 2).sum(axis=0) <= 1.0


@pytest.fixture(scope="module")
def crafted() -> dict[str, np.ndarray]:
    """A head: a CSF, GM and WM brain in a fatty scalp, two lesions in white matter; its T2
    with a little noise (seeded)."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[ellipsoid((18, 37, 37))] = 1
    labels[ellipsoid((16, 35, 35))] = 2
    labels[ellipsoid((12, 30, 30))] = 3
    for centre, radius in LESIONS.values():
        labels[ball(centre, radius)] = 4
    head = ellipsoid((19.5, 39.5, 39.5))
    t2 = np.vectorize(T2.get)(labels).astype(np.float32)
    t2[head & (labels == 0)] = 120.0  # scalp
    t2 += np.random.default_rng(0).normal(0.0, 2.0, SHAPE).astype(np.float32) * head
    return {"labels": labels, "head": head, "t2": np.clip(t2, 0, None)}


def scores(crafted, synthetic: np.ndarray) -> dict:
    volumes = {"truth": crafted["t2"], "model": synthetic}
    return ss.score_synthesis(
        volumes, crafted["head"], crafted["labels"] > 0, "t2", crafted["labels"], np.eye(4)
    )


def test_normalisation_is_to_each_volumes_own_percentiles_in_the_region() -> None:
    volume = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    region = volume >= 500  # the percentiles of 500..999 only
    normalised = ss.normalise_to_percentiles(volume * 3.0 + 7.0, region)
    assert normalised.min() == 0.0 and normalised.max() == 1.0
    np.testing.assert_allclose(normalised, ss.normalise_to_percentiles(volume, region), atol=1e-6)
    low, high = np.percentile(volume[region], ss.PERCENTILES)
    assert (normalised[volume <= low] == 0).all() and (normalised[volume >= high] == 1).all()


def test_a_synthetic_equal_to_the_truth_keeps_every_lesion_and_invents_none(crafted) -> None:
    result = scores(crafted, crafted["t2"].copy())
    model = result["images"]["model"]
    assert model["ssim_head"] == model["ssim_brain"] == model["ssim_lesion"] == pytest.approx(1)
    assert model["mae_head"] == 0.0
    rows = result["lesions"]
    assert len(rows) == 2 and all(row["visible"]["model"] for row in rows)
    diameters = sorted(row["diameter_mm"] for row in rows)
    assert diameters == pytest.approx([5.0, 7.0], abs=0.6)  # spheres on a 1 mm grid
    assert rows[0]["contrast"]["truth"] == pytest.approx(rows[0]["contrast"]["model"])
    assert result["invented"] == {"model": [], "truth": []}
    dice = result["segmentation"]["dice"]
    assert dice["model"] == dice["truth"] and dice["truth"]["mean"] > 0.95


def test_a_lesion_erased_from_the_synthetic_is_lost(crafted) -> None:
    erased = crafted["t2"].copy()
    erased[ball(*LESIONS["large"])] = T2[3]  # white matter where the large lesion was
    result = scores(crafted, erased)
    visible = {round(row["diameter_mm"]): row["visible"]["model"] for row in result["lesions"]}
    assert visible == {7: False, 5: True}
    lost = next(row for row in result["lesions"] if round(row["diameter_mm"]) == 7)
    assert abs(lost["contrast"]["model"]) < 0.1 < lost["contrast"]["truth"]
    assert result["images"]["model"]["ssim_lesion"] < 0.9
    # Without noise a faint trace is still seen; it keeps its contrast at 60 %, not at 30 %.
    for share, expected in ((0.6, True), (0.3, False)):
        faint = crafted["t2"].copy()
        inside = ball(*LESIONS["large"])
        faint[inside] = T2[3] + share * (crafted["t2"][inside] - T2[3])
        rows = scores(crafted, faint)["lesions"]
        row = next(r for r in rows if round(r["diameter_mm"]) == 7)
        assert row["visible"]["model"] and row["keeps_contrast"]["model"] is expected
        assert row["contrast_kept"]["model"] == pytest.approx(share, abs=0.05)


def test_a_blob_the_truth_does_not_have_is_reported(crafted) -> None:
    blob_centre = (20, 22, 40)
    assert (crafted["labels"][ball(blob_centre, 3.5)] == 3).all()  # in deep white matter
    invented = crafted["t2"].copy()
    invented[ball(blob_centre, 2.5)] = 180.0
    result = scores(crafted, invented)
    [blob] = result["invented"]["model"]
    assert blob["centre_mm"] == pytest.approx(blob_centre, abs=0.5)
    assert blob["volume_mm3"] == pytest.approx(4 / 3 * np.pi * 2.5**3, rel=0.3)
    assert blob["contrast"] > 1 and result["invented"]["truth"] == []
    assert all(row["visible"]["model"] for row in result["lesions"])
    # Smaller than the minimum volume (a 2 mm ball, 4 voxels): not a lesion.
    speck = crafted["t2"].copy()
    speck[ball(blob_centre, 1.0)] = 180.0
    assert scores(crafted, speck)["invented"]["model"] == []


def test_the_segmentation_orders_classes_by_the_targets_contrast(crafted) -> None:
    brain, labels = crafted["labels"] > 0, crafted["labels"]
    t2_found = ss.segment_tissues(crafted["t2"], brain, "t2")
    assert ss.tissue_dice(t2_found, labels)["wm"] > 0.95
    t1_like = 255.0 - crafted["t2"]  # CSF darkest, WM brightest: a T1 ordering
    assert ss.tissue_dice(ss.segment_tissues(t1_like, brain, "t1"), labels)["mean"] > 0.95
    wrong_way = ss.tissue_dice(ss.segment_tissues(t1_like, brain, "t2"), labels)
    assert wrong_way["csf"] < 0.1 and wrong_way["wm"] < 0.1
    assert set(np.unique(t2_found[~brain])) == {0}


def test_in_t1_lesions_are_dark_and_a_dark_blob_is_invented(crafted) -> None:
    """The t2-to-t1 way: lesions darker than white matter keep their contrast's sign."""
    t1 = np.where(crafted["head"], 255.0 - crafted["t2"], 0.0).astype(np.float32)
    blob = t1.copy()
    blob[ball((20, 22, 40), 2.5)] = 40.0
    labels = crafted["labels"]
    result = ss.score_synthesis(
        {"truth": t1, "model": blob}, crafted["head"], labels > 0, "t1", labels, np.eye(4)
    )
    assert all(
        row["visible"]["model"] and row["contrast"]["truth"] < 0 for row in result["lesions"]
    )
    assert len(result["invented"]["model"]) == 1 and result["invented"]["truth"] == []
    assert result["segmentation"]["dice"]["truth"]["mean"] > 0.95


def test_without_labels_only_the_image_scores_are_given(crafted) -> None:
    volumes = {"truth": crafted["t2"], "model": crafted["t2"] * 2.0 + 5.0}
    result = ss.score_synthesis(volumes, crafted["head"], crafted["labels"] > 0, "t2")
    assert set(result) == {"normalisation", "images"}
    assert set(result["images"]["model"]) == {"ssim_head", "ssim_brain", "psnr_head", "mae_head"}
    # A brighter scanner's units change nothing: each volume is normalised on its own.
    assert result["images"]["model"]["ssim_head"] == pytest.approx(1.0, abs=1e-4)


# --- the phantom's labels and lesions --------------------------------------------------------
def test_the_phantom_labels_its_tissues_and_its_lesions() -> None:
    """Labels: the largest tissue fraction inside the brain; lesions in deep white matter at the
    levels the slices cover, where the seed says, T1-dark (between GM and CSF) and T2-bright
    (near CSF), and in the slices too."""
    from mri_helpers import phantom

    plain = phantom.make_phantom_volumes(seed=0)
    ill = phantom.make_phantom_volumes(seed=0, lesions=(3, 10))
    labels = np.asarray(ill.labels.dataobj)
    assert set(np.unique(np.asarray(plain.labels.dataobj))) == {0, 1, 2, 3}
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(labels > 0, np.asarray(ill.brain_mask.dataobj) > 0)
    parts, count = ndimage.label(labels == 4)
    assert count == 2 and sorted(np.bincount(parts.ravel())[1:]) == [19, 515]  # 3 and 10 mm
    distance = ndimage.distance_transform_edt(labels != 4)
    near = (distance > 0) & (distance <= 2)
    assert (np.asarray(plain.labels.dataobj)[near] == 3).all()  # in white matter
    z = np.flatnonzero((labels == 4).any(axis=(0, 1)))
    levels = ill.level_indices()
    assert levels.min() <= z.min() and z.max() <= levels.max()
    t1, t2 = (np.asarray(v.dataobj) for v in (ill.t1_clean, ill.t2_clean))
    mean = {k: (t1[labels == k].mean(), t2[labels == k].mean()) for k in range(1, 5)}
    assert mean[1][0] < mean[4][0] < mean[2][0] < mean[3][0]  # T1: CSF < lesion < GM < WM
    assert mean[4][1] > 0.85 * mean[1][1] and mean[4][1] > 2 * mean[3][1]  # T2: near CSF
    unchanged = distance > 1.5  # beyond the partial volume of the lesions' edges
    np.testing.assert_array_equal(
        np.asarray(ill.t2.dataobj)[unchanged], np.asarray(plain.t2.dataobj)[unchanged]
    )  # the same noise and bias field: only the lesions differ
    again = phantom.make_phantom_volumes(seed=0, lesions=(3, 10))
    np.testing.assert_array_equal(np.asarray(again.labels.dataobj), labels)
    moved = phantom.make_phantom_volumes(seed=1, lesions=(3, 10))
    assert (np.asarray(moved.labels.dataobj) == 4).sum() > 0
    assert not np.array_equal(np.asarray(moved.labels.dataobj) == 4, labels == 4)
    slices = phantom.make_phantom(len(phantom.LEVELS_MM), seed=0, lesions=(3, 10))
    assert not np.array_equal(slices.t2, phantom.make_phantom(len(phantom.LEVELS_MM), seed=0).t2)
    for bad in ([0.5], [30], "5", [5] * 13, [True]):
        with pytest.raises(ValueError, match="lesions must be a list"):
            phantom.make_phantom_volumes(lesions=bad)


# --- a phantom head with lesions through a tiny export ----------------------------------------
def tiny_export(folder: Path, scale: float) -> Path:
    """A t1-to-t2 export at the course's 224 px that multiplies its input by `scale`: -1 turns
    it upside down (as in tests/test_volumes.py), 1 gives it back."""
    from mri_helpers import export
    from mri_helpers._tf import keras

    inputs = keras.Input((224, 224, 1), name="image")
    model = keras.Model(inputs, keras.layers.Rescaling(scale)(inputs))
    export.export_generator(model, folder, "t1-to-t2", 224, saved_model=False)
    return folder


@pytest.fixture(scope="module")
def phantom_slab(tmp_path_factory) -> dict[str, Path]:
    """The phantom's observed T1 and T2, clean T2 and labels with a 5 and a 7 mm lesion, cut
    to the axial slab that holds the lesions (nibabel's slicer keeps the affine right)."""
    from mri_helpers.phantom import make_phantom_volumes

    folder = tmp_path_factory.mktemp("phantom_slab")
    volumes = make_phantom_volumes(lesions=(5, 7), seed=0)
    lesion_z = np.flatnonzero((np.asarray(volumes.labels.dataobj) == 4).any(axis=(0, 1)))
    slab = slice(int(lesion_z.min()) - 6, int(lesion_z.max()) + 7)
    paths = {}
    for name in ("t1", "t2", "t2_clean", "labels"):
        paths[name] = folder / f"{name}.nii.gz"
        nib.save(getattr(volumes, name).slicer[:, :, slab], paths[name])
    paths["negation"] = tiny_export(folder / "negation", -1.0)
    paths["identity"] = tiny_export(folder / "identity", 1.0)
    return paths


def evaluate_slab(paths: dict[str, Path], model: str, scan: str, out: Path) -> list[str]:
    """Run `mri-course evaluate --labels` on the slab; the lines it printed."""
    from mri_course.cli import main as cli_main

    args = ["evaluate", "--model", str(paths[model]), "--json", str(out)]
    args += ["--scan", str(paths[scan]), "--truth", str(paths["t2_clean"])]
    args += ["--direction", "t1-to-t2", "--labels", str(paths["labels"])]
    assert cli_main(args) == 0
    return json.loads(out.read_text())["summary"]


def test_a_phantom_with_lesions_is_scored_through_the_command(phantom_slab, tmp_path) -> None:
    """Inverting T1 keeps the lesions visible, brighter than white matter, but at a fraction
    of T2's contrast; a 'model' handing back the observed T2 keeps both with their contrast."""
    summary = evaluate_slab(phantom_slab, "negation", "t1", tmp_path / "negation.json")
    assert "lesions visible in the model's volume: 2 of 2, 0 with at least half" in summary[-2]
    block = json.loads((tmp_path / "negation.json").read_text())["brasyn"]
    assert set(block["images"]) == {"model", "inversion", "quantile"}
    assert -1 < block["images"]["model"]["ssim_lesion"] <= 1
    dice = block["segmentation"]["dice"]
    assert set(dice) == {"truth", "model", "inversion", "quantile"}
    assert dice["truth"]["mean"] > 0.85  # what the method reaches on the clean T2
    rows = sorted(block["lesions"], key=lambda row: row["diameter_mm"])
    assert [round(row["diameter_mm"]) for row in rows] == [5, 7]
    for row in rows:
        assert 0 < row["contrast"]["model"] < 0.5 * row["contrast"]["truth"]
    assert block["invented"]["truth"] == [] and block["invented"]["model"] == []
    summary = evaluate_slab(phantom_slab, "identity", "t2", tmp_path / "identity.json")
    assert "lesions visible in the model's volume: 2 of 2, 2 with at least half" in summary[-2]
    assert "blobs where the truth has none: model 0, true volume 0" in summary[-1]


def test_labels_on_another_grid_or_with_other_values_are_refused(phantom_slab, tmp_path, capsys):
    from mri_course.cli import main as cli_main

    out = tmp_path / "scores.json"
    args = ["evaluate", "--model", str(phantom_slab["negation"]), "--json", str(out)]
    volume = ["--scan", str(phantom_slab["t1"]), "--truth", str(phantom_slab["t2_clean"])]
    volume += ["--direction", "t1-to-t2"]
    labels = nib.load(phantom_slab["labels"])
    data = np.asarray(labels.dataobj)
    shifted = tmp_path / "shifted.nii.gz"
    nib.save(nib.Nifti1Image(data, labels.affine @ np.diag([1.0, 1.0, 2.0, 1.0])), shifted)
    strange = tmp_path / "strange.nii.gz"
    nib.save(
        nib.Nifti1Image(np.where(data == 4, 7, data).astype(np.uint8), labels.affine), strange
    )
    for path, message in (
        (shifted, "does not lie on the voxel grid of"),
        (strange, "holds values other than 0 (background)"),
    ):
        assert cli_main([*args, *volume, "--labels", str(path)]) == 2
        error = capsys.readouterr().err
        assert message in error and "Traceback" not in error
    assert cli_main([*args, "--data", "phantom", "--labels", str(strange)]) == 2
    assert "--labels scores a volume" in capsys.readouterr().err
    assert not out.exists()
