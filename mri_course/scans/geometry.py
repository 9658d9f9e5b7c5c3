"""The geometry of a scan against the model's slices: reorienting a volume to axial slices in
the course's orientation, and each slice's in-plane grid at the model's pixel size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import (
    aff2axcodes,
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)
from scipy import ndimage

from mri_helpers.errors import ModelFileError

# The course slices' geometry (phantom.py): axial, 1 mm pixels, rows running posterior ->
# anterior (the back of the head at the top) and columns running from the patient's left to
# the patient's right (the left on the image's left). Written as the direction each index
# grows towards, in nibabel's axis codes: rows "A", columns "R". model.json may say otherwise
# with `slice_orientation` and `pixel_spacing_mm`.
COURSE_SLICE_ORIENTATION = "AR"
COURSE_PIXEL_SPACING_MM = 1.0
CROP_MARGIN_MM = 10.0  # kept around the head when cropping each slice for the network


# --- geometry -------------------------------------------------------------------------------
def model_geometry(config: dict[str, Any]) -> tuple[tuple[float, float], str]:
    """The model's slice geometry from its model.json: pixel size (rows, columns) in mm from
    `pixel_spacing_mm` (a number or two), and `slice_orientation`, the directions its rows
    and columns run towards as two axis codes (one of A/P, one of L/R). Absent keys mean the
    course geometry: 1 mm and "AR" (posterior at the top, the patient's left on the left)."""
    spacing = config.get("pixel_spacing_mm", COURSE_PIXEL_SPACING_MM)
    values = spacing if isinstance(spacing, list | tuple) else [spacing, spacing]
    if len(values) != 2 or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and 0.05 <= v <= 10 for v in values
    ):
        raise ModelFileError(
            f"model.json: pixel_spacing_mm {spacing!r} is not a pixel size in mm (a number, or "
            "[rows, columns], from 0.05 to 10); fix it or remove it for the course's 1 mm."
        )
    orientation = config.get("slice_orientation", COURSE_SLICE_ORIENTATION)
    codes = orientation.upper() if isinstance(orientation, str) else ""
    axes = sorted(("AP".find(c) >= 0, "LR".find(c) >= 0) for c in codes)
    if len(codes) != 2 or axes != [(False, True), (True, False)]:
        raise ModelFileError(
            f"model.json: slice_orientation {orientation!r} is not two axis codes, the "
            "directions rows and columns run towards (one of A/P, one of L/R), e.g. 'AR' for "
            "the course slices; fix it or remove it."
        )
    return (float(values[0]), float(values[1])), codes


@dataclass(frozen=True)
class Reorientation:
    """How a volume's voxel axes map onto the model's (slice, row, column) axes."""

    to_model: np.ndarray  # nibabel orientation transform: input array -> model array
    to_input: np.ndarray  # its inverse
    input_codes: tuple[str, str, str]  # where the input's axes point (e.g. L, P, S)
    slice_axis: int  # the input's array axis that becomes the slice axis
    spacing: tuple[float, float, float]  # voxel sizes (mm) along the model array's axes
    obliquity: float  # degrees between the voxel axes and the nearest scanner axes (largest)

    def apply(self, data: np.ndarray) -> np.ndarray:
        """(X, Y, Z) input voxels -> (slices, rows, columns) in the model's orientation."""
        return apply_orientation(data, self.to_model)

    def undo(self, data: np.ndarray) -> np.ndarray:
        """The inverse of `apply`: back onto the input's own array axes (a view)."""
        return apply_orientation(data, self.to_input)


def reorientation(
    affine: np.ndarray, shape: Sequence[int], slice_orientation: str = COURSE_SLICE_ORIENTATION
) -> Reorientation:
    """The closest canonical reorientation (nibabel `io_orientation`) that gives axial slices
    with rows and columns as `slice_orientation` says (see `model_geometry`)."""
    start = io_orientation(affine)
    target = axcodes2ornt(("S", *slice_orientation))
    forward = ornt_transform(start, target)
    backward = ornt_transform(target, start)
    model_affine = affine @ inv_ornt_aff(forward, shape)
    sizes = np.sqrt((model_affine[:3, :3] ** 2).sum(axis=0))
    return Reorientation(
        to_model=forward,
        to_input=backward,
        input_codes=tuple(aff2axcodes(affine)),
        slice_axis=int(np.flatnonzero(forward[:, 0] == 0)[0]),
        spacing=tuple(float(s) for s in sizes),
        obliquity=float(np.degrees(np.max(nib.affines.obliquity(affine)))),
    )


