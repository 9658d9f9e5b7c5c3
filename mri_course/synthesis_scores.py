"""Synthetic volumes scored as the field scores them (`mri-course evaluate --scan --truth`'s
`brasyn` block): BraSyn's normalisation, SSIM per region, PSNR and MAE; tissue segmentation
as a downstream task; and whether lesions stay visible and none are invented.

All functions take volumes as (slices, rows, columns) arrays in the model's axial frame, one
per candidate ("model", the baselines, "truth"), and, for the tissue and lesion scores, the
true labels on the same grid (`mri_helpers.phantom.LABELS`: 0 background, 1 CSF, 2 GM, 3 WM,
4 lesion).

Normalisation: BraSyn (BraTS 2023/2024 image synthesis) scores each volume after clipping it
to its own 0.5 and 99.5 percentiles (the lower one no less than 0) and rescaling that range
to [0, 1]; its evaluation code takes the percentiles over the whole volume, as
`__percentile_clip` in the organisers' scripts does (reproduced e.g. in AImageLab-zip/BraSyn25,
final_eval/get_ssim.py). We do the same, over every voxel of the axial slices that hold head
(the baselines are not computed on the others). Not inside the head mask: the darkest 0.5 % of
a head is brain tissue (white matter in T2 once skull and air are out of the mask), which
would be mapped to 0 and make every contrast to it meaningless; over the field of view the
lower percentile lies in the air, as in BraTS's skull-stripped volumes. The price: the upper
percentile depends a little on how much of the field of view is head.

SSIM: the course's (`tf.image.ssim`, 11x11 Gaussian window, per axial slice), its index map
averaged over a region's voxels; BraSyn uses a 3-D window on the whole masked volume, so the
figures are alike in spirit, not equal.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from mri_helpers.evaluation import ssim_maps

PERCENTILES = (0.5, 99.5)
CLASSES = {"csf": 1, "gm": 2, "wm": 3}
LESION = 4
SEGMENTATION_SEED = 0
FIT_VOXELS = 100_000  # brain voxels the mixture is fitted on (drawn with the seed); all labelled
FIT_STARTS = 4  # k-means starts; the fit of best likelihood is kept
CLASS_VARIANCE_FLOOR = 1e-4  # (0.01)^2 on the [0, 1] scale: without it a noise-free volume's
# spike of pure white matter becomes a class of its own and its partial volumes go to GM; a
# floor much above the noise (0.02) merges GM and WM in a noisy one instead
SHELL_MM = (2.0, 4.0)  # the white-matter shell a lesion is compared with
VISIBLE_CNR = 5.0  # Rose's criterion: an object is seen when it stands 5 noise SDs out
KEPT_FRACTION = 0.5  # a lesion keeps its contrast with at least this share of the truth's
NOISE_FLOOR = 1e-3  # smallest shell spread (of the [0, 1] range): a noise-free volume has none
DEEP_WM_MM, BLOB_SIGMAS, BLOB_CONTRAST, MIN_BLOB_MM3 = 2.0, 4.0, 0.25, 10.0
_NEIGHBOURS = ndimage.generate_binary_structure(3, 3)  # 26-connected parts


def normalise_to_percentiles(volume: np.ndarray, region: np.ndarray) -> np.ndarray:
    """BraSyn's normalisation: clip to the 0.5 and 99.5 percentiles of `region`'s voxels (the
    lower no less than 0) and rescale that range to [0, 1] (float32)."""
    low, high = np.percentile(np.asarray(volume)[region], PERCENTILES)
    low = max(float(low), 0.0)
    if high <= low:
        return np.zeros(np.shape(volume), np.float32)
    return ((np.clip(volume, low, high) - low) / (high - low)).astype(np.float32)


def image_scores(
    normalised: Mapping[str, np.ndarray], regions: Mapping[str, np.ndarray], truth: str = "truth"
) -> dict[str, dict[str, float | None]]:
    """Per candidate (but the truth): SSIM in each region ("ssim_head", ...; None for an empty
    region), and PSNR (peak 1) and MAE over the "head" region, all on the [0, 1] scale."""
    report = {}
    head = regions["head"]
    for name, volume in normalised.items():
        if name == truth:
            continue
        maps = ssim_maps(volume, normalised[truth], max_val=1.0)
        row: dict[str, float | None] = {}
        for where, mask in regions.items():
            inside = maps[mask & np.isfinite(maps)]
            row[f"ssim_{where}"] = float(inside.mean()) if inside.size else None
        error = np.abs(volume - normalised[truth])[head]
        row["psnr_head"] = float(10 * np.log10(1.0 / max(float(np.mean(error**2)), 1e-10)))
        row["mae_head"] = float(error.mean())
        report[name] = row
    return report


# --- tissue segmentation, a downstream task -------------------------------------------------
def segment_tissues(volume: np.ndarray, brain: np.ndarray, target: str) -> np.ndarray:
    """Labels 1 CSF, 2 GM, 3 WM inside `brain` (0 elsewhere): a 3-class Gaussian mixture of
    the brain's grey levels (sklearn; seed SEGMENTATION_SEED, FIT_STARTS starts, variance floor
    CLASS_VARIANCE_FLOOR, fitted on at most FIT_VOXELS of them), its classes ordered by mean:
    in T2 WM is darkest and CSF brightest, in T1 the reverse. The method is fixed on purpose:
    its Dice on the true volume is what it can reach on that contrast."""
    from sklearn.mixture import GaussianMixture  # lazy: only when labels are given

    values = np.asarray(volume, np.float32)[brain].reshape(-1, 1)
    rng = np.random.default_rng(SEGMENTATION_SEED)
    fit_on = values[rng.choice(len(values), min(len(values), FIT_VOXELS), replace=False)]
    mixture = GaussianMixture(
        3,
        random_state=SEGMENTATION_SEED,
        n_init=FIT_STARTS,
        reg_covar=CLASS_VARIANCE_FLOOR,
    ).fit(fit_on)
    dark_to_bright = (3, 2, 1) if target == "t2" else (1, 2, 3)
    label_of = np.empty(3, np.uint8)
    label_of[np.argsort(mixture.means_.ravel())] = dark_to_bright
    labels = np.zeros(np.shape(volume), np.uint8)
    labels[brain] = label_of[mixture.predict(values)]
    return labels


def tissue_dice(found: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Dice of each class (and their mean) against the true labels, over the voxels the truth
    calls CSF, GM or WM (lesions are scored on their own)."""
    scored = (labels >= 1) & (labels <= 3)
    dice = {}
    for name, value in CLASSES.items():
        mine, true = (found == value) & scored, (labels == value) & scored
        total = int(mine.sum() + true.sum())
        dice[name] = float(2 * (mine & true).sum() / total) if total else 0.0
    dice["mean"] = float(np.mean([dice[name] for name in CLASSES]))
    return dice


