"""Hostile inputs generated from their classes, not listed one by one (hypothesis).

- headers whose claims disagree with their data: NIfTI files (plain and gzip) whose voxels
  are fewer or more than the header announces, or whose header announces a volume of any
  size; zip members whose recorded size is smaller or larger than their stream;
- every kind of special file as an input of every command that reads one;
- every kind of output place for every command that writes.

Each example must end in a refusal that names the file and what is wrong (or, where claim and
data agree, in the right voxels), in memory bounded by what the header may announce
(`tracemalloc`), and with nothing written. Examples are few and derandomized, so CI runs the
same bounded set every time.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import signal
import socket
import struct
import tempfile
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import course_like_entries, gray_slice, png_bytes
from mri_course import scans
from mri_course.cli import main as cli_main
from mri_helpers import data, datafiles, export, fileio, models
from mri_helpers.errors import DataError, ModelFileError

MIB = 1 << 20
GENERATED = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@contextlib.contextmanager
def peak_allocation() -> Iterator[list[int]]:
    """The peak of Python's allocations inside the block, in bytes (`result[0]` after it)."""
    result: list[int] = []
    tracemalloc.start()
    try:
        yield result
    finally:
        result.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


@contextlib.contextmanager
def no_hang(seconds: int = 60) -> Iterator[None]:
    """Fail, rather than hang, if the block takes longer than `seconds` (a FIFO opened for
    reading blocks until a writer comes)."""

    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s: something waits forever")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- NIfTI: header against data ------------------------------------------------------------
def nifti_bytes(claimed: tuple[int, ...], dtype: str, voxels: bytes) -> bytes:
    """A single-file NIfTI: a valid header announcing `claimed` voxels of `dtype` (RAS, 1 mm),
    then the bytes `voxels`, however many they are."""
    image = nib.Nifti1Image(np.zeros((2, 2, 2), dtype), np.eye(4))
    image.header.set_data_shape(claimed)
    image.set_qform(np.eye(4), code=1)
    image.header.set_data_offset(352)  # as nibabel and dcm2niix write single files
    header = image.header.binaryblock
    return header + b"\0" * (352 - len(header)) + voxels


@GENERATED
@given(
    shape=st.tuples(*[st.integers(1, 12)] * 3),
    dtype=st.sampled_from(["uint8", "int16", "float32"]),
    change=st.integers(-64, 64),
    compressed=st.booleans(),
)
def test_nifti_voxels_must_be_what_the_header_announces(shape, dtype, change, compressed):
    values = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape, order="F")
    stored = values.tobytes(order="F")
    stored = stored[: max(0, len(stored) + change)] + b"\x07" * max(0, change)
    raw = nifti_bytes(shape, dtype, stored)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("scan.nii.gz" if compressed else "scan.nii")
        path.write_bytes(gzip.compress(raw) if compressed else raw)
        scan = scans.read_nifti(path)
        if change == 0:
            np.testing.assert_array_equal(scan.voxels(), values.astype(np.float32))
            return
        with pytest.raises(DataError) as refused:
            scan.voxels()
    message = str(refused.value)
    assert str(path) in message
    assert ("truncated" if change < 0 else "more data than its header announces") in message


@GENERATED
@given(
    shape=st.tuples(*[st.integers(1, 2**15 - 1)] * 3),
    dtype=st.sampled_from(["uint8", "int16", "float32", "float64"]),
)
def test_any_announced_volume_is_refused_or_read_within_its_bound(shape, dtype):
    """Whatever size a 4 KiB file's header announces: a refusal from the header alone when
    above the limits, else a refusal of the short stream; never more memory than allowed."""
    voxels, itemsize = int(np.prod(shape)), np.dtype(dtype).itemsize
    if voxels * itemsize == 3700:
        return  # a claim that matches the data: read as any good file (test above)
    too_large = voxels > scans.MAX_VOLUME_VOXELS or voxels * itemsize > scans.MAX_VOLUME_BYTES
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "claims.nii"
        path.write_bytes(nifti_bytes(shape, dtype, b"\0" * 3700))
        with peak_allocation() as peak, pytest.raises(DataError) as refused:
            scans.read_nifti(path).voxels()
    expected = (
        "header announces"
        if too_large
        else "truncated"
        if voxels * itemsize > 3700
        else "more data than its header announces"
    )
    assert expected in str(refused.value) and "claims.nii" in str(refused.value)
    assert peak[0] < 16 * MIB, f"{peak[0] / MIB:.0f} MiB for a 4 KiB file announcing {shape}"


