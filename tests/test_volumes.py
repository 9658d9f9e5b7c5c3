"""Translating NIfTI volumes and DICOM series: geometry round trips, DICOM reading, intensity
invariance, the uncertainty map, and every bad input refused before anything is written."""

from __future__ import annotations

import gzip
import json
import shutil
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from scipy import ndimage

from mri_course import png_slices, scans
from mri_helpers import calibration, export, models, processing, test_time
from mri_helpers._tf import keras
from mri_helpers.errors import DataError, ModelFileError

SIZE = 64  # every test volume's head, with its margin, fits: the network sees it padded only
SHAPE = (40, 48, 5)  # (x, y, z) of the test heads at 1 mm


# --- models ---------------------------------------------------------------------------------
def _identity() -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    return keras.Model(inputs, keras.layers.Identity()(inputs), name="identity")


def _unet() -> keras.Model:
    keras.utils.set_random_seed(3)
    return models.unet_generator(models.GeneratorConfig((8, 16)), SIZE, name="unet")


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """Tiny exports: the identity map, a U-Net, the U-Net averaged over test-time copies and
    calibrated (as a run with both options exports it), the identity averaged."""
    root = tmp_path_factory.mktemp("exports")
    unet = _unet()
    levels = np.linspace(-1, 1, calibration.TABLE_SIZE)
    table = np.sign(levels) * levels**2  # monotone, -1 and 1 in place
    wrapped = calibration.calibrated(
        test_time.averaged_over_copies(unet),
        calibration.IntensityCalibration(table, name="calibration"),
    )
    made = {
        "identity": (_identity(), {}),
        "unet": (unet, {"epoch": 7}),
        "averaged": (wrapped, {"test_time_augmentation": True, "calibrated": True}),
        "identity_averaged": (test_time.averaged_over_copies(_identity()), {}),
    }
    return {
        name: export.export_generator(
            model, root / name, "t1-to-t2", SIZE, extra, saved_model=False
        )
        for name, (model, extra) in made.items()
    }


# --- crafted scans --------------------------------------------------------------------------
def head(shape=SHAPE, spacing=(1.0, 1.0, 1.0), scale: float = 1.0) -> np.ndarray:
    """A smooth head-like volume (x, y, z) in RAS voxel order: an ellipse of tissue whose
    grey levels vary gently, a brighter rim, air (0) around it. `spacing` in mm keeps the
    head the same size in millimetres whatever the voxels."""
    x, y, z = (np.arange(n) * s + s / 2 for n, s in zip(shape, spacing, strict=True))
    x, y, z = np.meshgrid(x, y, z, indexing="ij")
    cx, cy = shape[0] * spacing[0] / 2, shape[1] * spacing[1] / 2
    radius = np.sqrt(((x - cx) / 14.0) ** 2 + ((y - cy) / 17.0) ** 2)
    tissue = 500 + 150 * np.sin(x / 4.0) * np.cos(y / 5.0) + 20 * z
    rim = 300 * np.exp(-(((radius - 0.92) / 0.06) ** 2))
    values = np.where(radius < 1.0, tissue + rim, 0.0) * scale
    return values.astype(np.float32)


def ras_affine(spacing=(1.0, 1.0, 1.0), shape=SHAPE) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-n * s / 2 for n, s in zip(shape, spacing, strict=True)]
    return affine


def rotation(degrees: float, axis: int) -> np.ndarray:
    angle = np.radians(degrees)
    c, s = np.cos(angle), np.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    matrix = np.eye(4)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def save(data: np.ndarray, affine: np.ndarray, path: Path, qcode=1, scode=2) -> Path:
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=qcode)
    image.set_sform(affine, code=scode)
    nib.save(image, path)
    return path


