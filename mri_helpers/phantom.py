"""A paired T1/T2 brain phantom, for when the course data set is not at hand.

Anatomy: the MNI152 2009 template that ships inside nilearn (no download) gives grey-matter
(GM) and white-matter (WM) fraction maps at 1 mm and a brain mask; whatever of the mask is
neither GM nor WM is taken as cerebrospinal fluid (CSF). The template is skull-stripped, so a
head is grown around it: shells at increasing distance from the brain hold a thin CSF/meninges
layer, the skull, subcutaneous fat, muscle and skin.

Contrast: each tissue gets the spin-echo signal

    S = PD * (1 - exp(-TR / T1)) * exp(-TE / T2)

PD is the proton density (how much water there is to see), T1 how fast the magnetisation
regrows between excitations (every TR), T2 how fast the echo fades before it is read (at TE).
A short TR and short TE (T1-weighted) favour tissues that regrow fast (fat, WM) and leave CSF
dark; a long TR and long TE (T2-weighted) favour the slowly fading CSF. A pixel holding several
tissues shows the sum of fraction x tissue signal (partial volume). Fat is above CSF in T1 and
below it in T2, while it stays above WM in both: no monotone grey-level mapping turns one
contrast into the other, which is why the translation has to be learned.

Scanner: a smooth multiplicative bias field (coil non-uniformity), then Rician noise, the
magnitude of a complex signal whose real and imaginary parts carry Gaussian noise:
observed = sqrt((S + n1)**2 + n2**2), n1, n2 ~ N(0, sigma). Magnitude images are never
negative, so the air around the head is not 0 but Rayleigh noise (mean 1.25 sigma).

Images: 8-bit axial slices in the course geometry (181 wide x 217 high, back of the head at the
top, like the course PNGs), one intensity scale per contrast for all slices.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

PHANTOM_SHAPE = (217, 181)  # (height, width), the course geometry

# (relative PD, T1 ms, T2 ms) at 1.5 T, the values of BrainWeb's MRI simulator,
# https://brainweb.bic.mni.mcgill.ca/brainweb/tissue_mr_parameters.txt (Kwan, Evans & Pike,
# IEEE TMI 18:1085, 1999; Collins et al., IEEE TMI 17:463, 1998). "muscle" is BrainWeb's
# "Muscle/Skin" class, "skin" its "Skin" class; its skull has PD 0 (T1, T2 here are dummies).
TISSUES: dict[str, tuple[float, float, float]] = {
    "csf": (1.00, 2569.0, 329.0),
    "gm": (0.86, 833.0, 83.0),
    "wm": (0.77, 500.0, 70.0),
    "fat": (1.00, 350.0, 70.0),
    "muscle": (1.00, 900.0, 47.0),
    "skin": (1.00, 2569.0, 329.0),
    "bone": (0.00, 1.0, 1.0),
}
# (TR, TE) in ms: our choice of typical clinical 1.5 T spin-echo settings (short/short for
# T1w, long/long for T2w), not taken from a paper. The course images come from BrainWeb's
# simulator with its own sequences, so the contrasts match them only roughly.
SEQUENCES: dict[str, tuple[float, float]] = {"t1": (500.0, 15.0), "t2": (3300.0, 120.0)}
# Head layers outside the brain mask, inside out, with their thickness in mm.
LAYERS_MM = (("csf", 1.5), ("bone", 4.0), ("fat", 4.0), ("muscle", 3.0), ("skin", 1.5))
_GAP_CSF_MM = 4.0  # CSF fills hull-brain gaps up to this distance from the brain, then bone
_SHARPEN = 2.0  # power applied to the blurry population-average GM/WM/CSF fractions
LEVELS_MM = tuple(range(0, 51))  # MNI z (mm): basal ganglia / 3rd ventricle up to high convexity
INTENSITY_MAX = 220.0  # clean value of the brightest pure tissue; 220 * 1.15 stays below 255
# The course PNGs have the BACK of the head at the top (rows run posterior -> anterior, like
# BrainWeb's y axis): the cerebellar vermis shows at the top of the lowest slices, the frontal
# horns open downwards and the wider parietal end of the head is up. The phantom does the same.
ANTERIOR_UP = False
_MARGIN = 0.015  # border left around the largest head, as a fraction of each frame side


@dataclass(frozen=True)
class PhantomSlices:
    """Paired axial phantom slices; arrays are (n, height, width), posterior at the top."""

    ids: list[str]  # one id per slice, e.g. "phantom_z+012" (axial level in mm, sortable)
    t1: np.ndarray  # uint8, observed T1 (with bias and noise), like a course PNG
    t2: np.ndarray  # uint8, observed T2
    t1_clean: np.ndarray  # float32, same 0..255 scale as t1 but before bias and noise
    t2_clean: np.ndarray  # float32
    head_mask: np.ndarray  # bool, the head (brain + layers)
    brain_mask: np.ndarray  # bool


def tissue_signal(tissue: str, contrast: str) -> float:
    """Spin-echo signal of a pure tissue ("csf", "gm", ...) in contrast "t1" or "t2"."""
    pd, t1, t2 = TISSUES[tissue]
    tr, te = SEQUENCES[contrast]
    return float(pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / t2))


def _convex_fill(mask: np.ndarray) -> np.ndarray:
    """The 2-D mask with its convex hull filled in."""
    points = np.argwhere(mask)
    if len(points) < 3 or np.linalg.matrix_rank(points - points[0]) < 2:
        return mask
    a, b, d = ConvexHull(points).equations.T  # inside: a * row + b * col + d <= 0 for all
    row = np.arange(mask.shape[0])[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = (-d - a * row) / b  # where each hull edge crosses each row
    lo = np.where(b < -1e-9, bound, -np.inf).max(axis=1) - 1e-6
    hi = np.where(b > 1e-9, bound, np.inf).min(axis=1) + 1e-6
    rows_ok = np.where(np.abs(b) <= 1e-9, a * row + d <= 1e-6, True).all(axis=1)
    col = np.arange(mask.shape[1])
    return mask | ((col >= lo[:, None]) & (col <= hi[:, None]) & rows_ok[:, None])


@functools.lru_cache(maxsize=1)
def _template_fractions() -> dict[str, np.ndarray]:
    """Tissue fractions (level, row, col) at 1 mm for LEVELS_MM, plus "brain"."""
    from nilearn import datasets  # lazy: slow to import, and only needed once

    mask_img = datasets.load_mni152_brain_mask(resolution=1)
    k = np.round((np.array(LEVELS_MM) - mask_img.affine[2, 3]) / mask_img.affine[2, 2]).astype(int)
    pad = int(sum(t for _, t in LAYERS_MM)) + 2  # room for the shells
    lo = max(int(k.min()) - pad, 0)
    hi = int(k.max()) + pad + 1
    mask = np.asarray(mask_img.dataobj[:, :, lo:hi]) > 0.5
    inside = mask[:, :, k - lo].astype(np.float32)
    frac = {
        name: np.asarray(load(resolution=1).dataobj[:, :, k], dtype=np.float32) * inside
        for name, load in (
            ("gm", datasets.load_mni152_gm_template),
            ("wm", datasets.load_mni152_wm_template),
        )
    }
    frac["csf"] = np.clip(inside - frac["gm"] - frac["wm"], 0.0, 1.0)
    # The template maps average 152 brains: sharpen them towards one brain's crisper borders.
    power = {n: frac[n] ** _SHARPEN for n in ("gm", "wm", "csf")}
    total = np.maximum(sum(power.values()), 1e-6)
    frac.update({n: p / total * inside for n, p in power.items()})
    # Head shells from 3-D distance maps (mm): thresholding one at r dilates by a ball of radius
    # r, so each shell is one more dilation. 3-D, not per slice, as the scalp has a set thickness
    # normal to the head surface (axial cuts near the top cross it obliquely). The thin CSF rim
    # follows the brain; bone and the shells outside it follow the per-slice convex hull of the
    # brain, since the skull's axial sections are convex above the skull base. Gaps between hull
    # and brain (e.g. between the hemispheres) hold CSF near the brain and bone further out.
    voxel_mm = np.abs(np.diag(mask_img.affine)[:3])
    hull = np.stack([_convex_fill(mask[:, :, z]) for z in range(mask.shape[2])], axis=2)
    d_brain, d_hull = (
        ndimage.distance_transform_edt(~m, sampling=voxel_mm)[:, :, k - lo] for m in (mask, hull)
    )
    gap_csf = np.clip(_GAP_CSF_MM + 0.5 - d_brain, 0.0, 1.0) * hull[:, :, k - lo]
    covered, edge = inside, 0.0
    for i, (name, thickness) in enumerate(LAYERS_MM):  # soft edges: partial volume
        edge += thickness
        cover = np.clip(edge + 0.5 - (d_brain if i == 0 else d_hull), 0.0, 1.0)
        cover = np.maximum(cover, gap_csf if i == 0 else covered).astype(np.float32)
        frac[name] = frac.get(name, 0.0) + np.maximum(cover - covered, 0.0)
        covered = np.maximum(cover, covered)
    frac["brain"] = inside
    # (x, y, level) -> (level, row, col): rows follow y, so the back of the head is at the top.
    step = -1 if ANTERIOR_UP else 1
    return {n: np.ascontiguousarray(f.transpose(2, 1, 0)[:, ::step]) for n, f in frac.items()}


def _tissue_fractions(shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Tissue fractions (level, *shape), the head scaled to fit the frame; plus "brain"."""
    frac = _template_fractions()
    head = sum(frac[name] for name in TISSUES)
    rows, cols = np.nonzero((head > 0.5).any(axis=0))  # the largest head over all levels
    room = [n - 2 * max(1.0, _MARGIN * n) for n in shape]  # at least 1 px free on each side
    scale = min(room[0] / (np.ptp(rows) + 1), room[1] / (np.ptp(cols) + 1))
    centre = np.array([rows.min() + rows.max(), cols.min() + cols.max()]) / 2.0
    offset = centre - (np.array(shape) - 1) / 2.0 / scale
    blur = max(0.0, 0.5 * (1.0 / scale - 1.0))  # anti-aliasing when shrinking
    out = {}
    for name, vol in frac.items():
        planes = [
            ndimage.affine_transform(
                ndimage.gaussian_filter(plane, blur) if blur > 0 else plane,
                [1.0 / scale, 1.0 / scale],
                offset,
                output_shape=shape,
                order=1,
            )
            for plane in vol
        ]
        out[name] = np.clip(np.stack(planes), 0.0, 1.0).astype(np.float32)
    return out


