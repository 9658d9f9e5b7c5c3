"""Image processing: masks and intensity statistics (01), geometry and intensities (02)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu, threshold_otsu


def head_mask(image: np.ndarray) -> np.ndarray:
    """True inside the head: a low threshold, small gaps closed, specks dropped, holes filled.

    Explained in 01_data_understanding, "Background and tissue". The threshold is a quarter of
    Otsu's, low enough to keep dark skin; the scalp ring, once its holes are filled, holds the
    whole head, even where a dark bone ring separates it from the brain.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.max() <= image.min():
        return np.zeros(image.shape, dtype=bool)
    foreground = ndimage.binary_closing(image > 0.25 * threshold_otsu(image), iterations=2)
    labels, count = ndimage.label(foreground)
    sizes = ndimage.sum(foreground, labels, range(1, count + 1))
    keep = np.isin(labels, 1 + np.flatnonzero(sizes >= max(0.01 * image.size, sizes.max() / 4)))
    return ndimage.binary_fill_holes(keep)


def tissue_classes(image: np.ndarray, mask: np.ndarray, classes: int = 3) -> np.ndarray:
    """Label pixels inside `mask` by intensity class 1..classes (multi-Otsu), 0 outside.

    Explained in 01_data_understanding, "Tissue contrast": in the brain the three classes are
    CSF, grey and white matter, in an order that the contrast decides.
    """
    values = np.asarray(image, dtype=np.float32)
    thresholds = threshold_multiotsu(values[mask], classes=classes)
    return np.where(mask, 1 + np.digitize(values, thresholds), 0).astype(np.uint8)


def brain_region(image: np.ndarray, shrink: float = 0.25) -> np.ndarray:
    """The central part of the head mask (eroded by `shrink` of its radius): brain, no scalp."""
    mask = head_mask(image)
    if not mask.any():
        return mask
    radius = np.sqrt(mask.sum() / np.pi)
    return ndimage.binary_erosion(mask, iterations=max(1, int(shrink * radius)))
