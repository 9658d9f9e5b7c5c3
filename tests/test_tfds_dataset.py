"""The TFDS builder gives cached, versioned t1/t2 splits with the slice ids of the zip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mri_helpers as mh
from conftest import course_like_entries, make_zip


def test_builder_on_the_course_zip(course_zip: Path, tmp_path: Path) -> None:
    builder = mh.tfds_dataset.builder(course_zip, data_dir=tmp_path)
    assert str(builder.info.version) == "1.0.0"
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"t1": 43, "t2": 46}
    reference = mh.load_dataset(course_zip)
    for modality in mh.MODALITIES:
        examples = {
            e["id"].decode(): e["image"]
            for e in builder.as_dataset(split=modality).as_numpy_iterator()
        }
        assert sorted(examples, key=mh.data.natural_key) == reference.ids(modality)
        first = reference[modality][0]
        np.testing.assert_array_equal(examples[first.id][..., 0], first.image)
    # Prepared once: a second builder reads the cache, whatever the source says now.
    again = mh.tfds_dataset.MriT1T2(data_dir=str(tmp_path))
    assert again.info.splits["t2"].num_examples == 46


def test_tfds_load_with_a_manual_folder(tmp_path: Path) -> None:
    import tensorflow_datasets as tfds

    manual = tmp_path / "manual"
    manual.mkdir()
    make_zip(manual / "MRI+T1_T2+Dataset.zip", course_like_entries())
    t1 = tfds.load(
        "mri_t1_t2",
        split="t1",
        data_dir=str(tmp_path / "cache"),
        download_and_prepare_kwargs={
            "download_config": tfds.download.DownloadConfig(manual_dir=str(manual))
        },
    )
    ids = sorted(e["id"].decode() for e in t1.as_numpy_iterator())
    assert ids == ["Image #10.png", "Image #11.png", "Image #9.png"]


def test_missing_manual_data_says_where_the_zip_goes(tmp_path: Path) -> None:
    builder = mh.tfds_dataset.MriT1T2(data_dir=str(tmp_path / "cache"))
    import tensorflow_datasets as tfds

    config = tfds.download.DownloadConfig(manual_dir=str(tmp_path / "empty"))
    with pytest.raises(AssertionError, match=r"(?s)empty does not exist.*Put the course zip"):
        builder.download_and_prepare(download_config=config)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(mh.DataError, match="holds no PNG slices"):
        builder.download_and_prepare(download_config=config)
