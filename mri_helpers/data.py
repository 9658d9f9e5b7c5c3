"""Find, read and validate the course data (explained in 01_data_understanding).

The course zip holds two unpaired sets of axial brain slices, 8-bit grayscale PNGs of 181x217:

    Tr1/TrainT1/Image #10.png ...   T1-weighted
    Tr2/TrainT2/Image #70.png ...   T2-weighted

The same layout is accepted as a zip or as an extracted folder, with or without one top-level
folder around it. Zips are read in place: nothing is extracted, so nothing can be written
outside the cache whatever the archive holds, and the user's file is only ever opened for
reading. Every image is decoded and checked; all problems are collected and reported together.
"""

from __future__ import annotations

import functools
import io
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from .errors import DataError, DataProblems
from .fileio import kind_of, read_stream_bounded, why_not_a_file

MODALITIES = ("t1", "t2")
COURSE_ZIP_NAME = "MRI+T1_T2+Dataset.zip"
COURSE_SHAPE = (217, 181)  # (height, width) of every course slice
PHANTOM = "phantom"
AUTO = "auto"

# Files that archivers and file browsers leave behind; never data.
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}
JUNK_DIRS = {"__macosx"}
# Folder names that say which contrast a slice is (case-insensitive, any depth).
MODALITY_FOLDERS = {
    "t1": {"tr1", "traint1", "t1", "t1w", "t1-weighted"},
    "t2": {"tr2", "traint2", "t2", "t2w", "t2-weighted"},
}
# Bounded memory: refuse files larger than MAX_FILE_BYTES before reading them and images that
# would decode to more than MAX_PIXELS pixels, and shrink (with a note) images whose longer side
# is above MAX_SIDE while reading them.
MAX_PIXELS = 40_000_000
MAX_SIDE = 1024
MAX_FILE_BYTES = 64 * 2**20
# Smallest side accepted. The U-Nets halve the image several times (a 1-pixel side is gone after
# the first step, and resizing it up to the network's size invents every pixel), and the head
# mask and intensity statistics need a head's worth of area; an image this small is a thumbnail
# or an icon, not a slice.
MIN_SIDE = 32
# Compression methods Python's zipfile reads (store, deflate, bzip2, lzma).
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
ZIP_UNREADABLE = {99: "AES encryption"}  # methods zipfile does not even name


@dataclass(frozen=True)
class Slice:
    """One 2-D slice: its id (the original file name), contrast and pixels as stored."""

    id: str
    modality: str
    image: np.ndarray  # (height, width), uint8 or uint16
    origin: str = ""  # where it was read from, for messages
    notes: tuple[str, ...] = ()  # conversions made while reading (RGB to gray, ...)
    clean: np.ndarray | None = None  # phantom only: the slice before noise and bias
    head_mask: np.ndarray | None = None  # phantom only: True inside the head
    brain_mask: np.ndarray | None = None  # phantom only: True inside the brain
    stored_shape: tuple[int, int] | None = None  # (height, width) in the file if it was shrunk

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape  # type: ignore[return-value]


@dataclass
class MRIDataset:
    """The two unpaired sets of slices, naturally sorted by id, and where they came from."""

    t1: list[Slice]
    t2: list[Slice]
    source: str
    kind: str  # "course" (zip or folder) or "phantom"
    ignored: list[str] = field(default_factory=list)  # files passed over (junk, non-PNG)

    def __getitem__(self, modality: str) -> list[Slice]:
        if modality not in MODALITIES:
            raise KeyError(f"unknown modality {modality!r}; use one of {MODALITIES}")
        return self.t1 if modality == "t1" else self.t2

    @property
    def is_phantom(self) -> bool:
        return self.kind == PHANTOM

    def ids(self, modality: str) -> list[str]:
        return [s.id for s in self[modality]]

    def stack(self, modality: str) -> np.ndarray:
        """All slices of one modality as an array (n, height, width); they must share a shape."""
        slices = self[modality]
        shapes = {s.shape for s in slices}
        if len(shapes) != 1:
            raise DataError(
                f"{modality} slices have {len(shapes)} different sizes {sorted(shapes)}; "
                "bring them to one size first (mri_helpers.processing does this)."
            )
        return np.stack([s.image for s in slices])


