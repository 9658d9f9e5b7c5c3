"""The dataset layer on the real course zip and on small crafted files."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import mri_helpers as mh
from conftest import course_like_entries, gray_slice, make_zip, png_bytes, sha256
from mri_course.cli import main as cli_main
from mri_helpers import data as data_module
from mri_helpers import datafiles


# --- the real course zip -------------------------------------------------------------------
def test_course_zip_counts_sizes_and_order(course_zip: Path) -> None:
    before = sha256(course_zip)
    dataset = mh.load_dataset(course_zip)
    assert (len(dataset.t1), len(dataset.t2)) == (43, 46)
    for s in dataset.t1 + dataset.t2:
        assert s.image.shape == (217, 181) and s.image.dtype == np.uint8
    t1_numbers = [int(i.removeprefix("Image #").removesuffix(".png")) for i in dataset.ids("t1")]
    assert t1_numbers == sorted(t1_numbers) and t1_numbers[0] == 10 and t1_numbers[-1] == 55
    assert dataset.ids("t2")[0] == "Image #70.png" and dataset.ids("t2")[-1] == "Image #125.png"
    assert not set(dataset.ids("t1")) & set(dataset.ids("t2"))  # unpaired: no shared slice
    assert sha256(course_zip) == before


def test_extracted_folder_matches_zip(course_zip: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(course_zip) as archive:
        archive.extractall(tmp_path / "MRI+T1_T2+Dataset")
    from_zip = mh.load_dataset(course_zip)
    from_folder = mh.load_dataset(tmp_path / "MRI+T1_T2+Dataset")
    for modality in mh.MODALITIES:
        assert from_folder.ids(modality) == from_zip.ids(modality)
        np.testing.assert_array_equal(from_folder.stack(modality), from_zip.stack(modality))


def test_check_data_reports_course_zip(course_zip: Path, capsys) -> None:
    before = sha256(course_zip)
    assert cli_main(["check-data", str(course_zip)]) == 0
    out = capsys.readouterr().out
    assert "T1: 43 slices" in out and "T2: 46 slices" in out
    assert "43 of 181x217" in out and "46 of 181x217" in out and "uint8" in out
    assert f"the course's own zip (SHA-256 {sha256(course_zip)})" in out
    assert sha256(course_zip) == before


def test_check_data_tells_the_course_slices_from_another_data_set(
    course_zip: Path, tmp_path: Path, capsys
) -> None:
    """Re-zipped under another top folder, or extracted, the course's slices are still named
    as the course's; one changed slice, or another data set of the same layout, is not."""
    with zipfile.ZipFile(course_zip) as archive:
        members = {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}
        archive.extractall(tmp_path / "extracted")
    rezipped = make_zip(tmp_path / "rezipped.zip", {f"top/{n}": b for n, b in members.items()})
    changed = dict(members)
    first = sorted(n for n in members if n.endswith(".png"))[0]
    changed[first] = png_bytes(gray_slice(77))
    altered = make_zip(tmp_path / "altered.zip", changed)
    other = make_zip(tmp_path / "other.zip", course_like_entries())
    expected = {
        rezipped: "the course's own slices, in another zip",
        tmp_path / "extracted": "the course's own slices, in another folder",
        altered: f"not the course zip (SHA-256 {sha256(altered)}",
        other: f"not the course zip (SHA-256 {sha256(other)}",
    }
    for path, line in expected.items():
        assert cli_main(["check-data", str(path)]) == 0
        assert f"which: {line}" in capsys.readouterr().out, path.name


def test_find_data_prefers_explicit_then_env(course_zip: Path, tmp_path, monkeypatch) -> None:
    other = make_zip(tmp_path / "other.zip", course_like_entries())
    monkeypatch.setenv("MRI_DATA", str(course_zip))
    assert mh.find_data() == course_zip
    assert mh.find_data(other) == other
    monkeypatch.setenv("MRI_DATA", str(tmp_path / "missing.zip"))
    with pytest.raises(mh.DataError, match=r"\$MRI_DATA .*missing.zip.* does not exist"):
        mh.find_data()


def test_find_data_looks_in_project_data_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MRI_DATA", raising=False)
    monkeypatch.setattr(datafiles, "project_root", lambda: tmp_path)
    assert mh.find_data() is None
    (tmp_path / "data").mkdir()
    zipped = make_zip(tmp_path / "data" / "MRI+T1_T2+Dataset.zip", course_like_entries())
    assert mh.find_data() == zipped
    zipped.unlink()
    folder = tmp_path / "data" / "extracted" / "Tr1" / "TrainT1"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(png_bytes(gray_slice()))
    assert mh.find_data() == tmp_path / "data" / "extracted"


