"""Translating a scan: a plan per volume (every check before any work), the network run in
batches while threads prepare the next, and the outputs with their sidecar.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mri_helpers import __version__, fileio, test_time
from mri_helpers._tf import keras
from mri_helpers.calibration import calibrated, calibration_of, without_calibration
from mri_helpers.errors import DataError, ModelFileError
from mri_helpers.export import (
    DIRECTIONS,
    cleaning_of,
    computing_in,
    load_generator,
    output_region,
)
from mri_helpers.processing import (
    Geometry,
    clean_slice,
    head_mask,
    to_model_geometry,
    to_original_geometry,
)

from ..domain_shift import volume_shift
from ..png_slices import check_outputs
from ..precision import precision_policy
from .geometry import InPlaneGrid, Reorientation, in_plane_grid, model_geometry, reorientation
from .intensities import IntensityScaling, model_head_levels, robust_scaling
from .reading import (
    Scan,
    _collect,
    _raise,
    _release_beyond_budget,
    _save_json,
    _save_nifti,
    _voxel_sizes,
    _write_all,
    output_image,
    output_paths,
)

BATCH_SIZE = 16  # axial slices per network call (times the export's copies inside it)
MAX_IN_PLANE = 1024  # model pixels a side of the whole field of view: 1 m at 1 mm pixels
MIN_IN_PLANE = 32  # model pixels a side: datafiles.MIN_SIDE, less is no axial view of a head


# --- a plan per volume: every check before any work ------------------------------------------
@dataclass(frozen=True)
class VolumePlan:
    """Everything decided about one volume before it is translated."""

    orientation: Reorientation
    grid: InPlaneGrid
    scaling: IntensityScaling
    clipped: dict[str, float]  # fractions of voxels outside 0..255 after scaling
    model_shape: tuple[int, int, int]  # (slices, rows, columns) in the model's orientation
    shift: dict[str, Any]  # how far its grey levels lie from the training slices'

    def record(self) -> dict[str, Any]:
        """The sidecar's account of geometry and intensities."""
        grid, s = self.grid, self.scaling
        return {
            "geometry": {
                "input_orientation": "".join(self.orientation.input_codes),
                "slice_axis_of_input": self.orientation.slice_axis,
                "obliquity_degrees": round(self.orientation.obliquity, 3),
                "slices": self.model_shape[0],
                "reorientation": (
                    "voxel axes permuted and flipped to the closest canonical orientation "
                    "(nibabel io_orientation); slices along the axis nearest superior-inferior, "
                    "not resampled across slices; any obliquity is kept, not undone"
                ),
                "input_pixel_mm": [round(v, 6) for v in grid.spacing],
                "model_pixel_mm": list(grid.pixel),
                "in_plane_resampling": (
                    "linear (scipy.ndimage.affine_transform, order 1) from the input's pixels to "
                    "the model's and back; a Gaussian prefilter of sigma (ratio - 1) / 2 pixels "
                    "where the target grid is coarser"
                ),
                "crop_on_model_grid": {"start": list(grid.start), "size": list(grid.size)},
            },
            "intensity_scaling": {
                "method": (
                    "linear: background (median outside the head mask) -> 0, the "
                    f"{s.percentile:g}th percentile inside the head -> {s.target:g}, the value "
                    "there in the slices the model was trained on; head mask: above a quarter "
                    "of the way from the 1st percentile to Otsu's threshold, largest connected "
                    "part, holes filled"
                ),
                "background_value": s.background,
                "head_percentile": s.percentile,
                "head_percentile_value": s.head_value,
                "maps_to": s.target,
                "gain": s.gain,
                "head_mask_subsampling": s.mask_stride,
                "clipping": (
                    "values outside 0..255 after scaling were clipped to 0..255 (the network's "
                    "input range) before translation; `clipped` gives the fractions of voxels, "
                    "of the whole volume and of the head"
                ),
                "clipped": dict(self.clipped),
            },
            "distance_from_training_data": dict(self.shift),
        }