@dataclass(frozen=True)
class InPlaneGrid:
    """How one axial slice of the input (`shape` pixels of `spacing` mm) maps onto the model's
    pixel grid (`pixel` mm) and back. Both grids start at the slice's edge; the model's is
    cut to `size` pixels from pixel `start` (the head with a margin). Linear interpolation;
    when a grid is coarser than the other, a Gaussian prefilter (sigma (ratio - 1) / 2
    pixels, as `skimage.transform.resize` anti-aliases) first removes what it cannot hold."""

    shape: tuple[int, int]
    spacing: tuple[float, float]
    pixel: tuple[float, float]
    start: tuple[int, int]
    size: tuple[int, int]

    def to_model(self, image: np.ndarray) -> np.ndarray:
        """An input slice (float32, `shape`) on the model's grid (`size`)."""
        ratio = np.divide(self.pixel, self.spacing)
        offset = (np.asarray(self.start) + 0.5) * ratio - 0.5
        return _resample(image, ratio, offset, self.size)

    def to_input(self, image: np.ndarray) -> np.ndarray:
        """A model-grid slice (`size`) back on the input's grid (`shape`); 0 outside the crop."""
        ratio = np.divide(self.spacing, self.pixel)
        offset = 0.5 * ratio - 0.5 - np.asarray(self.start)
        result = _resample(image, ratio, offset, self.shape)
        inside = [
            np.abs(np.arange(n) * r + o - (m - 1) / 2) <= m / 2
            for n, r, o, m in zip(self.shape, ratio, offset, self.size, strict=True)
        ]
        return np.where(inside[0][:, None] & inside[1][None, :], result, 0.0).astype(np.float32)


def _resample(image: np.ndarray, ratio: np.ndarray, offset: np.ndarray, shape) -> np.ndarray:
    """Output pixel p samples the image at ratio * p + offset (per axis), linearly."""
    image = np.asarray(image, np.float32)
    if np.all(ratio == 1.0) and np.all(offset == np.round(offset)):
        # Whole pixels, no scaling (the course's 1 mm slices of a 1 mm scan): interpolation
        # would return the pixels themselves, so take them (edges repeated, as "nearest").
        rows, cols = (
            np.clip(np.arange(n) + int(o), 0, m - 1)
            for n, o, m in zip(shape, np.round(offset), image.shape, strict=True)
        )
        return image[np.ix_(rows, cols)]
    sigma = np.maximum(0.0, (ratio - 1.0) / 2.0)
    if np.any(sigma > 0.01):
        image = ndimage.gaussian_filter(image, sigma, mode="nearest")
    return ndimage.affine_transform(
        image, ratio, offset, output_shape=tuple(shape), order=1, mode="nearest"
    ).astype(np.float32)


def in_plane_grid(
    shape: tuple[int, int],
    spacing: tuple[float, float],
    pixel: tuple[float, float],
    head_box: tuple[tuple[int, int], tuple[int, int]] | None = None,
    margin_mm: float = CROP_MARGIN_MM,
    max_pixels: int | None = None,
) -> InPlaneGrid:
    """The model grid for slices of `shape` x `spacing` mm: whole, or cut to `head_box`
    ((first, last) row, (first, last) column, input pixels) plus `margin_mm`, a margin that
    shrinks where the cut would exceed `max_pixels` (the network's side: a crop that fits is
    padded, never resized, as the course slices are)."""
    starts, sizes = [], []
    for axis in range(2):
        extent = shape[axis] * spacing[axis]
        low, high = 0.0, extent
        if head_box is not None:
            first, last = head_box[axis]
            head_low, head_high = first * spacing[axis], (last + 1) * spacing[axis]
            margin = margin_mm
            if max_pixels is not None:
                room = max_pixels * pixel[axis] - (head_high - head_low)
                margin = min(margin_mm, max(0.0, room / 2.0 - 0.5 * pixel[axis]))
            low = max(0.0, head_low - margin)
            high = min(extent, head_high + margin)
        begin = math.floor(low / pixel[axis] + 1e-6)
        end = max(begin + 1, math.ceil(high / pixel[axis] - 1e-6))
        starts.append(begin)
        sizes.append(end - begin)
    return InPlaneGrid(tuple(shape), tuple(spacing), tuple(pixel), tuple(starts), tuple(sizes))