def gzip_of_zeros(header: bytes, zero_bytes: int) -> bytes:
    """`header` then `zero_bytes` zeros, gzipped cheaply: one compressed member of 64 MiB of
    zeros repeated (concatenated gzip members are one stream to every reader)."""
    block = gzip.compress(b"\0" * (64 * MIB), compresslevel=1)
    count, rest = divmod(zero_bytes, 64 * MIB)
    return gzip.compress(header + b"\0" * rest, compresslevel=1) + block * count


def test_a_gzip_stream_longer_than_its_header_is_caught_after_one_chunk(tmp_path) -> None:
    """A header announcing 64^3 bytes over a stream of 1 GiB: refused having read one chunk
    past the announcement, not the whole stream."""
    header = nifti_bytes((64, 64, 64), "uint8", b"")
    path = tmp_path / "overlong.nii.gz"
    path.write_bytes(gzip_of_zeros(header, 1 << 30))
    with peak_allocation() as peak, pytest.raises(DataError, match="more data than its header"):
        scans.read_nifti(path).voxels()
    assert peak[0] < 16 * MIB, f"{peak[0] / MIB:.0f} MiB"


# --- zip members: recorded size against stream ---------------------------------------------
VICTIM = "Tr1/TrainT1/Image #9.png"


@pytest.fixture(scope="module")
def bomb_zip() -> bytes:
    """A course-like zip whose VICTIM member is a deflate stream of 256 MiB of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in course_like_entries().items():
            if name != VICTIM:
                archive.writestr(name, content)
        with archive.open(VICTIM, "w") as member:
            for _ in range(16):
                member.write(b"\0" * (16 * MIB))
    return buffer.getvalue()


def with_recorded_size(raw: bytes, name: str, size: int) -> bytes:
    """`raw` with the uncompressed size of member `name` set to `size` in both headers."""
    raw = bytearray(raw)
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as archive:
        local = archive.getinfo(name).header_offset
    struct.pack_into("<I", raw, local + 22, size)
    central = raw.find(b"PK\x01\x02")
    while True:
        length, extra, comment = struct.unpack_from("<HHH", raw, central + 28)
        if raw[central + 46 : central + 46 + length].decode() == name:
            struct.pack_into("<I", raw, central + 24, size)
            return bytes(raw)
        central += 46 + length + extra + comment


@GENERATED
@given(
    recorded=st.one_of(st.integers(0, 8 * MIB), st.integers(datafiles.MAX_FILE_BYTES, 2**32 - 1))
)
def test_a_zip_member_whose_recorded_size_lies_is_refused_in_bounded_memory(
    bomb_zip, recorded
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "course.zip"
        path.write_bytes(with_recorded_size(bomb_zip, VICTIM, recorded))
        with peak_allocation() as peak, pytest.raises(DataError) as refused:
            data.read_course_data(path)
    assert "Image #9.png" in str(refused.value)
    assert peak[0] < min(recorded, datafiles.MAX_FILE_BYTES) + 16 * MIB, (
        f"{peak[0] / MIB:.0f} MiB read for a member recorded as {recorded} bytes"
    )


def test_a_keras_file_whose_members_lie_is_refused_before_keras_reads_it(tmp_path) -> None:
    folder = export.export_generator(
        models.unet_generator(models.GeneratorConfig((4, 4)), 16), tmp_path / "m", "t1-to-t2",
        16, {}, False,
    )  # fmt: skip
    model_file = folder / export.GENERATOR_FILE
    raw = model_file.read_bytes()
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        name = next(i.filename for i in archive.infolist() if i.filename.endswith(".json"))
        real = archive.getinfo(name).file_size
    model_file.write_bytes(with_recorded_size(raw, name, real - 7))
    with pytest.raises(ModelFileError, match=r"generator\.keras is not a whole"):
        export.load_generator(folder)


# --- special files as inputs -----------------------------------------------------------------
def special_file(kind: str, folder: Path) -> Path:
    """A path of `kind` inside `folder` (devices are the system's own)."""
    path = folder / f"input-{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()  # the socket file stays
    elif kind == "char-device":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    elif kind == "broken-link":
        path.symlink_to(folder / "nowhere")
    elif kind == "link-loop":
        path.symlink_to(path)
    elif kind != "missing":
        raise ValueError(kind)
    return path


SPECIAL = ["fifo", "socket", "char-device", "broken-link", "link-loop", "missing"]
WORDS = {
    "fifo": "FIFO",
    "socket": "socket",
    "char-device": "character device",
    "broken-link": "does not exist",
    "link-loop": "unreachable",
    "missing": "does not exist",
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exported") / "models"
    for direction in ("t1-to-t2", "t2-to-t1"):
        generator = models.unet_generator(models.GeneratorConfig((4, 4)), 16)
        export.export_generator(generator, root, direction, 16, {}, False)
    return root


def command_reading(kind: str, path: Path, models_dir: Path, out: Path) -> list[str]:
    return {
        "check-data": ["check-data", str(path)],
        "run --data": ["run", "--profile", "smoke", "--data", str(path), "--out", str(out)],
        "translate PNG": [
            "translate", "--model", str(models_dir), "--direction", "t1-to-t2", str(path),
            "--out", str(out),
        ],
        "evaluate --data": [
            "evaluate", "--model", str(models_dir), "--data", str(path), "--json",
            str(out.with_suffix(".json")),
        ],
        "evaluate --model": [
            "evaluate", "--model", str(path), "--data", "phantom", "--json",
            str(out.with_suffix(".json")),
        ],
    }[kind]  # fmt: skip


READERS = ["check-data", "run --data", "translate PNG", "evaluate --data", "evaluate --model"]


@GENERATED
@given(kind=st.sampled_from(SPECIAL), command=st.sampled_from(READERS))
def test_special_files_are_named_for_what_they_are(exported, capsys, kind, command) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = special_file(kind, root)
        argv = command_reading(command, path, exported, root / "out")
        capsys.readouterr()
        with no_hang(120):
            code = cli_main(argv)
        err = capsys.readouterr().err
        assert code == 2, f"{argv}: exit {code}\n{err}"
        assert err.startswith("error: ") and "Traceback" not in err, err
        assert WORDS[kind] in err, f"{kind} not named in: {err}"
        if kind not in ("missing", "broken-link"):
            assert "does not exist" not in err, err
        assert not (root / "out").exists() and not (root / "out.json").exists()


def test_a_nifti_named_special_file_is_named_too(tmp_path) -> None:
    path = tmp_path / "scan.nii.gz"
    os.mkfifo(path)
    with no_hang(30), pytest.raises(DataError, match="FIFO"):
        scans.read_nifti(path)


def test_an_unreadable_file_says_so(tmp_path, monkeypatch) -> None:
    """Permissions do not stop root, so the check is made to see one it cannot read."""
    path = tmp_path / "slice.png"
    path.write_bytes(png_bytes(gray_slice()))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if p == path else real_access(p, mode))
    assert fileio.why_not_a_file(path) == "cannot be read (permission denied)"
    with pytest.raises(DataError, match="cannot be read"):
        datafiles.read_slice_file(path)


# --- output places ---------------------------------------------------------------------------
class WorkStarted(Exception):
    """A command began its work before checking where it writes."""


def _refuse(*_args, **_kwargs):
    raise WorkStarted("work started before the output place was checked")


@pytest.fixture
def no_work(monkeypatch):
    """Every command's real work refuses to start."""
    import papermill

    from mri_course import benchmark, evaluate, png_slices, runner
    from mri_course.scans import harmonisation

    monkeypatch.setattr(papermill, "execute_notebook", _refuse)
    monkeypatch.setattr(benchmark, "run", _refuse)
    monkeypatch.setattr(evaluate, "evaluate_export", _refuse)
    monkeypatch.setattr(evaluate, "evaluate_volume", _refuse)
    monkeypatch.setattr(png_slices, "translate_files", _refuse)
    monkeypatch.setattr(scans, "translate_volume_files", _refuse)
    monkeypatch.setattr(harmonisation, "harmonise_files", _refuse)
    monkeypatch.setattr(runner, "run_course", _refuse)


def output_place(kind: str, folder: Path, an_input: Path) -> tuple[Path, str]:
    """A place of `kind` to write to, and a word the refusal must hold."""
    if kind == "a-file":
        (folder / "blocker").write_text("a regular file")
        return folder / "blocker", "blocker"
    if kind == "under-a-file":
        (folder / "blocker").write_text("a regular file")
        return folder / "blocker" / "deeper", "blocker"
    if kind == "proc":
        return Path("/proc/nope"), "cannot be written"
    if kind == "char-device":
        return Path("/dev/null"), "character device"
    if kind == "fifo":
        os.mkfifo(folder / "pipe")
        return folder / "pipe", "FIFO"
    if kind == "the-input":
        return an_input, "input"
    raise ValueError(kind)


WRITERS = ["run --out", "translate --out", "harmonise --out", "evaluate --json", "bench --out"]
PLACES = ["a-file", "under-a-file", "proc", "char-device", "fifo", "the-input"]


@GENERATED
@given(kind=st.sampled_from(PLACES), command=st.sampled_from(WRITERS))
def test_every_command_checks_its_output_place_before_any_work(
    exported, no_work, capsys, kind, command
) -> None:
    if (kind, command) in (("the-input", "bench --out"), ("a-file", "evaluate --json")):
        return  # bench reads no input; a regular file is a fine --json (it is replaced)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        course = write_entries(root / "course", course_like_entries())
        course_zip = root / "course.zip"
        with zipfile.ZipFile(course_zip, "w") as archive:
            archive.writestr("Tr1/TrainT1/a.png", png_bytes(gray_slice()))
        slices = write_entries(root / "slices", {"a.png": png_bytes(gray_slice())})
        volume = root / "scan_t1w.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), volume)
        an_input = {"run --out": course, "translate --out": slices, "evaluate --json": course_zip,
                    "harmonise --out": volume}  # fmt: skip
        place, word = output_place(kind, root, an_input.get(command, course))
        if (kind, command) == ("the-input", "harmonise --out"):
            word = "is a file, not a folder"  # its input is a file: refused as one
        argv = {
            "run --out": ["run", "--profile", "smoke", "--data", str(course), "--out"],
            "translate --out": [
                "translate", "--model", str(exported), "--direction", "t1-to-t2", str(slices),
                "--out",
            ],
            "harmonise --out": [
                "harmonise", "--model", str(exported), "--direction", "t1-to-t2", str(volume),
                "--out",
            ],
            "evaluate --json": [
                "evaluate", "--model", str(exported), "--data", str(course_zip), "--json",
            ],
            "bench --out": ["bench", "--quick", "--out"],
        }[command] + [str(place)]  # fmt: skip
        before = sorted(p.name for p in root.rglob("*"))
        capsys.readouterr()
        with no_hang(60):
            code = cli_main(argv)
        err = capsys.readouterr().err
        assert code == 2, f"{argv}: exit {code}\n{err}"
        assert err.startswith("error: ") and word in err, f"{kind}, {command}: {err}"
        assert sorted(p.name for p in root.rglob("*")) == before


def write_entries(root: Path, entries: dict[str, bytes]) -> Path:
    for name, content in entries.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root