def natural_key(name: str) -> list[object]:
    """Sort key that orders numbers by value: 'Image #9' before 'Image #10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted({n for n in names if names.count(n) > 1})


def project_root() -> Path:
    """The folder that holds `data/` and `notebooks/` (the repository, for an editable install)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (Path.cwd(), *Path.cwd().parents, here):
        if (candidate / "notebooks").is_dir() and (candidate / "pyproject.toml").is_file():
            return candidate
    return here


def find_data(path: str | os.PathLike | None = None) -> Path | None:
    """Where the course data is: `path`, else `$MRI_DATA`, else under `data/`; None if nowhere.

    An explicit path or `$MRI_DATA` that does not exist is an error, never a silent fallback.
    """
    if path is not None and str(path) == AUTO:
        path = None
    for given, what in ((path, "the given path"), (os.environ.get("MRI_DATA"), "$MRI_DATA")):
        if given:
            found = Path(given).expanduser()
            if kind_of(found).startswith("unreachable"):
                raise DataError(f"{what} {str(found)!r} is {kind_of(found)}.")
            if kind_of(found) == "missing":
                raise DataError(
                    f"{what} {str(found)!r} does not exist. Pass the course zip "
                    f"({COURSE_ZIP_NAME}) or its extracted folder, or put the zip into data/."
                )
            return found
    data_dir = project_root() / "data"
    if (data_dir / COURSE_ZIP_NAME).is_file():
        return data_dir / COURSE_ZIP_NAME
    if data_dir.is_dir():
        for child in sorted(data_dir.iterdir()):
            if child.suffix.lower() == ".zip" or (child.is_dir() and _has_pngs(child)):
                return child
    return None


def load_dataset(source: str | os.PathLike | None = AUTO, **phantom_options) -> MRIDataset:
    """Load the course data from a zip or folder, or the phantom.

    `source`: a path; "phantom" for the built-in phantom; "auto" or None to use `find_data()`
    and fall back to the phantom (with a printed notice) when no course data is found.
    """
    if source is None or str(source) == AUTO:
        found = find_data()
        if found is None:
            print(
                f"No course data found (looked at $MRI_DATA and data/{COURSE_ZIP_NAME}): "
                "using the built-in phantom instead."
            )
            return load_phantom(**phantom_options)
        source = found
    if str(source) == PHANTOM:
        return load_phantom(**phantom_options)
    return read_course_data(find_data(source))  # type: ignore[arg-type]


def load_phantom(num_slices: int = 48, **options) -> MRIDataset:
    """The built-in paired phantom as a dataset (see `mri_helpers.phantom`)."""
    from .phantom import make_phantom

    ph = make_phantom(num_slices, **options)
    sets = {}
    for modality, observed, clean in (("t1", ph.t1, ph.t1_clean), ("t2", ph.t2, ph.t2_clean)):
        sets[modality] = [
            Slice(
                id=slice_id,
                modality=modality,
                image=observed[i],
                origin=f"phantom:{slice_id}",
                clean=clean[i],
                head_mask=ph.head_mask[i],
                brain_mask=ph.brain_mask[i],
            )
            for i, slice_id in enumerate(ph.ids)
        ]
    return MRIDataset(t1=sets["t1"], t2=sets["t2"], source=PHANTOM, kind=PHANTOM)


def read_course_data(path: str | os.PathLike) -> MRIDataset:
    """Read and validate every slice of a course zip or folder; raise on any problem."""
    path = Path(path)
    kind = kind_of(path)
    if kind not in ("a file", "a folder"):
        what = "does not exist" if kind == "missing" else f"is {kind}"
        raise DataError(
            f"{str(path)!r} {what}; pass the course zip ({COURSE_ZIP_NAME}) or its folder."
        )
    if path.is_dir():
        return _build_dataset(str(path.resolve()), list(_folder_entries(path)))
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            raise DataError(
                f"{path} is a damaged zip archive ({error}); download or copy it again."
            ) from None
        with archive:  # opened once; members read while it is open
            return _build_dataset(str(path.resolve()), list(_zip_entries(archive, path)))
    damaged = " (truncated, damaged or not a zip at all)" if path.suffix.lower() == ".zip" else ""
    raise DataError(
        f"{str(path)!r} is neither a folder nor a zip archive{damaged}. Pass the course zip "
        f"({COURSE_ZIP_NAME}) or the folder it extracts to; download or copy it again if it is "
        "the course zip."
    )


