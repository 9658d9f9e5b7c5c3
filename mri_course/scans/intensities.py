"""A scan's grey levels on the course's scale: the head in 3-D, and one linear map per volume
that puts a percentile of the head where the training slices had it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from mri_helpers.errors import DataError, ModelFileError
from mri_helpers.processing import (
    head_mask,
)

# Intensity reference: the 95th percentile inside the head of the slices a model was trained
# on (`head_levels`), which the course records in model.json as `head_levels`; exports
# without it get the course slices' (head_mask over all 43 T1 and 46 T2 PNGs), 160 in T1 and
# 233 in T2; their background is 0. The 95th, not the 99th, as the course T2 saturates near
# 251 and a few bright vessels or fat move the 99th of a volume.
HEAD_PERCENTILE = 95.0
COURSE_HEAD_LEVELS = {"t1": 160.0, "t2": 233.0}
MASK_VOXELS = 16_000_000  # volumes above this are subsampled to find the head


# --- intensities ----------------------------------------------------------------------------
def head_mask_3d(volume: np.ndarray) -> np.ndarray:
    """True inside the head of a volume (slices on axis 0): above a quarter of the way from
    the 1st percentile (air) to Otsu's threshold (low enough to keep dark skin, like
    `processing.head_mask`), the largest connected part, holes filled slice by slice."""
    volume = np.asarray(volume, np.float32)
    low = float(np.percentile(volume, 1))
    threshold = low + 0.25 * (float(threshold_otsu(volume)) - low)
    foreground = volume > threshold
    labels, count = ndimage.label(foreground)
    if count == 0:
        return foreground
    sizes = np.bincount(labels.ravel())[1:]
    mask = labels == 1 + int(np.argmax(sizes))
    return np.stack([ndimage.binary_fill_holes(plane) for plane in mask])


@dataclass(frozen=True)
class IntensityScaling:
    """One linear map of a volume's values to the course's 8-bit scale: `background` (the
    median outside the head) -> 0 and `head_value` (the `percentile` inside it) -> `target`
    (the training slices' value there). Scaling or shifting the scan changes both landmarks
    alike, so the result does not change; nothing is clipped here."""

    background: float
    head_value: float
    percentile: float
    target: float
    mask_stride: int = 1  # the head was found on every stride-th voxel of each axis

    @property
    def gain(self) -> float:
        """Course grey levels per input unit."""
        return self.target / (self.head_value - self.background)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Input values on the course scale (float32; may leave 0..255)."""
        return ((np.asarray(values, np.float32) - self.background) * self.gain).astype(np.float32)


def head_levels(slices: Sequence[Any]) -> dict[str, float]:
    """The HEAD_PERCENTILE-th grey level inside the head (`processing.head_mask`) of 8-bit
    slices, per contrast: what a model trained on them expects of a head."""
    levels = {}
    for contrast in sorted({s.modality for s in slices}):
        inside = [s.image[head_mask(s.image)] for s in slices if s.modality == contrast]
        levels[contrast] = round(float(np.percentile(np.concatenate(inside), HEAD_PERCENTILE)), 1)
    return levels


def model_head_levels(config: dict[str, Any]) -> dict[str, float]:
    """The head levels a model.json records (`head_levels`), else the course slices'."""
    levels = config.get("head_levels", COURSE_HEAD_LEVELS)
    valid = isinstance(levels, dict) and all(
        isinstance(levels.get(c), int | float) and not isinstance(levels.get(c), bool)
        and 1.0 <= levels[c] <= 255.0
        for c in COURSE_HEAD_LEVELS
    )  # fmt: skip
    if not valid:
        raise ModelFileError(
            f"model.json: head_levels {levels!r} is not a grey level from 1 to 255 for each of "
            "t1 and t2; fix it, or remove it for the course slices' levels."
        )
    return {c: float(levels[c]) for c in COURSE_HEAD_LEVELS}


def robust_scaling(
    volume: np.ndarray,
    contrast: str,
    source: str | os.PathLike = "the volume",
    target: float | None = None,
) -> tuple[IntensityScaling, np.ndarray, int]:
    """The `IntensityScaling` of a volume (slices on axis 0) of `contrast` ("t1"/"t2") onto
    `target` (the grey level its head's percentile should get; None: the course slices'),
    the head mask it used and that mask's stride (volumes above MASK_VOXELS are subsampled)."""
    stride = max(1, math.ceil((volume.size / MASK_VOXELS) ** (1 / 3)))
    sample = np.asarray(volume[::stride, ::stride, ::stride], np.float32)
    mask = head_mask_3d(sample)
    if mask.sum() < max(8, 0.001 * mask.size):
        raise DataError(f"{source}: no head found (no region brighter than the background).")
    outside = sample[~mask]
    background = (
        float(np.median(outside))
        if outside.size >= 0.01 * sample.size
        else float(np.percentile(sample, 0.5))
    )
    head_value = float(np.percentile(sample[mask], HEAD_PERCENTILE))
    spread = float(sample.max() - sample.min())
    if head_value - background <= 1e-6 * max(spread, 1e-30):
        raise DataError(
            f"{source}: its head is no brighter than its background ({background:.4g}); "
            "nothing to translate."
        )
    scaling = IntensityScaling(
        background,
        head_value,
        HEAD_PERCENTILE,
        COURSE_HEAD_LEVELS[contrast] if target is None else float(target),
        stride,
    )
    return scaling, mask, stride
