"""The course data as a TensorFlow Datasets builder (explained in 01_data_understanding).

TFDS turns the zip into versioned, cached TFRecord files once; after that `tfds.load` reads
the cache. The zip is a manual download: the builder never fetches anything.

    builder = mh.tfds_dataset.builder()            # finds the zip like mh.find_data()
    t1 = builder.as_dataset(split="t1")            # elements: {"id": ..., "image": (H, W, 1)}
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._tf import _stderr_muted

with _stderr_muted():
    import tensorflow_datasets as tfds

from .data import COURSE_ZIP_NAME, MODALITIES, DataError, find_data, read_course_data


class MriT1T2(tfds.core.GeneratorBasedBuilder):
    """Unpaired axial T1- and T2-weighted brain slices of the course zip."""

    name = "mri_t1_t2"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "The course zip: 43 T1 and 46 T2 slices, 181x217, 8-bit."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Put the course zip `{COURSE_ZIP_NAME}` (or its extracted folder) into the manual folder,
    `manual_dir` (by default ~/tensorflow_datasets/downloads/manual/). The builder reads
    Tr1/TrainT1/*.png as split "t1" and Tr2/TrainT2/*.png as split "t2".
    """

    def __init__(self, *, source: str | os.PathLike | None = None, **kwargs):
        """`source`: the zip or folder to read; None reads the manual folder."""
        super().__init__(**kwargs)
        self._source = None if source is None else Path(source)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="Unpaired T1-weighted and T2-weighted axial brain MRI slices.",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(doc="original file name, e.g. 'Image #10.png'"),
                    "image": tfds.features.Image(shape=(None, None, 1), dtype=np.uint8),
                }
            ),
            supervised_keys=None,
            homepage="https://brainweb.bic.mni.mcgill.ca/",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        source = self._source or _find_in_manual_dir(Path(dl_manager.manual_dir))
        dataset = read_course_data(source)
        return {modality: self._generate_examples(dataset[modality]) for modality in MODALITIES}

    def _generate_examples(self, slices):
        for s in slices:
            if s.image.dtype != np.uint8:
                raise DataError(
                    f"{s.origin} is {s.image.dtype}; this builder stores 8-bit slices. Use "
                    "mh.load_dataset() for 16-bit data."
                )
            yield s.id, {"id": s.id, "image": s.image[..., None]}


def _find_in_manual_dir(manual_dir: Path) -> Path:
    """The course zip in the manual folder, else any zip there, else the folder itself.

    TFDS has already checked that the folder exists and is not empty (its error quotes
    MANUAL_DOWNLOAD_INSTRUCTIONS).
    """
    if manual_dir.is_dir():
        zips = sorted(manual_dir.glob("*.zip"), key=lambda p: p.name != COURSE_ZIP_NAME)
        if zips:
            return zips[0]
    return manual_dir  # a zip or an extracted folder; read_course_data says if it is neither


def builder(
    data: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None
) -> MriT1T2:
    """A prepared builder for the course data found by `find_data(data)`, cached in `data_dir`.

    `data_dir` defaults to TFDS's own (~/tensorflow_datasets).
    """
    source = find_data(data)
    if source is None:
        raise DataError(
            f"no course zip found for TFDS (looked at $MRI_DATA and data/{COURSE_ZIP_NAME})."
        )
    tfds.display_progress_bar(False)
    result = MriT1T2(source=source, data_dir=None if data_dir is None else str(data_dir))
    result.download_and_prepare()
    return result
