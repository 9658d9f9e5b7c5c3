"""Exported generators and the translate command (explained in 04_training, "Export").

An export is one folder per direction:

    models/t1-to-t2/generator.keras   the Keras model (loads in safe mode)
    models/t1-to-t2/saved_model/      a TensorFlow SavedModel for serving (TF Serving, TFLite)
    models/t1-to-t2/model.json        direction, image size and the preprocessing it expects

Each folder is written under a temporary name and renamed into place, so a loader never sees
half an export, even if the run is killed while exporting.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ._tf import keras, tf
from .data import Slice, decode_slice, natural_key, repeated
from .errors import DataError, DataProblems, ModelFileError
from .evaluation import DIRECTIONS, translate
from .models import load_model
from .processing import Cleaning

EXPORT_FORMAT = 1
GENERATOR_FILE = "generator.keras"
CONFIG_FILE = "model.json"


def float32_copy(model: keras.Model) -> keras.Model:
    """`model` computing in float32: a model trained with mixed precision should not make
    every user of the export compute in 16 bits (slow, or unsupported, on many CPUs). The
    weights are float32 either way, so they are copied unchanged."""
    config = keras.saving.serialize_keras_object(model)
    float32_config = _float32_policies(config)
    if float32_config == config:
        return model
    copy = keras.saving.deserialize_keras_object(float32_config)
    copy.set_weights(model.get_weights())
    return copy


def _float32_policies(config: Any) -> Any:
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _float32_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_policies(value) for value in config]
    return config


def export_generator(
    generator: keras.Model,
    models_dir: str | os.PathLike,
    direction: str,
    image_size: int,
    extra: dict[str, Any] | None = None,
    saved_model: bool = True,
) -> Path:
    """Write `<models_dir>/<direction>/` atomically; return its path."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; use one of {list(DIRECTIONS)}")
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    final = models_dir / direction
    for stale in models_dir.glob(f".{direction}.*"):  # left by a run killed while exporting
        shutil.rmtree(stale, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{direction}.", dir=models_dir))
    try:
        generator = float32_copy(generator)
        generator.save(partial / GENERATOR_FILE)
        if saved_model:
            logger = tf.get_logger()
            level = logger.level
            logger.setLevel("ERROR")  # "Assets written to ..." for every export
            try:
                generator.export(
                    str(partial / "saved_model"), format="tf_saved_model", verbose=False
                )
            finally:
                logger.setLevel(level)
        config = {
            "format": EXPORT_FORMAT,
            "direction": direction,
            "image_size": image_size,
            "channels": 1,
            "preprocessing": (
                "pad to a square with the background value, resize to image_size, "
                "8-bit 0..255 -> [-1, 1]; output: the exact inverse"
            ),
            **(extra or {}),
        }
        (partial / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
        _replace_folder(partial, final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def _replace_folder(new: Path, final: Path) -> None:
    """Move `new` to `final`; an existing `final` is swapped out first, then deleted."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_generator(path: str | os.PathLike, direction: str | None = None):
    """Load an exported generator and its configuration; check the direction if given.

    `path`: an export folder (`models/t1-to-t2`), a run's `models` folder (with `direction`),
    or the `generator.keras` file inside an export folder.
    """
    path = Path(path)
    if path.is_dir() and direction and (path / direction).is_dir():
        path = path / direction
    elif (
        path.is_dir()
        and direction
        and not any((path / name).exists() for name in (CONFIG_FILE, GENERATOR_FILE))
    ):
        raise ModelFileError(
            f"no {direction} export in {path}; pass a run's models folder, which holds "
            "t1-to-t2/ and t2-to-t1/, or one of those."
        )
    folder = path.parent if path.is_file() else path
    if not path.exists():
        raise ModelFileError(
            f"no model at {path}; pass an export folder such as RUN_DIR/models/t1-to-t2."
        )
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise ModelFileError(
            f"{folder} has no {CONFIG_FILE}, so the image size and direction the model expects "
            "are unknown; pass a folder written by the course's export."
        )
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{config_path} is not valid JSON ({error}).") from None
    missing = {"direction", "image_size"} - set(config)
    if missing:
        raise ModelFileError(f"{config_path} lacks {sorted(missing)}; re-export the model.")
    if direction is not None and config["direction"] != direction:
        raise ModelFileError(
            f"{folder} translates {config['direction']}, not {direction}; pass the "
            f"{direction} export (e.g. {folder.parent / direction})."
        )
    model_file = path if path.is_file() else folder / GENERATOR_FILE
    return load_model(model_file), config


def collect_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """PNG files named directly, or found directly inside named folders, in natural order."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(
                (p for p in item.iterdir() if p.suffix.lower() == ".png" and p.is_file()),
                key=lambda p: natural_key(p.name),
            )
            if not found:
                raise DataError(f"{item} holds no PNG files to translate.")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"{item} does not exist.")
    clashes = repeated([f.name for f in files])
    if clashes:
        raise DataError(
            f"several inputs are named {clashes}; outputs keep the input names, so they would "
            "overwrite each other. Translate them into separate --out folders."
        )
    return files


def translate_files(
    model: str | os.PathLike,
    direction: str,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
) -> list[Path]:
    """Translate PNG slices with an exported generator into `out_dir`, same names and sizes.

    Every input is read and checked before anything is written; outputs go only into
    `out_dir`, each written to a temporary name and renamed.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; use one of {list(DIRECTIONS)}")
    generator, config = load_generator(model, direction)
    files = collect_inputs(inputs)
    slices, problems = [], []
    for file in files:
        try:
            image, notes = decode_slice(file.read_bytes())
            slices.append(Slice(file.name, DIRECTIONS[direction][0], image, str(file), notes))
        except DataError as error:
            problems.append(f"{file}: {error}")
    if problems:
        raise DataProblems("the inputs", problems)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create {out_dir} ({error.strerror}).") from None
    written = []
    cleaning = Cleaning(**config["cleaning"]) if config.get("cleaning") else None
    outputs = translate(generator, slices, config["image_size"], cleaning)
    for s, image in zip(slices, outputs, strict=True):
        target = out_dir / Path(s.id).name
        partial = target.with_name(f".{target.name}.partial")
        Image.fromarray(np.asarray(image, np.uint8)).save(partial, format="PNG")
        os.replace(partial, target)
        written.append(target)
    return written
