"""Hostile inputs against every command, and the readers and parsers underneath them.

Crafted files (encrypted, damaged and garbage zips, decompression bombs, 1-pixel, 6000-pixel
and 2 GiB "PNGs", model folders with odd model.json or .keras files, garbage run manifests)
and argument tables are tried against `check-data`, `run`, `translate`, `evaluate`, `publish`
and `bench` through `mri_course.cli.main` in-process. A user's mistake must end as exit 2
with one clear `error:` message naming the offending file or parameter: no traceback, no
exception escaping `main`, input files unchanged (sha256) and nothing written anywhere but
the output folder. Guards stop any command that starts real work (notebooks, benchmarks,
evaluation, publishing over notebooks/) before it has refused its input. The 2 GiB cases run
in a subprocess whose peak memory is measured.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import traceback
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image, ImageDraw

import mri_helpers as mh
from conftest import REPO, course_like_entries, gray_slice, make_zip, png_bytes
from mri_course import png_slices
from mri_course.cli import main as cli_main
from mri_helpers import datafiles, export, profiles
from mri_helpers.fileio import MEMORY_BOUND_BYTES

GIB = 2**30
PEAK_MEMORY_LIMIT = int(1.5 * GIB)  # a 2 GiB file read whole would exceed this
MODEL_SIZE = 16  # the tiny exported generators' image size
VICTIM = "Tr1/TrainT1/Image #9.png"  # the zip member the crafted zips damage


# --- running a command and judging the outcome -------------------------------------------
class WorkStarted(Exception):
    """A guard's signal: the command started real work before refusing its input."""


def _guard(what: str) -> Callable:
    def refuse(*args, **kwargs):
        raise WorkStarted(f"{what} was called: the command started work instead of refusing")

    return refuse


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test in its own working folder (so stray writes show in the snapshot), without
    $MRI_DATA, and with notebook execution and publishing over notebooks/ guarded."""
    import papermill

    from mri_course import runner

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MRI_DATA", raising=False)
    monkeypatch.setattr(papermill, "execute_notebook", _guard("papermill.execute_notebook"))
    # publish writes every file through this one function: guarded, notebooks/ is never touched
    monkeypatch.setattr(
        runner, "_write_all_or_nothing", _guard("publishing over notebooks/ and docs/")
    )
    return cwd


@dataclass
class Outcome:
    """What one `mri-course` command did."""

    argv: list[str]
    code: int | None
    out: str
    err: str
    escaped: str | None  # the exception that escaped main(), formatted

    def __str__(self) -> str:
        text = (
            f"mri-course {shlex.join(self.argv)}\n  exit code: {self.code}\n"
            f"  stdout: {self.out[-1500:]!r}\n  stderr: {self.err[-1500:]!r}"
        )
        return text + (f"\n  escaped main():\n{self.escaped}" if self.escaped else "")


def cli(capsys: pytest.CaptureFixture, *argv: object) -> Outcome:
    """Run `mri-course ARGV` in-process; never raise, record what escaped instead."""
    args = [str(a) for a in argv]
    capsys.readouterr()
    escaped = None
    try:
        code = cli_main(args)
    except KeyboardInterrupt:
        raise
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException as error:  # any exception escaping main() is a finding
        code = None
        escaped = "".join(traceback.format_exception(error)[-6:])
    captured = capsys.readouterr()
    return Outcome(args, code, captured.out, captured.err, escaped)


def translate(
    capsys: pytest.CaptureFixture, model: Path, *inputs: Path, out: Path, direction="t1-to-t2"
) -> Outcome:
    """`mri-course translate --model MODEL --direction DIRECTION INPUTS --out OUT`."""
    return cli(
        capsys, "translate", "--model", model, "--direction", direction, *inputs, "--out", out
    )


def evaluate(capsys: pytest.CaptureFixture, model: Path, data: Path, json: Path) -> Outcome:
    """`mri-course evaluate --model MODEL --data DATA --json JSON`."""
    return cli(capsys, "evaluate", "--model", model, "--data", data, "--json", json)


def snapshot(root: Path) -> dict[str, str]:
    """Every folder and file under `root`: files by sha256 (huge ones by size and mtime)."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            state[rel] = "folder"
        elif path.stat().st_size > 64 * 2**20:
            state[rel] = f"{path.stat().st_size} bytes, mtime {path.stat().st_mtime_ns}"
        else:
            state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(
        [f"new {p}" for p in after.keys() - before.keys()]
        + [f"deleted {p}" for p in before.keys() - after.keys()]
        + [f"changed {p}" for p in before.keys() & after.keys() if before[p] != after[p]]
    )


def assert_refused(
    result: Outcome,
    names: tuple[str, ...],
    before: dict[str, str],
    root: Path,
    out: Path | None = None,
    max_length: int = 3000,
) -> None:
    """Exit 2, one `error:` message naming `names`, no traceback, and nothing changed under
    `root` (except inside `out`, which may hold finished outputs, never partial ones)."""
    assert result.escaped is None, f"an exception escaped main():\n{result}"
    assert "Traceback" not in result.out + result.err, f"a traceback was printed:\n{result}"
    assert result.code == 2, f"a user's mistake must exit with 2:\n{result}"
    message = result.err
    assert message.startswith("error: ") and message.count("error:") == 1, (
        f"expected exactly one 'error: ...' message on stderr:\n{result}"
    )
    assert len(message) <= max_length, f"message of {len(message)} characters:\n{result}"
    for name in names:
        assert name in message, f"the message does not name {name!r}:\n{result}"
    changed = changes(before, snapshot(root))
    if out is not None:
        inside = out.relative_to(root).as_posix()
        changed = [c for c in changed if not _within(c.split(" ", 1)[1], inside)]
        leftovers = (
            [p.name for p in out.rglob("*") if p.name.startswith(".")] if out.exists() else []
        )
        assert not leftovers, f"partial files left in {out}: {leftovers}\n{result}"
    assert not changed, f"files changed outside the output folder: {changed}\n{result}"


def _within(rel: str, folder: str) -> bool:
    return rel == folder or rel.startswith(folder + "/")