def plan_volume(
    data: np.ndarray,
    affine: np.ndarray,
    config: dict[str, Any],
    contrast: str,
    source: str | os.PathLike = "the volume",
) -> VolumePlan:
    """Check one volume and decide how to translate it; DataError (naming `source`) if it
    cannot be: non-finite voxels, constant, no head, slices too large or too small."""
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise DataError(
            f"{source}: {bad} of its {data.size} voxels are NaN or infinite; replace them "
            "(e.g. with 0) and try again."
        )
    low, high = float(data.min()), float(data.max())
    if low == high:
        raise DataError(f"{source}: every voxel is {low:g}; there is no image to translate.")
    pixel, orientation_codes = model_geometry(config)
    orientation = reorientation(affine, data.shape, orientation_codes)
    oriented = orientation.apply(data)
    spacing = orientation.spacing[1:]
    field_of_view = [n * s for n, s in zip(oriented.shape[1:], spacing, strict=True)]
    pixels = [round(f / p) for f, p in zip(field_of_view, pixel, strict=True)]
    if max(pixels) > MAX_IN_PLANE:
        raise DataError(
            f"{source}: its axial slices span {field_of_view[0]:.0f} x {field_of_view[1]:.0f} "
            f"mm, {pixels[0]} x {pixels[1]} pixels at the model's {pixel[0]:g} mm, more than "
            f"the {MAX_IN_PLANE} a side this command handles. Its voxel sizes "
            f"{_voxel_sizes(affine)} mm look wrong: check its header."
        )
    if min(pixels) < MIN_IN_PLANE:
        raise DataError(
            f"{source}: its axial slices span only {field_of_view[0]:.1f} x "
            f"{field_of_view[1]:.1f} mm ({oriented.shape[1]} x {oriented.shape[2]} voxels), "
            f"under {MIN_IN_PLANE} pixels of the model's {pixel[0]:g} mm a side: no axial "
            "view of a head. The model translates axial slices; pass a volume that covers "
            "the head in the axial plane (or check its voxel sizes)."
        )
    target = model_head_levels(config)[contrast]
    scaling, mask, stride = robust_scaling(oriented, contrast, source, target)
    rows, cols = np.flatnonzero(mask.any(axis=(0, 2))), np.flatnonzero(mask.any(axis=(0, 1)))
    box = tuple(
        (int(found[0]) * stride, min(n - 1, int(found[-1]) * stride + stride - 1))
        for found, n in ((rows, oriented.shape[1]), (cols, oriented.shape[2]))
    )
    grid = in_plane_grid(oriented.shape[1:], spacing, pixel, box, max_pixels=config["image_size"])
    lowest, highest = scaling.background, scaling.background + 255.0 / scaling.gain
    sample = oriented[::stride, ::stride, ::stride]
    head = sample[mask]
    clipped = {
        "fraction_below_0": float(np.count_nonzero(data < lowest) / data.size),
        "fraction_above_255": float(np.count_nonzero(data > highest) / data.size),
        "fraction_below_0_in_head": float(np.count_nonzero(head < lowest) / head.size),
        "fraction_above_255_in_head": float(np.count_nonzero(head > highest) / head.size),
    }
    scaled = np.clip(scaling.apply(sample), 0.0, 255.0)
    shift = volume_shift(scaled, mask, config, contrast)
    return VolumePlan(orientation, grid, scaling, clipped, tuple(oriented.shape), shift)


# --- translating ----------------------------------------------------------------------------
def copies_of(model: keras.Model) -> tuple[tuple[int, int, bool], ...] | None:
    """The (rows down, columns right, mirrored) copies an export averages, or None."""
    for candidate in (model, without_calibration(model)):
        for layer in candidate.layers:
            if isinstance(layer, test_time.AverageOfCopies):
                return layer.copies
    return None