def reoriented(data: np.ndarray, affine: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """The same scan stored in another voxel order (`codes`, e.g. "LPS")."""
    image = nib.Nifti1Image(data, affine).as_reoriented(
        nib.orientations.ornt_transform(
            nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt(codes)
        )
    )
    return np.asarray(image.dataobj), image.affine


def translate(model: Path, inputs, out: Path, **options) -> list[Path]:
    return scans.translate_volume_files(model, "t1-to-t2", inputs, out, **options)


def scaled_input(path: Path, config=None) -> np.ndarray:
    """The input on the course scale, clipped to 0..255, as the network receives it."""
    scan = scans.read_nifti(path)
    config = config or {"image_size": SIZE, "direction": "t1-to-t2"}
    plan = scans.plan_volume(scan.voxels(), scan.affine, config, "t1")
    return np.clip(plan.scaling.apply(scan.voxels()), 0, 255)


def assert_same_geometry(output: Path, source: Path) -> None:
    out, original = nib.load(output), nib.load(source)
    assert out.shape == original.shape
    np.testing.assert_allclose(out.affine, original.affine, atol=1e-5)
    np.testing.assert_allclose(out.header.get_zooms(), original.header.get_zooms(), atol=1e-6)
    for (a, code_a), (b, code_b) in (
        (out.get_qform(coded=True), original.get_qform(coded=True)),
        (out.get_sform(coded=True), original.get_sform(coded=True)),
    ):
        assert code_a == code_b
        if code_b:
            np.testing.assert_allclose(a, b, atol=1e-5)
    assert out.get_data_dtype() == np.float32


# --- geometry -------------------------------------------------------------------------------
def test_model_slices_have_posterior_at_the_top_and_the_left_on_the_left() -> None:
    """A voxel at the right, anterior, superior corner ends at the last slice, row and
    column of the model's array, whatever order the scan stores its voxels in."""
    data = np.zeros(SHAPE, np.float32)
    data[-1, -1, -1] = 1
    for codes in ("RAS", "LPS", "LIA", "PSR"):
        stored, affine = reoriented(data, ras_affine(), codes)
        assert "".join(nib.aff2axcodes(affine)) == codes
        for tilted in (affine, rotation(15, 0) @ affine):
            orientation = scans.reorientation(tilted, stored.shape)
            model = orientation.apply(stored)
            assert model.shape == (SHAPE[2], SHAPE[1], SHAPE[0])  # (S, A, R) axes
            assert model[-1, -1, -1] == 1, codes
            np.testing.assert_array_equal(orientation.undo(model), stored)
    # A model whose rows run anterior -> posterior and columns right -> left:
    flipped = scans.reorientation(ras_affine(), SHAPE, "PL").apply(data)
    assert flipped[-1, 0, 0] == 1


@pytest.mark.parametrize(
    "case",
    ["RAS", "LPS", "LIA", "oblique 15 degrees", "0.9 x 0.9 x 3 mm"],
)
def test_identity_model_gives_back_the_scaled_input_on_the_same_grid(
    case: str, exports, tmp_path: Path
) -> None:
    if case.startswith("0.9"):
        spacing, shape = (0.9, 0.9, 3.0), (44, 54, 4)
        data, affine = head(shape, spacing), ras_affine(spacing, shape)
    else:
        data, affine = head(), ras_affine()
        if case.startswith("oblique"):
            affine = rotation(15, 0) @ rotation(8, 2) @ affine
        else:
            data, affine = reoriented(data, affine, case)
    source = save(data, affine, tmp_path / "scan.nii.gz", qcode=1, scode=4)
    [output] = translate(exports["identity"], [source], tmp_path / "out")
    assert output.name == "scan_t2w-synthetic.nii.gz"
    assert_same_geometry(output, source)
    sidecar = json.loads(output.with_name("scan_t2w-synthetic.json").read_text())
    assert (sidecar["geometry"]["obliquity_degrees"] > 10) == case.startswith("oblique")
    assert sidecar["geometry"]["input_orientation"] == "".join(nib.aff2axcodes(affine))
    result, expected = nib.load(output).get_fdata(), scaled_input(source)
    inside = data > 0
    if case.startswith("0.9"):  # resampled 0.9 -> 1 -> 0.9 mm in plane: close, not exact
        interior = inside & ~ndimage.binary_dilation(~inside, np.ones((9, 9, 1)))  # no rim
        error = np.abs(result - expected)[interior]
        assert error.mean() < 0.3 and error.max() < 1.0
        assert expected[interior].std() > 10  # the comparison has something to compare
        # The rim is blurred, not moved: the centre of mass of every slice stays in place
        # (within 0.05 voxel; where exactly each pixel is sampled, the test above checks).
        for k in range(shape[2]):
            np.testing.assert_allclose(
                ndimage.center_of_mass(result[..., k]),
                ndimage.center_of_mass(expected[..., k]),
                atol=0.05,
            )
    else:  # 1 mm pixels: the round trip is exact
        np.testing.assert_allclose(result[inside], expected[inside], atol=1e-3)
    far = ~ndimage.binary_dilation(inside, np.ones((5, 5, 1)))
    assert far.sum() > 500 and np.all(result[far] < 1e-3)  # the background stays 0


def test_every_storage_order_gives_the_same_translation(exports, tmp_path: Path) -> None:
    data, affine = head(), ras_affine()
    results = {}
    for codes in ("RAS", "LPS", "LIA"):
        stored, stored_affine = reoriented(data, affine, codes)
        source = save(stored, stored_affine, tmp_path / f"{codes}.nii")
        [output] = translate(exports["unet"], [source], tmp_path / "out")
        image = nib.load(output)
        back, back_affine = reoriented(np.asarray(image.dataobj), image.affine, "RAS")
        np.testing.assert_allclose(back_affine, affine, atol=1e-6)
        results[codes] = back
    assert results["RAS"].std() > 1  # a U-Net, not a constant
    np.testing.assert_allclose(results["LPS"], results["RAS"], atol=1e-3)
    np.testing.assert_allclose(results["LIA"], results["RAS"], atol=1e-3)


def test_a_volume_moved_by_one_voxel_gives_the_moved_translation(exports, tmp_path) -> None:
    # Room around the head: its crop moves with it (a crop at the edge of the field of view
    # could not, and a U-Net's output depends on where the pixel grid falls).
    shape = (64, 72, 5)
    data, affine = head(shape), ras_affine(shape=shape)
    sources = {
        "still": data,
        "right": np.roll(data, 1, axis=0),
        "forward": np.roll(data, 1, axis=1),
        "up": np.roll(data, 1, axis=2),
    }
    outputs = translate(
        exports["unet"],
        [save(v, affine, tmp_path / f"{k}.nii.gz") for k, v in sources.items()],
        tmp_path / "out",
    )
    still, right, forward, up = (np.asarray(nib.load(p).dataobj) for p in outputs)
    np.testing.assert_allclose(right, np.roll(still, 1, axis=0), atol=1e-3)
    np.testing.assert_allclose(forward, np.roll(still, 1, axis=1), atol=1e-3)
    np.testing.assert_allclose(up, np.roll(still, 1, axis=2), atol=1e-3)


def test_the_model_grid_samples_the_right_millimetres() -> None:
    """Ramps of the distance (mm) from the slice's edge, along rows and along columns: each
    model pixel reads the distance of its own centre, whatever the two pixel sizes and the
    crop; back on the input grid the ramps return inside the crop, and 0 outside it."""
    shape = (50, 60)
    for spacing, pixel in (((0.9, 0.7), (1.0, 1.0)), ((3.0, 1.0), (1.0, 2.0))):
        grid = scans.in_plane_grid(shape, spacing, pixel, ((10, 30), (12, 40)), margin_mm=2)
        centres_mm = [(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing, strict=True)]
        inner, outside = [], []
        for axis, mm in enumerate(centres_mm):
            low = grid.start[axis] * pixel[axis]
            high = (grid.start[axis] + grid.size[axis]) * pixel[axis]
            inner.append((mm > low + 5 * pixel[axis]) & (mm < high - 5 * pixel[axis]))
            outside.append((mm < low) | (mm > high))
        inner = np.outer(*inner)
        outside = np.add.outer(*outside) > 0
        assert inner.sum() > 100 and outside.sum() > 100
        for axis in (0, 1):
            ramp = np.meshgrid(*centres_mm, indexing="ij")[axis].astype(np.float32)
            model_mm = [
                (start + np.arange(size) + 0.5) * p
                for start, size, p in zip(grid.start, grid.size, pixel, strict=True)
            ]
            model = grid.to_model(ramp)
            want = np.meshgrid(*model_mm, indexing="ij")[axis]
            np.testing.assert_allclose(model, want, atol=1e-3)
            back = grid.to_input(model)
            np.testing.assert_allclose(back[inner], ramp[inner], atol=1e-3)
            assert np.all(back[outside] == 0)


def test_the_slices_are_translated_in_batches(exports, monkeypatch) -> None:
    generator, config = export.load_generator(exports["unet"])
    shapes = []
    predict = generator.predict_on_batch
    monkeypatch.setattr(
        generator, "predict_on_batch", lambda x: shapes.append(x.shape) or predict(x)
    )
    data = head((40, 48, 11))
    result, spread, record = scans.translate_volume(
        generator, config, data, ras_affine(shape=(40, 48, 11)), batch_size=4,
        mixed_precision="off",
    )  # fmt: skip
    assert shapes == [(4, SIZE, SIZE, 1)] * 3  # 11 slices: 4 + 4 + 3 (padded)
    assert result.shape == data.shape and result.dtype == np.float32 and spread is None
    assert record["geometry"]["slices"] == 11


def test_slices_without_head_leave_no_holes_in_the_batches(tmp_path, monkeypatch) -> None:
    """With a masking export, a slice without head is 0 without a network pass, and the
    batches are filled with the slices that have one."""
    folder = export.export_generator(
        _identity(), tmp_path / "m", "t1-to-t2", SIZE,
        {"cleaning": {"denoise": False, "mask_background": True}}, False,
    )  # fmt: skip
    generator, config = export.load_generator(folder)
    gaps = head((40, 48, 11))
    gaps[..., 1::2] = 0  # slices 0, 2, ..., 10 keep their head: 6 of 11
    shapes = []
    predict = generator.predict_on_batch
    monkeypatch.setattr(
        generator, "predict_on_batch", lambda x: shapes.append(x.shape) or predict(x)
    )
    affine = ras_affine(shape=(40, 48, 11))
    translate_volume = partial(scans.translate_volume, mixed_precision="off")  # patched
    one_by_one, _, _ = translate_volume(generator, config, gaps, affine, batch_size=1)
    assert len(shapes) == 6
    shapes.clear()
    result, _, _ = translate_volume(generator, config, gaps, affine, batch_size=4)
    assert shapes == [(4, SIZE, SIZE, 1)] * 2  # 4 + 2 (padded), not 2 + 2 + 2
    assert np.all(result[..., 1::2] == 0)
    assert result[..., ::2].std() > 1
    np.testing.assert_array_equal(result, one_by_one)


def test_the_network_sees_course_slices_as_the_course_stores_them(monkeypatch) -> None:
    """The phantom's slices, stacked into a volume with their true geometry (rows posterior
    -> anterior, columns left -> right, 1 mm): the network receives each slice exactly as the
    course stores it, padded to its square, only its grey levels rescaled."""
    from mri_helpers.phantom import make_phantom
    from mri_helpers.processing import Geometry, to_original_geometry

    slices = make_phantom(3).t1  # (level, row, column), uint8
    data = slices.transpose(2, 1, 0).astype(np.float32)  # (x: L->R, y: P->A, z: I->S)
    size = 224
    inputs = keras.Input((size, size, 1))
    identity = keras.Model(inputs, keras.layers.Identity()(inputs))
    seen = []
    monkeypatch.setattr(identity, "predict_on_batch", lambda x: seen.append(x) or x)
    config = {"image_size": size, "direction": "t1-to-t2"}
    result, _, record = scans.translate_volume(
        identity, config, data, np.eye(4), mixed_precision="off"
    )
    gain = record["intensity_scaling"]["gain"]
    background = record["intensity_scaling"]["background_value"]
    for given, stored in zip(seen[0], slices, strict=False):  # the batch is padded to 16
        network_input = to_original_geometry(given[..., 0], Geometry(*stored.shape))
        expected = np.clip((stored - background) * gain, 0, 255) / 127.5 - 1
        np.testing.assert_allclose(network_input, expected, atol=1e-5)
    assert result.shape == data.shape


# --- intensities ----------------------------------------------------------------------------
def test_scaling_or_shifting_the_intensities_changes_nothing(exports, tmp_path) -> None:
    data, affine = head(), ras_affine()
    variants = {"plain": data, "times7": data * 7, "plus100": data + 100}
    outputs = translate(
        exports["unet"],
        [save(v, affine, tmp_path / f"{k}.nii.gz") for k, v in variants.items()],
        tmp_path / "out",
    )
    plain, times7, plus100 = (nib.load(p).get_fdata() for p in outputs)
    assert plain.std() > 1
    np.testing.assert_allclose(times7, plain, atol=1e-2)
    np.testing.assert_allclose(plus100, plain, atol=1e-2)
    sidecars = [
        json.loads(p.with_name(p.name.replace(".nii.gz", ".json")).read_text()) for p in outputs
    ]
    scalings = [s["intensity_scaling"] for s in sidecars]
    assert scalings[1]["head_percentile_value"] == pytest.approx(
        7 * scalings[0]["head_percentile_value"], rel=1e-5
    )
    assert scalings[2]["background_value"] == pytest.approx(100, abs=1e-3)


def test_bright_outliers_are_clipped_and_recorded(exports, tmp_path: Path) -> None:
    data = head()
    data[18:22, 20:24, 2] = 50_000  # a hot spot: far above the course scale
    source = save(data, ras_affine(), tmp_path / "hot.nii.gz")
    [output] = translate(exports["identity"], [source], tmp_path / "out")
    sidecar = json.loads((tmp_path / "out" / "hot_t2w-synthetic.json").read_text())
    clipped = sidecar["intensity_scaling"]["clipped"]
    assert clipped["fraction_above_255"] == pytest.approx(16 / data.size)
    assert clipped["fraction_above_255_in_head"] > 0
    assert nib.load(output).get_fdata().max() <= 255.0


# --- DICOM ----------------------------------------------------------------------------------
def write_series(
    folder: Path,
    stored: np.ndarray,
    orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    first_position=(-20.0, -30.0, -10.0),
    pixel_spacing=(0.9, 0.8),
    step=2.5,
    slope=0.5,
    intercept=-100.0,
    description="T1 axial",
    number=3,
    drop=(),
    prefix="slice",
) -> list[Path]:
    """A DICOM MR series (16-bit unsigned, one file per slice) of `stored` (slices, rows,
    columns); files are named in reverse slice order, so the reader has to sort them."""
    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    normal = np.cross(orientation[:3], orientation[3:])
    paths = []
    for k, plane in enumerate(stored):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.SeriesDescription, ds.SeriesNumber = "MR", description, number
        ds.InstanceNumber, ds.PatientName, ds.PatientID = k + 1, "Test^Head", "0"
        ds.ImagePositionPatient = [float(v) for v in np.add(first_position, k * step * normal)]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = [float(v) for v in pixel_spacing]
        ds.SliceThickness = float(step)
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = plane.astype(np.uint16).tobytes()
        for keyword in drop:
            delattr(ds, keyword)
        path = folder / f"{prefix}{len(stored) - k:03d}.dcm"
        try:
            ds.save_as(path, enforce_file_format=True)
        except TypeError:  # pydicom 2 (pyproject allows >= 2.4)
            ds.save_as(path, write_like_original=False)
        paths.append(path)
    return paths


def expected_geometry(stored, orientation, first_position, pixel_spacing, step, slope, intercept):
    """The series as a NIfTI would hold it, worked out by hand from the DICOM standard:
    pixel (row r, column c) of slice k lies at first + c * dc * row_dir + r * dr * col_dir +
    k * step * normal (LPS); NIfTI voxel (c, r, k), RAS."""
    row_dir, col_dir = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    lps = np.eye(4)
    lps[:3, 0] = row_dir * pixel_spacing[1]
    lps[:3, 1] = col_dir * pixel_spacing[0]
    lps[:3, 2] = np.cross(row_dir, col_dir) * step
    lps[:3, 3] = first_position
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    data = stored.transpose(2, 1, 0).astype(np.float32) * slope + intercept
    return data, affine


TILTED = (1.0, 0.0, 0.0, 0.0, np.cos(0.2), -np.sin(0.2))  # axial, tilted 11.5 degrees


def stored_head(shape=(6, 50, 44)) -> np.ndarray:
    """uint16 values of a head (slices, rows, columns): 0.9 x 0.8 mm pixels."""
    volume = head((shape[2], shape[1], shape[0]), (0.8, 0.9, 2.5)).transpose(2, 1, 0)
    return np.round(volume * 2 + 200).astype(np.uint16)  # stored = (value - intercept) / slope


def test_a_dicom_series_reads_like_the_equivalent_nifti(tmp_path: Path) -> None:
    stored = stored_head()
    settings = dict(
        orientation=TILTED, first_position=(-20.0, -30.0, -10.0), pixel_spacing=(0.9, 0.8),
        step=2.5, slope=0.5, intercept=-100.0,
    )  # fmt: skip
    files = write_series(tmp_path / "series", stored, **settings)
    data, affine = expected_geometry(stored, **settings)
    nifti = scans.read_nifti(save(data, affine, tmp_path / "same.nii.gz"))
    for source in (tmp_path / "series", files[::-1]):  # the folder, or its files
        scan = scans.read_dicom_series(source)
        np.testing.assert_allclose(scan.affine, affine, atol=1e-4)
        np.testing.assert_allclose(scan.affine, nifti.affine, atol=1e-4)
        np.testing.assert_array_equal(scan.voxels(), nifti.voxels())
        assert scan.name == "series" and len(scan.files) == len(stored)
    assert scans.is_volume_input(tmp_path / "series") and scans.is_volume_input(files[0])
    # Its files named one by one (as a shell expands series/*.dcm) are one scan.
    [scan] = scans.collect_scans([str(f) for f in files])
    np.testing.assert_array_equal(scan.voxels(), nifti.voxels())


def test_volumes_released_to_save_memory_are_read_again(exports, tmp_path, monkeypatch) -> None:
    write_series(tmp_path / "series", stored_head())
    inputs = [save(head(), ras_affine(), tmp_path / "scan.nii.gz"), tmp_path / "series"]
    kept = translate(exports["unet"], inputs, tmp_path / "kept")
    monkeypatch.setattr(scans.reading, "KEEP_LOADED_BYTES", 0)
    read_again = translate(exports["unet"], inputs, tmp_path / "again")
    for first, second in zip(kept, read_again, strict=True):
        np.testing.assert_array_equal(nib.load(first).get_fdata(), nib.load(second).get_fdata())


def test_a_dicom_series_is_translated_onto_its_own_grid(exports, tmp_path: Path) -> None:
    settings = dict(
        orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0),  # sagittal: slices run left-right
        first_position=(-10.0, -30.0, 40.0), pixel_spacing=(0.9, 0.8), step=2.5,
        slope=0.5, intercept=-100.0,
    )  # fmt: skip
    sagittal = stored_head((18, 40, 50))  # (slices L-R, rows S->I, columns A->P)
    write_series(tmp_path / "sag", sagittal, **settings)
    data, affine = expected_geometry(sagittal, **settings)
    [output] = translate(exports["identity"], [tmp_path / "sag"], tmp_path / "out")
    assert output.name == "sag_t2w-synthetic.nii.gz"
    image = nib.load(output)
    assert image.shape == data.shape
    np.testing.assert_allclose(image.affine, affine, atol=1e-4)
    for form, code in (image.get_qform(coded=True), image.get_sform(coded=True)):
        np.testing.assert_allclose(form, affine, atol=1e-4)
        assert code == 1
    np.testing.assert_allclose(image.header.get_zooms(), (0.8, 0.9, 2.5), atol=1e-6)
    # The identity model brings back the scaled input: the axial cut and return are right.
    nifti = save(data, affine, tmp_path / "sag.nii.gz")
    inside = data > data.min()
    result, expected = image.get_fdata(), scaled_input(nifti)
    interior = inside & ~ndimage.binary_dilation(~inside, np.ones((9, 9, 3)))  # no rim
    error = np.abs(result - expected)[interior]
    assert interior.sum() > 1000 and error.mean() < 1.0 and error.max() < 5.0
    assert (
        "DICOM series"
        in json.loads(output.with_name("sag_t2w-synthetic.json").read_text())["source_description"]
    )


