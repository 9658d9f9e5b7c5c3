"""Classical unpaired baselines, the yardstick of every evaluation (04_training).

Two ways to turn T1 into T2 without any network, and without pairs: invert the grey levels
inside the head, or match the head's histogram to the other contrast's reversed histogram.
They are the yardstick every evaluation reports beside the model, and the guesses the
generators are first fitted to (`head_start`).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def inversion_baseline(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The simplest T1 <-> T2 'translation': invert the grey levels inside the head."""
    return np.where(mask, 255 - image.astype(np.int32), 0).astype(np.uint8)


def quantile_baseline(
    image: np.ndarray, mask: np.ndarray, target_values: np.ndarray
) -> np.ndarray:
    """Reversed histogram matching: the input's q-th quantile inside the head becomes the
    target contrast's (1-q)-th quantile. The best any monotone decreasing map can do for the
    overall histogram; it cannot move fat and CSF independently. `target_values` sorted
    ascending spares a sort per call."""
    values = image[mask].astype(np.float64)
    ranks = stats.rankdata(values, method="average") / (len(values) + 1)
    target = np.asarray(target_values, np.float64)
    if not (target[1:] >= target[:-1]).all():  # sorted once by a caller of many slices
        target = np.sort(target)
    # np.quantile's default (linear) rule, read off the sorted values: np.quantile would
    # partition the whole target again for every slice.
    position = (1.0 - ranks) * (len(target) - 1)
    below = np.minimum(position.astype(np.int64), len(target) - 1)
    above = np.minimum(below + 1, len(target) - 1)
    mapped = target[below] + (position - below) * (target[above] - target[below])
    out = np.zeros(image.shape, np.float64)
    out[mask] = mapped
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
