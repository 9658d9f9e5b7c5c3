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
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from .errors import DataError, DataProblems

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
# Bounded memory: refuse images that would decode to more than this many pixels, and shrink
# (with a note) images whose longer side is above MAX_SIDE while reading them.
MAX_PIXELS = 40_000_000
MAX_SIDE = 1024
MAX_FILE_BYTES = 64 * 2**20


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
            if not found.exists():
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
            )
            for i, slice_id in enumerate(ph.ids)
        ]
    return MRIDataset(t1=sets["t1"], t2=sets["t2"], source=PHANTOM, kind=PHANTOM)


def read_course_data(path: str | os.PathLike) -> MRIDataset:
    """Read and validate every slice of a course zip or folder; raise on any problem."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{str(path)!r} does not exist.")
    if path.is_dir():
        entries = list(_folder_entries(path))
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:  # opened once; members read while it is open
            return _build_dataset(str(path.resolve()), list(_zip_entries(archive, path)))
    else:
        raise DataError(
            f"{str(path)!r} is neither a folder nor a zip archive. Pass the course zip "
            f"({COURSE_ZIP_NAME}) or the folder it extracts to."
        )
    return _build_dataset(str(path.resolve()), entries)


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
    for file in sorted(root.rglob("*")):
        if file.is_file():
            yield (
                PurePosixPath(file.relative_to(root).as_posix()),
                file.stat().st_size,
                (file.read_bytes),
            )


def _zip_entries(archive: zipfile.ZipFile, path: Path) -> Iterator[Entry]:
    """Entries of an open zip, read in place; refuse names that would escape a folder."""
    infos = [info for info in archive.infolist() if not info.is_dir()]
    unsafe = [i.filename for i in infos if _unsafe_member(i.filename)]
    if unsafe:
        raise DataError(
            f"{path} contains {len(unsafe)} unsafe entr{'y' if len(unsafe) == 1 else 'ies'} "
            f"(absolute path or '..'): {unsafe[:5]}. Such an archive could write outside "
            "its folder, so it is refused; re-create the zip from the image folders."
        )
    for info in infos:
        yield (
            PurePosixPath(info.filename),
            info.file_size,
            functools.partial(archive.read, info.filename),
        )


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
            image, notes = decode_slice(read() if size <= MAX_FILE_BYTES else b"", size)
        except DataError as error:
            problems.append(f"{rel}: {error}")
            continue
        sets[modality].append(Slice(rel.name, modality, image, f"{source}:{rel}", notes))
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
    size = len(data) if size is None else size
    if size == 0:
        raise DataError("the file is empty (0 bytes); copy it again from the course zip")
    if size > MAX_FILE_BYTES:
        raise DataError(f"the file is {size / 2**20:.0f} MiB, larger than any MRI slice should be")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise DataError(f"the file is a {image.format} image, not a PNG; save it as PNG")
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise DataError(
                    f"the image is {width}x{height} pixels, too large to be a slice "
                    f"(limit {MAX_PIXELS:,} pixels); downscale it first"
                )
            image.load()
            return _to_grayscale_array(image)
    except DataError:
        raise
    except Exception as error:  # PIL raises many types for broken files
        raise DataError(
            f"not a readable PNG ({type(error).__name__}: {error}); the file is corrupt, "
            "truncated or not an image"
        ) from None


def _to_grayscale_array(image: Image.Image) -> tuple[np.ndarray, tuple[str, ...]]:
    notes: list[str] = []
    if max(image.size) > MAX_SIDE:
        factor = -(-max(image.size) // MAX_SIDE)
        notes.append(f"shrunk from {image.size[0]}x{image.size[1]} by {factor} to bound memory")
        image = image.reduce(factor) if image.mode not in ("P", "1") else image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.int64)
        if array.min() < 0 or array.max() > 65535:
            raise DataError("the image holds values outside 0..65535; save it as 8 or 16 bit")
        notes.append("16-bit")
        return array.astype(np.uint16), tuple(notes)
    if image.mode != "L":
        notes.append(f"converted from {image.mode} to grayscale")
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            background = Image.new("RGBA", image.size, (0, 0, 0, 255))
            image = Image.alpha_composite(background, image.convert("RGBA"))
        image = image.convert("L")
    return np.asarray(image, dtype=np.uint8).copy(), tuple(notes)


# --- summary -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModalitySummary:
    """What `check-data` reports about one contrast."""

    count: int
    sizes: dict[str, int]  # "181x217" (width x height) -> number of slices
    dtypes: dict[str, int]
    intensity_range: tuple[int, int]
    notes: dict[str, int]  # conversion note -> number of slices


def summarize(dataset: MRIDataset) -> dict[str, ModalitySummary]:
    """Counts, sizes, dtypes, intensity range and conversions per contrast."""
    summary = {}
    for modality in MODALITIES:
        slices = dataset[modality]
        sizes: dict[str, int] = {}
        dtypes: dict[str, int] = {}
        notes: dict[str, int] = {}
        for s in slices:
            key = f"{s.shape[1]}x{s.shape[0]}"
            sizes[key] = sizes.get(key, 0) + 1
            dtypes[str(s.image.dtype)] = dtypes.get(str(s.image.dtype), 0) + 1
            for note in s.notes:
                notes[note] = notes.get(note, 0) + 1
        low = min(int(s.image.min()) for s in slices)
        high = max(int(s.image.max()) for s in slices)
        summary[modality] = ModalitySummary(len(slices), sizes, dtypes, (low, high), notes)
    return summary


def describe(dataset: MRIDataset) -> str:
    """A short human-readable report of `summarize()`."""
    lines = [f"Data: {dataset.source} ({dataset.kind})"]
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
        if set(info.sizes) != {f"{COURSE_SHAPE[1]}x{COURSE_SHAPE[0]}"}:
            lines.append(
                "      note: not all slices are 181x217; they will be padded and resized "
                "(02_image_processing)"
            )
    if dataset.ignored:
        shown = ", ".join(dataset.ignored[:5]) + (" ..." if len(dataset.ignored) > 5 else "")
        lines.append(f"  ignored {len(dataset.ignored)} non-PNG file(s): {shown}")
    return "\n".join(lines)
