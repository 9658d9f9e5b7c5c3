"""How far an input lies from the training slices: the course zip's held-out slices lie inside
the limit its training slices set, the phantom (another head, another acquisition) outside;
`translate` warns of such inputs on the terminal, in the sidecar and in the PNG, and still
translates them."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import mri_helpers as mh
from mri_course import cli, domain_shift, png_slices, scans
from mri_course.scans import harmonisation
from mri_helpers import export, models, processing
from mri_helpers._tf import keras

SIZE = 224  # the course slices (181x217) padded only


@pytest.fixture(scope="module")
def course(course_zip: Path):
    dataset = mh.load_dataset(course_zip)
    return dataset, processing.holdout_split(dataset, 0.1, seed=42)


@pytest.fixture(scope="module")
def record(course) -> dict:
    dataset, split = course
    train = [*processing.select(dataset, "t1", split.train["t1"]),
             *processing.select(dataset, "t2", split.train["t2"])]  # fmt: skip
    return domain_shift.training_grey_levels(train)


def test_held_out_course_slices_lie_inside_and_phantom_slices_outside(course, record) -> None:
    dataset, split = course
    phantom = mh.load_dataset("phantom", num_slices=12)
    config = {"grey_levels": record}
    for contrast in ("t1", "t2"):
        limit = record[contrast]["limit"]
        assert limit == pytest.approx(1.25 * record[contrast]["farthest_training_slice"], 0.01)
        held_out = [s.image for s in processing.select(dataset, contrast, split.test[contrast])]
        inside = domain_shift.slices_distance(held_out, config, contrast)
        outside = domain_shift.slices_distance(
            [s.image for s in getattr(phantom, contrast)], config, contrast
        )
        assert max(inside) <= limit < min(outside), (contrast, inside, outside, limit)
    assert domain_shift.slices_distance(held_out, {}, "t1") is None  # an older export


def test_a_brightness_change_moves_the_distance_by_as_much() -> None:
    """The distance is in grey levels: every pixel 10 brighter lies 10 away."""
    values = np.random.default_rng(0).uniform(20, 200, 5000)
    reference = domain_shift.grey_level_percentiles(values)
    moved = domain_shift.grey_level_percentiles(values + 10)
    assert domain_shift.grey_level_distance(moved, reference) == pytest.approx(10, abs=1e-6)


@pytest.fixture(scope="module")
def course_like_export(tmp_path_factory, record) -> Path:
    """An untrained U-Net exported with the course zip's record of grey levels."""
    keras.utils.set_random_seed(1)
    unet = models.unet_generator(models.GeneratorConfig((8, 16)), SIZE, name="unet")
    root = tmp_path_factory.mktemp("export")
    extra = {"grey_levels": record, "head_levels": {"t1": 159.0, "t2": 232.0}}
    return export.export_generator(unet, root, "t1-to-t2", SIZE, extra, saved_model=False)


def test_translate_warns_of_slices_unlike_the_training_data(
    course, course_like_export, tmp_path: Path, capsys
) -> None:
    dataset, split = course
    inputs = []
    for s in [*processing.select(dataset, "t1", split.test["t1"][:2]),
              *mh.load_dataset("phantom", num_slices=4).t1[:2]]:  # fmt: skip
        inputs.append(tmp_path / f"{s.id.removesuffix('.png')}.png")
        Image.fromarray(s.image).save(inputs[-1])
    written = png_slices.translate_files(course_like_export, "t1-to-t2", inputs, tmp_path / "o")
    printed = capsys.readouterr().out
    assert "warning: 2 of 4 slices have grey levels unlike" in printed
    assert "phantom" in printed and "Image #" not in printed.split("warning:")[1]
    notes = [Image.open(path).text["Comment"] for path in written]
    assert [note.endswith("unlike the training data") for note in notes] == [
        False, False, True, True
    ]  # fmt: skip
    assert all(len(Image.open(p).size) == 2 for p in written)  # still translated


