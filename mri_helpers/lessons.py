"""What the lessons hand each other, so that lesson cells hold no plumbing.

Every lesson starts with a parameters cell of plain values; `parameters(globals())` checks them
and fills those left at None from the profile. `earlier_lessons(RUN_DIR)` gives a lesson what the
earlier lessons of the same run set up, read from their manifests (`mri_helpers.manifest`):
the data (01), the held-out split, cleaning and image size (02), and the networks (03). Without
a run of those lessons, an exported model's `model.json` (the published one) can stand in.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import manifest, profiles
from .data import MRIDataset, Slice, load_dataset
from .datafiles import AUTO, PHANTOM
from .errors import MissingManifestError
from .processing import Cleaning, Split, holdout_split, prepare, select, training_pipeline


class Parameters(dict):
    """Checked parameter values, read as attributes (`p.EPOCHS`) or as keys."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"no parameter {name!r}; this lesson has {sorted(self)}"
            ) from None


def parameters(namespace: Mapping[str, Any], **fixed: Any) -> Parameters:
    """The course parameters set in `namespace` (a lesson's `globals()`: its UPPER_CASE names
    that the course knows), those left at None taken from the profile, every value checked.

    `fixed`: values an earlier lesson decided (e.g. IMAGE_SIZE), which win.
    """
    values = {name: value for name, value in namespace.items() if name in profiles.SPECS}
    values.update(fixed)
    profile = values.pop("PROFILE", "course")
    return Parameters(profiles.resolve(profile, **values))