# An export's network and the export rebuilt around it, per dtype policy (see _Network).
_IN_POLICY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Network:
    """Runs an export on batches of model-size images, its network computing under Keras's
    dtype `policy`; `with_spread`, each test-time copy separately (its move and mirror
    undone), so that their spread is known."""

    def __init__(
        self, model: keras.Model, batch_size: int, with_spread: bool, policy: str = "float32"
    ):
        self.batch_size, self.with_spread = batch_size, with_spread
        self.copies = copies_of(model)
        self.calibration = calibration_of(model)
        built = _IN_POLICY.get(model, {}).get(policy)  # once per export: a copy traces anew
        if built is None:
            inner = test_time.without_copies(without_calibration(model))
            network = computing_in(inner, policy)
            built = network, model
            if network is not inner:  # the export again, around the network's copy
                whole = (
                    test_time.averaged_over_copies(network, self.copies)
                    if self.copies
                    else network
                )
                if self.calibration is not None:
                    whole = calibrated(whole, self.calibration)
                built = _IN_POLICY.setdefault(model, {})[policy] = network, whole
        self.network, self.model = built
        self.moves = [
            (test_time.ShiftedMirroredCopies([c]), test_time.AverageOfCopies([c]))
            for c in self.copies or ()
        ]

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(B, S, S, 1) in [-1, 1] -> the export's output and, `with_spread`, the per-pixel
        standard deviation of the copies' outputs, both (B, S, S) on the 0..255 scale."""
        count = len(images)
        padded = np.zeros((self.batch_size, *images.shape[1:]), np.float32) - 1.0
        padded[:count] = images  # one batch shape: one trace of the predict function
        if not (self.with_spread and self.copies):
            output = np.asarray(self.model.predict_on_batch(padded))[:count, ..., 0]
            return (output + 1.0) * 127.5, None
        restored = []
        for move, undo in self.moves:
            out = self.network.predict_on_batch(np.asarray(move(padded)))
            restored.append(np.asarray(undo(out))[:count])
        mean = np.mean(restored, axis=0)  # what AverageOfCopies computes
        per_copy = restored
        if self.calibration is not None:
            mean = np.asarray(self.calibration(mean))
            per_copy = [np.asarray(self.calibration(r)) for r in restored]
        spread = np.std(np.stack(per_copy), axis=0)[..., 0] * 127.5
        return (mean[..., 0] + 1.0) * 127.5, spread