# --- layouts -------------------------------------------------------------------------------
def test_natural_order_top_folder_and_junk_ignored(tmp_path: Path) -> None:
    entries = course_like_entries(prefix="MRI+T1_T2+Dataset/")
    entries["__MACOSX/MRI+T1_T2+Dataset/Tr1/TrainT1/._Image #9.png"] = b"mac resource fork"
    entries["MRI+T1_T2+Dataset/Tr1/TrainT1/.DS_Store"] = b"junk"
    entries["MRI+T1_T2+Dataset/Tr2/TrainT2/Thumbs.db"] = b"junk"
    entries["MRI+T1_T2+Dataset/readme.txt"] = b"notes"
    dataset = mh.load_dataset(make_zip(tmp_path / "nested.zip", entries))
    assert dataset.ids("t1") == ["Image #9.png", "Image #10.png", "Image #11.png"]
    assert dataset.ids("t2") == ["Image #99.png", "Image #100.png"]
    assert dataset.ignored == ["MRI+T1_T2+Dataset/readme.txt"]
    assert dataset.t1[0].image.max() == 50 and dataset.t1[2].image.max() == 52


def test_names_with_spaces_hash_and_non_ascii(tmp_path: Path) -> None:
    entries = {
        "Tr1/TrainT1/Schnitt #1 ä.png": png_bytes(gray_slice(10)),
        "Tr1/TrainT1/脑 #2.png": png_bytes(gray_slice(20)),
        "Tr2/TrainT2/Image #3 é.png": png_bytes(gray_slice(30)),
    }
    dataset = mh.load_dataset(make_zip(tmp_path / "names.zip", entries))
    assert dataset.ids("t1") == ["Schnitt #1 ä.png", "脑 #2.png"]
    assert dataset.ids("t2") == ["Image #3 é.png"]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({}, "holds no PNG slices"),
        ({"Tr1/TrainT1/a.png": png_bytes(gray_slice())}, "no T2 slices"),
        ({"Tr2/TrainT2/a.png": png_bytes(gray_slice())}, "no T1 slices"),
        ({"slices/a.png": png_bytes(gray_slice())}, "no T1/T2 folders"),
    ],
    ids=["empty", "only-t1", "only-t2", "no-modality-folders"],
)
def test_incomplete_archives_are_refused(tmp_path: Path, entries, message: str) -> None:
    with pytest.raises(mh.DataError, match=message):
        mh.load_dataset(make_zip(tmp_path / "bad.zip", entries))