# --- uncertainty ----------------------------------------------------------------------------
def test_the_uncertainty_map_is_the_spread_of_the_copies(exports, tmp_path: Path) -> None:
    source = save(head(), ras_affine(), tmp_path / "scan.nii.gz")
    [plain] = translate(exports["averaged"], [source], tmp_path / "plain")
    [output] = translate(exports["averaged"], [source], tmp_path / "out", uncertainty=True)
    uncertainty = tmp_path / "out" / "scan_t2w-synthetic_uncertainty.nii.gz"
    assert_same_geometry(uncertainty, source)
    # The export's own output, rebuilt from the copies, equals the export run as one model.
    np.testing.assert_allclose(
        nib.load(output).get_fdata(), nib.load(plain).get_fdata(), atol=1e-3
    )
    spread = nib.load(uncertainty).get_fdata()
    assert spread.min() >= 0 and spread[head() > 0].mean() > 0.01  # a U-Net's copies differ
    sidecar = json.loads((tmp_path / "out" / "scan_t2w-synthetic.json").read_text())
    assert sidecar["uncertainty"]["file"] == uncertainty.name
    assert "not a calibrated error bar" in sidecar["uncertainty"]["is_not"]
    assert len(sidecar["uncertainty"]["copies"]) == len(test_time.COPIES)
    # Copies of a pixel-wise network agree exactly: each copy's move is undone correctly.
    translate(exports["identity_averaged"], [source], tmp_path / "id", uncertainty=True)
    agreed = nib.load(tmp_path / "id" / "scan_t2w-synthetic_uncertainty.nii.gz").get_fdata()
    assert agreed.max() < 1e-3
    # Translated again without it, over the old outputs: the stale map goes with them.
    with pytest.raises(DataError, match="exist already"):
        translate(exports["averaged"], [source], tmp_path / "out")
    assert uncertainty.exists()
    translate(exports["averaged"], [source], tmp_path / "out", overwrite=True)
    assert not uncertainty.exists() and output.exists()