def run_plan(
    generator: keras.Model,
    config: dict[str, Any],
    plan: VolumePlan,
    data: np.ndarray,
    uncertainty: bool = False,
    batch_size: int = BATCH_SIZE,
    description: str = "volume",
    policy: str = "float32",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Translate `data` as `plan` says, `batch_size` axial slices at a time, the network
    computing under Keras's dtype `policy`: the synthetic volume (float32, the input's shape,
    0..255) and, with `uncertainty`, the spread of the export's test-time copies (same
    shape)."""
    network = _Network(generator, batch_size, uncertainty, policy)
    if uncertainty and network.copies is None:
        raise ModelFileError(
            "uncertainty needs an export that averages test-time copies "
            "(test_time.averaged_over_copies); this one has none."
        )
    run = _PlanRun(plan, config, network, plan.orientation.apply(data), uncertainty)
    run.translate_all(batch_size, description)
    return (
        plan.orientation.undo(run.synthetic),
        None if run.spread is None else plan.orientation.undo(run.spread),
    )


class _PlanRun:
    """A volume's axial slices (model frame) through the network: each prepared, translated
    in full batches, and finished back on the input's grid."""

    def __init__(self, plan, config, network, oriented: np.ndarray, uncertainty: bool):
        self.plan, self.network, self.oriented = plan, network, oriented
        self.size = config["image_size"]
        self.cleaning = cleaning_of(config)
        self.masked = bool(self.cleaning and self.cleaning.mask_background)
        self.synthetic = np.zeros(oriented.shape, np.float32)
        self.spread = np.zeros(oriented.shape, np.float32) if uncertainty else None
        self.model_size = Geometry(*plan.grid.size)

    def prepared(self, k: int) -> tuple[int, np.ndarray, np.ndarray] | None:
        """Axial slice `k` as (index, where the output may be non-zero, network input); None
        for a slice without head (also one of scanner noise alone): it comes out all 0, so
        nothing is invented where the scan holds no tissue."""
        scaled = np.clip(
            self.plan.scaling.apply(self.plan.grid.to_model(self.oriented[k])), 0, 255
        )
        mask = head_mask(scaled)
        if not mask.any():
            return None
        cleaned = clean_slice(scaled, self.cleaning, mask) if self.cleaning else scaled
        keep = output_region(scaled, self.masked, mask)
        return k, keep, to_model_geometry(cleaned / 127.5 - 1.0, self.size)

    def finish(self, k: int, keep: np.ndarray, outputs: list[np.ndarray | None]) -> None:
        """Slice `k`'s network outputs back on the input's grid (0 outside its head)."""
        for result, target in zip(outputs, (self.synthetic, self.spread), strict=True):
            if result is not None:
                image = np.clip(to_original_geometry(result, self.model_size), 0.0, 255.0)
                target[k] = self.plan.grid.to_input(np.where(keep, image, 0.0))

    def translate_all(self, batch_size: int, description: str) -> None:
        """While the network runs on a batch, a thread per processor prepares (resamples,
        scales, denoises) the next batch's slices and finishes the last one's: all of them
        release Python's lock for their heavy parts. Batches are always full (but the last):
        the slices left out leave no holes in them."""
        count = len(self.oriented)
        firsts = range(0, count, batch_size)
        waiting: list[tuple[int, np.ndarray, np.ndarray]] = []
        finishing: list[Future] = []
        with (
            ThreadPoolExecutor(max_workers=min(batch_size, os.cpu_count() or 1)) as workers,
            tqdm(total=count, desc=description, unit="slice", disable=None) as progress,
        ):

            def submit(first: int) -> list[Future]:
                last = min(first + batch_size, count)
                return [workers.submit(self.prepared, k) for k in range(first, last)]

            pending = submit(0)
            for number, first in enumerate(firsts):
                waiting += [item for item in (f.result() for f in pending) if item]
                last = number + 1 == len(firsts)
                if not last:
                    pending = submit(firsts[number + 1])
                while len(waiting) >= batch_size or (last and waiting):
                    finishing += self._translate(workers, waiting[:batch_size])
                    waiting = waiting[batch_size:]
                progress.update(min(batch_size, count - first))
            for done in finishing:
                done.result()

    def _translate(self, workers, batch: list[tuple[int, np.ndarray, np.ndarray]]) -> list:
        outputs, spreads = self.network(np.stack([image for _, _, image in batch])[..., None])
        return [
            workers.submit(
                self.finish, k, keep, [outputs[i], None if spreads is None else spreads[i]]
            )
            for i, (k, keep, _) in enumerate(batch)
        ]