def test_not_a_zip_missing_path_and_empty_folder(tmp_path: Path) -> None:
    fake = tmp_path / "data.zip"
    fake.write_text("this is not a zip")
    with pytest.raises(mh.DataError, match="neither a folder nor a zip"):
        mh.load_dataset(fake)
    with pytest.raises(mh.DataError, match="does not exist"):
        mh.load_dataset(tmp_path / "nowhere.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(mh.DataError, match="holds no PNG slices"):
        mh.load_dataset(tmp_path / "empty")


def test_duplicate_ids_in_one_contrast_are_refused(tmp_path: Path) -> None:
    entries = course_like_entries()
    entries["Tr1/TrainT1/extra/Image #9.png"] = png_bytes(gray_slice())
    with pytest.raises(mh.DataError, match=r"share the name\(s\) \['Image #9.png'\]"):
        mh.load_dataset(make_zip(tmp_path / "dup.zip", entries))


# --- broken files --------------------------------------------------------------------------
def test_every_broken_file_is_named(tmp_path: Path) -> None:
    good = png_bytes(gray_slice())
    entries = course_like_entries()
    entries["Tr1/TrainT1/empty.png"] = b""
    entries["Tr1/TrainT1/truncated.png"] = good[: len(good) // 2]
    entries["Tr2/TrainT2/text.png"] = b"hello, I am not an image"
    archive = make_zip(tmp_path / "broken.zip", entries)
    before = sha256(archive)
    with pytest.raises(mh.DataProblems) as caught:
        mh.load_dataset(archive)
    problems = caught.value.problems
    assert len(problems) == 3
    assert any("empty.png" in p and "empty (0 bytes)" in p for p in problems)
    assert any("truncated.png" in p and "not a readable PNG" in p for p in problems)
    assert any("text.png" in p and "not a readable PNG" in p for p in problems)
    assert sha256(archive) == before


def test_check_data_lists_problems_and_fails(tmp_path: Path, capsys) -> None:
    entries = course_like_entries()
    entries["Tr2/TrainT2/zero.png"] = b""
    assert cli_main(["check-data", str(make_zip(tmp_path / "b.zip", entries))]) != 0
    assert "zero.png" in capsys.readouterr().err


def test_zip_slip_is_refused_and_nothing_written(tmp_path: Path, monkeypatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for i, evil in enumerate(["../evil.png", "/tmp/evil-abs.png", "Tr1/../../evil2.png"]):
        entries = course_like_entries()
        entries[evil] = png_bytes(gray_slice())
        archive = make_zip(tmp_path / f"slip{i}.zip", entries)
        before = sorted(p.name for p in tmp_path.rglob("*"))
        with pytest.raises(mh.DataError, match="unsafe entr"):
            mh.load_dataset(archive)
        assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not Path("/tmp/evil-abs.png").exists()


# --- other image kinds ---------------------------------------------------------------------
def test_rgb_rgba_and_16_bit_are_converted_and_noted(tmp_path: Path) -> None:
    rgb = np.zeros((217, 181, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 150, 200
    rgba = np.dstack([rgb, np.full((217, 181), 255, np.uint8)])
    deep = (gray_slice(1).astype(np.uint16)) * 4000
    entries = course_like_entries()
    entries["Tr1/TrainT1/rgb.png"] = png_bytes(rgb)
    entries["Tr1/TrainT1/rgba.png"] = png_bytes(rgba)
    entries["Tr2/TrainT2/deep.png"] = png_bytes(deep)
    dataset = mh.load_dataset(make_zip(tmp_path / "kinds.zip", entries))
    by_id = {s.id: s for s in dataset.t1 + dataset.t2}
    expected_gray = round(0.299 * 100 + 0.587 * 150 + 0.114 * 200)  # ITU-R 601 luma
    assert abs(int(by_id["rgb.png"].image[0, 0]) - expected_gray) <= 1
    assert "converted from RGB to grayscale" in by_id["rgb.png"].notes
    assert by_id["rgba.png"].image.ndim == 2 and by_id["rgba.png"].notes
    assert by_id["deep.png"].image.dtype == np.uint16
    assert by_id["deep.png"].image.max() == 4000 and "16-bit" in by_id["deep.png"].notes
    report = mh.describe(dataset)
    assert "converted from RGB to grayscale" in report and "uint16" in report


def test_other_sizes_reported_and_huge_images_bounded(tmp_path: Path, monkeypatch) -> None:
    entries = course_like_entries()
    entries["Tr1/TrainT1/small.png"] = png_bytes(gray_slice(shape=(120, 100)))
    entries["Tr2/TrainT2/wide.png"] = png_bytes(gray_slice(shape=(300, 2500)))
    dataset = mh.load_dataset(make_zip(tmp_path / "sizes.zip", entries))
    wide = next(s for s in dataset.t2 if s.id == "wide.png")
    assert max(wide.shape) <= datafiles.MAX_SIDE and "shrunk" in wide.notes[0]
    assert "not all slices are 181x217" in mh.describe(dataset)
    monkeypatch.setattr(datafiles, "MAX_PIXELS", 10_000)
    with pytest.raises(mh.DataProblems, match="too large"):
        mh.load_dataset(make_zip(tmp_path / "sizes2.zip", entries))


def test_user_folder_is_not_modified(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    for name, content in course_like_entries().items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    before = {p: (sha256(p), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}
    mh.load_dataset(folder)
    after = {p: (sha256(p), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}
    assert after == before


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["Image #10.png", "Image #9.png", "image #100.png", "Image #1.png"]
    assert sorted(names, key=data_module.natural_key) == [
        "Image #1.png",
        "Image #9.png",
        "Image #10.png",
        "image #100.png",
    ]


def test_auto_falls_back_to_phantom_and_says_so(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("MRI_DATA", raising=False)
    monkeypatch.setattr(datafiles, "project_root", lambda: tmp_path)
    dataset = mh.load_dataset("auto", num_slices=4)
    assert dataset.is_phantom and len(dataset.t1) == len(dataset.t2) == 4
    assert "using the built-in phantom" in capsys.readouterr().out
    assert dataset.ids("t1") == dataset.ids("t2")  # paired ground truth
    assert all(s.clean is not None and s.head_mask is not None for s in dataset.t1)
    assert os.environ.get("MRI_DATA") is None