def test_the_network_precision_is_chosen_and_recorded(exports, tmp_path: Path) -> None:
    """`mixed_precision`: "off" computes in float32 exactly as the export does; "on" in
    bfloat16 (on a CPU), within bfloat16's rounding of it; the sidecar says which."""
    source = save(head(), ras_affine(), tmp_path / "scan.nii.gz")
    results = {}
    for setting in ("off", "on"):
        [output] = translate(
            exports["averaged"], [source], tmp_path / setting, mixed_precision=setting,
            uncertainty=True,
        )  # fmt: skip
        sidecar = json.loads(output.with_name("scan_t2w-synthetic.json").read_text())
        results[setting] = (sidecar["computed_in"], nib.load(output).get_fdata())
    assert results["off"][0] == "float32" and results["on"][0] == "mixed_bfloat16"
    generator, config = export.load_generator(exports["averaged"])
    exact, _, record = scans.translate_volume(
        generator, config, head(), ras_affine(), mixed_precision="off"
    )
    assert record["computed_in"] == "float32"
    np.testing.assert_allclose(results["off"][1], exact, atol=1e-3)
    network = scans.translation._Network(
        generator, 4, False, "mixed_bfloat16"
    )  # built once per export
    assert scans.translation._Network(generator, 4, False, "mixed_bfloat16").model is network.model
    difference = np.abs(results["on"][1] - results["off"][1])
    assert 0 < difference.max() < 8 and difference.mean() < 0.5  # grey levels of 0..255
    with pytest.raises(ValueError, match="mixed precision 'half'"):
        translate(exports["averaged"], [source], tmp_path / "half", mixed_precision="half")
    assert not (tmp_path / "half").exists()


