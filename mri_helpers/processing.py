"""Image processing: masks and intensity statistics (01), geometry and intensities (02)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu, threshold_otsu


def head_mask(image: np.ndarray) -> np.ndarray:
    """True inside the head: Otsu threshold, largest connected part, holes filled.

    Explained in 01_data_understanding, "Background and tissue".
    """
    image = np.asarray(image, dtype=np.float32)
    if image.max() <= image.min():
        return np.zeros(image.shape, dtype=bool)
    # Otsu on all pixels splits background from tissue; half of it keeps dark skull and CSF.
    foreground = image > 0.5 * threshold_otsu(image)
    labels, count = ndimage.label(foreground)
    if count == 0:
        return foreground
    largest = 1 + int(np.argmax(ndimage.sum(foreground, labels, range(1, count + 1))))
    return ndimage.binary_fill_holes(labels == largest)


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