# --- lesions kept, none invented ------------------------------------------------------------
def lesion_report(
    normalised: Mapping[str, np.ndarray],
    labels: np.ndarray,
    model_affine: np.ndarray,
    target: str,
    truth: str = "truth",
) -> list[dict]:
    """One row per lesion (26-connected part of label 4): its size and centre, and per
    candidate the contrast to its white-matter shell, the contrast-to-noise ratio and whether
    it stays visible (`_visible`)."""
    spacing = np.sqrt((model_affine[:3, :3] ** 2).sum(axis=0))
    parts, count = ndimage.label(labels == LESION, structure=_NEIGHBOURS)
    rows = []
    for index, box in enumerate(ndimage.find_objects(parts), start=1):
        pad = [int(np.ceil(SHELL_MM[1] / s)) + 1 for s in spacing]
        box = tuple(
            slice(max(b.start - p, 0), min(b.stop + p, n))
            for b, p, n in zip(box, pad, labels.shape, strict=True)
        )
        lesion = parts[box] == index
        distance = ndimage.distance_transform_edt(~lesion, sampling=spacing)
        shell = (distance > SHELL_MM[0]) & (distance <= SHELL_MM[1]) & (labels[box] == 3)
        volume_mm3 = float(lesion.sum() * np.prod(spacing))
        centre = [b.start for b in box] + np.argwhere(lesion).mean(axis=0)
        row = {
            "diameter_mm": round(float((6 * volume_mm3 / np.pi) ** (1 / 3)), 2),
            "volume_mm3": round(volume_mm3, 1),
            "centre_mm": [round(float(v), 1) for v in (model_affine @ [*centre, 1.0])[:3]],
            "shell_voxels": int(shell.sum()),
            "contrast": {},
            "cnr": {},
        }
        for name, image in normalised.items():
            inside, around = image[box][lesion], image[box][shell]
            difference = float(inside.mean() - around.mean()) if around.size else 0.0
            row["contrast"][name] = difference / max(float(around.mean()), NOISE_FLOOR)
            spread = float(around.std()) if around.size else 0.0
            row["cnr"][name] = difference / max(spread, NOISE_FLOOR)
        candidates = [name for name in normalised if name != truth]
        row["visible"] = {name: _visible(row, name, target) for name in candidates}
        true = row["contrast"][truth]
        row["contrast_kept"] = {
            name: row["contrast"][name] / true if true else 0.0 for name in candidates
        }
        row["keeps_contrast"] = {
            name: bool(row["visible"][name] and row["contrast_kept"][name] >= KEPT_FRACTION)
            for name in candidates
        }
        rows.append(row)
    return rows


