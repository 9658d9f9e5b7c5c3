"""Translating whole scans: NIfTI volumes and DICOM series, back onto their own voxel grid.

No lesson teaches this; `mri-course translate` uses it for `.nii`/`.nii.gz` files and DICOM
series. The networks translate 2-D axial slices as the course stores them, so every scan
goes the same way there and back:

1. read: NIfTI with nibabel, DICOM series with SimpleITK (GDCM sorts the slices), its
   geometry as a NIfTI affine (voxel index -> millimetres, RAS+);
2. reorient: the voxel axes are permuted and flipped to the closest canonical orientation
   (`nibabel.orientations`), slices along the axis nearest superior-inferior, rows and
   columns as the model's slices run (`model_geometry`), so a sagittal scan is cut axially;
3. scale: one linear map per volume, background -> 0 and a percentile inside the head -> its
   value in the model's training slices (`IntensityScaling`), so scanner units do not matter;
4. resample each slice linearly to the model's pixel size (1 mm), cropped around the head,
   pad it to the network's square (`processing.to_model_geometry`), translate in batches,
   and undo every step in reverse: the output has exactly the input's shape and affine.

Oblique scans are cut along the voxel axes closest to axial; the obliquity (recorded in the
sidecar) is not resampled away, so nothing is interpolated across slices. Thick slices are
translated one by one as they are. Slices go through the network `BATCH_SIZE` at a time,
so TensorFlow never holds more than a batch; a progress bar counts them. The network computes
at the course's MIXED_PRECISION ("auto": bfloat16 on a CPU that computes it natively), while
a thread per processor prepares the next batch (`run_plan`).

Each output comes with a JSON sidecar: that it is synthetic, the model, how the intensities
were scaled (and what fraction had to be clipped), the resampling and, if asked for, what the
uncertainty map (the spread of the export's test-time copies) is and is not. Every input and
output is checked before anything is written (`translate_volume_files`).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import (
    aff2axcodes,
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)
from scipy import ndimage
from skimage.filters import threshold_otsu
from tqdm.auto import tqdm

from mri_course.precision import precision_policy
from mri_helpers import __version__, fileio, test_time
from mri_helpers._tf import keras
from mri_helpers.calibration import calibrated, calibration_of, without_calibration
from mri_helpers.errors import DataError, DataProblems, ModelFileError
from mri_helpers.export import (
    DIRECTIONS,
    check_outputs,
    cleaning_of,
    computing_in,
    load_generator,
    output_region,
)
from mri_helpers.processing import (
    Geometry,
    clean_slice,
    head_mask,
    to_model_geometry,
    to_original_geometry,
)

NIFTI_SUFFIXES = (".nii.gz", ".nii")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
# The course slices' geometry (phantom.py): axial, 1 mm pixels, rows running posterior ->
# anterior (the back of the head at the top) and columns running from the patient's left to
# the patient's right (the left on the image's left). Written as the direction each index
# grows towards, in nibabel's axis codes: rows "A", columns "R". model.json may say otherwise
# with `slice_orientation` and `pixel_spacing_mm`.
COURSE_SLICE_ORIENTATION = "AR"
COURSE_PIXEL_SPACING_MM = 1.0
# Intensity reference: the 95th percentile inside the head of the slices a model was trained
# on (`head_levels`), which the course records in model.json as `head_levels`; exports
# without it get the course slices' (head_mask over all 43 T1 and 46 T2 PNGs), 160 in T1 and
# 233 in T2; their background is 0. The 95th, not the 99th, as the course T2 saturates near
# 251 and a few bright vessels or fat move the 99th of a volume.
HEAD_PERCENTILE = 95.0
COURSE_HEAD_LEVELS = {"t1": 160.0, "t2": 233.0}
OUTPUT_SUFFIXES = {"t1-to-t2": "t2w-synthetic", "t2-to-t1": "t1w-synthetic"}
BATCH_SIZE = 16  # axial slices per network call (times the export's copies inside it)
MAX_IN_PLANE = 1024  # model pixels a side of the whole field of view: 1 m at 1 mm pixels
MIN_IN_PLANE = 32  # model pixels a side: data.MIN_SIDE, less is no axial view of a head
CROP_MARGIN_MM = 10.0  # kept around the head when cropping each slice for the network
MASK_VOXELS = 16_000_000  # volumes above this are subsampled to find the head
KEEP_LOADED_BYTES = 2**30  # volumes read while checking stay in memory up to this much
# The largest volume read, decided from its header before reading (fileio.MEMORY_BOUND_BYTES):
# 2**26 voxels (a whole head at 0.25 mm, 512 x 512 x 256) and 256 MiB of stored voxel data.
MAX_VOLUME_VOXELS = 2**26
MAX_VOLUME_BYTES = 2**28


# --- reading --------------------------------------------------------------------------------
@dataclass
class Scan:
    """One volume to translate: where it came from, its geometry and (once loaded) voxels."""

    name: str  # stem of the output names
    source: Path  # the file or folder named by the user
    files: tuple[Path, ...]  # every file read, which no output may replace
    affine: np.ndarray  # voxel index (i, j, k) -> RAS+ millimetres
    shape: tuple[int, int, int]
    header: nib.Nifti1Header | None  # a NIfTI input's header; None for DICOM
    description: str  # what was read, for the sidecar
    load: Callable[[], np.ndarray] = field(repr=False)  # reads the voxels (float32)
    data: np.ndarray | None = field(default=None, repr=False)

    def voxels(self) -> np.ndarray:
        """The float32 voxels (X, Y, Z), read again if they were released."""
        if self.data is None:
            self.data = self.load()
        return self.data


def _brief(error: BaseException, limit: int = 200) -> str:
    """The first line of an error's message, at most `limit` characters."""
    text = str(error).strip().split("\n")[0] or type(error).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


def _checked(path: Path, reader: Callable[[], np.ndarray], what: str) -> Callable[[], np.ndarray]:
    """`reader` with any failure to read turned into a DataError naming `path`."""

    def read() -> np.ndarray:
        try:
            return reader()
        except DataError:
            raise
        except MemoryError:
            raise DataError(
                f"{path}: not enough memory to read its voxels; close other programs, or crop "
                "or downsample the volume first."
            ) from None
        except Exception as error:  # truncated gzip, short file, bad header: all the same
            raise DataError(
                f"{path}: cannot read its voxels ({type(error).__name__}: {_brief(error)}); "
                f"the {what} is damaged or incomplete. Copy it again from its source."
            ) from None

    return read


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether `path` is named like a NIfTI file (.nii or .nii.gz, any case)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike) -> str:
    """The name of a NIfTI file without .nii / .nii.gz."""
    name = Path(path).name
    suffix = next(s for s in NIFTI_SUFFIXES if name.lower().endswith(s))
    return name[: -len(suffix)]