def read_slice_file(path: str | os.PathLike) -> tuple[np.ndarray, tuple[str, ...]]:
    """Read one PNG slice file; its size is checked before any byte is read.

    Returns the pixels and the conversions made (see `decode_slice`); raises DataError naming
    the file for anything unreadable.
    """
    image, notes, _ = _read_file(Path(path))
    return image, notes


def read_slice(path: str | os.PathLike, modality: str) -> Slice:
    """One PNG slice file as a `Slice` (id: the file name), with its stored size if shrunk."""
    path = Path(path)
    image, notes, stored_shape = _read_file(path)
    return Slice(path.name, modality, image, str(path), notes, stored_shape=stored_shape)


def _read_file(path: Path) -> tuple[np.ndarray, tuple[str, ...], tuple[int, int] | None]:
    try:
        problem = why_not_a_file(path)
        if problem is not None:
            raise DataError(f"{path} {problem}; pass PNG slice files or folders holding them.")
        size = path.stat().st_size  # checked before a single byte is read
        return _decode(b"", size) if size > MAX_FILE_BYTES else _decode(_read_bounded(path))
    except OSError as error:
        raise DataError(f"{path} cannot be read ({error.strerror}).") from None
    except DataError as error:
        message = str(error)
        raise DataError(
            message if message.startswith(str(path)) else f"{path}: {message}"
        ) from None


def _read_bounded(path: Path) -> bytes:
    """The bytes of a file, never more than MAX_FILE_BYTES + 1 of them (it may grow)."""
    try:
        with path.open("rb") as file:
            return file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise DataError(f"cannot be read ({error.strerror}); check its permissions") from None


# --- reading -------------------------------------------------------------------------------

Entry = tuple[PurePosixPath, int, Callable[[], bytes]]  # relative path, size, reader


def _is_junk(rel: PurePosixPath) -> bool:
    parts = [p.lower() for p in rel.parts]
    return (
        any(p in JUNK_DIRS for p in parts[:-1])
        or parts[-1] in JUNK_NAMES
        or any(p.startswith(".") for p in parts)
    )


def _has_pngs(folder: Path) -> bool:
    return any(p.suffix.lower() == ".png" for p in folder.rglob("*") if p.is_file())


def _folder_entries(root: Path) -> Iterator[Entry]:
    """Files under `root` with their sizes (from stat, so a huge file is never read)."""
    for file in sorted(root.rglob("*")):
        if file.is_file():
            yield (
                PurePosixPath(file.relative_to(root).as_posix()),
                file.stat().st_size,
                functools.partial(_read_bounded, file),
            )


def _zip_entries(archive: zipfile.ZipFile, path: Path) -> Iterator[Entry]:
    """Entries of an open zip, read in place; refuse names that would escape a folder, and
    archives whose slices are encrypted or compressed in a way Python cannot read."""
    infos = [info for info in archive.infolist() if not info.is_dir()]
    unsafe = [i.filename for i in infos if _unsafe_member(i.filename)]
    if unsafe:
        raise DataError(
            f"{path} contains {len(unsafe)} unsafe entr{'y' if len(unsafe) == 1 else 'ies'} "
            f"(absolute path or '..'): {unsafe[:5]}. Such an archive could write outside "
            "its folder, so it is refused; re-create the zip from the image folders."
        )
    slices = [
        i
        for i in infos
        if PurePosixPath(i.filename).suffix.lower() == ".png"
        and not _is_junk(PurePosixPath(i.filename))
    ]
    encrypted = [i.filename for i in slices if i.flag_bits & 0x1]
    if encrypted:
        raise DataError(
            f"{path} is password-protected: {len(encrypted)} of its {len(slices)} PNG slices "
            f"are encrypted (e.g. {encrypted[0]!r}). Extract it with the password and pass the "
            "folder, or re-create the zip without a password."
        )
    odd = [i for i in slices if i.compress_type not in ZIP_METHODS]
    if odd:
        method = odd[0].compress_type
        name = zipfile.compressor_names.get(method) or ZIP_UNREADABLE.get(method, "unknown")
        raise DataError(
            f"{path}: {len(odd)} PNG slice(s) are compressed with method {method} ({name}), "
            f"e.g. {odd[0].filename!r}, which Python's zipfile cannot read. Re-create the zip "
            "with standard (deflate) compression, or extract it and pass the folder."
        )
    for info in infos:
        yield (
            PurePosixPath(info.filename),
            info.file_size,  # zipfile never decompresses more than this
            functools.partial(_read_member, archive, info),
        )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """One member's bytes; a damaged member is a DataError (collected with the others)."""
    try:  # a chunk at a time: the header's size may lie (fileio.read_stream_bounded)
        with archive.open(info) as member:
            return read_stream_bounded(member, info.file_size, MAX_FILE_BYTES, "the zip entry")
    except RuntimeError as error:  # encrypted (password required) or a missing decompressor
        raise DataError(f"cannot be read from the zip ({error})") from None
    except NotImplementedError as error:
        raise DataError(
            f"is stored in a way Python's zipfile cannot read ({error}); re-create the zip "
            "with standard (deflate) compression"
        ) from None
    except zipfile.BadZipFile as error:
        what = "failed its CRC check" if "CRC" in str(error) else f"is damaged ({error})"
        raise DataError(
            f"the zip entry {what}: the archive is corrupt; download or copy it again"
        ) from None
    except (zlib.error, EOFError, OSError, ValueError) as error:  # also bz2's and lzma's
        raise DataError(
            f"the compressed data in the zip is corrupt ({error}); download or copy the zip again"
        ) from None