def test_uncertainty_needs_an_export_with_copies(exports, tmp_path: Path) -> None:
    source = save(head(), ras_affine(), tmp_path / "scan.nii.gz")
    with pytest.raises(ModelFileError, match="no test-time copies"):
        translate(exports["unet"], [source], tmp_path / "out", uncertainty=True)
    assert not (tmp_path / "out").exists()


# --- outputs --------------------------------------------------------------------------------
def test_the_output_says_it_is_synthetic(exports, tmp_path: Path) -> None:
    source = save(head(), ras_affine(), tmp_path / "sub-01_T1w.nii.gz")
    [output] = translate(exports["unet"], [source], tmp_path / "out")
    image = nib.load(output)
    assert b"synthetic T2w" in image.header["descrip"].tobytes()
    assert b"epoch 7" in image.header["descrip"].tobytes()
    sidecar = json.loads((tmp_path / "out" / "sub-01_T1w_t2w-synthetic.json").read_text())
    assert sidecar["synthetic"] is True and sidecar["model"]["epoch"] == 7
    assert sidecar["model"]["direction"] == "t1-to-t2"
    assert sidecar["model"]["path"] == str(exports["unet"].resolve())
    assert sidecar["intensity_scaling"]["maps_to"] == scans.COURSE_HEAD_LEVELS["t1"]
    assert sidecar["geometry"]["model_pixel_mm"] == [1.0, 1.0]
    assert sidecar["uncertainty"] is None
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "sub-01_T1w_t2w-synthetic.json",
        "sub-01_T1w_t2w-synthetic.nii.gz",
    ]  # no temporary files left


def test_a_scaled_int16_nifti_keeps_its_header_geometry(exports, tmp_path: Path) -> None:
    data, affine = head(), rotation(15, 1) @ ras_affine()
    image = nib.Nifti1Image(np.round(data).astype(np.int16), affine)
    image.header.set_slope_inter(2.0, 10.0)
    image.set_qform(affine @ np.diag([1, 1, 1, 1.0]), code=2)
    image.set_sform(affine, code=3)
    image.header.set_xyzt_units("mm", "sec")
    source = tmp_path / "scaled.nii"
    nib.save(image, source)
    [output] = translate(exports["identity"], [source], tmp_path / "out")
    assert_same_geometry(output, source)
    assert nib.load(output).header.get_xyzt_units() == ("mm", "sec")
    result = nib.load(output).get_fdata()
    np.testing.assert_allclose(result[data > 0], scaled_input(source)[data > 0], atol=1e-3)


def test_cleaning_from_model_json_is_applied(tmp_path: Path) -> None:
    """An export trained on cleaned slices gets cleaned slices, and its output is 0 outside
    the head (as `export.translate` does for PNG slices)."""
    folder = export.export_generator(
        _identity(), tmp_path / "m", "t1-to-t2", SIZE,
        {"cleaning": {"denoise": True, "mask_background": True}}, False,
    )  # fmt: skip
    data = head()
    rng = np.random.default_rng(0)
    edges = ndimage.gaussian_filter(data, (1, 1, 0))  # partial volume, as in real scans
    noisy = np.hypot(edges + rng.normal(0, 15, data.shape), rng.normal(0, 15, data.shape))
    source = save(noisy.astype(np.float32), ras_affine(), tmp_path / "noisy.nii.gz")
    [output] = translate(folder, [source], tmp_path / "out")
    result = nib.load(output).get_fdata()
    outside = ~ndimage.binary_dilation(data > 0, np.ones((3, 3, 1)))
    assert np.all(result[outside] == 0)  # the Rayleigh noise of the air is gone
    # Slice by slice (the head's crop is the whole slice here), exactly what the course's
    # cleaning makes of the scaled slice: cleaned, then 0 outside its head mask.
    scaled = scaled_input(source)
    for k in range(SHAPE[2]):
        plane = scaled[..., k].T  # rows posterior -> anterior, columns left -> right
        cleaned = processing.clean_slice(plane, processing.Cleaning())
        expected = np.where(processing.head_mask(plane), cleaned, 0)
        np.testing.assert_allclose(result[..., k].T, expected, atol=1e-3)


def test_nifti2_and_single_slice_files_keep_their_kind_and_shape(exports, tmp_path) -> None:
    data, affine = head(), ras_affine()
    two = nib.Nifti2Image(data, affine)
    two.set_sform(affine, code=1)
    nib.save(two, tmp_path / "two.nii")
    one = nib.Nifti1Image(data[..., 2], affine)
    one.set_qform(affine, code=1)
    nib.save(one, tmp_path / "one.nii.gz")
    outputs = translate(
        exports["identity"], [tmp_path / "two.nii", tmp_path / "one.nii.gz"], tmp_path / "out"
    )
    assert isinstance(nib.load(outputs[0]), nib.Nifti2Image)
    assert_same_geometry(outputs[0], tmp_path / "two.nii")
    assert_same_geometry(outputs[1], tmp_path / "one.nii.gz")
    assert nib.load(outputs[1]).shape == SHAPE[:2]


def test_model_json_geometry_keys_are_read_and_checked(exports, tmp_path: Path) -> None:
    assert scans.model_geometry({}) == ((1.0, 1.0), "AR")
    assert scans.model_geometry({"pixel_spacing_mm": [0.5, 2], "slice_orientation": "rp"}) == (
        (0.5, 2.0),
        "RP",
    )
    for bad in ({"pixel_spacing_mm": 0}, {"pixel_spacing_mm": "1"}, {"slice_orientation": "AP"}):
        with pytest.raises(ModelFileError, match="model.json"):
            scans.model_geometry(bad)
    # A model of 2 mm pixels: each slice is halved for the network and brought back.
    folder = export.export_generator(
        _identity(), tmp_path / "m", "t1-to-t2", SIZE, {"pixel_spacing_mm": 2.0}, False
    )
    shape = (72, 80, 5)
    data = head(shape)
    source = save(data, ras_affine(shape=shape), tmp_path / "scan.nii.gz")
    [output] = translate(folder, [source], tmp_path / "out")
    assert_same_geometry(output, source)
    sidecar = json.loads((tmp_path / "out" / "scan_t2w-synthetic.json").read_text())
    assert sidecar["geometry"]["model_pixel_mm"] == [2.0, 2.0]
    assert sidecar["model"]["slice_geometry_from"] == "model.json"
    # The head (34 x 28 mm) with 10 mm on each side, in 2 mm pixels, rows first:
    assert sidecar["geometry"]["crop_on_model_grid"]["size"] == [28, 24]
    result, expected = nib.load(output).get_fdata(), scaled_input(source)
    inside = data > 0
    interior = inside & ~ndimage.binary_dilation(~inside, np.ones((9, 9, 1)))
    error = np.abs(result - expected)[interior]
    assert error.mean() < 1.5 and error.max() < 4.0  # half the detail, in the same place


# --- bad inputs -----------------------------------------------------------------------------
def refused(exports, inputs, out: Path, match: str, **options) -> DataError:
    with pytest.raises(DataError, match=match) as caught:
        translate(exports["identity"], inputs, out, **options)
    assert not out.exists() or not any(out.iterdir())  # nothing written
    return caught.value