def assert_blocker_described(result: Outcome, where: str) -> None:
    """A path that is a regular file, or lies under one, is described as such: not as
    missing (the user would create it and fail again) nor as "File exists"."""
    if where == "a-file":
        assert re.search(r"not a (folder|directory)|is a file", result.err, re.I), (
            f"the message does not say that the path is a file, not a folder:\n{result}"
        )
    else:
        assert "does not exist" not in result.err and "File exists" not in result.err, (
            f"the message misdescribes a path under a regular file:\n{result}"
        )


# --- crafted inputs ------------------------------------------------------------------------
def write_tree(root: Path, entries: dict[str, bytes]) -> Path:
    for name, content in entries.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height; its pixel data is a few bytes. PIL refuses
    to open more than 2 x Image.MAX_IMAGE_PIXELS pixels and warns above MAX_IMAGE_PIXELS."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def big_png(side: int = 6000) -> bytes:
    """A head-like square slice of side x side pixels (an ellipse on black)."""
    image = Image.new("L", (side, side))
    ImageDraw.Draw(image).ellipse((side // 10, side // 10, side * 9 // 10, side * 9 // 10), 120)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _member_offsets(raw: bytes, name: str) -> tuple[int, int, int]:
    """Offsets of a member's local header, its data and its central-directory entry."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        info = archive.getinfo(name)
    local = info.header_offset
    name_length, extra_length = struct.unpack_from("<HH", raw, local + 26)
    central = raw.find(b"PK\x01\x02")
    while True:
        length, extra, comment = struct.unpack_from("<HHH", raw, central + 28)
        if raw[central + 46 : central + 46 + length].decode() == name:
            return local, local + 30 + name_length + extra_length, central
        central += 46 + length + extra + comment


def damaged_zip(path: Path, how: str, entries: dict[str, bytes] | None = None) -> Path:
    """A course-like zip whose member VICTIM is damaged in the way `how` says."""
    entries = course_like_entries() if entries is None else entries
    method = zipfile.ZIP_STORED if how == "bad-crc" else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    if how == "garbage":
        path.write_bytes(b"PK\x03\x04 this is not really a zip archive" * 20)
        return path
    raw = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
        return path
    local, start, central = _member_offsets(bytes(raw), VICTIM)
    if how == "encrypted":  # the "encrypted" flag, as zip -e sets it
        raw[local + 6] |= 0x1
        raw[central + 8] |= 0x1
    elif how == "unsupported-method":  # 99: AES (WinZip); zipfile cannot read it
        struct.pack_into("<H", raw, local + 8, 99)
        struct.pack_into("<H", raw, central + 10, 99)
    elif how == "bad-crc":  # stored, one byte flipped: the CRC no longer matches
        raw[start + 100] ^= 0xFF
    elif how == "corrupt-stream":  # deflate data replaced by bytes no decoder accepts
        raw[start : start + 16] = b"\xff" * 16
    else:
        raise ValueError(how)
    path.write_bytes(bytes(raw))
    return path


ZIP_DAMAGE = {  # how -> words the message must hold (besides the zip's name)
    "encrypted": ("password",),
    "unsupported-method": ("99",),
    "bad-crc": ("CRC",),
    "corrupt-stream": ("corrupt",),
    "garbage": (),
    "truncated": (),
}
MEMBER_NAMED = {"encrypted", "unsupported-method", "bad-crc", "corrupt-stream"}


def sparse_file(path: Path, size: int = 2 * GIB) -> Path:
    """A file of `size` bytes that takes no disk space (a hole), made with os.truncate."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.truncate(path, size)
    return path


@pytest.fixture(scope="module")
def exported_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny untrained generators of both directions, exported as a run would (no SavedModel)."""
    from mri_helpers import models

    models_dir = tmp_path_factory.mktemp("exported") / "models"
    extra = {"holdout_fraction": 0.1, "seed": 0, "num_phantom_slices": 4}
    for direction in ("t1-to-t2", "t2-to-t1"):
        generator = models.unet_generator(models.GeneratorConfig((8, 8)), MODEL_SIZE)
        export.export_generator(generator, models_dir, direction, MODEL_SIZE, extra, False)
    return models_dir


@pytest.fixture
def models_dir(exported_models: Path, tmp_path: Path) -> Path:
    """A copy of the exported models inside this test's folder (so the snapshot covers it)."""
    return Path(shutil.copytree(exported_models, tmp_path / "models"))


@pytest.fixture
def slices_dir(tmp_path: Path) -> Path:
    """A folder of two ordinary course-sized T1 slices to translate."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(gray_slice(80)))
    (folder / "b.png").write_bytes(png_bytes(gray_slice(90)))
    return folder


# === Part A: the readers and parsers themselves ===========================================
@pytest.mark.parametrize("how", list(ZIP_DAMAGE))
def test_damaged_zips_are_a_data_error_naming_zip_and_member(tmp_path: Path, how: str) -> None:
    archive = damaged_zip(tmp_path / f"{how}.zip", how)
    before = snapshot(tmp_path)
    with pytest.raises(mh.DataError) as caught:
        mh.load_dataset(archive)
    message = str(caught.value)
    assert archive.name in message
    if how in MEMBER_NAMED:
        assert VICTIM in message
    for word in ZIP_DAMAGE[how]:
        assert word in message
    assert "not a readable PNG" not in message  # the zip is at fault, not the image
    assert snapshot(tmp_path) == before


def test_damaged_members_are_collected_with_other_problems(tmp_path: Path) -> None:
    entries = course_like_entries()
    entries["Tr2/TrainT2/empty.png"] = b""
    archive = damaged_zip(tmp_path / "two.zip", "bad-crc", entries)
    with pytest.raises(mh.DataProblems) as caught:
        mh.load_dataset(archive)
    problems = caught.value.problems
    assert len(problems) == 2
    assert any(VICTIM in p and "CRC" in p for p in problems)
    assert any("empty.png" in p for p in problems)


def test_bzip2_and_lzma_members_are_read(tmp_path: Path) -> None:
    path = tmp_path / "methods.zip"
    entries = course_like_entries()
    with zipfile.ZipFile(path, "w") as archive:
        for i, (name, content) in enumerate(entries.items()):
            method = (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, zipfile.ZIP_DEFLATED)[i % 3]
            archive.writestr(name, content, compress_type=method)
    dataset = mh.load_dataset(path)
    assert (len(dataset.t1), len(dataset.t2)) == (3, 2)


def test_read_slice_file_checks_the_size_before_reading(tmp_path: Path, monkeypatch) -> None:
    big = sparse_file(tmp_path / "big.png", datafiles.MAX_FILE_BYTES + 1)
    opened = []
    real_open, real_read_bytes = Path.open, Path.read_bytes

    def open_noted(self, *args, **kwargs):
        opened.append(self)
        return real_open(self, *args, **kwargs)

    def read_noted(self):
        opened.append(self)
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "open", open_noted)
    monkeypatch.setattr(Path, "read_bytes", read_noted)
    with pytest.raises(mh.DataError, match=r"big\.png.*MiB, larger than any MRI slice"):
        datafiles.read_slice_file(big)
    assert big not in opened, "the oversized file was opened before its size was checked"

    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(gray_slice(70)))
    image, notes = datafiles.read_slice_file(good)
    assert image.shape == (217, 181) and image.max() == 70 and notes == ()
    with pytest.raises(mh.DataError, match="missing.png does not exist"):
        datafiles.read_slice_file(tmp_path / "missing.png")
    with pytest.raises(mh.DataError, match="is a folder, not a file"):
        datafiles.read_slice_file(tmp_path)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(mh.DataError, match=r"text\.png: not a readable PNG"):
        datafiles.read_slice_file(tmp_path / "text.png")


def test_folder_reader_never_reads_an_oversized_file(tmp_path: Path, monkeypatch) -> None:
    root = write_tree(tmp_path / "data", course_like_entries())
    big = sparse_file(root / "Tr1" / "TrainT1" / "huge.png", datafiles.MAX_FILE_BYTES + 1)
    real_open, real_read_bytes = Path.open, Path.read_bytes

    def open_checked(self, *args, **kwargs):
        assert self != big, "the oversized file was opened"
        return real_open(self, *args, **kwargs)

    def read_checked(self):
        assert self != big, "the oversized file was read"
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "open", open_checked)
    monkeypatch.setattr(Path, "read_bytes", read_checked)
    with pytest.raises(mh.DataProblems, match=r"huge\.png: the file is 64 MiB"):
        mh.load_dataset(root)


@pytest.mark.parametrize(
    ("width", "height"), [(30000, 30000), (10000, 10000)], ids=["bomb-error", "bomb-warning"]
)
def test_decompression_bombs_are_too_large_not_corrupt(width: int, height: int) -> None:
    with pytest.raises(mh.DataError) as caught:
        datafiles.decode_slice(png_header_only(width, height))
    message = str(caught.value)
    assert f"{width}x{height}" in message and "too large" in message
    assert f"{datafiles.MAX_PIXELS:,}" in message and "downscale" in message
    assert "corrupt" not in message


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 1000), (1000, 1), (31, 400)])
def test_tiny_images_are_refused(height: int, width: int) -> None:
    with pytest.raises(mh.DataError) as caught:
        datafiles.decode_slice(png_bytes(np.full((height, width), 90, np.uint8)))
    message = str(caught.value)
    assert f"{width}x{height}" in message and f"minimum of {datafiles.MIN_SIDE}" in message


def test_the_smallest_allowed_image_is_read_and_slivers_are_refused() -> None:
    side = datafiles.MIN_SIDE
    image, _ = datafiles.decode_slice(png_bytes(np.full((side, side), 9, np.uint8)))
    assert image.shape == (side, side)
    sliver = png_bytes(np.zeros((40, 41_000), np.uint8))  # shrunk to fit, 1 pixel high
    with pytest.raises(mh.DataError, match="narrower than 32 pixels"):
        datafiles.decode_slice(sliver)


def test_shrunk_slices_keep_their_stored_size_and_are_reported(tmp_path: Path, capsys) -> None:
    entries = course_like_entries()
    entries["Tr2/TrainT2/wide.png"] = png_bytes(gray_slice(shape=(300, 2500)))
    archive = make_zip(tmp_path / "sizes.zip", entries)
    dataset = mh.load_dataset(archive)
    wide = next(s for s in dataset.t2 if s.id == "wide.png")
    assert wide.stored_shape == (300, 2500) and wide.shape == (100, 834)
    assert all(s.stored_shape is None for s in dataset.t1)
    summary = mh.summarize(dataset)["t2"]
    assert summary.sizes == {"181x217": 2, "2500x300": 1}  # as stored, not as shrunk
    assert summary.shrunk == {"wide.png": "2500x300 -> 834x100"}
    assert cli_main(["check-data", str(archive)]) == 0
    report = capsys.readouterr().out
    assert "T2: 3 slices; size (width x height) 2 of 181x217, 1 of 2500x300;" in report
    assert "1 slice(s) larger than 1024 pixels a side were shrunk" in report
    assert "wide.png 2500x300 -> 834x100" in report


def test_read_slice_gives_the_stored_size_of_a_shrunk_file(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(big_png(3000))
    piece = png_slices.read_slice(path, "t1")
    assert piece.id == "big.png" and piece.modality == "t1" and piece.origin == str(path)
    assert piece.stored_shape == (3000, 3000) and piece.shape == (1000, 1000)
    assert "shrunk from 3000x3000 to 1000x1000" in piece.notes[0]


@pytest.mark.parametrize("kind", ["16-bit", "palette", "rgba"])
def test_every_kind_of_large_image_is_shrunk(kind: str) -> None:
    """PIL cannot shrink 16-bit or palette images as they are; they are converted first."""
    if kind == "16-bit":
        content = png_bytes(np.full((300, 2500), 4000, np.uint16))
    elif kind == "palette":
        buffer = io.BytesIO()
        Image.new("P", (2500, 300), 7).save(buffer, format="PNG")
        content = buffer.getvalue()
    else:
        content = png_bytes(np.full((300, 2500, 4), 200, np.uint8))
    image, notes = datafiles.decode_slice(content)
    assert image.shape == (100, 834)
    assert notes[0] == "shrunk from 2500x300 to 834x100 to bound memory"
    if kind == "16-bit":
        assert image.dtype == np.uint16 and image.max() == 4000


# --- parameters from the command line ------------------------------------------------------
@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("MIXED_PRECISION=on", ("MIXED_PRECISION", "on")),
        ("MIXED_PRECISION=off", ("MIXED_PRECISION", "off")),
        ("MIXED_PRECISION=auto", ("MIXED_PRECISION", "auto")),
        ("EPOCHS=7", ("EPOCHS", 7)),
        ("EPOCHS=1e3", ("EPOCHS", 1000)),
        ("EPOCHS=100.0", ("EPOCHS", 100)),
        (" SEED = 3 ", ("SEED", 3)),
        ("LEARNING_RATE=2e-4", ("LEARNING_RATE", 2e-4)),
        ("LAMBDA_CYCLE=10", ("LAMBDA_CYCLE", 10.0)),
        ("DENOISE=Yes", ("DENOISE", True)),
        ("DENOISE=OFF", ("DENOISE", False)),
        ("CALIBRATE=1", ("CALIBRATE", True)),
        ("CALIBRATE=false", ("CALIBRATE", False)),
        ("DATA=my scans/t1 t2.zip", ("DATA", "my scans/t1 t2.zip")),
        ("GENERATOR=tiny", ("GENERATOR", "tiny")),
    ],
)
def test_settings_are_read_by_their_declared_type(item: str, expected: tuple) -> None:
    name, value = profiles.parse_setting(item)
    assert (name, value) == expected and type(value) is type(expected[1])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("EPOCHS=: :", r"EPOCHS=': :' must be a whole number \(int from 1 to 10000\)"),
        ("EPOCHS=1e9", r"EPOCHS=1e9 is out of range \(int from 1 to 10000\)"),
        ("EPOCHS=1e999999", r"EPOCHS=1e999999 is out of range"),
        ("EPOCHS=2.5", r"EPOCHS='2.5' must be a whole number"),
        ("EPOCHS=", r"EPOCHS='' must be a whole number"),
        ("LEARNING_RATE=.nan", r"LEARNING_RATE='.nan' must be a finite number"),
        ("LEARNING_RATE=nan", r"LEARNING_RATE='nan' must be a finite number"),
        ("LEARNING_RATE=-inf", r"LEARNING_RATE='-inf' must be a finite number"),
        ("LEARNING_RATE=1e400", r"LEARNING_RATE=1e400 is out of range"),
        ("DENOISE=maybe", r"DENOISE='maybe' must be true or false \(also yes/no, on/off, 1/0\)"),
        ("MIXED_PRECISION=yes", r"MIXED_PRECISION='yes' is not allowed; use one of"),
        ("EPOCHS", r"--set 'EPOCHS' must look like NAME=VALUE.*known names: .*EPOCHS"),
        ("=3", r"--set '=3' must look like NAME=VALUE"),
        ("NOPE=1", r"--set 'NOPE=1': unknown parameter 'NOPE'; known: .*EPOCHS"),
        ("epochs=3", r"unknown parameter 'epochs'; did you mean EPOCHS\?"),
        ("EPOCHS=" + "9" * 5000, r"EPOCHS=9{37}\.\.\. is out of range"),
    ],
)
def test_bad_settings_name_the_item_and_what_is_allowed(item: str, message: str) -> None:
    with pytest.raises(profiles.ParameterError, match=message) as caught:
        profiles.parse_setting(item)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 600


def test_parsed_settings_pass_through_resolve() -> None:
    overrides = dict(map(profiles.parse_setting, ["MIXED_PRECISION=off", "EPOCHS=1e1"]))
    values = profiles.resolve("smoke", **overrides)
    assert values["MIXED_PRECISION"] == "off" and values["EPOCHS"] == 10


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_floats_are_refused_from_python_too(value: float) -> None:
    with pytest.raises(profiles.ParameterError, match="LEARNING_RATE=.* must be a finite number"):
        profiles.resolve("smoke", LEARNING_RATE=value)


# === Part B: every command against hostile inputs =========================================
# --- check-data ----------------------------------------------------------------------------
@pytest.mark.parametrize("how", list(ZIP_DAMAGE))
def test_check_data_refuses_damaged_zips(tmp_path: Path, capsys, how: str) -> None:
    archive = damaged_zip(tmp_path / f"{how}.zip", how)
    before = snapshot(tmp_path)
    names = (archive.name, Path(VICTIM).name) if how in MEMBER_NAMED else (archive.name,)
    assert_refused(cli(capsys, "check-data", archive), names, before, tmp_path)


IMAGE_CASES = {
    "bomb-30000x30000": (lambda: png_header_only(30000, 30000), "too large"),
    "bomb-10000x10000": (lambda: png_header_only(10000, 10000), "too large"),
    "7000x7000": (lambda: big_png(7000), "too large"),
    "1x1": (lambda: png_bytes(np.full((1, 1), 100, np.uint8)), "minimum"),
    "1x1000": (lambda: png_bytes(np.full((1, 1000), 100, np.uint8)), "minimum"),
    "empty": (lambda: b"", "empty"),
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_check_data_refuses_hostile_images(tmp_path: Path, capsys, case: str) -> None:
    make, word = IMAGE_CASES[case]
    root = write_tree(tmp_path / "data", course_like_entries())
    (root / "Tr1" / "TrainT1" / f"{case}.png").write_bytes(make())
    before = snapshot(tmp_path)
    result = cli(capsys, "check-data", root)
    assert_refused(result, (f"{case}.png", word), before, tmp_path)


def test_check_data_says_which_slices_it_shrank(tmp_path: Path, capsys) -> None:
    root = write_tree(tmp_path / "data", course_like_entries())
    (root / "Tr2" / "TrainT2" / "huge.png").write_bytes(big_png(6000))
    before = snapshot(tmp_path)
    result = cli(capsys, "check-data", root)
    assert result.code == 0 and result.escaped is None, str(result)
    assert "1 of 6000x6000" in result.out, f"the stored size is not reported:\n{result}"
    assert "huge.png 6000x6000 -> 1000x1000" in result.out, str(result)
    assert snapshot(tmp_path) == before


# --- run -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("item", "names"),
    [
        ("EPOCHS=: :", ("EPOCHS", "whole number")),
        ("EPOCHS=1e9", ("EPOCHS", "out of range")),
        ("LEARNING_RATE=.nan", ("LEARNING_RATE", "finite")),
        ("LEARNING_RATE=inf", ("LEARNING_RATE", "finite")),
        ("EPOCHS", ("EPOCHS", "NAME=VALUE")),
        ("=3", ("'=3'", "NAME=VALUE")),
        ("NOPE=1", ("NOPE", "unknown parameter")),
        ("DENOISE=perhaps", ("DENOISE", "true or false")),
    ],
)
def test_run_refuses_bad_settings_before_any_work(tmp_path, capsys, item, names) -> None:
    out = tmp_path / "run"
    before = snapshot(tmp_path)
    result = cli(
        capsys, "run", "--profile", "smoke", "--data", "phantom", "--set", item, "--out", out
    )
    assert_refused(result, names, before, tmp_path)


@pytest.mark.parametrize("item", ["MIXED_PRECISION=on", "MIXED_PRECISION=off"])
def test_mixed_precision_on_and_off_are_accepted(item: str) -> None:
    """YAML reads on/off as booleans, which the string parameter refused."""
    name, value = profiles.parse_setting(item)
    assert profiles.resolve("smoke", **{name: value})["MIXED_PRECISION"] == item.split("=")[1]


@pytest.mark.parametrize("where", ["a-file", "under-a-file"])
def test_run_refuses_an_unusable_out(tmp_path: Path, capsys, where: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    out = blocker if where == "a-file" else blocker / "run"
    before = snapshot(tmp_path)
    result = cli(capsys, "run", "--profile", "smoke", "--data", "phantom", "--out", out)
    assert_refused(result, ("blocker", "--out"), before, tmp_path)
    assert_blocker_described(result, where)


@pytest.mark.parametrize("how", ["missing", *ZIP_DAMAGE])
def test_run_refuses_bad_data_before_any_work(tmp_path: Path, capsys, how: str) -> None:
    if how == "missing":
        archive = tmp_path / "missing.zip"
    else:
        archive = damaged_zip(tmp_path / f"{how}.zip", how)
    out = tmp_path / "run"
    before = snapshot(tmp_path)
    result = cli(capsys, "run", "--profile", "smoke", "--data", archive, "--out", out)
    names = (archive.name, Path(VICTIM).name) if how in MEMBER_NAMED else (archive.name,)
    assert_refused(result, names, before, tmp_path)


@pytest.mark.parametrize(
    "content",
    ["", "{not json", "[]", "42", '{"done": {}}'],
    ids=["empty", "garbage", "list", "number", "no-parameters"],
)
def test_resume_refuses_a_broken_progress_file(tmp_path, capsys, content) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "progress.json").write_text(content)
    before = snapshot(tmp_path)
    result = cli(capsys, "run", "--resume", "--out", out)
    assert_refused(result, ("progress.json",), before, tmp_path)


# --- publish -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content",
    ["{garbage", "", "[]", "{}", '{"parameters": {}}', '{"parameters": {"DATA": "x.zip"}}'],
    ids=["garbage", "empty", "list", "no-parameters", "no-profile", "data-only"],
)
def test_publish_refuses_a_broken_run_manifest(tmp_path, capsys, content) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(content)
    notebooks = REPO / "notebooks"
    committed = snapshot(notebooks)
    before = snapshot(tmp_path)
    result = cli(capsys, "publish", run_dir)
    assert_refused(result, ("run.json",), before, tmp_path)
    assert snapshot(notebooks) == committed


# --- bench ---------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["a-file", "under-a-file"])
def test_bench_refuses_an_unusable_out_before_measuring(tmp_path, capsys, monkeypatch, where):
    monkeypatch.setattr(subprocess, "run", _guard("subprocess.run (a benchmark item)"))
    monkeypatch.setattr(subprocess, "Popen", _guard("subprocess.Popen (a benchmark item)"))
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    out = blocker if where == "a-file" else blocker / "results"
    before = snapshot(tmp_path)
    result = cli(capsys, "bench", "--quick", "--out", out)
    assert_refused(result, ("blocker",), before, tmp_path)
    assert_blocker_described(result, where)


# --- evaluate ------------------------------------------------------------------------------
@pytest.fixture
def no_evaluation_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring held-out slices counts as evaluation work (the command's own names, which
    `mri_course.evaluate` imports, and the lessons' module's)."""
    from mri_course import evaluate
    from mri_helpers import evaluation

    for module in (evaluate, evaluation):
        for name in ("course_report", "phantom_report"):
            monkeypatch.setattr(module, name, _guard(f"evaluation.{name}"))


@pytest.mark.parametrize("where", ["missing-folder", "existing-folder", "under-a-file"])
def test_evaluate_refuses_an_unusable_json_before_any_work(
    tmp_path, capsys, models_dir, no_evaluation_work, where
) -> None:
    data = make_zip(tmp_path / "data.zip", course_like_entries(n_t1=4, n_t2=4))
    (tmp_path / "blocker").write_text("a regular file")
    (tmp_path / "results").mkdir()
    target = {
        "missing-folder": tmp_path / "nowhere" / "metrics.json",
        "existing-folder": tmp_path / "results",
        "under-a-file": tmp_path / "blocker" / "metrics.json",
    }[where]
    before = snapshot(tmp_path)
    result = evaluate(capsys, models_dir, data, target)
    name = target.parent.name if where != "existing-folder" else target.name
    assert_refused(result, (name, "--json"), before, tmp_path)
    if where == "under-a-file":
        assert_blocker_described(result, where)


@pytest.mark.parametrize("how", list(ZIP_DAMAGE))
def test_evaluate_refuses_damaged_zips(tmp_path, capsys, models_dir, how: str) -> None:
    archive = damaged_zip(tmp_path / f"{how}.zip", how)
    before = snapshot(tmp_path)
    result = evaluate(capsys, models_dir, archive, tmp_path / "metrics.json")
    names = (archive.name, Path(VICTIM).name) if how in MEMBER_NAMED else (archive.name,)
    assert_refused(result, names, before, tmp_path)


def test_evaluate_refuses_too_few_slices_naming_the_data(tmp_path, capsys, models_dir) -> None:
    archive = make_zip(tmp_path / "few.zip", course_like_entries(n_t1=1, n_t2=1))
    before = snapshot(tmp_path)
    result = evaluate(capsys, models_dir, archive, tmp_path / "metrics.json")
    assert_refused(result, ("few.zip", "too few"), before, tmp_path)


def test_evaluate_does_not_advise_the_folder_it_refuses(tmp_path, capsys, models_dir) -> None:
    """models/t1-to-t2 holding the t2-to-t1 export: the advice must point elsewhere."""
    wrong = models_dir / "t1-to-t2"
    shutil.rmtree(wrong)
    shutil.copytree(models_dir / "t2-to-t1", wrong)
    data = make_zip(tmp_path / "data.zip", course_like_entries(n_t1=4, n_t2=4))
    before = snapshot(tmp_path)
    result = evaluate(capsys, models_dir, data, tmp_path / "metrics.json")
    assert_refused(result, ("t2-to-t1",), before, tmp_path)
    assert_no_advice_to(wrong, result)


def assert_no_advice_to(folder: Path, result: Outcome) -> None:
    """`folder` may be named once as the culprit (or as the prefix of its files), not twice."""
    text = str(folder)
    bare = [
        i
        for i in range(len(result.err))
        if result.err.startswith(text, i) and not result.err.startswith(text + os.sep, i)
    ]
    assert len(bare) <= 1, f"the advice points back to the refused folder {folder}:\n{result}"


# --- translate: model folders --------------------------------------------------------------
def _set(key: str, value: object) -> Callable[[dict], object]:
    def change(config: dict) -> dict:
        return {**config, key: value}

    return change


def _drop(key: str) -> Callable[[dict], object]:
    return lambda config: {k: v for k, v in config.items() if k != key}


MODEL_JSON_CASES: dict[str, tuple[Callable[[dict], object], tuple[str, ...]]] = {
    "image_size-128": (_set("image_size", 128), ("image_size", "128")),
    "image_size-63": (_set("image_size", 63), ("image_size", "63")),
    "image_size-0": (_set("image_size", 0), ("image_size",)),
    "image_size-negative": (_set("image_size", -5), ("image_size", "-5")),
    "image_size-text": (_set("image_size", "abc"), ("image_size", "abc")),
    "image_size-fraction": (_set("image_size", 224.5), ("image_size", "224.5")),
    "image_size-null": (_set("image_size", None), ("image_size",)),
    "whole-file-null": (lambda config: None, ("model.json",)),
    "whole-file-number": (lambda config: 42, ("model.json",)),
    "whole-file-list": (lambda config: [], ("model.json",)),
    "cleaning-unknown-key": (_set("cleaning", {"sharpen": True}), ("cleaning", "sharpen")),
    "cleaning-text": (_set("cleaning", "yes please"), ("cleaning",)),
    "cleaning-list": (_set("cleaning", [True, False]), ("cleaning",)),
    "no-direction": (_drop("direction"), ("direction",)),
    "no-image_size": (_drop("image_size"), ("image_size",)),
    "direction-unknown": (_set("direction", "t1-to-flair"), ("direction",)),
}


@pytest.mark.parametrize("case", list(MODEL_JSON_CASES))
def test_translate_refuses_odd_model_json(tmp_path, capsys, models_dir, slices_dir, case):
    change, names = MODEL_JSON_CASES[case]
    config_path = models_dir / "t1-to-t2" / "model.json"
    config_path.write_text(json.dumps(change(json.loads(config_path.read_text()))))
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    result = translate(capsys, models_dir / "t1-to-t2", slices_dir, out=out)
    assert_refused(result, names, before, tmp_path)


def _keras_with_config(path: Path, change: Callable[[str], str]) -> None:
    """Rewrite a .keras file with its config.json changed by `change`."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["config.json"] = change(members["config.json"].decode()).encode()
    path.unlink()
    make_zip(path, members)


def _other_network(kind: str):
    from mri_helpers import models
    from mri_helpers._tf import keras

    if kind == "input":  # a generator for 32x32 inputs behind a model.json that says 16
        return models.unet_generator(models.GeneratorConfig((8, 8)), 2 * MODEL_SIZE)
    inputs = keras.Input((MODEL_SIZE, MODEL_SIZE, 1))
    if kind == "output-channels":
        outputs = keras.layers.Conv2D(3, 1, activation="tanh")(inputs)
    else:  # half-size output
        outputs = keras.layers.Conv2D(1, 3, strides=2, padding="same", activation="tanh")(inputs)
    return keras.Model(inputs, outputs)


KERAS_CASES = [
    "input-shape",
    "output-channels",
    "output-size",
    "text",
    "zip-without-config",
    "unknown-layer",
]


@pytest.mark.parametrize("case", KERAS_CASES)
def test_translate_refuses_odd_keras_files(tmp_path, capsys, models_dir, slices_dir, case):
    folder = models_dir / "t1-to-t2"
    keras_file = folder / "generator.keras"
    if case in ("input-shape", "output-channels", "output-size"):
        from mri_helpers import export

        kind = {"input-shape": "input"}.get(case, case)
        other = tmp_path / "other"
        export.export_generator(_other_network(kind), other, "t1-to-t2", MODEL_SIZE, None, False)
        shutil.copy(other / "t1-to-t2" / "generator.keras", keras_file)
        shutil.rmtree(other)
    elif case == "text":
        keras_file.write_text("I am not a model, just some text.\n")
    elif case == "zip-without-config":
        keras_file.unlink()
        make_zip(keras_file, {"readme.txt": b"a zip, but no Keras model inside"})
    else:
        _keras_with_config(
            keras_file,
            lambda text: text.replace(
                '"class_name": "Activation"', '"class_name": "EvilLayerThatDoesNotExist"'
            ),
        )
        assert (
            "EvilLayerThatDoesNotExist" in zipfile.ZipFile(keras_file).read("config.json").decode()
        )
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    result = translate(capsys, folder, slices_dir, out=out)
    assert_refused(result, ("generator.keras",), before, tmp_path, max_length=500)
    assert "not found" not in result.err.lower(), f"the file exists:\n{result}"


def test_translate_does_not_advise_the_folder_it_refuses(tmp_path, capsys, models_dir, slices_dir):
    wrong = models_dir / "t1-to-t2"
    shutil.rmtree(wrong)
    shutil.copytree(models_dir / "t2-to-t1", wrong)
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    result = translate(capsys, wrong, slices_dir, out=out)
    assert_refused(result, ("t2-to-t1",), before, tmp_path)
    assert_no_advice_to(wrong, result)


# --- translate: inputs and outputs ---------------------------------------------------------
@pytest.mark.parametrize("where", ["a-file", "under-a-file"])
def test_translate_refuses_an_unwritable_out(tmp_path, capsys, models_dir, slices_dir, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    out = blocker if where == "a-file" else blocker / "out"
    before = snapshot(tmp_path)
    result = translate(capsys, models_dir, slices_dir, out=out)
    assert_refused(result, ("blocker",), before, tmp_path)
    assert_blocker_described(result, where)


@pytest.mark.parametrize("given", ["folder", "file"])
def test_translate_refuses_to_write_over_its_inputs(
    tmp_path, capsys, models_dir, slices_dir, given
) -> None:
    inputs = [slices_dir] if given == "folder" else [slices_dir / "a.png", slices_dir / "b.png"]
    before = snapshot(tmp_path)
    result = translate(capsys, models_dir, *inputs, out=slices_dir)
    assert_refused(result, ("inputs", "--out"), before, tmp_path)


def test_translate_refuses_two_inputs_with_one_name(tmp_path, capsys, models_dir) -> None:
    for folder in ("first", "second"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.png").write_bytes(png_bytes(gray_slice()))
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    result = translate(
        capsys, models_dir, tmp_path / "first", tmp_path / "second" / "same.png", out=out
    )
    assert_refused(result, ("same.png",), before, tmp_path)


def test_translate_refuses_an_output_path_too_long(tmp_path, capsys, models_dir) -> None:
    """The output path (--out plus a 250-character name) exceeds the system's path limit."""
    name = "n" * 246 + ".png"
    (tmp_path / "long").mkdir()
    (tmp_path / "long" / name).write_bytes(png_bytes(gray_slice()))
    limit = os.pathconf(tmp_path, "PC_PATH_MAX")
    out = tmp_path / "out"
    while len(str(out)) < limit - 200:
        out = out / ("d" * 200)
    out.mkdir(parents=True)
    before = snapshot(tmp_path)
    result = translate(capsys, models_dir, tmp_path / "long", out=out)
    assert_refused(result, (name[:40],), before, tmp_path, out=tmp_path / "out")
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*")), str(result)


def test_translate_the_longest_file_name(tmp_path, capsys, models_dir) -> None:
    """A 255-character name is legal; the temporary name written first must not break it.
    Either it is translated under its own name or refused clearly; never a traceback."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    name = "m" * (limit - 4) + ".png"
    (tmp_path / "long").mkdir()
    (tmp_path / "long" / name).write_bytes(png_bytes(gray_slice()))
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    result = translate(capsys, models_dir, tmp_path / "long", out=out)
    if result.code == 0:
        assert "Traceback" not in result.out + result.err, str(result)
        assert [p.name for p in out.iterdir()] == [name], str(result)
        with Image.open(out / name) as translated:
            assert translated.size == (181, 217)
        new = [c for c in changes(before, snapshot(tmp_path)) if not _within(c[4:], "out")]
        assert not new, f"changed outside out/: {new}"
    else:
        assert_refused(result, (name[:40],), before, tmp_path, out=out)


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_translate_refuses_hostile_images(tmp_path, capsys, models_dir, case: str) -> None:
    make, word = IMAGE_CASES[case]
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "fine.png").write_bytes(png_bytes(gray_slice()))
    (folder / f"{case}.png").write_bytes(make())
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    result = translate(capsys, models_dir, folder, out=out)
    assert_refused(result, (f"{case}.png", word), before, tmp_path)


def test_translate_brings_a_shrunk_slice_back_to_its_size(tmp_path, capsys, models_dir) -> None:
    """A 6000x6000 input is shrunk while reading; the output must have the input's size, or
    the command must say which output has which size."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "huge.png").write_bytes(big_png(6000))
    out = tmp_path / "out"
    result = translate(capsys, models_dir, tmp_path / "in", out=out)
    assert result.code == 0 and result.escaped is None, str(result)
    with Image.open(out / "huge.png") as translated:
        size = translated.size
    said = "huge.png" in result.out and "6000x6000" in result.out
    assert size == (6000, 6000) or (said and f"{size[0]}x{size[1]}" in result.out), (
        f"the output is {size[0]}x{size[1]} for a 6000x6000 input, and the command did not "
        f"say so:\n{result}"
    )


# --- 2 GiB files: bounded memory, in a subprocess -----------------------------------------
# Runs the command line given after it, then reports the process's own peak memory: VmHWM of
# /proc/self/status belongs to this program's memory map, which exec starts afresh. (A child's
# ru_maxrss on Linux starts from its parent's peak at fork, so a large pytest would count.)
MEASURED = """
import atexit, runpy, sys
def report():
    peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM")]
    sys.stderr.write("PEAK_KIB " + peak[0].split()[1] + "\\n")
atexit.register(report)
sys.argv = ["mri-course", *sys.argv[1:]]
runpy.run_module("mri_course.cli", run_name="__main__")
"""


def peak_memory_run(command: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str, int]:
    """Run `mri-course ARGS` (command: [python, -m, mri_course.cli, ARGS...]); return its exit
    code, stdout + stderr and its own peak resident memory in bytes."""
    env = {k: v for k, v in os.environ.items() if k != "MRI_DATA"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    cwd.mkdir(parents=True, exist_ok=True)
    arguments = command[command.index("mri_course.cli") + 1 :]
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, *arguments],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    peaks = re.findall(r"PEAK_KIB (\d+)", done.stderr)
    assert peaks, f"no peak memory reported:\n{done.stderr[-2000:]}"
    text = done.stdout + re.sub(r"PEAK_KIB \d+\n", "", done.stderr)
    return done.returncode, text, int(peaks[-1]) * 1024


@pytest.fixture
def big_data(tmp_path: Path) -> Path:
    """Tr1/TrainT1/x.png a sparse 2 GiB file, Tr2/TrainT2/y.png an ordinary slice."""
    root = tmp_path / "big"
    sparse_file(root / "Tr1" / "TrainT1" / "x.png")
    (root / "Tr2" / "TrainT2").mkdir(parents=True)
    (root / "Tr2" / "TrainT2" / "y.png").write_bytes(png_bytes(gray_slice()))
    return root


def test_check_data_on_a_2_gib_png_is_refused_in_bounded_memory(tmp_path, big_data) -> None:
    before = snapshot(tmp_path)
    command = [sys.executable, "-m", "mri_course.cli", "check-data", str(big_data)]
    code, output, peak = peak_memory_run(command, tmp_path / "cwd")
    assert code == 2 and "Traceback" not in output, f"exit {code}:\n{output[-3000:]}"
    assert "x.png" in output and "MiB" in output, output
    assert peak < PEAK_MEMORY_LIMIT, f"peak memory {peak / GIB:.2f} GiB:\n{output[-2000:]}"
    assert not changes(before, snapshot(tmp_path))


def test_translate_of_a_2_gib_png_is_refused_in_bounded_memory(
    tmp_path, big_data, models_dir
) -> None:
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    command = [
        sys.executable,
        "-m",
        "mri_course.cli",
        "translate",
        "--model",
        str(models_dir),
        "--direction",
        "t1-to-t2",
        str(big_data / "Tr1" / "TrainT1" / "x.png"),
        "--out",
        str(out),
    ]
    code, output, peak = peak_memory_run(command, tmp_path / "cwd")
    assert peak < PEAK_MEMORY_LIMIT, (
        f"peak memory {peak / GIB:.2f} GiB: the 2 GiB file was read whole (exit {code}):\n"
        f"{output[-2000:]}"
    )
    assert code == 2 and "Traceback" not in output, f"exit {code}:\n{output[-3000:]}"
    assert "x.png" in output and "MiB" in output, output
    assert not changes(before, snapshot(tmp_path))


# --- headers that lie: the whole command, its own peak memory ------------------------------
MEMORY_BOUND = MEMORY_BOUND_BYTES  # the README's bound for any refused input


def nifti_gz_announcing(path: Path, shape: tuple[int, int, int], zero_bytes: int) -> Path:
    """A small .nii.gz whose valid header announces `shape` (uint8) and whose gzip stream
    inflates to `zero_bytes` of zeros (one 64 MiB member of zeros, repeated)."""
    image = nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4))
    image.header.set_data_shape(shape)
    image.header.set_data_offset(352)
    image.set_qform(np.eye(4), code=1)
    header = image.header.binaryblock + b"\0" * 4
    block = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = block.compress(b"\0" * (64 << 20)) + block.flush()
    count = zero_bytes // (64 << 20)
    path.write_bytes(gzip.compress(header, 1) + member * count)
    return path


