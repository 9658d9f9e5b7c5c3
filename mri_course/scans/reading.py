"""Reading scans: NIfTI files and DICOM series as `Scan`s (geometry as a NIfTI affine),
within bounds, every problem of every input named; and writing the outputs whole.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from mri_helpers import fileio
from mri_helpers.errors import DataError, DataProblems

NIFTI_SUFFIXES = (".nii.gz", ".nii")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
OUTPUT_SUFFIXES = {"t1-to-t2": "t2w-synthetic", "t2-to-t1": "t1w-synthetic"}
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