def translate_volume(
    generator: keras.Model,
    config: dict[str, Any],
    data: np.ndarray,
    affine: np.ndarray,
    uncertainty: bool = False,
    batch_size: int = BATCH_SIZE,
    mixed_precision: str = "auto",
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Translate one volume (X, Y, Z) lying at `affine` with a loaded export and its config:
    the synthetic volume, the copies' spread (with `uncertainty`) and the plan's record.
    `mixed_precision` as the course's MIXED_PRECISION (`precision.precision_policy`)."""
    contrast = DIRECTIONS[config["direction"]][0]
    plan = plan_volume(np.asarray(data, np.float32), affine, config, contrast)
    policy = precision_policy(mixed_precision)
    result, spread = run_plan(
        generator, config, plan, data, uncertainty, batch_size, policy=policy
    )
    return result, spread, {**plan.record(), "computed_in": policy}


def _model_record(model: str | os.PathLike, config: dict[str, Any]) -> dict[str, Any]:
    pixel, orientation = model_geometry(config)
    given = [key for key in ("pixel_spacing_mm", "slice_orientation") if key in config]
    folder = Path(model) / config["direction"]  # a run's models folder holds both
    folder = folder if folder.is_dir() else Path(model)
    return {
        "path": str(folder.resolve()),
        "direction": config["direction"],
        "epoch": config.get("epoch"),
        "image_size": config["image_size"],
        "calibrated": config.get("calibrated"),
        "test_time_augmentation": config.get("test_time_augmentation"),
        "cleaning": config.get("cleaning"),
        "pixel_spacing_mm": list(pixel),
        "slice_orientation": orientation,
        "slice_geometry_from": "model.json" if given else "the course default (1 mm, 'AR')",
    }


UNCERTAINTY_MEANING = {
    "is": (
        "the per-voxel standard deviation, on the output's 0..255 scale, across the outputs of "
        "the shifted and mirrored copies the export averages (each copy's move and mirror "
        "undone, calibration applied to each): where the copies disagree, i.e. where the "
        "network's output depends on the pixel grid or on left-right mirroring"
    ),
    "is_not": (
        "not a calibrated error bar, confidence interval or probability: it does not measure how "
        "far the synthetic image is from a real scan; voxels where every copy is equally wrong "
        "show no spread"
    ),
}


def translate_volume_files(
    model: str | os.PathLike,
    direction: str,
    inputs: Sequence[str | os.PathLike | Sequence[str | os.PathLike]],
    out_dir: str | os.PathLike,
    overwrite: bool = False,
    uncertainty: bool = False,
    series: str | None = None,
    volume: int | None = None,
    batch_size: int = BATCH_SIZE,
    mixed_precision: str = "auto",
) -> list[Path]:
    """Translate NIfTI volumes and DICOM series with an exported generator into `out_dir`.

    Each input gives `<name>_t2w-synthetic.nii.gz` (`_t1w-synthetic` for t2-to-t1): float32,
    the synthetic image on the course's 0..255 scale (background 0), with exactly the input's
    shape and geometry; a JSON sidecar beside it says what it is and how it was made; with
    `uncertainty`, `<...>_uncertainty.nii.gz` holds the standard deviation, per voxel and
    on the same scale, of the outputs of the shifted and mirrored copies the export averages
    (`mri_helpers.test_time`; refused for exports without copies). It shows where the copies
    disagree, i.e. where the output depends on the pixel grid or on mirroring; it is not a
    calibrated error bar, and says nothing of how far the synthetic image is from a real
    scan. `series` picks a series (UID or series number) in DICOM folders holding several;
    `volume` one volume (0-based) of 4-D NIfTI files (3-D files and DICOM ignore it).
    `mixed_precision` ("auto", "on", "off"), as the course's MIXED_PRECISION: "auto" runs the
    network in bfloat16 on a CPU that computes it natively (as the course trained there), in
    float16 on a GPU, in float32 elsewhere; the sidecar records which (`computed_in`).

    Everything is checked before anything is written: the model, every input's voxels and
    geometry, every output (none may replace an input or another input's output; existing
    ones only with `overwrite`). Files are written under temporary names and renamed. An
    overwritten translation loses a stale uncertainty file it no longer has. Returns the
    synthetic images, one per input.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; use one of {list(DIRECTIONS)}")
    policy = precision_policy(mixed_precision)
    generator, config = load_generator(model, direction)
    model_record = _model_record(model, config)  # checks the slice geometry keys
    if uncertainty and copies_of(generator) is None:
        raise ModelFileError(
            f"{model} averages no test-time copies (exported with test_time_augmentation "
            "off), so there is no spread between copies to map; drop --uncertainty, or use an "
            "export made with TEST_TIME_AUGMENTATION = True."
        )
    scans, plans = _planned_scans(inputs, series, volume, config, DIRECTIONS[direction][0])
    outputs = _checked_outputs(scans, direction, Path(out_dir), uncertainty, overwrite)
    written = []
    for scan, plan, paths in zip(scans, plans, outputs, strict=True):
        result, spread = run_plan(
            generator, config, plan, scan.voxels(), uncertainty, batch_size, scan.name, policy
        )
        scan.data = None
        made = _Translation(scan, plan, paths, direction, config, model_record, policy)
        copies = copies_of(generator) if uncertainty else None
        _write_all(made.files(result, spread, copies))
        if spread is None and overwrite:
            paths["uncertainty"].unlink(missing_ok=True)  # stale: from an earlier translation
        if plan.shift.get("warning"):
            print(f"warning: {scan.name}: {plan.shift['warning']} (see the sidecar)")
        in_head = plan.clipped["fraction_above_255_in_head"]
        if in_head > 0.01:
            print(
                f"note: {scan.name}: {in_head:.1%} of the head was brighter than the course "
                "scale after intensity scaling and was clipped (see the sidecar)"
            )
        written.append(paths["image"])
    return written


def _planned_scans(inputs, series, volume, config: dict, contrast: str) -> tuple[list, list]:
    """Every input's scan and plan; all problems of all inputs raised together."""
    scans, problems = _collect(inputs, series, volume)
    plans = []
    for scan in scans:
        try:
            plans.append(plan_volume(scan.voxels(), scan.affine, config, contrast, scan.source))
            _release_beyond_budget([s for s in scans if s is not scan] + [scan])
        except DataError as error:
            problems.append(str(error))
    _raise(problems)
    return scans, plans


def _checked_outputs(
    scans: list, direction: str, out_dir: Path, uncertainty: bool, overwrite: bool
) -> list[dict[str, Path]]:
    """Each scan's output paths, checked before anything is written: none replaces an input
    or another input's output, existing ones only with `overwrite`; `out_dir` made."""
    fileio.check_output_folder(out_dir)
    outputs = [output_paths(scan.name, direction, out_dir) for scan in scans]
    by_name: dict[str, Scan] = {}
    for scan, paths in zip(scans, outputs, strict=True):
        other = by_name.setdefault(paths["image"].name, scan)
        if other is not scan:
            raise DataError(
                f"{other.source} and {scan.source} would both be translated to "
                f"{paths['image'].name}; translate them into separate --out folders (or "
                "rename one)."
            )
    targets = [
        path
        for paths in outputs
        for key, path in paths.items()
        if key != "uncertainty" or uncertainty
    ]
    try:
        check_outputs([f for scan in scans for f in scan.files], targets, overwrite)
    except OSError as error:
        raise DataError(f"cannot use --out {out_dir}: {error.strerror}.") from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create {out_dir} ({error.strerror}).") from None
    return outputs


@dataclass(frozen=True)
class _Translation:
    """One scan's translation, and the files that hold it: the image, the uncertainty map
    (with copies) and the JSON sidecar that says what it is and how it was made."""

    scan: Scan
    plan: VolumePlan
    paths: dict[str, Path]
    direction: str
    config: dict[str, Any]
    model_record: dict[str, Any]
    policy: str

    def files(self, result: np.ndarray, spread: np.ndarray | None, copies) -> dict:
        """{path: a writer} for each file of this translation."""
        synthetic_of = {"t1-to-t2": "T2w from T1w", "t2-to-t1": "T1w from T2w"}[self.direction]
        epoch = self.config.get("epoch")
        text = f"synthetic {synthetic_of} (CycleGAN {self.direction}"
        text += f", epoch {epoch})" if epoch is not None else ")"
        files = {self.paths["image"]: partial(_save_nifti, output_image(self.scan, result, text))}
        if spread is not None:
            note = output_image(self.scan, spread, f"copy spread of {text}", (0, 0))
            files[self.paths["uncertainty"]] = partial(_save_nifti, note)
        files[self.paths["sidecar"]] = partial(_save_json, self.sidecar(synthetic_of, copies))
        return files

    def sidecar(self, synthetic_of: str, copies) -> dict[str, Any]:
        uncertainty = None
        if copies is not None:
            uncertainty = {
                "file": self.paths["uncertainty"].name,
                "copies": copies,
                **UNCERTAINTY_MEANING,
            }
        return {
            "synthetic": True,
            "description": (
                f"Synthetic {synthetic_of}, computed by a CycleGAN generator of the mri_helpers "
                "course from the input below; not an acquired scan, not for diagnosis."
            ),
            "source": str(self.scan.source.resolve()),
            "source_description": self.scan.description,
            "model": self.model_record,
            "output": {
                "file": self.paths["image"].name,
                "values": "float32 on the course's 8-bit scale 0..255, background 0 (not rounded)",
                "geometry": "the input's own voxel grid: same shape, affine, qform and sform",
            },
            **self.plan.record(),
            "computed_in": self.policy,
            "uncertainty": uncertainty,
            "software": f"mri_helpers {__version__}",
        }
