"""The course data's files: where they are, and reading them within bounds.

Lesson 01 reads the course zip with these (`mri_helpers.data.read_course_data`): `opened`
lists a zip's members (read in place: nothing is extracted, so nothing can be written outside
a folder whatever the archive holds) or a folder's files, each with its size and a reader that
never reads more than it may; `decode_png` turns one into pixels, refusing what is not a
sensible slice with a message that says why. `summarize` and `describe` report what was read
(`mri-course check-data`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image

from .errors import DataError
from .fileio import kind_of, read_stream_bounded, why_not_a_file

if TYPE_CHECKING:  # the lesson's module reads with this one; this one only names its types
    from .data import MRIDataset


class SliceFile(NamedTuple):
    """One file of the data: its path inside the zip or folder, its size, and its reader."""

    path: PurePosixPath
    size: int
    read: Callable[[], bytes]


COURSE_ZIP_NAME = "MRI+T1_T2+Dataset.zip"

COURSE_SHAPE = (217, 181)  # (height, width) of every course slice

PHANTOM = "phantom"

AUTO = "auto"

# Files that archivers and file browsers leave behind; never data.
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}

JUNK_DIRS = {"__macosx"}

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


def read_slice_file(path: str | os.PathLike, with_stored_shape: bool = False) -> tuple:
    """Read one PNG slice file; its size is checked before any byte is read.

    Returns the pixels and the conversions made (see `decode_slice`), and with
    `with_stored_shape` its stored (height, width) if it was shrunk; raises DataError naming
    the file for anything unreadable.
    """
    image, notes, stored_shape = _read_file(Path(path))
    return (image, notes, stored_shape) if with_stored_shape else (image, notes)


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


def _is_junk(rel: PurePosixPath) -> bool:
    parts = [p.lower() for p in rel.parts]
    return (
        any(p in JUNK_DIRS for p in parts[:-1])
        or parts[-1] in JUNK_NAMES
        or any(p.startswith(".") for p in parts)
    )


def _has_pngs(folder: Path) -> bool:
    return any(p.suffix.lower() == ".png" for p in folder.rglob("*") if p.is_file())


def _folder_entries(root: Path) -> Iterator[SliceFile]:
    """Files under `root` with their sizes (from stat, so a huge file is never read)."""
    for file in sorted(root.rglob("*")):
        if file.is_file():
            yield SliceFile(
                PurePosixPath(file.relative_to(root).as_posix()),
                file.stat().st_size,
                functools.partial(_read_bounded, file),
            )


def _zip_entries(archive: zipfile.ZipFile, path: Path) -> Iterator[SliceFile]:
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
        yield SliceFile(
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
    for modality in ("t1", "t2"):
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


@contextlib.contextmanager
def opened(path: str | os.PathLike) -> Iterator[tuple[str, list[SliceFile]]]:
    """The data's source (its full path) and its files, junk left out: a zip's members,
    read in place while the zip is open, or a folder's files. Refuses, with the reason,
    anything that is neither, and zips that are damaged, encrypted or unsafe."""
    path = Path(path)
    kind = kind_of(path)
    if kind not in ("a file", "a folder"):
        what = "does not exist" if kind == "missing" else f"is {kind}"
        raise DataError(
            f"{str(path)!r} {what}; pass the course zip ({COURSE_ZIP_NAME}) or its folder."
        )
    source = str(path.resolve())
    if path.is_dir():
        yield source, [f for f in _folder_entries(path) if not _is_junk(f.path)]
        return
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            raise DataError(
                f"{path} is a damaged zip archive ({error}); download or copy it again."
            ) from None
        with archive:  # opened once; members read while it is open
            yield source, [f for f in _zip_entries(archive, path) if not _is_junk(f.path)]
        return
    damaged = " (truncated, damaged or not a zip at all)" if path.suffix.lower() == ".zip" else ""
    raise DataError(
        f"{str(path)!r} is neither a folder nor a zip archive{damaged}. Pass the course zip "
        f"({COURSE_ZIP_NAME}) or the folder it extracts to; download or copy it again if it is "
        "the course zip."
    )


def decode_png(file: SliceFile) -> tuple[np.ndarray, tuple[str, ...], tuple[int, int] | None]:
    """One file's pixels (2-D, uint8 or uint16), the conversions made, and its stored
    (height, width) if it was shrunk to bound memory; a DataError says what is wrong."""
    return _decode(file.read() if file.size <= MAX_FILE_BYTES else b"", file.size)


# The course zip as distributed with the course's case study: its SHA-256, and a digest of its
# slices (each PNG's folder, name and bytes) that still recognises them re-zipped or extracted.
COURSE_ZIP_SHA256 = "04328476d154c9796fe1cbc2250420f58323b0fd24e5c326f00b36f990e44bb1"

COURSE_SLICES_SHA256 = "20039169c7bf02debc8414f98d5297055e9d462d1eb2cba67b2d7bb94dbe5388"


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(2**20):
            digest.update(block)
    return digest.hexdigest()


def slices_sha256(path: str | os.PathLike) -> str:
    """A digest of the data's PNG slices, independent of the archive: each slice's folder and
    name (e.g. `TrainT1/Image #10.png`) with the SHA-256 of its bytes, in sorted order."""
    with opened(path) as (_, files):
        entries = sorted(
            (PurePosixPath(*f.path.parts[-2:]).as_posix(), hashlib.sha256(f.read()).hexdigest())
            for f in files
            if f.path.suffix.lower() == ".png" and f.size <= MAX_FILE_BYTES
        )
    return hashlib.sha256("\n".join(f"{n} {h}" for n, h in entries).encode()).hexdigest()


def identify_data(path: str | os.PathLike) -> str:
    """One line: whether `path` is the course's own zip (by its SHA-256), the course's slices
    in another zip or folder, or another data set."""
    path = Path(path)
    if path.is_file() and file_sha256(path) == COURSE_ZIP_SHA256:
        return f"the course's own zip (SHA-256 {COURSE_ZIP_SHA256})"
    what = "zip" if path.is_file() else "folder"
    if slices_sha256(path) == COURSE_SLICES_SHA256:
        return f"the course's own slices, in another {what} (the same PNG files, byte for byte)"
    checksum = f"SHA-256 {file_sha256(path)}, " if path.is_file() else ""
    return (
        f"not the course zip ({checksum}the course zip's is {COURSE_ZIP_SHA256[:12]}...): "
        f"another data set; the lessons run on it, but their committed outputs are the course "
        f"zip's"
    )
