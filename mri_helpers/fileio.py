"""Files as a careful program treats them: named for what they are, read within a bound,
written whole or not at all, and output places checked before any work.

Every reader and writer of the package goes through these few functions, so one rule holds
everywhere: a device, FIFO or socket is named as such (and never opened, so nothing hangs), a
read never takes more than its documented limit whatever a header claims, a file is replaced
only by a complete new one (a temporary name in the same folder, flushed to disk, renamed), and
a command refuses a place it cannot write before it starts the work it would write there.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import DataError, OutputPlaceError

CHUNK_BYTES = 1 << 20  # streams are read a MiB at a time
MAX_JSON_BYTES = 16 << 20  # manifests, model.json, sidecars: a few KiB in practice
# What a refused input may cost at most, whatever its header claims (README, "What happens
# when things go wrong"): every limit of every reader keeps its refusals under this.
MEMORY_BOUND_BYTES = 1 << 30


def kind_of(path: str | os.PathLike) -> str:
    """What `path` is, in words: "a file", "a folder", "a character device", "a FIFO (named
    pipe)", ..., or "missing". Symbolic links are followed; nothing is opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing"
    except OSError as error:
        return f"unreachable ({error.strerror})"
    for test, name in (
        (stat.S_ISREG, "a file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def why_not_a_file(path: str | os.PathLike) -> str | None:
    """None when `path` is a readable regular file, else what it is instead ("does not
    exist", "is a folder", "is a character device", "cannot be read (Permission denied)")."""
    kind = kind_of(path)
    if kind == "missing":
        return "does not exist"
    if kind != "a file":
        return kind if kind.startswith("unreachable") else f"is {kind}, not a file"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None


def require_file(path: str | os.PathLike, hint: str = "") -> Path:
    """`path` if it is a readable regular file; else a DataError saying what it is."""
    problem = why_not_a_file(path)
    if problem is not None:
        raise DataError(f"{path} {problem}" + (f"; {hint}" if hint else "."))
    return Path(path)


def read_bounded(path: str | os.PathLike, limit: int, what: str = "file") -> bytes:
    """All bytes of a regular file, refused (DataError) when it holds more than `limit`:
    its size is checked before reading, and the read stops at `limit + 1` bytes, so a file
    that grows meanwhile costs no more."""
    path = require_file(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise DataError(
                f"{path} is {_size(size)}, more than the {_size(limit)} a {what} may have; "
                "pass the right file."
            )
        with path.open("rb") as stream:
            data = stream.read(limit + 1)
    except OSError as error:
        raise DataError(f"{path} cannot be read ({error.strerror}).") from None
    if len(data) > limit:
        raise DataError(f"{path} grew past {_size(limit)} while it was read; try again.")
    return data


def read_stream_bounded(stream: Any, announced: int, limit: int, what: str) -> bytes:
    """Read a stream (zip member, gzip) that announced `announced` bytes, a chunk at a time,
    never holding more than `min(announced, limit) + CHUNK_BYTES`: refused when the
    announcement exceeds `limit` or the stream runs past what it announced."""
    if announced > limit:
        raise DataError(
            f"{what} announces {_size(announced)}, more than the {_size(limit)} allowed"
        )
    chunks, total = [], 0
    while True:
        chunk = stream.read(min(CHUNK_BYTES, announced - total + 1))
        if not chunk:
            break
        total += len(chunk)
        if total > announced:
            raise DataError(
                f"{what} holds more data than its header announces ({_size(announced)}): "
                "the file is damaged or crafted"
            )
        chunks.append(chunk)
    if total < announced:
        raise DataError(
            f"{what} ends after {_size(total)} of the {_size(announced)} its header "
            "announces: the file is truncated"
        )
    return b"".join(chunks)


def read_json(path: str | os.PathLike, limit: int = MAX_JSON_BYTES) -> Any:
    """A JSON file's content, read within `limit` bytes; DataError for anything else."""
    data = read_bounded(path, limit, "JSON file")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:
        raise DataError(f"{path} is not readable JSON ({str(error)[:120]}).") from None


@contextlib.contextmanager
def replacing(target: str | os.PathLike) -> Iterator[Path]:
    """Write `target` whole or not at all: yields a temporary path in the same folder with the
    same ending (Keras and nibabel choose the format by it); when the block ends without an
    error, the file is flushed to disk and renamed over `target` (a rename within one folder
    never leaves half a file); on an error it is removed and `target` left as it was."""
    target = Path(target)
    ending = "".join(target.suffixes[-2:])[-16:]  # .nii.gz, .keras: short, whatever the name
    handle, name = tempfile.mkstemp(
        prefix=f".{target.name[:40]}.", suffix=f".partial{ending}", dir=target.parent
    )
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        os.chmod(partial, _new_file_mode(target))  # mkstemp's files are private (0600)
        with partial.open("rb+") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _new_file_mode(target: Path) -> int:
    """The mode `target` has, or a new file would get from `open` (0666 less the umask)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mask = os.umask(0)  # read it: os.umask only reads by setting
        os.umask(mask)
        return 0o666 & ~mask


@contextlib.contextmanager
def replacing_all(targets: Iterable[str | os.PathLike]) -> Iterator[dict[Path, Path]]:
    """`replacing` for several files: {target: its temporary path}; when the block ends
    without an error they are all renamed into place, in order; on an error in the block
    all are removed and every target left as it was."""
    targets = [Path(t) for t in targets]
    with contextlib.ExitStack() as stack:  # exits run last first: enter the last first
        partials = {t: stack.enter_context(replacing(t)) for t in reversed(targets)}
        yield {t: partials[t] for t in targets}


def write_text(target: str | os.PathLike, text: str) -> Path:
    """`target.write_text(text)`, whole or not at all (`replacing`)."""
    with replacing(target) as partial:
        partial.write_text(text)
    return Path(target)


def write_json(target: str | os.PathLike, content: Any) -> Path:
    """`content` as indented JSON in `target`, whole or not at all."""
    return write_text(target, json.dumps(content, indent=2, default=str))


def check_output_folder(
    folder: str | os.PathLike, option: str = "--out", inputs: Sequence[str | os.PathLike] = ()
) -> Path:
    """The output-first rule for a folder: refuse, before any work, a place that is a file or
    a special file (or lies under one), that is one of `inputs`, or where nothing can be
    created (read-only, /proc, no permission). Nothing is left behind by the check."""
    folder = Path(folder)
    kind = kind_of(folder)
    if kind not in ("missing", "a folder"):
        raise OutputPlaceError(f"{option} {folder} is {kind}, not a folder; choose a folder.")
    for given in inputs:
        if _same(folder, Path(given)):
            raise OutputPlaceError(
                f"{option} {folder} is one of the inputs; choose another folder."
            )
    existing = next((p for p in (folder, *folder.parents) if kind_of(p) != "missing"), None)
    if existing is None or kind_of(existing) != "a folder":
        raise OutputPlaceError(
            f"{option} {folder}: {existing} is {kind_of(existing)}, not a folder; choose another."
        )
    try:  # the one sure test of "can be written": create something, then remove it
        os.rmdir(tempfile.mkdtemp(prefix=".", dir=existing))
    except OSError as error:
        # a folder at the system's path limit holds nothing more: its outputs' own names
        # are checked against the limit where they are known (png_slices.check_outputs)
        long_path = error.errno == errno.ENAMETOOLONG and os.access(existing, os.W_OK)
        if not long_path:
            raise OutputPlaceError(
                f"{option} {short_path(folder)} cannot be written ({short_path(existing)}: "
                f"{error.strerror}); choose a writable place."
            ) from None
    return folder


def check_output_file(
    path: str | os.PathLike, option: str, inputs: Sequence[str | os.PathLike] = ()
) -> Path:
    """The output-first rule for one file: its folder exists and can be written, the file is
    not a folder or a special file (writing to a FIFO would hang), and not one of `inputs`."""
    path = Path(path)
    kind = kind_of(path)
    if kind == "a folder":
        raise OutputPlaceError(
            f"{option} {path} is a folder; name a file, e.g. {path / 'out.json'}."
        )
    if kind not in ("missing", "a file"):
        raise OutputPlaceError(f"{option} {path} is {kind}; name a regular file.")
    for given in inputs:
        if _same(path, Path(given)):
            raise OutputPlaceError(f"{option} {path} is one of the inputs; name another file.")
    parent = path.parent
    if kind_of(parent) == "missing":
        raise OutputPlaceError(
            f"{option} {path}: the folder {parent} does not exist; create it first."
        )
    if kind_of(parent) != "a folder":
        raise OutputPlaceError(f"{option} {path}: {parent} is {kind_of(parent)}, not a folder.")
    check_output_folder(parent, option)
    if kind == "a file" and not os.access(path, os.W_OK):
        raise OutputPlaceError(f"{option} {path} cannot be written; choose a writable place.")
    return path


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return False


def short_path(path: str | os.PathLike, limit: int = 160) -> str:
    """`path` for a message: whole, or its start and end around "..." when longer than
    `limit` characters."""
    text = os.fspath(path)
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]}"


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count} bytes"


def check_zip_members(path: str | os.PathLike, limit: int, what: str) -> None:
    """Read every member of the zip `path` a chunk at a time and drop the bytes: refused
    (DataError) when the members announce more than `limit` bytes in all, when a member's
    stream runs past or stops short of its announced size, or fails its CRC. Libraries that
    then read the archive (Keras) meet only members whose size is what they say."""
    import zipfile
    import zlib

    require_file(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            announced = sum(info.file_size for info in infos)
            if announced > limit:
                raise DataError(
                    f"{path}: its {len(infos)} member(s) announce {_size(announced)}, more "
                    f"than the {_size(limit)} a {what} may hold"
                )
            for info in infos:
                with archive.open(info) as member:
                    total = 0
                    while chunk := member.read(CHUNK_BYTES):
                        total += len(chunk)
                    if total != info.file_size:
                        raise DataError(
                            f"{path}: member {info.filename!r} holds {_size(total)}, not the "
                            f"{_size(info.file_size)} it announces; the {what} is damaged"
                        )
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as error:
        raise DataError(f"{path} is not a whole {what} ({str(error)[:160]}).") from None
    except (RuntimeError, NotImplementedError) as error:  # encrypted, unknown compression
        raise DataError(f"{path} cannot be read as a {what} ({str(error)[:160]}).") from None
