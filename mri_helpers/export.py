"""Exported generators and the translate command (explained in 04_training, "Export").

An export is one folder per direction:

    models/t1-to-t2/generator.keras   the Keras model (loads in safe mode)
    models/t1-to-t2/saved_model/      a TensorFlow SavedModel for serving (TF Serving, TFLite)
    models/t1-to-t2/model.json        direction, image size and the preprocessing it expects

Each folder is written under a temporary name and renamed into place, so a loader never sees
half an export, even if the run is killed while exporting. `PeriodicExport` writes them
during training; `translate` applies a generator to slices; `translate_files` is the command.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from . import fileio
from ._tf import keras, tf
from .data import Slice
from .errors import DataError, ModelFileError
from .processing import (
    Cleaning,
    Geometry,
    above_noise,
    from_unit_range,
    head_mask,
    prepare,
    to_original_geometry,
)

EXPORT_FORMAT = 1
GENERATOR_FILE = "generator.keras"
CONFIG_FILE = "model.json"
DIRECTIONS = {"t1-to-t2": ("t1", "t2"), "t2-to-t1": ("t2", "t1")}  # export folder: (from, to)
CLEANING_KEYS = {"denoise", "mask_background"}
# The largest generator file read: the `full` profile's is about 220 MiB; an archive announcing
# more is refused before Keras opens it (fileio.MEMORY_BOUND_BYTES).
MAX_MODEL_BYTES = 512 << 20


# --- writing exports ------------------------------------------------------------------------
def float32_copy(model: keras.Model) -> keras.Model:
    """`model` computing in float32: a model trained with mixed precision should not make
    every user of the export compute in 16 bits (slow, or unsupported, on many CPUs). The
    weights are float32 either way, so they are copied unchanged."""
    return computing_in(model, "float32")


def computing_in(model: keras.Model, policy: str) -> keras.Model:
    """`model` computing under the Keras dtype policy `policy` (itself if it already does),
    e.g. "mixed_bfloat16" for inference where the processor computes bfloat16 natively; the
    output layers of a functional model stay in float32, as in training under mixed
    precision. Same weights."""
    config = keras.saving.serialize_keras_object(model)
    changed = _with_policy(config, policy)
    if policy != "float32":
        outputs = changed["config"]["output_layers"]  # [name, node, tensor], or a list
        names = {outputs[0]} if isinstance(outputs[0], str) else {o[0] for o in outputs}
        for layer in changed["config"]["layers"]:
            if layer["config"]["name"] in names:
                layer["config"] = _with_policy(layer["config"], "float32")
    if changed == config:
        return model
    copy = keras.saving.deserialize_keras_object(changed)
    copy.set_weights(model.get_weights())
    return copy


def _with_policy(config: Any, policy: str) -> Any:
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config["config"], "name": policy}}
        return {key: _with_policy(value, policy) for key, value in config.items()}
    if isinstance(config, list):
        return [_with_policy(value, policy) for value in config]
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
            # The slices it was trained on: 1 mm pixels, rows from the back of the head to
            # the front, columns from its left to its right (how volumes are resliced).
            "pixel_spacing_mm": 1.0,
            "slice_orientation": "AR",
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


# --- loading exports ------------------------------------------------------------------------
def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a `.keras` model in Keras's safe mode: a file that carries code is refused.

    The layers exports carry (`calibration`, `test_time`) are registered by importing this
    module.
    """
    path = Path(path)
    problem = fileio.why_not_a_file(path)
    if problem == "does not exist":
        raise ModelFileError(f"no model file at {path}; pass the .keras file a run exported.")
    if problem is not None:
        raise ModelFileError(f"{path} {problem}; pass the .keras file a run exported.")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path} is not a Keras model file (not a .keras zip archive); pass the "
            "generator.keras a run exported."
        )
    try:  # every member read once, bounded, before Keras trusts the archive's sizes
        fileio.check_zip_members(path, MAX_MODEL_BYTES, "Keras model file")
    except DataError as error:
        raise ModelFileError(f"{error} Pass the generator.keras a run exported.") from None
    try:
        return keras.models.load_model(path, safe_mode=True)
    except ValueError as error:
        text = str(error)
        if "safe_mode" in text or "lambda" in text.lower():
            raise ModelFileError(
                f"{path} was refused: it carries executable code (e.g. a Lambda layer), which "
                "safe loading never runs. Use a model exported by this course."
            ) from None
        if text.startswith("File not found"):  # what Keras says of a file that is no zip
            raise ModelFileError(
                f"{path} is not a Keras model file (not a .keras zip archive); pass the "
                "generator.keras a run exported."
            ) from None
        raise ModelFileError(f"{path} is not a usable Keras model: {_first_line(text)}") from None
    except (OSError, KeyError, TypeError, AttributeError) as error:  # missing config, ...
        raise ModelFileError(
            f"{path} is not a Keras model this course can load ({type(error).__name__}: "
            f"{_first_line(str(error))})."
        ) from None