def _visible(row: dict, name: str, target: str) -> bool:
    """A lesion stays visible in a candidate when it differs from its white-matter shell in
    the direction lesions do in the target (brighter in T2, darker in T1) by at least
    VISIBLE_CNR shell standard deviations (Rose's criterion of detectability). How much of the
    truth's contrast it keeps is `contrast_kept`, apart."""
    sign = 1.0 if target == "t2" else -1.0
    return bool(sign * row["cnr"][name] >= VISIBLE_CNR)


def deep_white_matter(labels: np.ndarray, model_affine: np.ndarray) -> np.ndarray:
    """Where `invented_lesions` looks: white matter (label 3) at least DEEP_WM_MM from any
    other label and more than SHELL_MM[1] from any true lesion."""
    spacing = np.sqrt((model_affine[:3, :3] ** 2).sum(axis=0))
    not_wm = ndimage.distance_transform_edt(labels == 3, sampling=spacing)
    from_lesion = ndimage.distance_transform_edt(labels != LESION, sampling=spacing)
    return (not_wm >= DEEP_WM_MM) & (from_lesion > SHELL_MM[1])


def invented_lesions(
    image: np.ndarray, region: np.ndarray, model_affine: np.ndarray, target: str
) -> list[dict]:
    """Lesion-like blobs where the truth has no lesion: in the `region` (`deep_white_matter`),
    voxels beyond its median by more than BLOB_SIGMAS robust standard deviations (1.4826 x
    MAD) and by at least BLOB_CONTRAST of the median, brighter in T2 (darker in T1);
    26-connected parts of at least MIN_BLOB_MM3 count. One row per blob."""
    spacing = np.sqrt((model_affine[:3, :3] ** 2).sum(axis=0))
    if region.sum() < 100:
        return []
    values = image[region]
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    step = max(BLOB_SIGMAS * spread, BLOB_CONTRAST * abs(median), NOISE_FLOOR)
    sign = 1.0 if target == "t2" else -1.0
    candidates = region & (sign * (image - median) > step)
    parts, count = ndimage.label(candidates, structure=_NEIGHBOURS)
    if not count:
        return []
    voxel_mm3 = float(np.prod(spacing))
    sizes = np.bincount(parts.ravel(), minlength=count + 1)[1:] * voxel_mm3
    kept = [int(i) + 1 for i in np.argsort(-sizes) if sizes[i] >= MIN_BLOB_MM3]
    if not kept:
        return []
    means = ndimage.mean(image, parts, kept)
    centres = ndimage.center_of_mass(candidates, parts, kept)
    return [
        {
            "volume_mm3": round(float(sizes[index - 1]), 1),
            "centre_mm": [round(float(v), 1) for v in (model_affine @ [*centre, 1.0])[:3]],
            "contrast": (float(mean) - median) / max(abs(median), NOISE_FLOOR),
        }
        for index, mean, centre in zip(kept, np.atleast_1d(means), centres, strict=True)
    ]


def score_synthesis(
    volumes: Mapping[str, np.ndarray],
    head: np.ndarray,
    brain: np.ndarray,
    target: str,
    labels: np.ndarray | None = None,
    model_affine: np.ndarray | None = None,
    field_of_view: np.ndarray | None = None,
) -> dict:
    """The `brasyn` block: each volume ("truth" among them) normalised on its own over the
    `field_of_view` (default: every voxel), SSIM in the true `head`, the `brain` and the
    lesions, PSNR and MAE in the head; with `labels` (and the model frame's `model_affine`),
    the tissue Dice of every volume (the truth's: what the method reaches on a real T2), each
    lesion's visibility and the blobs no truth explains."""
    field_of_view = np.ones(head.shape, bool) if field_of_view is None else field_of_view
    normalised = {
        name: normalise_to_percentiles(volume, field_of_view) for name, volume in volumes.items()
    }
    regions = {"head": head, "brain": brain}
    lesions = labels is not None and bool((labels == LESION).any())
    if lesions:
        regions["lesion"] = labels == LESION
    result = {
        "normalisation": {
            "percentiles": list(PERCENTILES),
            "region": "every voxel of the axial slices with head (BraSyn: the whole volume)",
            "range": [0.0, 1.0],
        },
        "images": image_scores(normalised, regions),
    }
    if labels is None:
        return result
    result["segmentation"] = {
        "method": (
            "3-class Gaussian mixture of the normalised grey levels inside the true brain "
            f"(sklearn; random_state {SEGMENTATION_SEED}, n_init {FIT_STARTS}, "
            f"reg_covar {CLASS_VARIANCE_FLOOR}), classes ordered by mean"
        ),
        "dice": {
            name: tissue_dice(segment_tissues(volume, labels > 0, target), labels)
            for name, volume in normalised.items()
        },
    }
    if lesions:
        result["lesions"] = lesion_report(normalised, labels, model_affine, target)
    deep = deep_white_matter(labels, model_affine)  # the labels' alone: once for all volumes
    result["invented"] = {
        name: invented_lesions(volume, deep, model_affine, target)
        for name, volume in normalised.items()
    }
    return result