@pytest.mark.parametrize(
    ("command", "case"),
    [
        ("translate", "4-gib-stream-announcing-4-gvoxels"),
        ("translate", "4-kib-file-claiming-30000-cubed"),
        ("harmonise", "4-gib-stream-announcing-4-gvoxels"),  # the same reader, checked too
    ],
)
def test_volume_commands_refuse_a_lying_nifti_from_its_header(
    tmp_path, models_dir, command, case
) -> None:
    if case.startswith("4-gib"):
        scan = nifti_gz_announcing(tmp_path / "huge.nii.gz", (2048, 2048, 1024), 4 * GIB)
        assert scan.stat().st_size < 8 << 20
    else:
        scan = tmp_path / "claims.nii"
        image = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4))
        image.header.set_data_shape((30000, 30000, 30000))
        image.set_qform(np.eye(4), code=1)
        scan.write_bytes(image.header.binaryblock + b"\0" * 3748)
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    argv = [
        sys.executable, "-m", "mri_course.cli", command, "--model", str(models_dir),
        "--direction", "t1-to-t2", str(scan), "--out", str(out),
    ]  # fmt: skip
    code, output, peak = peak_memory_run(argv, tmp_path / "cwd")
    assert code == 2 and "Traceback" not in output and "MemoryError" not in output, output
    assert scan.name in output and "header announces" in output, output
    assert peak < MEMORY_BOUND, f"peak memory {peak / GIB:.2f} GiB:\n{output[-2000:]}"
    assert not changes(before, snapshot(tmp_path))