@functools.lru_cache(maxsize=2)
def _clean_images(shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Clean T1 and T2 (level, *shape) on the 0..255 scale, plus the head and brain masks."""
    frac = _tissue_fractions(shape)
    out = {}
    for contrast in SEQUENCES:
        signal = {name: tissue_signal(name, contrast) for name in TISSUES}
        gain = INTENSITY_MAX / max(signal.values())  # one scale per contrast, for all slices
        out[contrast] = sum(frac[n] * (gain * s) for n, s in signal.items()).astype(np.float32)
    out["head"] = sum(frac[name] for name in TISSUES) > 0.5
    out["brain"] = frac["brain"] > 0.5
    for array in out.values():
        array.flags.writeable = False
    return out


def _bias_field(rng: np.random.Generator, head: np.ndarray, bias: float) -> np.ndarray:
    """A random quadratic field that spans exactly [1 - bias, 1 + bias] over the head."""
    y, x = np.meshgrid(*(np.linspace(-1.0, 1.0, n) for n in head.shape), indexing="ij")
    poly = sum(c * t for c, t in zip(rng.normal(size=5), (x, y, x * x, x * y, y * y), strict=True))
    lo, hi = poly[head].min(), poly[head].max()
    if bias == 0 or hi <= lo:
        return np.ones(head.shape)
    return np.clip(1.0 + bias * (2.0 * (poly - lo) / (hi - lo) - 1.0), 1.0 - bias, 1.0 + bias)


def make_phantom(
    num_slices: int = 48,
    *,
    noise: float = 0.02,
    bias: float = 0.15,
    seed: int = 0,
    shape: tuple[int, int] = PHANTOM_SHAPE,
) -> PhantomSlices:
    """Render `num_slices` paired T1/T2 axial slices, evenly spread over LEVELS_MM (low first).

    `noise` is the Rician sigma as a fraction of the brightest tissue (0 disables it), `bias`
    the half-range of the multiplicative bias field over the head (0 disables it); each slice
    and contrast gets its own field. `seed` makes bias and noise reproducible.
    """
    if isinstance(num_slices, bool) or not isinstance(num_slices, (int, np.integer)):
        raise ValueError(f"num_slices must be an int in [1, {len(LEVELS_MM)}], got {num_slices!r}")
    if not 1 <= num_slices <= len(LEVELS_MM):
        raise ValueError(f"num_slices must be in [1, {len(LEVELS_MM)}], got {num_slices}")
    for name, value in (("noise", noise), ("bias", bias)):
        if not isinstance(value, (int, float, np.number)) or not 0.0 <= value <= 0.5:
            raise ValueError(f"{name} must be a number in [0, 0.5], got {value!r}")
    dims = tuple(shape) if isinstance(shape, (tuple, list)) else ()
    valid = [isinstance(d, (int, np.integer)) and 32 <= d <= 1024 for d in dims]
    if len(dims) != 2 or not all(valid):
        raise ValueError(f"shape must be (height, width), each in [32, 1024], got {shape!r}")
    shape = (int(dims[0]), int(dims[1]))

    n_levels = len(LEVELS_MM)
    idx = ((np.arange(num_slices) + 0.5) * n_levels / num_slices).astype(int)
    clean = _clean_images(shape)
    head, rng = clean["head"][idx], np.random.default_rng(seed)
    sigma = noise * INTENSITY_MAX
    observed = {}
    for contrast in SEQUENCES:
        field = np.stack([_bias_field(rng, h, bias) for h in head])
        signal = clean[contrast][idx] * field
        if sigma > 0:
            n1, n2 = rng.normal(0.0, sigma, size=(2, *signal.shape))
            signal = np.sqrt((signal + n1) ** 2 + n2**2)
        observed[contrast] = np.clip(np.rint(signal), 0, 255).astype(np.uint8)
    return PhantomSlices(
        ids=[f"phantom_z{LEVELS_MM[i]:+04d}" for i in idx],
        t1=observed["t1"],
        t2=observed["t2"],
        t1_clean=clean["t1"][idx],
        t2_clean=clean["t2"][idx],
        head_mask=head,
        brain_mask=clean["brain"][idx],
    )