def test_a_4d_file_is_refused_unless_a_volume_is_picked(exports, tmp_path: Path) -> None:
    data = np.stack([head(), head(scale=3.0) + 5, head()[::-1]], axis=-1)
    source = save(data, ras_affine(), tmp_path / "bold.nii.gz")
    error = refused(exports, [source], tmp_path / "out", "4-D")
    assert "bold.nii.gz" in str(error) and "--volume" in str(error)
    refused(exports, [source], tmp_path / "out", "has 3 volumes", volume=3)
    [output] = translate(exports["identity"], [source], tmp_path / "out", volume=2)
    assert nib.load(output).shape == SHAPE
    alone = save(head()[::-1], ras_affine(), tmp_path / "third.nii.gz")
    [expected] = translate(exports["identity"], [alone], tmp_path / "alone")
    np.testing.assert_allclose(nib.load(output).get_fdata(), nib.load(expected).get_fdata())


def test_damaged_and_wrong_files_are_refused_by_name(exports, tmp_path: Path) -> None:
    good = save(head(), ras_affine(), tmp_path / "good.nii.gz")
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    text = tmp_path / "notes.nii"
    text.write_text("this is not an image\n" * 50)
    gz_text = tmp_path / "notes.nii.gz"
    gz_text.write_bytes(gzip.compress(b"plain text, gzipped\n" * 50))
    out = tmp_path / "out"
    for bad in (truncated, text, gz_text):
        error = refused(exports, [good, bad], out, bad.name)
        assert "good" not in str(error)  # the good input is fine, and was not written either
    error = refused(exports, [good, truncated, text], out, "2 problem")
    assert "truncated.nii.gz" in str(error) and "notes.nii" in str(error)
    refused(exports, [tmp_path / "missing.nii.gz"], out, "does not exist")
    no_codes = nib.Nifti1Image(head(), ras_affine())
    no_codes.set_qform(None, code=0)
    no_codes.set_sform(None, code=0)
    nib.save(no_codes, tmp_path / "nowhere.nii")
    refused(exports, [tmp_path / "nowhere.nii"], out, "neither a qform nor an sform")


def test_bad_voxels_are_refused_and_counted(exports, tmp_path: Path) -> None:
    out = tmp_path / "out"
    zero = save(np.zeros(SHAPE, np.float32), ras_affine(), tmp_path / "zero.nii.gz")
    refused(exports, [zero], out, r"zero.nii.gz: every voxel is 0")
    data = head()
    data[0, 0, 0], data[1, 2, 3], data[5, 5, 1] = np.nan, np.inf, -np.inf
    broken = save(data, ras_affine(), tmp_path / "nan.nii.gz")
    refused(exports, [broken], out, r"nan.nii.gz: 3 of its 9600 voxels are NaN or infinite")
    huge = save(head(), ras_affine((100.0, 100.0, 1.0)), tmp_path / "huge.nii.gz")
    refused(exports, [huge], out, r"huge.nii.gz: its axial slices span 4800 x 4000 mm")
    thin = save(head((40, 3, 48)), ras_affine(shape=(40, 3, 48)), tmp_path / "thin.nii.gz")
    refused(exports, [thin], out, r"thin.nii.gz: its axial slices span only")


def test_dicom_problems_are_refused_clearly(exports, tmp_path: Path) -> None:
    out = tmp_path / "out"
    two = tmp_path / "two"
    write_series(two, stored_head(), description="T1 axial", number=3, prefix="a")
    write_series(two, stored_head(), description="T1 repeat", number=4, prefix="b")
    found = scans.dicom_series_in(two)
    error = refused(exports, [two], out, "holds 2 DICOM series")
    for series in found:
        assert series.uid in str(error) and series.description in str(error)
    assert "--series" in str(error)
    refused(exports, [two], out, "is none of", series="99")
    [output] = translate(exports["identity"], [two], out, series=found[1].uid)
    assert output.name == f"two_series-{found[1].number}_t2w-synthetic.nii.gz"

    no_pixels = tmp_path / "no_pixels"
    write_series(no_pixels, stored_head(), drop=("PixelData",))
    refused(exports, [no_pixels], tmp_path / "o2", "no pixel data")
    no_orientation = tmp_path / "no_orientation"
    write_series(no_orientation, stored_head(), drop=("ImageOrientationPatient",))
    refused(
        exports, [no_orientation], tmp_path / "o3", r"lacks ImageOrientationPatient \(0020,0037\)"
    )
    gap = tmp_path / "gap"
    write_series(gap, stored_head((7, 50, 44)))
    (gap / "slice004.dcm").unlink()  # a missing slice
    refused(exports, [gap], tmp_path / "o4", "do not lie on one regular grid")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(exports, [empty], tmp_path / "o5", "holds no DICOM files")


def test_outputs_are_refused_before_anything_is_written(exports, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = save(head(), ras_affine(), tmp_path / "a" / "scan.nii.gz")
    second = save(head(), ras_affine(), tmp_path / "b" / "scan.nii")
    out = tmp_path / "out"
    refused(exports, [first, second], out, "would both be translated to scan_t2w-synthetic")
    # An input that is the output of another input in the same folder.
    clash = save(head(), ras_affine(), tmp_path / "a" / "scan_t2w-synthetic.nii.gz")
    before = clash.read_bytes()
    with pytest.raises(DataError, match="would replace the input"):
        translate(exports["identity"], [first, clash], tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "scan.nii.gz",
        "scan_t2w-synthetic.nii.gz",
    ]
    assert clash.read_bytes() == before
    # Existing outputs: refused, then replaced with overwrite.
    [output] = translate(exports["identity"], [first], out)
    written = output.stat()
    with pytest.raises(DataError, match="exist already"):
        translate(exports["identity"], [first], out)
    assert output.stat() == written
    translate(exports["identity"], [first], out, overwrite=True)
    assert output.stat().st_ino != written.st_ino  # a new file, renamed into place
    file_as_out = tmp_path / "file"
    file_as_out.write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        translate(exports["identity"], [first], file_as_out / "sub")


def test_volume_inputs_are_told_apart_from_png_inputs(tmp_path: Path) -> None:
    (tmp_path / "pngs").mkdir()
    (tmp_path / "pngs" / "a.png").write_bytes(b"\x89PNG")
    assert not scans.is_volume_input(tmp_path / "pngs")
    assert scans.is_volume_input(tmp_path / "x.nii.gz") and scans.is_volume_input("y.NII")
    assert not scans.is_volume_input(tmp_path / "pngs" / "a.png")


def test_the_translate_command_takes_volumes(exports, tmp_path: Path, capsys) -> None:
    """`mri-course translate scan.nii.gz --out DIR` writes the synthetic volume and its map;
    PNG slices and volumes in one call, or volume options for slices, are refused."""
    from conftest import gray_slice, png_bytes
    from mri_course.cli import main as cli_main

    scan = save(head(), ras_affine(), tmp_path / "scan.nii.gz")
    out = tmp_path / "out"
    args = ["translate", "--model", str(exports["identity_averaged"]), "--direction", "t1-to-t2"]
    assert cli_main([*args, str(scan), "--out", str(out), "--uncertainty"]) == 0
    assert "translated 1 volume(s)" in capsys.readouterr().out
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "scan_t2w-synthetic.json",
        "scan_t2w-synthetic.nii.gz",
        "scan_t2w-synthetic_uncertainty.nii.gz",
    ]
    assert_same_geometry(out / "scan_t2w-synthetic.nii.gz", scan)
    png = tmp_path / "slice.png"
    png.write_bytes(png_bytes(gray_slice()))
    assert cli_main([*args, str(scan), str(png), "--out", str(tmp_path / "o2")]) == 2
    assert "either PNG slices or volumes" in capsys.readouterr().err
    assert cli_main([*args, str(png), "--out", str(tmp_path / "o3"), "--volume", "0"]) == 2
    assert "apply to volumes only" in capsys.readouterr().err
    assert cli_main([*args, str(png), "--out", str(tmp_path / "o4"), "--mixed-precision", "on"])
    assert "--mixed-precision applies to volumes" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("o2", "o3", "o4"))