def _unsafe_member(name: str) -> bool:
    normalized = name.replace("\\", "/")
    return (
        normalized.startswith("/")
        or re.match(r"^[A-Za-z]:", normalized) is not None
        or ".." in normalized.split("/")
    )


def _modality_of(rel: PurePosixPath) -> str | None:
    folders = {p.lower() for p in rel.parts[:-1]}
    found = [m for m, names in MODALITY_FOLDERS.items() if folders & names]
    return found[0] if len(found) == 1 else None


def _build_dataset(source: str, entries: list[Entry]) -> MRIDataset:
    sets: dict[str, list[Slice]] = {"t1": [], "t2": []}
    ignored, problems, unsorted_pngs = [], [], []
    for rel, size, read in entries:
        if _is_junk(rel):
            continue
        if rel.suffix.lower() != ".png":
            ignored.append(str(rel))
            continue
        modality = _modality_of(rel)
        if modality is None:
            unsorted_pngs.append(str(rel))
            continue
        try:
            image, notes, stored = _decode(read() if size <= MAX_FILE_BYTES else b"", size)
        except DataError as error:
            problems.append(f"{rel}: {error}")
            continue
        origin = f"{source}:{rel}"
        sets[modality].append(Slice(rel.name, modality, image, origin, notes, stored_shape=stored))
    if problems:
        raise DataProblems(source, problems)
    _check_layout(source, sets, unsorted_pngs)
    for modality, slices in sets.items():
        slices.sort(key=lambda s: natural_key(s.id))
        duplicates = repeated([s.id for s in slices])
        if duplicates:
            raise DataError(
                f"{source}: two {modality.upper()} slices share the name(s) {duplicates}; "
                "slice ids must be unique within a contrast, so rename one of each."
            )
    return MRIDataset(t1=sets["t1"], t2=sets["t2"], source=source, kind="course", ignored=ignored)


def _check_layout(source: str, sets: dict[str, list[Slice]], unsorted: list[str]) -> None:
    layout = "Tr1/TrainT1/*.png (T1-weighted) and Tr2/TrainT2/*.png (T2-weighted)"
    if not sets["t1"] and not sets["t2"]:
        if unsorted:
            raise DataError(
                f"{source} has {len(unsorted)} PNG file(s) but no T1/T2 folders, so the "
                f"contrast of each slice is unknown (e.g. {unsorted[0]!r}). Arrange them as "
                f"{layout}."
            )
        raise DataError(f"{source} holds no PNG slices. The course data is laid out as {layout}.")
    for modality in MODALITIES:
        if not sets[modality]:
            other = "t2" if modality == "t1" else "t1"
            raise DataError(
                f"{source} has {len(sets[other])} {other.upper()} slices but no "
                f"{modality.upper()} slices: a CycleGAN needs both contrasts. Expected {layout}."
            )