def read_nifti(path: str | os.PathLike, volume: int | None = None) -> Scan:
    """A NIfTI file's header and geometry, checked; its voxels are read by `Scan.voxels()`.

    4-D files (fMRI, diffusion) are refused unless `volume` picks one (0-based); 3-D files
    ignore `volume`. A file whose qform and sform codes are both 0 is refused: where it lies,
    and so which way is axial, is unknown.
    """
    path = fileio.require_file(path, "pass a .nii or .nii.gz file.")
    try:
        image = nib.load(path)
    except Exception as error:
        raise DataError(
            f"{path} is not a readable NIfTI file ({type(error).__name__}: {_brief(error)}); "
            "pass a .nii or .nii.gz image as scanners' converters (dcm2niix) write them."
        ) from None
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise DataError(f"{path} is a {type(image).__name__}, not a single-file NIfTI image.")
    dtype = image.get_data_dtype()
    if dtype.fields is not None or dtype.kind == "c":
        raise DataError(
            f"{path} holds {dtype} voxels (colour or complex), not one grey value per voxel."
        )
    shape = tuple(int(n) for n in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    index: tuple = ()
    description = "NIfTI image"
    if len(shape) == 4:
        count = shape[3]
        if volume is None:
            raise DataError(
                f"{path} is 4-D: {count} volumes of {shape[0]}x{shape[1]}x{shape[2]} (fMRI or "
                f"diffusion?). Pick the one to translate with --volume N (0 to {count - 1})."
            )
        if not 0 <= volume < count:
            raise DataError(
                f"{path} has {count} volumes (0 to {count - 1}); --volume {volume} is not one."
            )
        index = (slice(None),) * 3 + (volume,) + (0,) * (len(image.shape) - 4)
        description = f"volume {volume} of {count} of a 4-D NIfTI image"
    elif len(shape) > 4:
        raise DataError(f"{path} has {len(shape)} dimensions {shape}; only 3-D and 4-D are read.")
    elif len(shape) < 3:
        shape = shape + (1,) * (3 - len(shape))  # one slice
    (_, qform_code), (_, sform_code) = image.get_qform(True), image.get_sform(True)
    if qform_code == 0 and sform_code == 0:
        raise DataError(
            f"{path} has neither a qform nor an sform (both codes 0), so where its voxels lie, "
            "and which way is axial, is unknown. Set its orientation (e.g. with nibabel or "
            "fslorient from the scan it came from) and try again."
        )
    affine = np.asarray(image.affine, np.float64)
    _check_affine(path, affine)
    _check_volume_size(path, shape[:3], dtype.itemsize)

    def read() -> np.ndarray:
        if index:  # one volume of a 4-D file: nibabel reads just its bytes
            return np.asarray(image.dataobj[index], dtype=np.float32).reshape(shape[:3])
        return _read_nifti_voxels(path, image).reshape(shape[:3])

    return Scan(
        name=nifti_stem(path),
        source=path,
        files=(path,),
        affine=affine,
        shape=shape[:3],
        header=image.header,
        description=description,
        load=_checked(path, read, "file"),
    )


def _check_volume_size(source: Path, shape: Sequence[int], itemsize: int) -> None:
    """Refuse, from the header alone, a volume above MAX_VOLUME_VOXELS voxels or
    MAX_VOLUME_BYTES of stored data, before a byte of it is read."""
    voxels = math.prod(int(n) for n in shape)
    if voxels > MAX_VOLUME_VOXELS or voxels * itemsize > MAX_VOLUME_BYTES:
        size = " x ".join(str(int(n)) for n in shape)
        raise DataError(
            f"{source}: its header announces {size} voxels ({voxels * itemsize / 2**20:,.0f} "
            f"MiB), more than this command reads (at most {MAX_VOLUME_VOXELS:,} voxels and "
            f"{MAX_VOLUME_BYTES >> 20} MiB, a whole head at 0.25 mm). Check the header, or "
            "crop or downsample the volume first."
        )


def _read_nifti_voxels(path: Path, image: nib.Nifti1Image) -> np.ndarray:
    """A single-volume NIfTI file's voxels (float32), read a chunk at a time through its
    (gzip) stream: it must hold exactly what its header announces, no more and no less."""
    stored = image.dataobj  # nibabel's reading of the header: offset, dtype, scaling, order
    announced = stored.offset + math.prod(stored.shape) * stored.dtype.itemsize
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as stream:
        raw = fileio.read_stream_bounded(
            stream, announced, stored.offset + MAX_VOLUME_BYTES, str(path)
        )
    spec = (stored.shape, stored.dtype, stored.offset, stored.slope, stored.inter)
    proxy = nib.arrayproxy.ArrayProxy(io.BytesIO(raw), spec, order=stored.order)
    return np.asarray(proxy, dtype=np.float32)


def _voxel_sizes(affine: np.ndarray) -> list[float]:
    """Voxel sizes (mm) along the array's axes, from the affine."""
    return np.round(np.sqrt((affine[:3, :3] ** 2).sum(axis=0)), 4).tolist()


def _check_affine(source: Path, affine: np.ndarray) -> None:
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise DataError(f"{source}: its affine is not a finite 4x4 matrix; fix its header.")
    sizes = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9 or np.any(sizes < 1e-6):
        raise DataError(
            f"{source}: its voxel sizes {_voxel_sizes(affine)} mm (from the affine) "
            "include 0, or its axes are parallel; the header's geometry is broken."
        )


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series in a folder, as GDCM finds it (its files in GDCM's slice order)."""

    uid: str
    number: str  # SeriesNumber (0020,0011), "" if absent
    description: str  # SeriesDescription (0008,103E), "" if absent
    files: tuple[Path, ...]

    def describe(self) -> str:
        """One line for messages: UID, number, description, number of files."""
        about = f"series {self.number or '?'}, {self.description or 'no description'!r}"
        return f"{self.uid} ({about}, {len(self.files)} file(s))"


@contextlib.contextmanager
def _quiet_itk() -> Iterator[Any]:
    """SimpleITK, with ITK's warnings (printed straight to stderr) off; this module checks
    what they warn about and says it as an error."""
    import SimpleITK as sitk

    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield sitk
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _tags(sitk: Any, path: Path, *keys: str) -> list[str]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return [""] * len(keys)
    return [reader.GetMetaData(k).strip() if reader.HasMetaDataKey(k) else "" for k in keys]


def dicom_series_in(folder: str | os.PathLike) -> list[DicomSeries]:
    """The DICOM series directly inside `folder` (GDCM: SimpleITK's GetGDCMSeriesIDs)."""
    folder = Path(folder)
    found = []
    with _quiet_itk() as sitk:
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
            files = tuple(
                Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
            )
            number, description = _tags(sitk, files[0], "0020|0011", "0008|103e")
            found.append(DicomSeries(uid, number, description, files))
    return found


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether `path` is a file named .dcm/.dicom/.ima, or starts like DICOM ("DICM" at 128)."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as file:
            return file.read(132)[128:] == b"DICM"
    except OSError:
        return False


def is_volume_input(path: str | os.PathLike) -> bool:
    """Whether `mri-course translate` should hand `path` to this module rather than to the
    PNG translation: a NIfTI name, a DICOM file, or a folder of DICOM files without PNGs."""
    path = Path(path)
    if is_nifti(path):
        return True
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        if any(p.suffix.lower() == ".png" for p in files):
            return False
        return any(is_dicom_file(p) for p in files[:64])
    return is_dicom_file(path)


def _no_series(folder: Path) -> DataError:
    """Why GDCM found no series in `folder`, as precisely as can be said."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    dicom = [p for p in files if is_dicom_file(p)]
    if not dicom:
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())
        hint = (
            f"; it holds folders ({', '.join(subfolders[:5])}): pass the one of the series"
            if subfolders
            else ""
        )
        return DataError(f"{folder} holds no DICOM files{hint}.")
    import pydicom

    def has_pixels(path: Path) -> bool:
        try:
            return "PixelData" in pydicom.dcmread(path, defer_size=1024, force=True)
        except Exception:  # unreadable: reported below with the damaged ones
            return True

    without_pixels = [path for path in dicom if not has_pixels(path)]
    if without_pixels:
        return DataError(
            f"{folder}: {len(without_pixels)} of its {len(dicom)} DICOM file(s) have no pixel "
            f"data (e.g. {without_pixels[0].name}: a report, DICOMDIR or structured data), and "
            "no image series was found. Pass the folder of the image series itself."
        )
    return DataError(
        f"{folder}: its {len(dicom)} DICOM file(s) form no image series GDCM can read; they "
        "may be damaged, or compressed in a way this reader does not decode."
    )


def _pick_series(folder: Path, found: list[DicomSeries], series: str | None) -> DicomSeries:
    listing = "\n".join(f"    {s.describe()}" for s in found)
    if series is None:
        if len(found) == 1:
            return found[0]
        raise DataError(
            f"{folder} holds {len(found)} DICOM series:\n{listing}\n"
            "  Pick one with --series UID (or its series number), or give each its own folder."
        )
    chosen = [s for s in found if series in (s.uid, s.number)]
    if len(chosen) == 1:
        return chosen[0]
    problem = "is none of" if not chosen else "matches several of"
    raise DataError(
        f"--series {series} {problem} the DICOM series in {folder}:\n{listing}\n"
        "  Name one by its UID."
    )


def _series_name(folder: Path, chosen: DicomSeries, count: int) -> str:
    name = folder.resolve().name or "dicom"
    if count > 1:  # several series share the folder: tell their outputs apart
        name += f"_series-{chosen.number or chosen.uid.rsplit('.', 1)[-1]}"
    return name


def read_dicom_series(
    source: str | os.PathLike | Sequence[str | os.PathLike], series: str | None = None
) -> Scan:
    """A DICOM series, read and checked: a folder holding it (with `series`, a UID or series
    number, picking one of several), or a list of its files (all in one folder). GDCM orders
    the slices; their positions must lie on one regular grid (no missing slices, no tilt)."""
    if isinstance(source, str | os.PathLike):
        folder = Path(source)
        if not folder.is_dir():
            raise DataError(f"{folder} is not a folder of DICOM files.")
        found = dicom_series_in(folder)
        if not found:
            raise _no_series(folder)
        chosen = _pick_series(folder, found, series)
        files, label = chosen.files, folder
    else:
        named = [Path(p) for p in source]
        if not named:
            raise DataError("no DICOM files given.")
        folders = {p.resolve().parent for p in named}
        if len(folders) != 1:
            raise DataError(
                f"the DICOM files {named[0]}, ... lie in {len(folders)} folders; put the files "
                "of one series into one folder and pass that folder."
            )
        folder = next(iter(folders))
        found = dicom_series_in(folder)
        wanted = {p.resolve() for p in named}
        holding = [s for s in found if wanted & {p.resolve() for p in s.files}]
        orphans = wanted - {p.resolve() for s in holding for p in s.files}
        if orphans:
            raise DataError(
                f"{sorted(orphans)[0]} is not part of a DICOM image series GDCM can read "
                "(damaged, no pixel data, or not DICOM)."
            )
        if len(holding) > 1:
            raise DataError(
                f"the DICOM files given belong to {len(holding)} series: "
                f"{'; '.join(s.describe() for s in holding)}. Pass each series' files apart."
            )
        chosen = holding[0]
        files = tuple(p for p in chosen.files if p.resolve() in wanted)  # GDCM's order
        label = folder
    geometry: dict[str, np.ndarray] = {}

    def read() -> np.ndarray:
        _check_dicom_size(label, files)
        with _quiet_itk() as sitk:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames([str(p) for p in files])
            reader.MetaDataDictionaryArrayUpdateOn()
            image = reader.Execute()  # applies RescaleSlope / RescaleIntercept
            if image.GetNumberOfComponentsPerPixel() != 1:
                raise DataError(f"{label}: a colour DICOM series; a grey-valued one is needed.")
            geometry["affine"] = _dicom_affine(label, reader, image, len(files))
            array = np.asarray(sitk.GetArrayViewFromImage(image), np.float32)  # (z, y, x)
        return np.ascontiguousarray(array.reshape((-1, *array.shape[-2:])).transpose(2, 1, 0))

    read = _checked(label, read, "series")
    data = read()
    _check_affine(label, geometry["affine"])
    return Scan(
        name=_series_name(folder, chosen, len(found)),
        source=label,
        files=tuple(files),
        affine=geometry["affine"],
        shape=data.shape,
        header=None,
        description=f"DICOM series {chosen.describe()}",
        load=read,
        data=data,
    )


def _check_dicom_size(label: Path, files: Sequence[Path]) -> None:
    """Refuse a series whose headers (rows x columns x frames of every file) announce more
    than MAX_VOLUME_VOXELS / MAX_VOLUME_BYTES (as float32), before any pixel is decoded."""
    voxels = 0
    with _quiet_itk() as sitk:
        for path in files:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            try:
                reader.ReadImageInformation()
            except RuntimeError:
                continue  # unreadable: the series reader names it
            voxels += math.prod(reader.GetSize()) * reader.GetNumberOfComponents()
            _check_volume_size(label, (voxels,), 4)  # read as float32: 4 bytes a voxel


LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def sitk_affine(image: Any) -> np.ndarray:
    """The NIfTI affine (RAS+) of a 3-D SimpleITK image: ITK's voxel (i, j, k) lies at
    origin + direction @ (spacing * (i, j, k)) in LPS+ millimetres; RAS+ flips x and y. The
    voxel array to go with it is `GetArrayFromImage(image).transpose(2, 1, 0)`."""
    lps = np.eye(4)
    direction = np.asarray(image.GetDirection(), np.float64).reshape(3, 3)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing(), np.float64)[None, :]
    lps[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ lps


def _dicom_affine(label: Path, reader: Any, image: Any, count: int) -> np.ndarray:
    """The series' affine, once every slice is known to have a position and orientation,
    the orientations agree and the positions lie on one regular grid; the slice step is the
    measured one (first to last position), not a guess from SliceThickness."""
    missing = [
        f"{tag} ({key})"
        for tag, key in (
            ("ImageOrientationPatient", "0020,0037"),
            ("ImagePositionPatient", "0020,0032"),
        )
        if not all(reader.HasMetaDataKey(k, key.replace(",", "|")) for k in range(count))
    ]
    if missing:
        raise DataError(
            f"{label}: the series lacks {' and '.join(missing)}, so where its voxels lie, and "
            "which way is axial, is unknown. Export it from the scanner or PACS with its "
            "geometry (an anonymiser may have removed it)."
        )

    def values(k: int, key: str) -> np.ndarray:
        return np.asarray(reader.GetMetaData(k, key).strip().split("\\"), np.float64)

    orientation = values(0, "0020|0037")
    if any(np.abs(values(k, "0020|0037") - orientation).max() > 1e-3 for k in range(count)):
        raise DataError(f"{label}: its slices have different orientations; not one volume.")
    affine = sitk_affine(image)
    if count < 2:
        return affine
    positions = np.stack([values(k, "0020|0032") for k in range(count)])
    steps = np.diff(positions, axis=0)
    step = (positions[-1] - positions[0]) / (count - 1)
    gap = float(np.linalg.norm(step))
    normal = np.cross(orientation[:3], orientation[3:])
    tilt = np.degrees(np.arccos(min(1.0, abs(step @ normal) / max(gap, 1e-12))))
    if gap < 1e-6 or np.abs(steps - step).max() > 0.01 + 0.1 * gap or tilt > 0.5:
        lengths = np.linalg.norm(steps, axis=1)
        raise DataError(
            f"{label}: its {count} slices do not lie on one regular grid (steps of "
            f"{lengths.min():.3g} to {lengths.max():.3g} mm, {tilt:.1f} degrees from the "
            "slice normal): missing slices, varying gaps or a tilted gantry. Resample it to "
            "a regular grid (e.g. with dcm2niix) first."
        )
    affine[:3, 2] = LPS_TO_RAS[:3, :3] @ step
    return affine


def collect_scans(
    inputs: Sequence[str | os.PathLike | Sequence[str | os.PathLike]],
    series: str | None = None,
    volume: int | None = None,
) -> list[Scan]:
    """Every input as a `Scan`: NIfTI files (`volume` picks one of a 4-D file); DICOM folders
    (one series each, or the one `series` names); DICOM files, grouped into one scan per
    series and folder; a list inside `inputs` is the files of one series. All problems are
    reported at once."""
    scans, problems = _collect(inputs, series, volume)
    _raise(problems)
    return scans


def _raise(problems: list[str]) -> None:
    if len(problems) == 1:
        raise DataError(problems[0])
    if problems:
        raise DataProblems("the inputs", problems)


def _collect(
    inputs: Sequence[str | os.PathLike | Sequence[str | os.PathLike]],
    series: str | None,
    volume: int | None,
) -> tuple[list[Scan], list[str]]:
    """The scans that could be read, and the problems of those that could not."""
    scans: list[Scan] = []
    problems: list[str] = []
    loose: dict[Path, list[Path]] = {}
    for item in inputs:
        try:
            if not isinstance(item, str | os.PathLike):
                scans.append(read_dicom_series(item, series))
                continue
            path = Path(item)
            if is_nifti(path):
                scans.append(read_nifti(path, volume))
            elif path.is_dir():
                scans.append(read_dicom_series(path, series))
            elif is_dicom_file(path):
                loose.setdefault(path.resolve().parent, []).append(path)
            elif fileio.why_not_a_file(path) is None:
                raise DataError(
                    f"{path} is neither NIfTI (.nii, .nii.gz) nor DICOM; pass a scan in one "
                    "of those formats (PNG slices go through the PNG translation)."
                )
            else:
                raise DataError(f"{path} {fileio.why_not_a_file(path)}; pass a scan file.")
        except DataError as error:
            problems.append(str(error))
        _release_beyond_budget(scans)
    for folder, files in loose.items():
        try:
            wanted = {p.resolve() for p in files}
            found = [s for s in dicom_series_in(folder) if wanted & {p.resolve() for p in s.files}]
            grouped = [[p for p in s.files if p.resolve() in wanted] for s in found]
            leftover = wanted - {p.resolve() for group in grouped for p in group}
            if leftover:
                raise DataError(
                    f"{sorted(leftover)[0]} is not part of a DICOM image series GDCM can read "
                    "(damaged, no pixel data, or not DICOM)."
                )
            for group in grouped:
                scans.append(read_dicom_series(group))
                _release_beyond_budget(scans)
        except DataError as error:
            problems.append(str(error))
    return scans, problems


def _release_beyond_budget(scans: list[Scan]) -> None:
    """Keep the voxels read so far in memory up to KEEP_LOADED_BYTES; release the rest
    (read again when translated)."""
    loaded = [scan for scan in scans if scan.data is not None]
    if sum(scan.data.nbytes for scan in loaded) > KEEP_LOADED_BYTES:
        loaded[-1].data = None


# --- geometry -------------------------------------------------------------------------------
def model_geometry(config: dict[str, Any]) -> tuple[tuple[float, float], str]:
    """The model's slice geometry from its model.json: pixel size (rows, columns) in mm from
    `pixel_spacing_mm` (a number or two), and `slice_orientation`, the directions its rows
    and columns run towards as two axis codes (one of A/P, one of L/R). Absent keys mean the
    course geometry: 1 mm and "AR" (posterior at the top, the patient's left on the left)."""
    spacing = config.get("pixel_spacing_mm", COURSE_PIXEL_SPACING_MM)
    values = spacing if isinstance(spacing, list | tuple) else [spacing, spacing]
    if len(values) != 2 or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and 0.05 <= v <= 10 for v in values
    ):
        raise ModelFileError(
            f"model.json: pixel_spacing_mm {spacing!r} is not a pixel size in mm (a number, or "
            "[rows, columns], from 0.05 to 10); fix it or remove it for the course's 1 mm."
        )
    orientation = config.get("slice_orientation", COURSE_SLICE_ORIENTATION)
    codes = orientation.upper() if isinstance(orientation, str) else ""
    axes = sorted(("AP".find(c) >= 0, "LR".find(c) >= 0) for c in codes)
    if len(codes) != 2 or axes != [(False, True), (True, False)]:
        raise ModelFileError(
            f"model.json: slice_orientation {orientation!r} is not two axis codes, the "
            "directions rows and columns run towards (one of A/P, one of L/R), e.g. 'AR' for "
            "the course slices; fix it or remove it."
        )
    return (float(values[0]), float(values[1])), codes


@dataclass(frozen=True)
class Reorientation:
    """How a volume's voxel axes map onto the model's (slice, row, column) axes."""

    to_model: np.ndarray  # nibabel orientation transform: input array -> model array
    to_input: np.ndarray  # its inverse
    input_codes: tuple[str, str, str]  # where the input's axes point (e.g. L, P, S)
    slice_axis: int  # the input's array axis that becomes the slice axis
    spacing: tuple[float, float, float]  # voxel sizes (mm) along the model array's axes
    obliquity: float  # degrees between the voxel axes and the nearest scanner axes (largest)

    def apply(self, data: np.ndarray) -> np.ndarray:
        """(X, Y, Z) input voxels -> (slices, rows, columns) in the model's orientation."""
        return apply_orientation(data, self.to_model)

    def undo(self, data: np.ndarray) -> np.ndarray:
        """The inverse of `apply`: back onto the input's own array axes (a view)."""
        return apply_orientation(data, self.to_input)


def reorientation(
    affine: np.ndarray, shape: Sequence[int], slice_orientation: str = COURSE_SLICE_ORIENTATION
) -> Reorientation:
    """The closest canonical reorientation (nibabel `io_orientation`) that gives axial slices
    with rows and columns as `slice_orientation` says (see `model_geometry`)."""
    start = io_orientation(affine)
    target = axcodes2ornt(("S", *slice_orientation))
    forward = ornt_transform(start, target)
    backward = ornt_transform(target, start)
    model_affine = affine @ inv_ornt_aff(forward, shape)
    sizes = np.sqrt((model_affine[:3, :3] ** 2).sum(axis=0))
    return Reorientation(
        to_model=forward,
        to_input=backward,
        input_codes=tuple(aff2axcodes(affine)),
        slice_axis=int(np.flatnonzero(forward[:, 0] == 0)[0]),
        spacing=tuple(float(s) for s in sizes),
        obliquity=float(np.degrees(np.max(nib.affines.obliquity(affine)))),
    )


@dataclass(frozen=True)
class InPlaneGrid:
    """How one axial slice of the input (`shape` pixels of `spacing` mm) maps onto the model's
    pixel grid (`pixel` mm) and back. Both grids start at the slice's edge; the model's is
    cut to `size` pixels from pixel `start` (the head with a margin). Linear interpolation;
    when a grid is coarser than the other, a Gaussian prefilter (sigma (ratio - 1) / 2
    pixels, as `skimage.transform.resize` anti-aliases) first removes what it cannot hold."""

    shape: tuple[int, int]
    spacing: tuple[float, float]
    pixel: tuple[float, float]
    start: tuple[int, int]
    size: tuple[int, int]

    def to_model(self, image: np.ndarray) -> np.ndarray:
        """An input slice (float32, `shape`) on the model's grid (`size`)."""
        ratio = np.divide(self.pixel, self.spacing)
        offset = (np.asarray(self.start) + 0.5) * ratio - 0.5
        return _resample(image, ratio, offset, self.size)

    def to_input(self, image: np.ndarray) -> np.ndarray:
        """A model-grid slice (`size`) back on the input's grid (`shape`); 0 outside the crop."""
        ratio = np.divide(self.spacing, self.pixel)
        offset = 0.5 * ratio - 0.5 - np.asarray(self.start)
        result = _resample(image, ratio, offset, self.shape)
        inside = [
            np.abs(np.arange(n) * r + o - (m - 1) / 2) <= m / 2
            for n, r, o, m in zip(self.shape, ratio, offset, self.size, strict=True)
        ]
        return np.where(inside[0][:, None] & inside[1][None, :], result, 0.0).astype(np.float32)


def _resample(image: np.ndarray, ratio: np.ndarray, offset: np.ndarray, shape) -> np.ndarray:
    """Output pixel p samples the image at ratio * p + offset (per axis), linearly."""
    image = np.asarray(image, np.float32)
    if np.all(ratio == 1.0) and np.all(offset == np.round(offset)):
        # Whole pixels, no scaling (the course's 1 mm slices of a 1 mm scan): interpolation
        # would return the pixels themselves, so take them (edges repeated, as "nearest").
        rows, cols = (
            np.clip(np.arange(n) + int(o), 0, m - 1)
            for n, o, m in zip(shape, np.round(offset), image.shape, strict=True)
        )
        return image[np.ix_(rows, cols)]
    sigma = np.maximum(0.0, (ratio - 1.0) / 2.0)
    if np.any(sigma > 0.01):
        image = ndimage.gaussian_filter(image, sigma, mode="nearest")
    return ndimage.affine_transform(
        image, ratio, offset, output_shape=tuple(shape), order=1, mode="nearest"
    ).astype(np.float32)


def in_plane_grid(
    shape: tuple[int, int],
    spacing: tuple[float, float],
    pixel: tuple[float, float],
    head_box: tuple[tuple[int, int], tuple[int, int]] | None = None,
    margin_mm: float = CROP_MARGIN_MM,
    max_pixels: int | None = None,
) -> InPlaneGrid:
    """The model grid for slices of `shape` x `spacing` mm: whole, or cut to `head_box`
    ((first, last) row, (first, last) column, input pixels) plus `margin_mm`, a margin that
    shrinks where the cut would exceed `max_pixels` (the network's side: a crop that fits is
    padded, never resized, as the course slices are)."""
    starts, sizes = [], []
    for axis in range(2):
        extent = shape[axis] * spacing[axis]
        low, high = 0.0, extent
        if head_box is not None:
            first, last = head_box[axis]
            head_low, head_high = first * spacing[axis], (last + 1) * spacing[axis]
            margin = margin_mm
            if max_pixels is not None:
                room = max_pixels * pixel[axis] - (head_high - head_low)
                margin = min(margin_mm, max(0.0, room / 2.0 - 0.5 * pixel[axis]))
            low = max(0.0, head_low - margin)
            high = min(extent, head_high + margin)
        begin = math.floor(low / pixel[axis] + 1e-6)
        end = max(begin + 1, math.ceil(high / pixel[axis] - 1e-6))
        starts.append(begin)
        sizes.append(end - begin)
    return InPlaneGrid(tuple(shape), tuple(spacing), tuple(pixel), tuple(starts), tuple(sizes))


# --- intensities ----------------------------------------------------------------------------
def head_mask_3d(volume: np.ndarray) -> np.ndarray:
    """True inside the head of a volume (slices on axis 0): above a quarter of the way from
    the 1st percentile (air) to Otsu's threshold (low enough to keep dark skin, like
    `processing.head_mask`), the largest connected part, holes filled slice by slice."""
    volume = np.asarray(volume, np.float32)
    low = float(np.percentile(volume, 1))
    threshold = low + 0.25 * (float(threshold_otsu(volume)) - low)
    foreground = volume > threshold
    labels, count = ndimage.label(foreground)
    if count == 0:
        return foreground
    sizes = np.bincount(labels.ravel())[1:]
    mask = labels == 1 + int(np.argmax(sizes))
    return np.stack([ndimage.binary_fill_holes(plane) for plane in mask])


@dataclass(frozen=True)
class IntensityScaling:
    """One linear map of a volume's values to the course's 8-bit scale: `background` (the
    median outside the head) -> 0 and `head_value` (the `percentile` inside it) -> `target`
    (the training slices' value there). Scaling or shifting the scan changes both landmarks
    alike, so the result does not change; nothing is clipped here."""

    background: float
    head_value: float
    percentile: float
    target: float
    mask_stride: int = 1  # the head was found on every stride-th voxel of each axis

    @property
    def gain(self) -> float:
        """Course grey levels per input unit."""
        return self.target / (self.head_value - self.background)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Input values on the course scale (float32; may leave 0..255)."""
        return ((np.asarray(values, np.float32) - self.background) * self.gain).astype(np.float32)


def head_levels(slices: Sequence[Any]) -> dict[str, float]:
    """The HEAD_PERCENTILE-th grey level inside the head (`processing.head_mask`) of 8-bit
    slices, per contrast: what a model trained on them expects of a head."""
    levels = {}
    for contrast in sorted({s.modality for s in slices}):
        inside = [s.image[head_mask(s.image)] for s in slices if s.modality == contrast]
        levels[contrast] = round(float(np.percentile(np.concatenate(inside), HEAD_PERCENTILE)), 1)
    return levels


def model_head_levels(config: dict[str, Any]) -> dict[str, float]:
    """The head levels a model.json records (`head_levels`), else the course slices'."""
    levels = config.get("head_levels", COURSE_HEAD_LEVELS)
    valid = isinstance(levels, dict) and all(
        isinstance(levels.get(c), int | float) and not isinstance(levels.get(c), bool)
        and 1.0 <= levels[c] <= 255.0
        for c in COURSE_HEAD_LEVELS
    )  # fmt: skip
    if not valid:
        raise ModelFileError(
            f"model.json: head_levels {levels!r} is not a grey level from 1 to 255 for each of "
            "t1 and t2; fix it, or remove it for the course slices' levels."
        )
    return {c: float(levels[c]) for c in COURSE_HEAD_LEVELS}


def robust_scaling(
    volume: np.ndarray,
    contrast: str,
    source: str | os.PathLike = "the volume",
    target: float | None = None,
) -> tuple[IntensityScaling, np.ndarray, int]:
    """The `IntensityScaling` of a volume (slices on axis 0) of `contrast` ("t1"/"t2") onto
    `target` (the grey level its head's percentile should get; None: the course slices'),
    the head mask it used and that mask's stride (volumes above MASK_VOXELS are subsampled)."""
    stride = max(1, math.ceil((volume.size / MASK_VOXELS) ** (1 / 3)))
    sample = np.asarray(volume[::stride, ::stride, ::stride], np.float32)
    mask = head_mask_3d(sample)
    if mask.sum() < max(8, 0.001 * mask.size):
        raise DataError(f"{source}: no head found (no region brighter than the background).")
    outside = sample[~mask]
    background = (
        float(np.median(outside))
        if outside.size >= 0.01 * sample.size
        else float(np.percentile(sample, 0.5))
    )
    head_value = float(np.percentile(sample[mask], HEAD_PERCENTILE))
    spread = float(sample.max() - sample.min())
    if head_value - background <= 1e-6 * max(spread, 1e-30):
        raise DataError(
            f"{source}: its head is no brighter than its background ({background:.4g}); "
            "nothing to translate."
        )
    scaling = IntensityScaling(
        background,
        head_value,
        HEAD_PERCENTILE,
        COURSE_HEAD_LEVELS[contrast] if target is None else float(target),
        stride,
    )
    return scaling, mask, stride


# --- a plan per volume: every check before any work ------------------------------------------
@dataclass(frozen=True)
class VolumePlan:
    """Everything decided about one volume before it is translated."""

    orientation: Reorientation
    grid: InPlaneGrid
    scaling: IntensityScaling
    clipped: dict[str, float]  # fractions of voxels outside 0..255 after scaling
    model_shape: tuple[int, int, int]  # (slices, rows, columns) in the model's orientation

    def record(self) -> dict[str, Any]:
        """The sidecar's account of geometry and intensities."""
        grid, s = self.grid, self.scaling
        return {
            "geometry": {
                "input_orientation": "".join(self.orientation.input_codes),
                "slice_axis_of_input": self.orientation.slice_axis,
                "obliquity_degrees": round(self.orientation.obliquity, 3),
                "slices": self.model_shape[0],
                "reorientation": (
                    "voxel axes permuted and flipped to the closest canonical orientation "
                    "(nibabel io_orientation); slices along the axis nearest superior-inferior, "
                    "not resampled across slices; any obliquity is kept, not undone"
                ),
                "input_pixel_mm": [round(v, 6) for v in grid.spacing],
                "model_pixel_mm": list(grid.pixel),
                "in_plane_resampling": (
                    "linear (scipy.ndimage.affine_transform, order 1) from the input's pixels to "
                    "the model's and back; a Gaussian prefilter of sigma (ratio - 1) / 2 pixels "
                    "where the target grid is coarser"
                ),
                "crop_on_model_grid": {"start": list(grid.start), "size": list(grid.size)},
            },
            "intensity_scaling": {
                "method": (
                    "linear: background (median outside the head mask) -> 0, the "
                    f"{s.percentile:g}th percentile inside the head -> {s.target:g}, the value "
                    "there in the slices the model was trained on; head mask: above a quarter "
                    "of the way from the 1st percentile to Otsu's threshold, largest connected "
                    "part, holes filled"
                ),
                "background_value": s.background,
                "head_percentile": s.percentile,
                "head_percentile_value": s.head_value,
                "maps_to": s.target,
                "gain": s.gain,
                "head_mask_subsampling": s.mask_stride,
                "clipping": (
                    "values outside 0..255 after scaling were clipped to 0..255 (the network's "
                    "input range) before translation; `clipped` gives the fractions of voxels, "
                    "of the whole volume and of the head"
                ),
                "clipped": dict(self.clipped),
            },
        }


def plan_volume(
    data: np.ndarray,
    affine: np.ndarray,
    config: dict[str, Any],
    contrast: str,
    source: str | os.PathLike = "the volume",
) -> VolumePlan:
    """Check one volume and decide how to translate it; DataError (naming `source`) if it
    cannot be: non-finite voxels, constant, no head, slices too large or too small."""
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise DataError(
            f"{source}: {bad} of its {data.size} voxels are NaN or infinite; replace them "
            "(e.g. with 0) and try again."
        )
    low, high = float(data.min()), float(data.max())
    if low == high:
        raise DataError(f"{source}: every voxel is {low:g}; there is no image to translate.")
    pixel, orientation_codes = model_geometry(config)
    orientation = reorientation(affine, data.shape, orientation_codes)
    oriented = orientation.apply(data)
    spacing = orientation.spacing[1:]
    field_of_view = [n * s for n, s in zip(oriented.shape[1:], spacing, strict=True)]
    pixels = [round(f / p) for f, p in zip(field_of_view, pixel, strict=True)]
    if max(pixels) > MAX_IN_PLANE:
        raise DataError(
            f"{source}: its axial slices span {field_of_view[0]:.0f} x {field_of_view[1]:.0f} "
            f"mm, {pixels[0]} x {pixels[1]} pixels at the model's {pixel[0]:g} mm, more than "
            f"the {MAX_IN_PLANE} a side this command handles. Its voxel sizes "
            f"{_voxel_sizes(affine)} mm look wrong: check its header."
        )
    if min(pixels) < MIN_IN_PLANE:
        raise DataError(
            f"{source}: its axial slices span only {field_of_view[0]:.1f} x "
            f"{field_of_view[1]:.1f} mm ({oriented.shape[1]} x {oriented.shape[2]} voxels), "
            f"under {MIN_IN_PLANE} pixels of the model's {pixel[0]:g} mm a side: no axial "
            "view of a head. The model translates axial slices; pass a volume that covers "
            "the head in the axial plane (or check its voxel sizes)."
        )
    target = model_head_levels(config)[contrast]
    scaling, mask, stride = robust_scaling(oriented, contrast, source, target)
    rows, cols = np.flatnonzero(mask.any(axis=(0, 2))), np.flatnonzero(mask.any(axis=(0, 1)))
    box = tuple(
        (int(found[0]) * stride, min(n - 1, int(found[-1]) * stride + stride - 1))
        for found, n in ((rows, oriented.shape[1]), (cols, oriented.shape[2]))
    )
    grid = in_plane_grid(oriented.shape[1:], spacing, pixel, box, max_pixels=config["image_size"])
    lowest, highest = scaling.background, scaling.background + 255.0 / scaling.gain
    sample = oriented[::stride, ::stride, ::stride]
    head = sample[mask]
    clipped = {
        "fraction_below_0": float(np.count_nonzero(data < lowest) / data.size),
        "fraction_above_255": float(np.count_nonzero(data > highest) / data.size),
        "fraction_below_0_in_head": float(np.count_nonzero(head < lowest) / head.size),
        "fraction_above_255_in_head": float(np.count_nonzero(head > highest) / head.size),
    }
    return VolumePlan(orientation, grid, scaling, clipped, tuple(oriented.shape))


# --- translating ----------------------------------------------------------------------------
def copies_of(model: keras.Model) -> tuple[tuple[int, int, bool], ...] | None:
    """The (rows down, columns right, mirrored) copies an export averages, or None."""
    for candidate in (model, without_calibration(model)):
        for layer in candidate.layers:
            if isinstance(layer, test_time.AverageOfCopies):
                return layer.copies
    return None


# An export's network and the export rebuilt around it, per dtype policy (see _Network).
_IN_POLICY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Network:
    """Runs an export on batches of model-size images, its network computing under Keras's
    dtype `policy`; `with_spread`, each test-time copy separately (its move and mirror
    undone), so that their spread is known."""

    def __init__(
        self, model: keras.Model, batch_size: int, with_spread: bool, policy: str = "float32"
    ):
        self.batch_size, self.with_spread = batch_size, with_spread
        self.copies = copies_of(model)
        self.calibration = calibration_of(model)
        built = _IN_POLICY.get(model, {}).get(policy)  # once per export: a copy traces anew
        if built is None:
            inner = test_time.without_copies(without_calibration(model))
            network = computing_in(inner, policy)
            built = network, model
            if network is not inner:  # the export again, around the network's copy
                whole = (
                    test_time.averaged_over_copies(network, self.copies)
                    if self.copies
                    else network
                )
                if self.calibration is not None:
                    whole = calibrated(whole, self.calibration)
                built = _IN_POLICY.setdefault(model, {})[policy] = network, whole
        self.network, self.model = built
        self.moves = [
            (test_time.ShiftedMirroredCopies([c]), test_time.AverageOfCopies([c]))
            for c in self.copies or ()
        ]

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(B, S, S, 1) in [-1, 1] -> the export's output and, `with_spread`, the per-pixel
        standard deviation of the copies' outputs, both (B, S, S) on the 0..255 scale."""
        count = len(images)
        padded = np.zeros((self.batch_size, *images.shape[1:]), np.float32) - 1.0
        padded[:count] = images  # one batch shape: one trace of the predict function
        if not (self.with_spread and self.copies):
            output = np.asarray(self.model.predict_on_batch(padded))[:count, ..., 0]
            return (output + 1.0) * 127.5, None
        restored = []
        for move, undo in self.moves:
            out = self.network.predict_on_batch(np.asarray(move(padded)))
            restored.append(np.asarray(undo(out))[:count])
        mean = np.mean(restored, axis=0)  # what AverageOfCopies computes
        per_copy = restored
        if self.calibration is not None:
            mean = np.asarray(self.calibration(mean))
            per_copy = [np.asarray(self.calibration(r)) for r in restored]
        spread = np.std(np.stack(per_copy), axis=0)[..., 0] * 127.5
        return (mean[..., 0] + 1.0) * 127.5, spread


def run_plan(
    generator: keras.Model,
    config: dict[str, Any],
    plan: VolumePlan,
    data: np.ndarray,
    uncertainty: bool = False,
    batch_size: int = BATCH_SIZE,
    description: str = "volume",
    policy: str = "float32",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Translate `data` as `plan` says, `batch_size` axial slices at a time, the network
    computing under Keras's dtype `policy`: the synthetic volume (float32, the input's shape,
    0..255) and, with `uncertainty`, the spread of the export's test-time copies (same
    shape)."""
    network = _Network(generator, batch_size, uncertainty, policy)
    if uncertainty and network.copies is None:
        raise ModelFileError(
            "uncertainty needs an export that averages test-time copies "
            "(test_time.averaged_over_copies); this one has none."
        )
    run = _PlanRun(plan, config, network, plan.orientation.apply(data), uncertainty)
    run.translate_all(batch_size, description)
    return (
        plan.orientation.undo(run.synthetic),
        None if run.spread is None else plan.orientation.undo(run.spread),
    )


class _PlanRun:
    """A volume's axial slices (model frame) through the network: each prepared, translated
    in full batches, and finished back on the input's grid."""

    def __init__(self, plan, config, network, oriented: np.ndarray, uncertainty: bool):
        self.plan, self.network, self.oriented = plan, network, oriented
        self.size = config["image_size"]
        self.cleaning = cleaning_of(config)
        self.masked = bool(self.cleaning and self.cleaning.mask_background)
        self.synthetic = np.zeros(oriented.shape, np.float32)
        self.spread = np.zeros(oriented.shape, np.float32) if uncertainty else None
        self.model_size = Geometry(*plan.grid.size)

    def prepared(self, k: int) -> tuple[int, np.ndarray, np.ndarray] | None:
        """Axial slice `k` as (index, where the output may be non-zero, network input); None
        for a slice without head (also one of scanner noise alone): it comes out all 0, so
        nothing is invented where the scan holds no tissue."""
        scaled = np.clip(
            self.plan.scaling.apply(self.plan.grid.to_model(self.oriented[k])), 0, 255
        )
        mask = head_mask(scaled)
        if not mask.any():
            return None
        cleaned = clean_slice(scaled, self.cleaning, mask) if self.cleaning else scaled
        keep = output_region(scaled, self.masked, mask)
        return k, keep, to_model_geometry(cleaned / 127.5 - 1.0, self.size)

    def finish(self, k: int, keep: np.ndarray, outputs: list[np.ndarray | None]) -> None:
        """Slice `k`'s network outputs back on the input's grid (0 outside its head)."""
        for result, target in zip(outputs, (self.synthetic, self.spread), strict=True):
            if result is not None:
                image = np.clip(to_original_geometry(result, self.model_size), 0.0, 255.0)
                target[k] = self.plan.grid.to_input(np.where(keep, image, 0.0))

    def translate_all(self, batch_size: int, description: str) -> None:
        """While the network runs on a batch, a thread per processor prepares (resamples,
        scales, denoises) the next batch's slices and finishes the last one's: all of them
        release Python's lock for their heavy parts. Batches are always full (but the last):
        the slices left out leave no holes in them."""
        count = len(self.oriented)
        firsts = range(0, count, batch_size)
        waiting: list[tuple[int, np.ndarray, np.ndarray]] = []
        finishing: list[Future] = []
        with (
            ThreadPoolExecutor(max_workers=min(batch_size, os.cpu_count() or 1)) as workers,
            tqdm(total=count, desc=description, unit="slice", disable=None) as progress,
        ):

            def submit(first: int) -> list[Future]:
                last = min(first + batch_size, count)
                return [workers.submit(self.prepared, k) for k in range(first, last)]

            pending = submit(0)
            for number, first in enumerate(firsts):
                waiting += [item for item in (f.result() for f in pending) if item]
                last = number + 1 == len(firsts)
                if not last:
                    pending = submit(firsts[number + 1])
                while len(waiting) >= batch_size or (last and waiting):
                    finishing += self._translate(workers, waiting[:batch_size])
                    waiting = waiting[batch_size:]
                progress.update(min(batch_size, count - first))
            for done in finishing:
                done.result()

    def _translate(self, workers, batch: list[tuple[int, np.ndarray, np.ndarray]]) -> list:
        outputs, spreads = self.network(np.stack([image for _, _, image in batch])[..., None])
        return [
            workers.submit(
                self.finish, k, keep, [outputs[i], None if spreads is None else spreads[i]]
            )
            for i, (k, keep, _) in enumerate(batch)
        ]


def translate_volume(
    generator: keras.Model,
    config: dict[str, Any],
    data: np.ndarray,
    affine: np.ndarray,
    uncertainty: bool = False,
    batch_size: int = BATCH_SIZE,
    mixed_precision: str = "auto",
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Translate one volume (X, Y, Z) lying at `affine` with a loaded export and its config:
    the synthetic volume, the copies' spread (with `uncertainty`) and the plan's record.
    `mixed_precision` as the course's MIXED_PRECISION (`precision.precision_policy`)."""
    contrast = DIRECTIONS[config["direction"]][0]
    plan = plan_volume(np.asarray(data, np.float32), affine, config, contrast)
    policy = precision_policy(mixed_precision)
    result, spread = run_plan(
        generator, config, plan, data, uncertainty, batch_size, policy=policy
    )
    return result, spread, {**plan.record(), "computed_in": policy}


# --- writing --------------------------------------------------------------------------------
def output_paths(name: str, direction: str, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Where the translation of the scan `name` goes: image, uncertainty and JSON sidecar."""
    stem = f"{name}_{OUTPUT_SUFFIXES[direction]}"
    out_dir = Path(out_dir)
    return {
        "image": out_dir / f"{stem}.nii.gz",
        "uncertainty": out_dir / f"{stem}_uncertainty.nii.gz",
        "sidecar": out_dir / f"{stem}.json",
    }


def _descrip(text: str) -> bytes:
    return text.encode("ascii", "replace")[:80]


def output_image(
    scan: Scan, data: np.ndarray, description: str, display: tuple[float, float] = (0, 255)
) -> nib.Nifti1Image:
    """`data` (float32) as a NIfTI image with exactly the scan's geometry: a NIfTI input's
    header (shape, affine, zooms, qform, sform and codes; scaling, extensions and intent
    reset), or for DICOM the series' affine as qform and sform (code 1, scanner). `display`
    is the grey range viewers are told (cal_min, cal_max; (0, 0): none)."""
    data = np.asarray(data, np.float32)
    if scan.header is not None:
        header = scan.header.copy()
        header.set_data_dtype(np.float32)
        header.set_slope_inter(np.nan, np.nan)
        header.set_intent("none")
        header.extensions.clear()  # they describe the source (e.g. its DICOM tags)
        kind = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
        stored = header.get_data_shape()
        shape = stored if len(stored) < 3 else scan.shape  # a 2-D file stays 2-D
        image = kind(data.reshape(shape), None, header=header)
    else:
        image = nib.Nifti1Image(data, scan.affine)
        image.set_qform(scan.affine, code=1)
        image.set_sform(scan.affine, code=1)
        image.header.set_xyzt_units("mm", "sec")
        image.set_data_dtype(np.float32)
    image.header["descrip"] = _descrip(description)
    image.header["aux_file"] = b""
    image.header["cal_min"], image.header["cal_max"] = display
    return image


def _write_all(files: dict[Path, Callable[[Path], None]]) -> None:
    """Write every file whole, or none of them (`fileio.replacing_all`)."""
    try:
        with fileio.replacing_all(files) as partials:
            for target, write in files.items():
                write(partials[target])
    except OSError as error:
        raise DataError(
            f"cannot write {next(iter(files))} ({error.strerror or error}); nothing of it "
            "was kept."
        ) from None


def _save_nifti(image: nib.Nifti1Image, path: Path) -> None:
    nib.save(image, path)


def _save_json(record: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")


def _model_record(model: str | os.PathLike, config: dict[str, Any]) -> dict[str, Any]:
    pixel, orientation = model_geometry(config)
    given = [key for key in ("pixel_spacing_mm", "slice_orientation") if key in config]
    folder = Path(model) / config["direction"]  # a run's models folder holds both
    folder = folder if folder.is_dir() else Path(model)
    return {
        "path": str(folder.resolve()),
        "direction": config["direction"],
        "epoch": config.get("epoch"),
        "image_size": config["image_size"],
        "calibrated": config.get("calibrated"),
        "test_time_augmentation": config.get("test_time_augmentation"),
        "cleaning": config.get("cleaning"),
        "pixel_spacing_mm": list(pixel),
        "slice_orientation": orientation,
        "slice_geometry_from": "model.json" if given else "the course default (1 mm, 'AR')",
    }


UNCERTAINTY_MEANING = {
    "is": (
        "the per-voxel standard deviation, on the output's 0..255 scale, across the outputs of "
        "the shifted and mirrored copies the export averages (each copy's move and mirror "
        "undone, calibration applied to each): where the copies disagree, i.e. where the "
        "network's output depends on the pixel grid or on left-right mirroring"
    ),
    "is_not": (
        "not a calibrated error bar, confidence interval or probability: it does not measure how "
        "far the synthetic image is from a real scan; voxels where every copy is equally wrong "
        "show no spread"
    ),
}


def translate_volume_files(
    model: str | os.PathLike,
    direction: str,
    inputs: Sequence[str | os.PathLike | Sequence[str | os.PathLike]],
    out_dir: str | os.PathLike,
    overwrite: bool = False,
    uncertainty: bool = False,
    series: str | None = None,
    volume: int | None = None,
    batch_size: int = BATCH_SIZE,
    mixed_precision: str = "auto",
) -> list[Path]:
    """Translate NIfTI volumes and DICOM series with an exported generator into `out_dir`.

    Each input gives `<name>_t2w-synthetic.nii.gz` (`_t1w-synthetic` for t2-to-t1): float32,
    the synthetic image on the course's 0..255 scale (background 0), with exactly the input's
    shape and geometry; a JSON sidecar beside it says what it is and how it was made; with
    `uncertainty`, `<...>_uncertainty.nii.gz` holds the standard deviation, per voxel and
    on the same scale, of the outputs of the shifted and mirrored copies the export averages
    (`mri_helpers.test_time`; refused for exports without copies). It shows where the copies
    disagree, i.e. where the output depends on the pixel grid or on mirroring; it is not a
    calibrated error bar, and says nothing of how far the synthetic image is from a real
    scan. `series` picks a series (UID or series number) in DICOM folders holding several;
    `volume` one volume (0-based) of 4-D NIfTI files (3-D files and DICOM ignore it).
    `mixed_precision` ("auto", "on", "off"), as the course's MIXED_PRECISION: "auto" runs the
    network in bfloat16 on a CPU that computes it natively (as the course trained there), in
    float16 on a GPU, in float32 elsewhere; the sidecar records which (`computed_in`).

    Everything is checked before anything is written: the model, every input's voxels and
    geometry, every output (none may replace an input or another input's output; existing
    ones only with `overwrite`). Files are written under temporary names and renamed. An
    overwritten translation loses a stale uncertainty file it no longer has. Returns the
    synthetic images, one per input.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; use one of {list(DIRECTIONS)}")
    policy = precision_policy(mixed_precision)
    generator, config = load_generator(model, direction)
    model_record = _model_record(model, config)  # checks the slice geometry keys
    if uncertainty and copies_of(generator) is None:
        raise ModelFileError(
            f"{model} averages no test-time copies (exported with test_time_augmentation "
            "off), so there is no spread between copies to map; drop --uncertainty, or use an "
            "export made with TEST_TIME_AUGMENTATION = True."
        )
    scans, plans = _planned_scans(inputs, series, volume, config, DIRECTIONS[direction][0])
    outputs = _checked_outputs(scans, direction, Path(out_dir), uncertainty, overwrite)
    written = []
    for scan, plan, paths in zip(scans, plans, outputs, strict=True):
        result, spread = run_plan(
            generator, config, plan, scan.voxels(), uncertainty, batch_size, scan.name, policy
        )
        scan.data = None
        made = _Translation(scan, plan, paths, direction, config, model_record, policy)
        copies = copies_of(generator) if uncertainty else None
        _write_all(made.files(result, spread, copies))
        if spread is None and overwrite:
            paths["uncertainty"].unlink(missing_ok=True)  # stale: from an earlier translation
        in_head = plan.clipped["fraction_above_255_in_head"]
        if in_head > 0.01:
            print(
                f"note: {scan.name}: {in_head:.1%} of the head was brighter than the course "
                "scale after intensity scaling and was clipped (see the sidecar)"
            )
        written.append(paths["image"])
    return written


def _planned_scans(inputs, series, volume, config: dict, contrast: str) -> tuple[list, list]:
    """Every input's scan and plan; all problems of all inputs raised together."""
    scans, problems = _collect(inputs, series, volume)
    plans = []
    for scan in scans:
        try:
            plans.append(plan_volume(scan.voxels(), scan.affine, config, contrast, scan.source))
            _release_beyond_budget([s for s in scans if s is not scan] + [scan])
        except DataError as error:
            problems.append(str(error))
    _raise(problems)
    return scans, plans


def _checked_outputs(
    scans: list, direction: str, out_dir: Path, uncertainty: bool, overwrite: bool
) -> list[dict[str, Path]]:
    """Each scan's output paths, checked before anything is written: none replaces an input
    or another input's output, existing ones only with `overwrite`; `out_dir` made."""
    fileio.check_output_folder(out_dir)
    outputs = [output_paths(scan.name, direction, out_dir) for scan in scans]
    by_name: dict[str, Scan] = {}
    for scan, paths in zip(scans, outputs, strict=True):
        other = by_name.setdefault(paths["image"].name, scan)
        if other is not scan:
            raise DataError(
                f"{other.source} and {scan.source} would both be translated to "
                f"{paths['image'].name}; translate them into separate --out folders (or "
                "rename one)."
            )
    targets = [
        path
        for paths in outputs
        for key, path in paths.items()
        if key != "uncertainty" or uncertainty
    ]
    try:
        check_outputs([f for scan in scans for f in scan.files], targets, overwrite)
    except OSError as error:
        raise DataError(f"cannot use --out {out_dir}: {error.strerror}.") from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create {out_dir} ({error.strerror}).") from None
    return outputs


@dataclass(frozen=True)
class _Translation:
    """One scan's translation, and the files that hold it: the image, the uncertainty map
    (with copies) and the JSON sidecar that says what it is and how it was made."""

    scan: Scan
    plan: VolumePlan
    paths: dict[str, Path]
    direction: str
    config: dict[str, Any]
    model_record: dict[str, Any]
    policy: str

    def files(self, result: np.ndarray, spread: np.ndarray | None, copies) -> dict:
        """{path: a writer} for each file of this translation."""
        synthetic_of = {"t1-to-t2": "T2w from T1w", "t2-to-t1": "T1w from T2w"}[self.direction]
        epoch = self.config.get("epoch")
        text = f"synthetic {synthetic_of} (CycleGAN {self.direction}"
        text += f", epoch {epoch})" if epoch is not None else ")"
        files = {self.paths["image"]: partial(_save_nifti, output_image(self.scan, result, text))}
        if spread is not None:
            note = output_image(self.scan, spread, f"copy spread of {text}", (0, 0))
            files[self.paths["uncertainty"]] = partial(_save_nifti, note)
        files[self.paths["sidecar"]] = partial(_save_json, self.sidecar(synthetic_of, copies))
        return files

    def sidecar(self, synthetic_of: str, copies) -> dict[str, Any]:
        uncertainty = None
        if copies is not None:
            uncertainty = {
                "file": self.paths["uncertainty"].name,
                "copies": copies,
                **UNCERTAINTY_MEANING,
            }
        return {
            "synthetic": True,
            "description": (
                f"Synthetic {synthetic_of}, computed by a CycleGAN generator of the mri_helpers "
                "course from the input below; not an acquired scan, not for diagnosis."
            ),
            "source": str(self.scan.source.resolve()),
            "source_description": self.scan.description,
            "model": self.model_record,
            "output": {
                "file": self.paths["image"].name,
                "values": "float32 on the course's 8-bit scale 0..255, background 0 (not rounded)",
                "geometry": "the input's own voxel grid: same shape, affine, qform and sform",
            },
            **self.plan.record(),
            "computed_in": self.policy,
            "uncertainty": uncertainty,
            "software": f"mri_helpers {__version__}",
        }
