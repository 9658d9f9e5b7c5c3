"""`mri-course harmonise`: a scan's grey levels brought to those of a model's training slices,
before `translate`, for scans from another scanner or protocol than the training data.

A generator learns its training slices' grey levels; `translate` scales a volume linearly
(`intensities`), which cannot undo a smooth bias field or a different contrast curve between
tissues. Harmonising does the two classical corrections, in this order:

1. bias: N4 (Tustison et al., 2010; SimpleITK's `N4BiasFieldCorrectionImageFilter`) fits a
   smooth multiplicative field inside the head on a volume shrunk BIAS_SHRINK times, and the
   field, evaluated at full resolution, divides the volume out;
2. standardisation (Nyul and Udupa, 1999): the head's grey levels at LANDMARKS percentiles
   are mapped piecewise linearly onto the same percentiles of the training slices' head grey
   levels, which an export records (`domain_shift`); linear through 0 below the lowest, the
   last segment's slope above the highest. A monotone map: the tissues' order is kept.
   Outside the head (`intensities.head_mask_3d`, as `translate` finds it) the volume is set to
   0, the air of the training slices.

Measured with the published course-zip model on two phantom heads of unseen acquisitions
(`docs/results.md`, "Other acquisitions"): SSIM in the brain at the trained levels from
0.57-0.64 to 0.82-0.85, in the head from 0.38-0.42 to 0.59, without retraining. The head is
standardised as a whole, so a scan whose anatomy mix differs from the training slices' (a slab,
another field of view) is mapped less well; the sidecar records both sets of landmarks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mri_helpers import fileio
from mri_helpers.errors import DataError
from mri_helpers.export import DIRECTIONS, load_generator

from .. import domain_shift
from ..png_slices import check_outputs
from .intensities import head_mask_3d
from .reading import _collect, _raise, _save_json, _save_nifti, _write_all, output_image

# Nyul's landmarks: deciles and the tails; the recorded 1st..99th odd percentiles give them.
LANDMARKS = (1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99)
BIAS_SHRINK = 4  # N4 fits on a volume shrunk this many times per axis: seconds, not minutes
BIAS_ITERATIONS = (50, 50, 30)  # per fitting level (SimpleITK's default is 50 at 4 levels)


def correct_bias(volume: np.ndarray, head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The volume divided by N4's bias field fitted inside `head`, and that field (float32)."""
    import SimpleITK as sitk  # lazy: only this command needs it

    image = sitk.GetImageFromArray(np.asarray(volume, np.float32))
    mask = sitk.GetImageFromArray(head.astype(np.uint8))
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(BIAS_ITERATIONS))
    corrector.Execute(sitk.Shrink(image, [BIAS_SHRINK] * 3), sitk.Shrink(mask, [BIAS_SHRINK] * 3))
    field = np.exp(sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(image)))
    field = field.astype(np.float32)
    return np.asarray(volume, np.float32) / field, field


