"""`mri-course translate` for PNG slices: each file translated with an exported generator and
written back as an 8-bit PNG at its own size, replacing no input (volumes: `scans`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from mri_helpers import fileio
from mri_helpers.data import Slice, duplicates, natural_key
from mri_helpers.datafiles import read_slice_file
from mri_helpers.errors import DataError, DataProblems
from mri_helpers.export import DIRECTIONS, cleaning_of, load_generator, translate

from .domain_shift import recorded_grey_levels, slices_distance


def read_slice(path: str | os.PathLike, modality: str) -> Slice:
    """One PNG slice file as a `Slice` (id: the file name), with its stored size if shrunk."""
    path = Path(path)
    image, notes, stored_shape = read_slice_file(path, with_stored_shape=True)
    return Slice(path.name, modality, image, str(path), notes, stored_shape=stored_shape)


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
        elif fileio.why_not_a_file(item) is None:
            files.append(item)
        else:
            raise DataError(
                f"{item} {fileio.why_not_a_file(item)}; pass PNG files or folders of them."
            )
    clashes = duplicates([f.name for f in files])
    if clashes:
        raise DataError(
            f"several inputs are named {clashes}; outputs keep the input names, so they would "
            "overwrite each other. Translate them into separate --out folders."
        )
    return files


def check_outputs(
    inputs: Sequence[Path], targets: Sequence[Path], overwrite: bool = False
) -> None:
    """Refuse, before any work, outputs that would replace an input, outputs that exist
    (unless `overwrite`), and names the output folder's file system cannot hold."""
    limit, path_limit = _name_limits(targets[0].parent) if targets else (None, None)
    for target in targets:
        if limit is not None and len(os.fsencode(target.name)) > limit:
            raise DataError(
                f"the output name {target.name[:40]}... is {len(os.fsencode(target.name))} "
                f"bytes, longer than {limit}, the most the file system of --out allows; "
                "rename the input."
            )
        full = len(os.fsencode(str(target.absolute())))
        if path_limit is not None and full >= path_limit:
            raise DataError(
                f"the output for {target.name[:40]}... would be a path of {full} bytes, longer "
                f"than the {path_limit} the system allows; choose a shorter --out."
            )
    sources = [p.resolve() for p in inputs]
    for target in targets:
        clash = next((s for s in sources if _same_file(s, target)), None)
        if clash is not None:
            raise DataError(
                f"the output {target} would replace the input {clash}: translations keep "
                "their inputs' names. Choose another --out; inputs are never overwritten."
            )
        if target.is_dir():
            raise DataError(f"the output {target} is a folder; choose another --out.")
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing and not overwrite:
        raise DataError(
            f"{len(existing)} output(s) exist already (e.g. {existing[0]}); pass --overwrite "
            "to replace them, or choose another --out."
        )


def _same_file(source: Path, target: Path) -> bool:
    if target.resolve() == source:
        return True
    try:
        return target.exists() and os.path.samefile(source, target)
    except OSError:
        return False


def _name_limits(folder: Path) -> tuple[int | None, int | None]:
    """The longest file name and path (bytes) the file system of `folder` (or its nearest
    existing parent) allows."""
    for candidate in (folder, *folder.parents):
        try:
            if candidate.is_dir():
                return os.pathconf(candidate, "PC_NAME_MAX"), os.pathconf(candidate, "PC_PATH_MAX")
        except (OSError, ValueError):
            continue
    return None, None


def translate_files(
    model: str | os.PathLike,
    direction: str,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    overwrite: bool = False,
) -> list[Path]:
    """Translate PNG slices with an exported generator into `out_dir`, same names and sizes.

    Everything is checked before anything is written: the model, every input, and every
    output (none may replace an input; existing ones only with `overwrite`). Outputs go only
    into `out_dir`, each written to a temporary name and renamed. An input the reader shrank
    (larger than `datafiles.MAX_SIDE`) is translated at the shrunk size and brought back to its
    stored size, with a printed note.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; use one of {list(DIRECTIONS)}")
    generator, config = load_generator(model, direction)
    files = collect_inputs(inputs)
    out_dir = Path(out_dir)
    fileio.check_output_folder(out_dir)
    targets = [out_dir / f.name for f in files]
    try:
        check_outputs(files, targets, overwrite)
    except OSError as error:  # e.g. a path longer than the file system allows
        shown = (
            str(out_dir)
            if len(str(out_dir)) < 200
            else f"{str(out_dir)[:80]}...{out_dir.name[-40:]}"
        )
        raise DataError(
            f"cannot use --out {shown} ({len(str(out_dir))} characters): {error.strerror}; "
            "choose a shorter path."
        ) from None
    slices, problems = [], []
    for file in files:
        try:
            slices.append(read_slice(file, DIRECTIONS[direction][0]))
        except DataError as error:
            problems.append(str(error))
    if problems:
        raise DataProblems("the inputs", problems)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create {out_dir} ({error.strerror}).") from None
    cleaning = cleaning_of(config)
    outputs = translate(generator, slices, config["image_size"], cleaning)
    contrast = DIRECTIONS[direction][0]
    distances = slices_distance([s.image for s in slices], config, contrast)
    notes = _distance_notes(slices, distances, recorded_grey_levels(config, contrast))
    written = []
    for s, image, target, note in zip(slices, outputs, targets, notes, strict=True):
        result = Image.fromarray(np.asarray(image, np.uint8))
        stored = s.stored_shape
        if stored is not None and tuple(stored) != image.shape:
            result = result.resize((stored[1], stored[0]), Image.Resampling.BILINEAR)
            print(
                f"note: {s.id} was {stored[1]}x{stored[0]}, translated at {image.shape[1]}x"
                f"{image.shape[0]} and enlarged back to {stored[1]}x{stored[0]}"
            )
        _write_png(result, target, note)
        written.append(target)
    return written


def _distance_notes(slices: list[Slice], distances: list[float] | None, record) -> list[str]:
    """Each output's note (kept in the PNG as a text chunk): a synthetic image, and how far
    its input lies from the training slices; a warning printed for those beyond the limit."""
    if distances is None:
        return ["synthetic image; the model records no training grey levels to compare"] * len(
            slices
        )
    limit = record["limit"]
    outside = [s.id for s, d in zip(slices, distances, strict=True) if d > limit]
    if outside:
        shown = ", ".join(outside[:5]) + (
            f" and {len(outside) - 5} more" if len(outside) > 5 else ""
        )
        print(
            f"warning: {len(outside)} of {len(slices)} slices have grey levels unlike those the "
            f"model was trained on (distance above {limit:.0f} grey levels): {shown}; expect a "
            "lower quality than the model's published scores"
        )
    return [
        f"synthetic image; its input lies {d:.1f} grey levels from the training slices "
        f"(limit {limit:.1f}): {'unlike' if d > limit else 'like'} the training data"
        for d in distances
    ]


def _write_png(image: Image.Image, target: Path, note: str = "") -> None:
    """Write `target` whole or not at all (`fileio.replacing`), with `note` as a text chunk."""
    text = PngImagePlugin.PngInfo()
    if note:
        text.add_text("Comment", note)
    try:
        with fileio.replacing(target) as partial:
            image.save(partial, format="PNG", pnginfo=text)
    except OSError as error:
        raise DataError(f"cannot write {target} ({error.strerror}).") from None