@dataclass
class EarlierLessons:
    """What the earlier lessons of one run set up; read it with `earlier_lessons(run_dir)`."""

    run_dir: Path
    manifests: dict[str, dict[str, Any]]
    published: Path | None = None  # the export whose model.json stood in for lessons 01-03
    _images: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)

    def _manifest(self, name: str) -> dict[str, Any]:
        if name not in self.manifests:
            raise MissingManifestError(
                f"{self.run_dir / name}.json is missing: run lesson {name[:2]} first with the "
                "same RUN_DIR (or the whole course with `mri-course run`)."
            )
        return self.manifests[name]

    @functools.cached_property
    def dataset(self) -> MRIDataset:
        """The data lesson 01 chose."""
        data = self._manifest("01_data")
        return load_dataset(data["data"], num_slices=data["num_phantom_slices"])

    @property
    def split(self) -> Split:
        """The held-out split of lesson 02."""
        return Split(**self._manifest("02_processing")["split"])

    @property
    def cleaning(self) -> Cleaning:
        """The cleaning of lesson 02."""
        return Cleaning(**self._manifest("02_processing")["cleaning"])

    @property
    def image_size(self) -> int:
        """The side of the networks' square input (lesson 02)."""
        return self._manifest("02_processing")["image_size"]

    @property
    def batch_size(self) -> int:
        return self._manifest("02_processing")["batch_size"]

    @property
    def seed(self) -> int:
        """The seed lesson 02 split and shuffled with."""
        return self._manifest("02_processing")["seed"]

    @property
    def networks(self) -> dict[str, str]:
        """The generator and discriminator configurations of lesson 03."""
        models = self._manifest("03_models")
        return {"GENERATOR": models["generator"], "DISCRIMINATOR": models["discriminator"]}

    def settings(self) -> dict[str, Any]:
        """The parameters earlier lessons fixed, for `parameters(..., **settings)`."""
        fixed = {"IMAGE_SIZE": self.image_size, "BATCH_SIZE": self.batch_size}
        return {**fixed, **(self.networks if "03_models" in self.manifests else {})}

    def configuration(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """What a training checkpoint must match to be resumed: every parameter but the run
        folder, RESTART and the published model, with the data and held-out split of lessons 01
        and 02."""
        ignored = ("RUN_DIR", "RESTART", "PUBLISHED_MODEL")
        settings = {k: v for k, v in parameters.items() if k not in ignored}
        data = self._manifest("01_data")
        return {
            **settings,
            "data": data["data"],
            "split": self._manifest("02_processing")["split"],
        }

    def slices(self, modality: str, part: str = "test") -> list[Slice]:
        """The slices of one contrast in the "train" or "test" (held-out) part."""
        return select(self.dataset, modality, getattr(self.split, part)[modality])

    def images(self, modality: str, part: str = "train") -> np.ndarray:
        """Those slices cleaned, padded, resized and scaled for the networks (N, S, S, 1);
        computed once per run folder and part."""
        key = (modality, part)
        if key not in self._images:
            slices = self.slices(modality, part)
            self._images[key] = prepare(slices, self.image_size, self.cleaning)
        return self._images[key]

    def pipeline(self, seed: int | None = None):
        """Lesson 02's training pipeline over the prepared training slices."""
        return training_pipeline(
            self.images("t1"),
            self.images("t2"),
            self.batch_size,
            seed=self.seed if seed is None else seed,
        )


def earlier_lessons(
    run_dir: str | os.PathLike, published: str | os.PathLike | None = None
) -> EarlierLessons:
    """What the earlier lessons wrote into `run_dir` (each manifest that exists).

    `published`: a models folder (the course's `published/`); when `run_dir` holds no run of
    lesson 01, that model's record of its data, split, cleaning and networks stands in.
    """
    run_dir = Path(run_dir)
    names = ("01_data", "02_processing", "03_models")
    found = {
        name: manifest.read(run_dir, name)
        for name in names
        if (run_dir / f"{name}.json").is_file()
    }
    if "01_data" not in found:
        if published is not None and (Path(published) / "t1-to-t2").is_dir():
            return lessons_of_export(run_dir, published)
        manifest.read(run_dir, "01_data")  # raises, saying which lesson to run first
    return EarlierLessons(run_dir, found)


def lessons_of_export(run_dir: str | os.PathLike, models_dir: str | os.PathLike) -> EarlierLessons:
    """Lessons 01-03's choices as an export's `model.json` records them, checked against the
    data found here: its held-out slices must be those the model was trained without.

    The batch size and the discriminator, which an export does not record, are the `course`
    profile's: `mri-course publish` publishes only runs of that profile.
    """
    from .export import read_export_config  # TensorFlow, only when a model is used

    models_dir = Path(models_dir)
    record = read_export_config(models_dir / "t1-to-t2" / "model.json")
    data = PHANTOM if record.get("trained_on") == PHANTOM else AUTO
    dataset = load_dataset(data, num_slices=record.get("num_phantom_slices", 48))
    split = holdout_split(dataset, record.get("holdout_fraction", 0.1), record.get("seed", 0))
    if dataset.kind != record.get("trained_on") or split.test != record.get("held_out"):
        raise MissingManifestError(
            f"the model in {models_dir} was trained on the {record.get('trained_on')} data, and "
            f"the {dataset.kind} data found here is not that data (other slices would be held "
            "out). Put the course zip into data/ (or set MRI_DATA), or run lessons 01 to 03 "
            "first with this RUN_DIR."
        )
    course = profiles.load_profile("course")
    manifests = {
        "01_data": {"data": data, "num_phantom_slices": record.get("num_phantom_slices", 48)},
        "02_processing": {
            "split": {"train": split.train, "test": split.test},
            "cleaning": record.get("cleaning") or {"denoise": False, "mask_background": False},
            "image_size": record["image_size"],
            "batch_size": course["BATCH_SIZE"],
            "seed": record.get("seed", 0),
            "holdout_fraction": record.get("holdout_fraction", 0.1),
        },
        "03_models": {"generator": record["generator"], "discriminator": course["DISCRIMINATOR"]},
    }
    lessons = EarlierLessons(Path(run_dir), manifests, published=models_dir)
    lessons.__dict__["dataset"] = dataset  # the cached property, already loaded
    return lessons