def phantom_volumes(tmp_path: Path, levels: int = 6) -> tuple[Path, Path]:
    """The phantom's observed T1 and clean T2 slices stacked into RAS volumes at 1 mm (the
    slices hold posterior at the top and the left on the left, as the course stores them)."""
    from mri_helpers.phantom import make_phantom

    slices = make_phantom(levels)
    volume = lambda stack: np.ascontiguousarray(np.transpose(stack, (2, 1, 0)))  # noqa: E731
    affine = np.eye(4)
    t1 = save(volume(slices.t1).astype(np.float32), affine, tmp_path / "t1.nii.gz")
    t2 = save(volume(slices.t2_clean).astype(np.float32), affine, tmp_path / "t2.nii.gz")
    return t1, t2


def test_a_volume_is_scored_against_its_paired_truth(tmp_path: Path, capsys) -> None:
    """`mri-course evaluate --scan T1 --truth T2`: a negating 'model' is the inversion baseline
    by another name, so both score alike; the brain is scored apart from the head."""
    from mri_course.cli import main as cli_main

    models_dir = negation_export(tmp_path)
    scan, truth = phantom_volumes(tmp_path)
    out = tmp_path / "volume.json"
    args = ["evaluate", "--model", str(models_dir), "--json", str(out)]
    way = ["--direction", "t1-to-t2"]
    assert cli_main([*args, "--scan", str(scan), "--truth", str(truth), *way]) == 0
    assert "whole volume (6 axial slices with head)" in capsys.readouterr().out
    result = json.loads(out.read_text())
    model, inversion = result["volume"]["model"], result["volume"]["inversion"]
    assert abs(model["mae_head"] - inversion["mae_head"]) < 1.5
    assert abs(model["ssim_head"] - inversion["ssim_head"]) < 0.05
    for row in result["volume"].values():
        assert -1 <= row["ssim_brain"] <= 1 and row["ssim_brain"] != row["ssim_head"]
    assert set(result["volume"]) == {"model", "inversion", "quantile"}
    moved = save(nib.load(truth).get_fdata(dtype=np.float32), np.diag([1.0, 1.0, 2.0, 1.0]),
                 tmp_path / "other_grid.nii.gz")  # fmt: skip
    assert cli_main([*args, "--scan", str(scan), "--truth", str(moved), *way]) == 2
    assert "does not lie on the voxel grid" in capsys.readouterr().err
    assert cli_main([*args, "--scan", str(scan), *way]) == 2
    assert "all three" in capsys.readouterr().err


def test_a_volume_is_scored_at_chosen_levels_and_outside_them(tmp_path: Path) -> None:
    """`levels_mm` scores the axial slices at those scanner heights apart from the others;
    the heights come from the affine (here the volume starts 10 mm up, at 1 mm a slice)."""
    from mri_course.evaluate import evaluate_volume

    models_dir = negation_export(tmp_path)
    raised = np.eye(4)
    raised[2, 3] = 10.0
    scan, truth = (
        save(nib.load(p).get_fdata(dtype=np.float32), raised, tmp_path / f"raised_{p.name}")
        for p in phantom_volumes(tmp_path)
    )
    whole = evaluate_volume(models_dir, "t1-to-t2", scan, truth)
    split = evaluate_volume(models_dir, "t1-to-t2", scan, truth, levels_mm=(13, 11))
    assert "levels" not in whole and split["volume"] == whole["volume"]
    levels = split["levels"]
    assert levels["range_mm"] == [11.0, 13.0]
    assert (levels["inside"]["axial_slices"], levels["outside"]["axial_slices"]) == (3, 3)
    inside, outside = levels["inside"]["model"]["mae_head"], levels["outside"]["model"]["mae_head"]
    assert inside != outside and min(inside, outside) < whole["volume"]["model"]["mae_head"]
    assert "levels 11 to 13 mm (3 axial slices" in split["summary"][1]
    with pytest.raises(DataError, match="between 40 and 50 mm .* span 10 to 15 mm"):
        evaluate_volume(models_dir, "t1-to-t2", scan, truth, levels_mm=(40, 50))


def test_the_course_head_levels_are_those_of_the_course_slices(course_zip: Path) -> None:
    levels = scans.head_levels([*mh_load(course_zip).t1, *mh_load(course_zip).t2])
    assert levels == pytest.approx(scans.COURSE_HEAD_LEVELS, abs=0.5)


def mh_load(path: Path):
    from mri_helpers.data import load_dataset

    return load_dataset(path)