def _first_line(text: str, limit: int = 200) -> str:
    """The gist of a library's message: its first sentence, cut to `limit` characters (Keras
    appends the whole model configuration to some messages)."""
    first = text.strip().split("\n")[0].split(". ")[0]
    return first if len(first) <= limit else first[:limit] + " ..."


def load_generator(path: str | os.PathLike, direction: str | None = None):
    """Load an exported generator and its checked configuration; check the direction if given.

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
    kind = fileio.kind_of(path)
    if kind not in ("a folder", "a file"):
        what = "it does not exist" if kind == "missing" else f"it is {kind}"
        raise ModelFileError(
            f"no model at {path}: {what}; pass an export folder such as RUN_DIR/models/t1-to-t2."
        )
    config = read_export_config(folder / CONFIG_FILE)
    if direction is not None and config["direction"] != direction:
        suggestion = folder.parent / direction
        advice = (
            f"pass the {direction} export (e.g. {suggestion})"
            if suggestion.resolve() != folder.resolve()
            else f"its {CONFIG_FILE} contradicts its folder name; re-export it, or pass "
            f"--direction {config['direction']}"
        )
        raise ModelFileError(
            f"{folder} translates {config['direction']}, not {direction}; {advice}."
        )
    model_file = path if path.is_file() else folder / GENERATOR_FILE
    model = load_model(model_file)
    _check_shapes(model, config, model_file)
    return model, config


def read_export_config(path: Path) -> dict[str, Any]:
    """An export's model.json, with every value the course relies on checked."""
    if fileio.kind_of(path) == "missing":
        raise ModelFileError(
            f"{path.parent} has no {CONFIG_FILE}, so the image size and direction the model "
            "expects are unknown; pass a folder written by the course's export."
        )
    try:
        config = fileio.read_json(path)
    except DataError as error:
        raise ModelFileError(str(error)) from None
    if not isinstance(config, dict):
        raise ModelFileError(
            f"{path} holds {type(config).__name__}, not the settings of an export; re-export."
        )
    missing = {"direction", "image_size"} - set(config)
    if missing:
        raise ModelFileError(f"{path} lacks {sorted(missing)}; re-export the model.")
    if config["direction"] not in DIRECTIONS:
        raise ModelFileError(
            f"{path}: direction {config['direction']!r} is not one of {list(DIRECTIONS)}."
        )
    size = config["image_size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 4096:
        raise ModelFileError(
            f"{path}: image_size {size!r} is not a whole number of pixels from 16 to 4096; "
            "re-export the model."
        )
    cleaning = config.get("cleaning")
    if cleaning is not None and (
        not isinstance(cleaning, dict)
        or set(cleaning) - CLEANING_KEYS
        or not all(isinstance(v, bool) for v in cleaning.values())
    ):
        raise ModelFileError(
            f"{path}: cleaning {cleaning!r} is not an object of {sorted(CLEANING_KEYS)} with "
            "true/false values; re-export the model."
        )
    return config


def cleaning_of(config: dict[str, Any]) -> Cleaning | None:
    """The cleaning an export's model.json records (None: the slices were not cleaned)."""
    return Cleaning(**config["cleaning"]) if config.get("cleaning") else None


def _check_shapes(model: keras.Model, config: dict[str, Any], path: Path) -> None:
    size = config["image_size"]
    expected = (None, size, size, 1)
    shapes = {"input": model.input_shape, "output": model.output_shape}
    wrong = {what: shape for what, shape in shapes.items() if tuple(shape) != expected}
    if wrong:
        found = ", ".join(f"{what} {tuple(shape)}" for what, shape in wrong.items())
        raise ModelFileError(
            f"{path} does not fit its {CONFIG_FILE}: image_size {size} means images of shape "
            f"{expected}, but the model has {found}. Re-export the model."
        )


# --- translating ----------------------------------------------------------------------------
def translate(
    generator: keras.Model,
    slices: Sequence[Slice],
    image_size: int,
    cleaning: Cleaning | None = None,
    batch_size: int = 8,
) -> list[np.ndarray]:
    """Run a generator on slices; return 8-bit images at each slice's own geometry.

    With `cleaning`, inputs are cleaned as in training and, if it masks the background,
    outputs are 0 outside the input's head too.
    """
    return translate_through([generator], slices, image_size, cleaning, batch_size)


def _not_about_retracing(record: logging.LogRecord) -> bool:
    """Drops TensorFlow's "triggered tf.function retracing" warning. Every Keras model's
    predict function shares one piece of code, which TensorFlow counts traces by: scoring
    several networks (exported, without calibration, alone, in cycles) traces each once per
    batch shape, yet adds up to a warning that something is traced too often. Nothing is."""
    return "triggered tf.function retracing" not in record.getMessage()


def _replicated(model: keras.Model) -> bool:
    """Whether `model` predicts under a strategy with several replicas (lesson 04 on several
    GPUs or machines). Its predict functions then run the batch on every replica and join
    the replicas' outputs, so the images that come back do not match the batch one to one
    (twice as many under MirroredStrategy on two devices), and across machines the joining is
    a collective every worker must take part in. A plain call computes the whole batch in
    this process, with the weights all replicas share; one process alone keeps
    `predict_on_batch`, as before."""
    return model.distribute_strategy.num_replicas_in_sync > 1


def translate_through(
    chain: Sequence[keras.Model],
    slices: Sequence[Slice],
    image_size: int,
    cleaning: Cleaning | None = None,
    batch_size: int = 8,
) -> list[np.ndarray]:
    """Like `translate`, through several generators in turn (e.g. there and back): the
    float32 intermediate images stay as they are, neither rounded to 8 bits nor cleaned."""
    if not slices:
        return []
    inputs = prepare(slices, image_size, cleaning)

    def run(batch: np.ndarray) -> np.ndarray:
        # predict_on_batch, not predict(): a compiled call without a tf.data pipeline; a
        # third faster than eager calls here.
        for generator in chain:
            if _replicated(generator):
                batch = generator(batch, training=False)
            else:
                batch = generator.predict_on_batch(batch)
        return np.asarray(batch)

    logger = tf.get_logger()
    logger.addFilter(_not_about_retracing)
    try:
        outputs = np.concatenate(
            [run(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]
        )
    finally:
        logger.removeFilter(_not_about_retracing)
    results = [
        from_unit_range(to_original_geometry(out[..., 0], Geometry(*s.shape)))
        for out, s in zip(outputs, slices, strict=True)
    ]
    masked = cleaning is not None and cleaning.mask_background
    return [
        np.where(output_region(s.image, masked), r, 0).astype(r.dtype)
        for r, s in zip(results, slices, strict=True)
    ]


OUTPUT_MARGIN = 3  # exports that keep their background: pixels kept around the head


def output_region(image: np.ndarray, masked: bool, mask: np.ndarray | None = None) -> np.ndarray:
    """Where a translation of `image` may be non-zero: its head (`head_mask`, where it stands
    out of the background noise), a few pixels wider for an export that keeps the background;
    nowhere for a slice without head (also one of scanner noise alone), so nothing is
    invented where the scan holds no tissue. `mask`: the image's `head_mask`, if known."""
    mask = head_mask(image) if mask is None else mask
    if not mask.any():
        return mask
    # the head where it stands out of the noise: a threshold that noise stays under
    region = mask & head_mask(image, floor=above_noise(image))
    return region if masked else ndimage.binary_dilation(region, iterations=OUTPUT_MARGIN)