def decode_slice(data: bytes, size: int | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Decode PNG bytes to a 2-D uint8 or uint16 array, noting any conversion made."""
    image, notes, _ = _decode(data, size)
    return image, notes


def _decode(
    data: bytes, size: int | None = None
) -> tuple[np.ndarray, tuple[str, ...], tuple[int, int] | None]:
    """`decode_slice`, plus the (height, width) stored in the file when it was shrunk."""
    size = len(data) if size is None else size
    if size == 0:
        raise DataError("the file is empty (0 bytes); copy it again from the course zip")
    if size > MAX_FILE_BYTES:
        raise DataError(
            f"the file is {size / 2**20:,.0f} MiB, larger than any MRI slice should be "
            f"(limit {MAX_FILE_BYTES // 2**20} MiB); pass the PNG slices themselves"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(_too_large(*_png_size(data))) from None
    except Exception as error:  # PIL raises many types for broken files
        raise _unreadable(error) from None
    with image:
        if image.format != "PNG":
            raise DataError(f"the file is a {image.format} image, not a PNG; save it as PNG")
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise DataError(_too_large(width, height))
        factor = -(-max(width, height) // MAX_SIDE)  # 1: not shrunk
        if min(width, height) < MIN_SIDE:
            raise DataError(
                f"the image is {width}x{height} pixels, smaller than the minimum of {MIN_SIDE} "
                f"pixels a side; pass whole slices (the course's are 181x217)"
            )
        if -(-min(width, height) // factor) < MIN_SIDE:
            raise DataError(
                f"the image is {width}x{height} pixels: shrunk to at most {MAX_SIDE} pixels a "
                f"side it would be narrower than {MIN_SIDE} pixels; crop it to the head first"
            )
        try:
            image.load()
            array, notes = _to_grayscale_array(image, factor)
        except DataError:
            raise
        except Exception as error:
            raise _unreadable(error) from None
    return array, notes, ((height, width) if factor > 1 else None)


def _unreadable(error: Exception) -> DataError:
    return DataError(
        f"not a readable PNG ({type(error).__name__}: {error}); the file is corrupt, "
        "truncated or not an image"
    )


def _too_large(width: int | None, height: int | None) -> str:
    size = f"{width}x{height} = {width * height:,} pixels" if width and height else "huge"
    return (
        f"the image is {size}, too large to be a slice (limit {MAX_PIXELS:,} pixels); "
        "downscale it first"
    )


def _png_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height from a PNG's header alone (PIL's open refuses a decompression bomb)."""
    from PIL import PngImagePlugin

    try:
        with PngImagePlugin.PngImageFile(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # not a PNG after all: the size stays unknown
        return None, None


def _to_grayscale_array(image: Image.Image, factor: int = 1) -> tuple[np.ndarray, tuple[str, ...]]:
    """Pixels as 8- or 16-bit gray, shrunk by `factor` (bounded memory), with notes."""
    notes: list[str] = []
    mode, transparent = image.mode, "transparency" in image.info
    if mode.startswith("I;16"):
        image = image.convert("I")  # 32-bit, which PIL can shrink; 16-bit again below
    elif mode in ("P", "PA", "1"):  # palette or 1-bit: PIL cannot shrink these as they are
        image = image.convert("RGBA" if mode == "PA" or transparent else "L")
    if factor > 1:
        width, height = image.size
        image = image.reduce(factor)
        notes.append(
            f"shrunk from {width}x{height} to {image.width}x{image.height} to bound memory"
        )
    if image.mode == "I":
        array = np.asarray(image, dtype=np.int64)
        if array.min() < 0 or array.max() > 65535:
            raise DataError("the image holds values outside 0..65535; save it as 8 or 16 bit")
        notes.append("16-bit")
        return array.astype(np.uint16), tuple(notes)
    if mode != "L":
        notes.append(f"converted from {mode} to grayscale")
        if image.mode in ("RGBA", "LA") or transparent:
            background = Image.new("RGBA", image.size, (0, 0, 0, 255))
            image = Image.alpha_composite(background, image.convert("RGBA"))
        image = image.convert("L")
    return np.asarray(image, dtype=np.uint8).copy(), tuple(notes)


# --- summary -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModalitySummary:
    """What `check-data` reports about one contrast."""

    count: int
    sizes: dict[str, int]  # "181x217" (width x height, as stored in the files) -> slices
    dtypes: dict[str, int]
    intensity_range: tuple[int, int]
    notes: dict[str, int]  # conversion note -> number of slices (shrinking: see `shrunk`)
    shrunk: dict[str, str] = field(default_factory=dict)  # id -> "6000x6000 -> 1000x1000"


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def summarize(dataset: MRIDataset) -> dict[str, ModalitySummary]:
    """Counts, stored sizes, dtypes, intensity range, conversions and shrunk slices."""
    summary = {}
    for modality in MODALITIES:
        slices = dataset[modality]
        sizes: dict[str, int] = {}
        dtypes: dict[str, int] = {}
        notes: dict[str, int] = {}
        shrunk: dict[str, str] = {}
        for s in slices:
            key = _size(s.stored_shape or s.shape)
            sizes[key] = sizes.get(key, 0) + 1
            dtypes[str(s.image.dtype)] = dtypes.get(str(s.image.dtype), 0) + 1
            if s.stored_shape is not None:
                shrunk[s.id] = f"{_size(s.stored_shape)} -> {_size(s.shape)}"
            for note in s.notes:
                if not note.startswith("shrunk"):
                    notes[note] = notes.get(note, 0) + 1
        low = min(int(s.image.min()) for s in slices)
        high = max(int(s.image.max()) for s in slices)
        summary[modality] = ModalitySummary(len(slices), sizes, dtypes, (low, high), notes, shrunk)
    return summary


def describe(dataset: MRIDataset) -> str:
    """A short human-readable report of `summarize()`."""
    lines = [f"Data: {Path(dataset.source).name} ({dataset.kind})"]  # no machine paths
    for modality, info in summarize(dataset).items():
        sizes = ", ".join(f"{n} of {size}" for size, n in info.sizes.items())
        dtypes = ", ".join(f"{n} {dtype}" for dtype, n in info.dtypes.items())
        low, high = info.intensity_range
        lines.append(
            f"  {modality.upper()}: {info.count} slices; size (width x height) {sizes}; "
            f"{dtypes}; intensities {low}..{high}"
        )
        for note, n in info.notes.items():
            lines.append(f"      note: {n} slice(s) {note}")
        if info.shrunk:
            shown = ", ".join(f"{i} {change}" for i, change in list(info.shrunk.items())[:5])
            more = f" and {len(info.shrunk) - 5} more" if len(info.shrunk) > 5 else ""
            lines.append(
                f"      note: {len(info.shrunk)} slice(s) larger than {MAX_SIDE} pixels a side "
                f"were shrunk while reading, to bound memory (stored -> read): {shown}{more}"
            )
        if set(info.sizes) != {f"{COURSE_SHAPE[1]}x{COURSE_SHAPE[0]}"}:
            lines.append(
                "      note: not all slices are 181x217; they will be padded and resized "
                "(02_image_processing)"
            )
    if dataset.ignored:
        shown = ", ".join(dataset.ignored[:5]) + (" ..." if len(dataset.ignored) > 5 else "")
        lines.append(f"  ignored {len(dataset.ignored)} non-PNG file(s): {shown}")
    return "\n".join(lines)


# --- hidden partners (01_data_understanding, "Hidden partners") ----------------------------
def find_partners(dataset: MRIDataset, margin: float = 0.05) -> dict[str, str]:
    """Each T1 slice's partner in the T2 set, {T1 id: T2 id}: the T2 slice cut at the same
    level of the same head, pixel for pixel, though no file name says so.

    Normalised mutual information (scikit-image) measures how well one image's grey levels
    predict the other's, whatever the contrast, so it is high only where the anatomy lines
    up. A pair counts if each is the other's best match and beats the runner-up by `margin`
    (on the course zip: 1.48-1.50 against at most 1.32). Slices of different sizes never pair.
    """
    from skimage.metrics import normalized_mutual_information

    t1, t2 = dataset.t1, dataset.t2
    scores = np.full((len(t1), len(t2)), -np.inf)
    for i, a in enumerate(t1):
        for j, b in enumerate(t2):
            if a.shape == b.shape:
                scores[i, j] = normalized_mutual_information(a.image, b.image, bins=64)
    partners = {}
    for i, row in enumerate(scores):
        if len(row) < 2 or not np.isfinite(row.max()):
            continue
        j = int(np.argmax(row))
        runner_up = max(
            np.partition(row, -2)[-2], np.max(np.delete(scores[:, j], i), initial=-np.inf)
        )
        clear = np.isfinite(runner_up) and row[j] - runner_up >= margin  # one candidate: no
        if int(np.argmax(scores[:, j])) == i and clear:
            partners[t1[i].id] = t2[j].id
    return partners