@pytest.mark.slow  # other processes, or long: not in `make check`
def test_check_data_refuses_a_zip_member_whose_size_lies_in_bounded_memory(tmp_path) -> None:
    """A member recorded as 1000 bytes whose deflate stream inflates to 2 GiB."""
    path = tmp_path / "lying.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in course_like_entries().items():
            if name != VICTIM:
                archive.writestr(name, content)
        with archive.open(VICTIM, "w", force_zip64=True) as member:
            for _ in range(32):
                member.write(b"\0" * (64 << 20))
    raw = bytearray(path.read_bytes())
    _, _, central = _member_offsets(bytes(raw), VICTIM)
    extra = central + 46 + len(VICTIM.encode())
    assert struct.unpack_from("<HH", raw, extra)[0] == 1  # the zip64 sizes
    struct.pack_into("<Q", raw, extra + 4, 1000)  # the uncompressed size it records
    path.write_bytes(bytes(raw))
    before = snapshot(tmp_path)
    command = [sys.executable, "-m", "mri_course.cli", "check-data", str(path)]
    code, output, peak = peak_memory_run(command, tmp_path / "cwd")
    assert code == 2 and "Traceback" not in output, output
    assert "Image #9.png" in output, output
    assert peak < MEMORY_BOUND, f"peak memory {peak / GIB:.2f} GiB:\n{output[-2000:]}"
    assert not changes(before, snapshot(tmp_path))