def landmark_map(
    landmarks: Sequence[float], targets: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The piecewise-linear map's knots (x, y): through 0, the landmarks onto their targets,
    then on at the last segment's slope. Equal landmarks are spread by a hair to keep x
    increasing."""
    x = np.asarray(landmarks, np.float64) + np.arange(len(landmarks)) * 1e-6
    y = np.asarray(targets, np.float64)
    slope = (y[-1] - y[-2]) / max(x[-1] - x[-2], 1e-6)
    far = 2.0 * max(x[-1], 1.0)
    return (
        np.concatenate([[min(0.0, x[0] - 1.0)], x, [far]]),
        np.concatenate([[0.0 if x[0] > 0 else y[0] - 1.0], y, [y[-1] + slope * (far - x[-1])]]),
    )


def harmonise_volume(
    volume: np.ndarray, config: dict[str, Any], contrast: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """`volume` bias-corrected and standardised onto the export's training grey levels in
    `contrast`, and the record of what was done. DataError when the export records none."""
    record = domain_shift.recorded_grey_levels(config, contrast)
    if record is None:
        raise DataError(
            "the model does not record its training slices' grey levels, which harmonising "
            "maps onto; export it again (`mri-course export RUN`) and try again."
        )
    volume = np.asarray(volume, np.float32)
    head = head_mask_3d(volume)
    if head.sum() < 1000:
        raise DataError("no head found in the volume (fewer than 1000 voxels): nothing to map.")
    corrected, field = correct_bias(volume, head)
    levels = np.percentile(corrected[head], LANDMARKS)
    targets = np.interp(LANDMARKS, domain_shift.PERCENTILES, record["percentiles"])
    x, y = landmark_map(levels, targets)
    # Outside the head: 0, the air of the training slices (and of the course's cleaning). The
    # map would lift the air's noise, which lies among the head's darkest landmarks, and with
    # it the threshold `translate` finds the head by.
    harmonised = np.where(head, np.interp(corrected, x, y), 0.0).astype(np.float32)
    return harmonised, {
        "bias_field": {
            "method": f"N4 (SimpleITK), fitted in the head on a volume shrunk {BIAS_SHRINK}x, "
            f"iterations {list(BIAS_ITERATIONS)}; the volume divided by it",
            "range_in_head": [
                round(float(field[head].min()), 3),
                round(float(field[head].max()), 3),
            ],
        },
        "standardisation": {
            "method": "piecewise-linear map of the head's percentiles onto the training "
            "slices' (Nyul and Udupa, 1999); through 0 below, the last slope above; 0 "
            "outside the head",
            "percentiles": list(LANDMARKS),
            "from": [round(float(v), 3) for v in levels],
            "to": [round(float(v), 2) for v in targets],
        },
    }


def harmonise_files(
    model: str | os.PathLike,
    direction: str,
    inputs: Sequence[str | os.PathLike | Sequence[str | os.PathLike]],
    out_dir: str | os.PathLike,
    overwrite: bool = False,
    series: str | None = None,
    volume: int | None = None,
) -> list[Path]:
    """Harmonise NIfTI volumes and DICOM series for the export's `direction` input contrast
    into `out_dir`: `<name>_harmonised.nii.gz` (float32, the input's shape and geometry) and a
    JSON sidecar; everything checked before anything is written. Returns the volumes."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; use one of {list(DIRECTIONS)}")
    _, config = load_generator(model, direction)
    contrast = DIRECTIONS[direction][0]
    scans, problems = _collect(inputs, series, volume)
    _raise(problems)
    out_dir = Path(out_dir)
    fileio.check_output_folder(out_dir)
    outputs = [
        {kind: out_dir / f"{scan.name}_harmonised{ext}" for kind, ext in
         (("image", ".nii.gz"), ("sidecar", ".json"))}
        for scan in scans
    ]  # fmt: skip
    names = [paths["image"].name for paths in outputs]
    if len(set(names)) < len(names):
        raise DataError(
            "two inputs have the same name; harmonise them into separate --out folders."
        )
    targets = [path for paths in outputs for path in paths.values()]
    try:
        check_outputs([f for scan in scans for f in scan.files], targets, overwrite)
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot use --out {out_dir}: {error.strerror}.") from None
    written = []
    for scan, paths in zip(scans, outputs, strict=True):
        harmonised, record = harmonise_volume(scan.voxels(), config, contrast)
        scan.data = None
        high = float(np.percentile(harmonised, 99.9))
        image = output_image(scan, harmonised, f"{contrast} harmonised to a course model",
                             (0.0, high))  # fmt: skip
        sidecar = {
            "what": f"{scan.source}, its {contrast} grey levels harmonised to those the model "
            "was trained on: translate this file with the same model",
            "model": str(Path(model).resolve()),
            "direction": direction,
            **record,
        }
        _write_all({paths["image"]: lambda p, i=image: _save_nifti(i, p),
                    paths["sidecar"]: lambda p, s=sidecar: _save_json(s, p)})  # fmt: skip
        written.append(paths["image"])
    return written