def test_translate_warns_of_a_volume_unlike_the_training_data(
    course_like_export, tmp_path: Path, capsys
) -> None:
    volumes = mh.phantom.make_phantom_volumes(seed=1)
    source = tmp_path / "phantom_t1w.nii.gz"
    volumes.t1.to_filename(source)
    [output] = scans.translate_volume_files(
        course_like_export, "t1-to-t2", [source], tmp_path / "out"
    )
    assert output.is_file()  # translated all the same
    assert "warning: phantom_t1w: its grey levels lie" in capsys.readouterr().out
    sidecar = json.loads(output.with_name("phantom_t1w_t2w-synthetic.json").read_text())
    shift = sidecar["distance_from_training_data"]
    assert shift["unlike_training_data"] is True and shift["warning"]
    assert shift["whole_head_distance"] > shift["limit"]
    assert shift["axial_slices_outside"] > shift["axial_slices_measured"] / 2


def test_an_export_without_a_record_is_translated_without_a_check(tmp_path: Path) -> None:
    scaled = np.full((3, 40, 40), 100.0)
    mask = np.ones_like(scaled, bool)
    shift = domain_shift.volume_shift(scaled, mask, {"grey_levels": {"t1": {"limit": 3}}}, "t1")
    assert shift["measured"] is False and "export the model again" in shift["why"]


def test_harmonising_a_scan_of_another_scanner_brings_it_inside_the_training_data(
    course_like_export, tmp_path: Path, capsys
) -> None:
    """`mri-course harmonise`: N4 takes the bias field out, the landmarks map the head onto the
    training slices' grey levels (tissue order kept), the grid is the input's, and the
    translation of the result no longer warns."""
    volumes = mh.phantom.make_phantom_volumes(seed=1, bias=0.3)
    source = tmp_path / "scan_t1w.nii.gz"
    volumes.t1.to_filename(source)
    before = source.read_bytes()
    out = tmp_path / "harmonised"
    command = ["harmonise", "--model", str(course_like_export), "--direction", "t1-to-t2",
               str(source), "--out", str(out)]  # fmt: skip
    assert cli.main(command) == 0
    result = out / "scan_t1w_harmonised.nii.gz"
    assert "wrote" in capsys.readouterr().out and source.read_bytes() == before
    image = nib.load(result)
    assert image.shape == volumes.t1.shape and np.array_equal(image.affine, volumes.t1.affine)
    sidecar = json.loads((out / "scan_t1w_harmonised.json").read_text())
    assert sidecar["standardisation"]["percentiles"] == list(harmonisation.LANDMARKS)

    labels = np.asarray(volumes.labels.dataobj)
    given, harmonised = np.asarray(volumes.t1.dataobj, np.float32), image.get_fdata()
    deep_wm = ndimage.binary_erosion(labels == 3, iterations=2)
    spread = [float(np.std(v[deep_wm]) / np.mean(v[deep_wm])) for v in (given, harmonised)]
    assert spread[1] < 0.5 * spread[0]  # the bias field's share of the spread is gone
    medians = [float(np.median(harmonised[labels == k])) for k in (1, 2, 3)]
    assert medians[0] < medians[1] < medians[2]  # CSF < GM < WM, as in a T1

    translated = tmp_path / "translated"
    for path in (source, result):
        scans.translate_volume_files(course_like_export, "t1-to-t2", [path], translated)
    printed = capsys.readouterr().out
    assert "warning: scan_t1w: its grey levels lie" in printed
    assert "warning: scan_t1w_harmonised" not in printed
    shift = json.loads((translated / "scan_t1w_harmonised_t2w-synthetic.json").read_text())[
        "distance_from_training_data"
    ]
    assert shift["whole_head_distance"] < shift["limit"] / 2

    assert cli.main(command) == 2  # an existing result is kept unless --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_harmonise_needs_an_export_that_records_its_grey_levels(tmp_path: Path, capsys) -> None:
    keras.utils.set_random_seed(1)
    unet = models.unet_generator(models.GeneratorConfig((8, 16)), SIZE, name="unet")
    bare = export.export_generator(unet, tmp_path / "m", "t1-to-t2", SIZE, {}, saved_model=False)
    source = tmp_path / "scan.nii.gz"
    mh.phantom.make_phantom_volumes(seed=1).t1.to_filename(source)
    command = ["harmonise", "--model", str(bare), "--direction", "t1-to-t2", str(source),
               "--out", str(tmp_path / "out")]  # fmt: skip
    assert cli.main(command) == 2
    assert "does not record its training slices' grey levels" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*"))
