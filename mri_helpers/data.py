"""The course data as the lessons use it: slices, the two unpaired sets, reading the
course zip, the phantom and the hidden partners (lesson 01).

Generated from the lessons' `# @save` cells by `mri-course export-lessons`: edit the
lesson, then run it (never this file).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from mri_helpers import datafiles
from mri_helpers.datafiles import AUTO, COURSE_ZIP_NAME, PHANTOM, find_data
from mri_helpers.errors import DataError, DataProblems

# Defined in 01_data_understanding, 'Where the data comes from'.
MODALITIES = ("t1", "t2")


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
    ignored: list[str] = field(default_factory=list)  # files passed over (not PNG)

    def __getitem__(self, modality: str) -> list[Slice]:
        if modality not in MODALITIES:
            raise KeyError(f"unknown modality {modality!r}; use one of {MODALITIES}")
        return self.t1 if modality == "t1" else self.t2

    @property
    def is_phantom(self) -> bool:
        return self.kind == "phantom"

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


def duplicates(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted({n for n in names if names.count(n) > 1})


# Defined in 01_data_understanding, 'Where the data comes from'.
# Folder names that say which contrast a slice is (case-insensitive, any depth).
MODALITY_FOLDERS = {
    "t1": {"tr1", "traint1", "t1", "t1w", "t1-weighted"},
    "t2": {"tr2", "traint2", "t2", "t2w", "t2-weighted"},
}


def modality_of(path: PurePosixPath) -> str | None:
    """ "t1" or "t2" from the folders a file lies in; None if they name neither or both."""
    folders = {part.lower() for part in path.parts[:-1]}
    found = [m for m, names in MODALITY_FOLDERS.items() if folders & names]
    return found[0] if len(found) == 1 else None


def read_course_data(path: str | os.PathLike) -> MRIDataset:
    """Every slice of a course zip (or its extracted folder): decoded, sorted into T1 and T2
    by its folder, each set in natural order; all problems reported together."""
    slices: dict[str, list[Slice]] = {m: [] for m in MODALITIES}
    ignored, unsorted, problems = [], [], []
    with datafiles.opened(path) as (source, files):  # a zip's members, read in place
        for file in files:
            if file.path.suffix.lower() != ".png":
                ignored.append(str(file.path))
                continue
            modality = modality_of(file.path)
            if modality is None:
                unsorted.append(str(file.path))
                continue
            try:
                image, notes, stored = datafiles.decode_png(file)
            except DataError as error:  # collected: every broken file is named at once
                problems.append(f"{file.path}: {error}")
                continue
            origin = f"{source}:{file.path}"
            slice_ = Slice(file.path.name, modality, image, origin, notes, stored_shape=stored)
            slices[modality].append(slice_)
    if problems:
        raise DataProblems(source, problems)
    check_layout(source, slices, unsorted)
    for modality, found in slices.items():
        found.sort(key=lambda s: natural_key(s.id))
        if duplicates([s.id for s in found]):
            raise DataError(
                f"{source}: two {modality.upper()} slices share the name(s) "
                f"{duplicates([s.id for s in found])}; slice ids must be unique within a "
                "contrast, so rename one of each."
            )
    return MRIDataset(slices["t1"], slices["t2"], source, "course", ignored)


def check_layout(source: str, slices: dict[str, list[Slice]], unsorted: list[str]) -> None:
    """Refuse data with no slices, or with slices of one contrast only, saying what to do."""
    layout = "Tr1/TrainT1/*.png (T1-weighted) and Tr2/TrainT2/*.png (T2-weighted)"
    if not slices["t1"] and not slices["t2"]:
        if unsorted:
            raise DataError(
                f"{source} has {len(unsorted)} PNG file(s) but no T1/T2 folders, so the "
                f"contrast of each slice is unknown (e.g. {unsorted[0]!r}). Arrange them as "
                f"{layout}."
            )
        raise DataError(f"{source} holds no PNG slices. The course data is laid out as {layout}.")
    for modality in MODALITIES:
        if not slices[modality]:
            other = "t2" if modality == "t1" else "t1"
            raise DataError(
                f"{source} has {len(slices[other])} {other.upper()} slices but no "
                f"{modality.upper()} slices: a CycleGAN needs both contrasts. Expected {layout}."
            )


# Defined in 01_data_understanding, 'Where the data comes from'.
def load_dataset(source: str | os.PathLike | None = AUTO, **phantom_options) -> MRIDataset:
    """The course data from a zip or folder (`source`), "phantom" for the built-in phantom,
    or "auto"/None: the data `find_data()` finds, else the phantom (with a printed notice)."""
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
    from mri_helpers.phantom import make_phantom

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


# Defined in 01_data_understanding, 'Hidden partners'.
def find_partners(dataset: MRIDataset, margin: float = 0.05) -> dict[str, str]:
    """Each T1 slice's partner in the T2 set, {T1 id: T2 id}: each the other's best match by
    normalised mutual information, ahead of the runner-up by `margin` (on the course zip:
    1.48-1.50 against at most 1.32). Slices of different sizes never pair."""
    from skimage.metrics import normalized_mutual_information  # loaded when first needed

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