def test_a_volume_is_scaled_to_the_head_levels_its_model_recorded(exports, tmp_path) -> None:
    """A model trained on brighter slices (the phantom's T1 sits at 215, the course's at 160)
    records its levels in model.json; a scan is scaled onto those, not onto the course's."""
    model = tmp_path / "model"
    shutil.copytree(exports["unet"], model)
    config_path = model / "model.json"  # an export folder of one direction
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "head_levels": {"t1": 215.0, "t2": 201.0}}))
    source = save(head(), ras_affine(), tmp_path / "scan.nii.gz")
    translate(model, [source], tmp_path / "out")
    sidecar = json.loads((tmp_path / "out" / "scan_t2w-synthetic.json").read_text())
    assert sidecar["intensity_scaling"]["maps_to"] == 215.0
    brighter = scaled_input(source, {**config, "head_levels": {"t1": 215.0, "t2": 201.0}})
    np.testing.assert_allclose(
        brighter, np.clip(scaled_input(source) * 215 / 160, 0, 255), atol=1e-3
    )
    config_path.write_text(json.dumps({**config, "head_levels": {"t1": 0.0, "t2": 201.0}}))
    with pytest.raises(ModelFileError, match="head_levels .* is not a grey level from 1 to 255"):
        translate(model, [source], tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


@pytest.mark.slow  # long: not in `make check`
def test_the_phantom_head_through_a_model_keeps_the_mni152_geometry(tmp_path: Path) -> None:
    """The phantom's T1 volume (MNI152 grid, code 4) through an export at the course's 224 px
    lies on the same grid, each synthetic voxel where its input voxel was."""
    from nilearn.datasets import load_mni152_brain_mask

    from mri_helpers.phantom import make_phantom_volumes

    models_dir = negation_export(tmp_path)
    files = make_phantom_volumes().write(tmp_path / "phantom")
    [output] = scans.translate_volume_files(models_dir, "t1-to-t2", [files["t1"]], tmp_path)
    assert_same_geometry(output, files["t1"])
    synthetic = nib.load(output)
    np.testing.assert_array_equal(synthetic.affine, load_mni152_brain_mask(resolution=1).affine)
    assert synthetic.get_qform(coded=True)[1] == synthetic.get_sform(coded=True)[1] == 4
    # The negation's output is the scaled input turned upside down, voxel for voxel (1 mm, so
    # no resampling): a flipped or shifted grid would break the match.
    head = nib.load(files["head_mask"]).get_fdata() > 0
    scaled = scaled_input(files["t1"], {"image_size": 224, "direction": "t1-to-t2"})
    np.testing.assert_allclose(synthetic.get_fdata()[head], 255 - scaled[head], atol=0.5)


def test_the_crop_margin_shrinks_so_a_head_that_fits_the_network_is_never_resized() -> None:
    box = ((13, 219), (13, 183))  # a 207 x 171 mm head on a 233 x 197 grid at 1 mm
    wide = scans.in_plane_grid((233, 197), (1.0, 1.0), (1.0, 1.0), box)
    assert wide.size == (227, 191)  # 10 mm on each side: more than a 224 px network
    fitted = scans.in_plane_grid((233, 197), (1.0, 1.0), (1.0, 1.0), box, max_pixels=224)
    assert fitted.size[0] <= 224 and fitted.size[1] == 191  # only the long side gives way
    for axis in range(2):  # the head stays whole, centred in what is left
        assert fitted.start[axis] <= box[axis][0]
        assert fitted.start[axis] + fitted.size[axis] > box[axis][1]
    tight = scans.in_plane_grid((233, 197), (1.0, 1.0), (1.0, 1.0), box, max_pixels=160)
    assert tight.size == (207, 171)  # larger than the network: the head alone, resized later


def test_evaluate_levels_option_is_checked_and_reaches_the_report(tmp_path: Path, capsys) -> None:
    from mri_course.cli import main as cli_main

    models_dir = negation_export(tmp_path)
    scan, truth = phantom_volumes(tmp_path)
    out = tmp_path / "volume.json"
    args = ["evaluate", "--model", str(models_dir), "--json", str(out)]
    volume = ["--scan", str(scan), "--truth", str(truth), "--direction", "t1-to-t2"]
    assert cli_main([*args, *volume, "--levels", "1,3"]) == 0
    assert "levels 1 to 3 mm (3 axial slices" in capsys.readouterr().out
    assert json.loads(out.read_text())["levels"]["range_mm"] == [1.0, 3.0]
    for bad in ("1", "a,b", "1,nan"):
        with pytest.raises(SystemExit):
            cli_main([*args, *volume, "--levels", bad])
        assert "--levels" in capsys.readouterr().err
    assert cli_main([*args, "--data", "phantom", "--levels", "0,50"]) == 2
    assert "--levels and --mixed-precision score a volume" in capsys.readouterr().err


def negation_export(tmp_path: Path) -> Path:
    """A t1-to-t2 export at the course's 224 px that turns its input upside down."""
    inputs = keras.Input((224, 224, 1), name="image")
    negation = keras.Model(inputs, keras.layers.Rescaling(-1.0)(inputs))
    models_dir = tmp_path / "models"
    export.export_generator(negation, models_dir, "t1-to-t2", 224, saved_model=False)
    return models_dir


# --- nothing invented where the scan holds no tissue ----------------------------------------
def rician(magnitude: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """`magnitude` as a scanner measures it: Rician noise of `sigma` everywhere, also in air."""
    rng = np.random.default_rng(seed)
    real = magnitude + rng.normal(0, sigma, magnitude.shape)
    return np.hypot(real, rng.normal(0, sigma, magnitude.shape)).astype(np.float32)


@pytest.mark.parametrize("model", ["unet", "averaged", "masking"])
def test_slices_of_background_noise_come_back_as_background(model, exports, tmp_path) -> None:
    """A head with 6 slices of scanner noise alone below it and 8 above (as whole-head scans
    hold): those slices, and the air around the head, are 0 in the synthetic volume whatever
    the export, while the head itself is translated."""
    if model == "masking":
        folder = export.export_generator(
            _unet(), tmp_path / "m", "t1-to-t2", SIZE,
            {"cleaning": {"denoise": True, "mask_background": True}}, False,
        )  # fmt: skip
    else:
        folder = exports[model]
    shape = (40, 48, 6 + 5 + 8)
    tissue = np.zeros(shape, np.float32)
    tissue[..., 6:11] = head()
    scan = rician(tissue, sigma=20.0)  # tissue 500-900: an SNR of about 30
    source = save(scan, ras_affine(shape=shape), tmp_path / "noisy_head.nii.gz")
    [output] = translate(folder, [source], tmp_path / "out")
    result = nib.load(output).get_fdata()
    assert np.all(result[..., :6] == 0) and np.all(result[..., 11:] == 0), (
        f"signal invented in slices of noise alone: mean {result[..., :6].mean():.2f} below, "
        f"{result[..., 11:].mean():.2f} above"
    )
    far = ~ndimage.binary_dilation(tissue > 0, np.ones((11, 11, 1)))
    assert np.all(result[far] == 0), f"{np.count_nonzero(result[far])} voxels in the air"
    in_head = result[tissue > 0]
    assert np.count_nonzero(in_head) > 0.95 * in_head.size  # the head itself is translated


def test_a_png_of_noise_alone_translates_to_background(exports, tmp_path) -> None:
    """PNG slices: a slice of noise alone is all 0, a head on a noisy background is 0 far from
    the head, for an export that masks and one that does not."""
    from PIL import Image

    inputs = tmp_path / "in"
    inputs.mkdir()
    air = rician(np.zeros((SIZE, SIZE)), sigma=8.0, seed=1)
    Image.fromarray(np.clip(air, 0, 255).astype(np.uint8)).save(inputs / "noise.png")
    plane = np.zeros((SIZE, SIZE), np.float32)
    plane[8:56, 12:52] = head()[..., 2].T / 4.0
    noisy_head = rician(plane, sigma=8.0, seed=2)
    Image.fromarray(np.clip(noisy_head, 0, 255).astype(np.uint8)).save(inputs / "head.png")
    masking = export.export_generator(
        _identity(), tmp_path / "m", "t1-to-t2", SIZE,
        {"cleaning": {"denoise": False, "mask_background": True}}, False,
    )  # fmt: skip
    far = ~ndimage.binary_dilation(plane > 0, np.ones((11, 11)))
    for folder in (exports["identity"], masking):
        out = tmp_path / f"out-{folder.parent.name}"
        png_slices.translate_files(folder, "t1-to-t2", [inputs], out)
        noise_out = np.asarray(Image.open(out / "noise.png"))
        head_out = np.asarray(Image.open(out / "head.png"))
        assert not noise_out.any(), f"{folder}: {np.count_nonzero(noise_out)} pixels invented"
        assert not head_out[far].any() and head_out[plane > 0].std() > 1
