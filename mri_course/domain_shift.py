"""How far an input lies from the slices a model was trained on: `translate` warns (on the
terminal and in the sidecar) when a scan is unlike them, and never refuses on that ground.

A generator learns the grey levels of its training slices. The measure is the grey-level
distribution inside the head, as its 1st, 3rd, ..., 99th percentiles on the course's 0..255
scale (a volume after the intensity scaling `translate` applies), against the training slices'
pooled distribution: the mean absolute difference of the two sets of percentiles, which is the
1-Wasserstein distance between the distributions, in grey levels. An export records the
training slices' percentiles per contrast and the distance of its farthest training slice;
an input lies *outside* when its distance exceeds LIMIT_FACTOR times that.

Measured on the course zip (seed 42's split, `docs/whole_scans.md`): its training slices lie
at most 9.0 (T1) and 10.4 (T2) from their pool, its held-out slices at most 7.0 and 9.5; the
phantom's slices, another acquisition of another head, at least 14.9 and 26.5; the axial slices
of the phantom's head volume at least 13.4 and 12.8 (median 27 and 24). A quarter above the
farthest training slice keeps every held-out slice inside and almost every phantom slice out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mri_helpers.processing import head_mask

PERCENTILES = np.arange(1, 100, 2)
LIMIT_FACTOR = 1.25
MIN_HEAD_PIXELS = 500  # a slice with less head than this says nothing of its distribution
WARN_SHARE = 0.5  # a volume is outside when its whole head, or this share of its slices, is


def grey_level_percentiles(values: np.ndarray) -> np.ndarray:
    """The PERCENTILES of some grey levels (a head's pixels)."""
    return np.percentile(np.asarray(values, np.float64), PERCENTILES)


def grey_level_distance(percentiles: np.ndarray, reference: Sequence[float]) -> float:
    """Mean absolute difference of two sets of PERCENTILES: the 1-Wasserstein distance."""
    return float(np.mean(np.abs(np.asarray(percentiles) - np.asarray(reference))))


def training_grey_levels(slices: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Per contrast of 8-bit slices (`.image`, `.modality`): the pooled head percentiles, the
    farthest slice's distance from them and the limit beyond which an input is outside."""
    record = {}
    for contrast in sorted({s.modality for s in slices}):
        heads = [s.image[head_mask(s.image)] for s in slices if s.modality == contrast]
        pooled = grey_level_percentiles(np.concatenate(heads))
        farthest = max(grey_level_distance(grey_level_percentiles(h), pooled) for h in heads)
        record[contrast] = {
            "percentiles": [round(float(v), 2) for v in pooled],
            "farthest_training_slice": round(farthest, 2),
            "limit": round(LIMIT_FACTOR * farthest, 2),
        }
    return record


def recorded_grey_levels(config: Mapping[str, Any], contrast: str) -> dict[str, Any] | None:
    """An export's record of its training slices' grey levels in `contrast`, if it has a
    usable one (exports made before the check have none)."""
    record = (config.get("grey_levels") or {}).get(contrast)
    try:
        percentiles = [float(v) for v in record["percentiles"]]
        limit = float(record["limit"])
    except (TypeError, KeyError, ValueError):
        return None
    if len(percentiles) != len(PERCENTILES) or not np.isfinite([*percentiles, limit]).all():
        return None
    return {"percentiles": percentiles, "limit": limit}


NOT_RECORDED = {
    "measured": False,
    "why": "the export does not record its training slices' grey levels (exported before "
    "this check); export the model again to have inputs checked",
}


def slices_distance(
    images: Sequence[np.ndarray], config: Mapping[str, Any], contrast: str
) -> list[float] | None:
    """Each 8-bit slice's distance from the training slices (None when not recorded); a
    slice without enough head scores 0."""
    record = recorded_grey_levels(config, contrast)
    if record is None:
        return None
    distances = []
    for image in images:
        head = np.asarray(image)[head_mask(image)]
        enough = head.size >= MIN_HEAD_PIXELS
        percentiles = grey_level_percentiles(head) if enough else None
        distances.append(
            grey_level_distance(percentiles, record["percentiles"]) if enough else 0.0
        )
    return distances


def volume_shift(
    scaled: np.ndarray, mask: np.ndarray, config: Mapping[str, Any], contrast: str
) -> dict[str, Any]:
    """How far a volume lies from the training slices: `scaled`, its voxels (slices first) on
    the 0..255 scale `translate` gives them, `mask` its head. The whole head's distance, each
    axial slice's, and a warning when the head or WARN_SHARE of its slices lie outside."""
    record = recorded_grey_levels(config, contrast)
    if record is None:
        return dict(NOT_RECORDED)
    reference, limit = record["percentiles"], record["limit"]
    whole = grey_level_distance(grey_level_percentiles(scaled[mask]), reference)
    per_slice = [
        grey_level_distance(grey_level_percentiles(plane[inside]), reference)
        for plane, inside in zip(scaled, mask, strict=True)
        if np.count_nonzero(inside) >= MIN_HEAD_PIXELS
    ]
    outside = sum(d > limit for d in per_slice)
    unlike = whole > limit or outside > WARN_SHARE * max(len(per_slice), 1)
    result = {
        "measured": True,
        "method": (
            "grey levels in the head, 1st to 99th percentile, against the training slices' "
            "pooled percentiles: mean absolute difference (1-Wasserstein distance) on 0..255; "
            f"outside beyond {LIMIT_FACTOR:g} x the farthest training slice's distance"
        ),
        "whole_head_distance": round(whole, 2),
        "limit": limit,
        "axial_slices_measured": len(per_slice),
        "axial_slices_outside": int(outside),
        "unlike_training_data": bool(unlike),
        "warning": None,
    }
    if unlike:
        result["warning"] = (
            f"its grey levels lie {whole:.0f} grey levels from those of the slices the model "
            f"was trained on (limit {limit:.0f}; {outside} of {len(per_slice)} axial slices "
            "beyond it): the model has not seen scans like this one, so expect a lower quality "
            "than its published scores"
        )
    return result
