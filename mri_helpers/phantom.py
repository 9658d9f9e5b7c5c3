"""A paired T1/T2 brain phantom, for when the course data set is not at hand.

Anatomy: the MNI152 2009 template that ships inside nilearn (no download) gives grey-matter
(GM) and white-matter (WM) fraction maps on a 1 mm grid (197 x 233 x 189 voxels) and a brain
mask; whatever of the mask is neither GM nor WM is taken as cerebrospinal fluid (CSF). The
template is skull-stripped, so a head is grown around it at every level: shells at increasing
distance from the brain hold a thin CSF/meninges layer, the skull, subcutaneous fat, muscle and
skin. Below the foramen magnum the skull gives way to neck muscle; the skull base and the
cerebellum are approximate, the levels the slices cover (LEVELS_MM) the most faithful.

Contrast: each tissue gets the spin-echo signal

    S = PD * (1 - exp(-TR / T1)) * exp(-TE / T2)

PD is the proton density (how much water there is to see), T1 how fast the magnetisation
regrows between excitations (every TR), T2 how fast the echo fades before it is read (at TE).
A short TR and short TE (T1-weighted) favour tissues that regrow fast (fat, WM) and leave CSF
dark; a long TR and long TE (T2-weighted) favour the slowly fading CSF. A pixel holding several
tissues shows the sum of fraction x tissue signal (partial volume). Fat is above CSF in T1 and
below it in T2, while it stays above WM in both: no monotone grey-level mapping turns one
contrast into the other, which is why the translation has to be learned.

Scanner: one smooth multiplicative bias field per volume and contrast (the receive coil's
sensitivity, a random quadratic in x, y and z over the whole head, so neighbouring slices share
it), then Rician noise in every voxel, the magnitude of a complex signal whose real and
imaginary parts carry Gaussian noise: observed = sqrt((S + n1)**2 + n2**2), n1, n2 ~ N(0,
sigma). Magnitude images are never negative, so the air around the head is not 0 but Rayleigh
noise (mean 1.25 sigma).

Pathology: `lesions=(3, 5, 7, 10)` puts spheres of those diameters (mm) into deep white matter,
deterministically from the seed, at the levels the slices cover: T1-dark and T2-bright, like
oedema or multiple-sclerosis plaques (LESION_TISSUE), with partial volume at the edge.

Images: `make_phantom_volumes` gives the whole head as NIfTI images with the template's affine
(observed, clean, masks; float32 on the 0..255 scale) and the true tissue labels (LABELS).
`make_phantom` cuts 8-bit axial slices from those volumes in the course geometry (181 wide x 217
high, back of the head at the top, like the course PNGs): in that frame an exact crop at 1 mm
per pixel, the volume's own voxels.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import nibabel as nib
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
# A lesion's (relative PD, T1 ms, T2 ms): our choice, in the range of oedema and MS plaques at
# 1.5 T (more water than WM, long T1 and T2), so that with SEQUENCES its T1w signal lies
# between GM and CSF and its T2w signal near CSF's. Not a BrainWeb class.
LESION_TISSUE = (0.95, 1400.0, 200.0)
# Values of the label volume: the largest of the CSF/GM/WM fractions inside the brain mask,
# lesions (lesion fraction >= 0.5) over them, 0 outside the brain.
LABELS = {"background": 0, "csf": 1, "gm": 2, "wm": 3, "lesion": 4}
MAX_LESIONS, LESION_DIAMETERS_MM = 12, (1.0, 20.0)
_LESION_GAP_MM = 8.0  # between two lesions' edges: each keeps a 4 mm shell of its own
# (TR, TE) in ms: our choice of typical clinical 1.5 T spin-echo settings (short/short for
# T1w, long/long for T2w), not taken from a paper. The course images come from BrainWeb's
# simulator with its own sequences, so the contrasts match them only roughly.
SEQUENCES: dict[str, tuple[float, float]] = {"t1": (500.0, 15.0), "t2": (3300.0, 120.0)}
# Head layers outside the brain mask, inside out, with their thickness in mm.
LAYERS_MM = (("csf", 1.5), ("bone", 4.0), ("fat", 4.0), ("muscle", 3.0), ("skin", 1.5))
_GAP_CSF_MM = 4.0  # CSF fills hull-brain gaps up to this distance from the brain, then bone
_NECK_MM = -60.0  # MNI z (mm) of the foramen magnum: the skull is closed above, open below
_SHARPEN = 2.0  # power applied to the blurry population-average GM/WM/CSF fractions
LEVELS_MM = tuple(range(0, 51))  # MNI z (mm): basal ganglia / 3rd ventricle up to high convexity
INTENSITY_MAX = 220.0  # clean value of the brightest pure tissue; 220 * 1.15 stays below 255
# The course PNGs have the BACK of the head at the top (rows run posterior -> anterior, like
# BrainWeb's y axis): the cerebellar vermis shows at the top of the lowest slices, the frontal
# horns open downwards and the wider parietal end of the head is up. The phantom does the same.
ANTERIOR_UP = False
_MARGIN = 0.015  # border left around the largest head, as a fraction of each frame side


@dataclass(frozen=True)
class Acquisition:
    """How one phantom scan is made: each sequence's timing, each tissue's values, the head's
    layers and the scanner's bias and noise. The defaults are the phantom's own 1.5 T scan;
    `draw_acquisition` draws others from ranges."""

    sequences: tuple[tuple[str, float, float], ...] = tuple(
        (name, tr, te) for name, (tr, te) in SEQUENCES.items()
    )  # (contrast, TR ms, TE ms)
    tissues: tuple[tuple[str, float, float, float], ...] = tuple(
        (name, *values) for name, values in TISSUES.items()
    )  # (tissue, relative PD, T1 ms, T2 ms)
    lesion: tuple[float, float, float] = LESION_TISSUE
    layers_mm: tuple[tuple[str, float], ...] = LAYERS_MM
    noise: float = 0.02  # Rician sigma, a fraction of the brightest tissue
    bias: float = 0.15  # half-range of the multiplicative bias field over the head

    def __post_init__(self) -> None:
        _check_options(self.noise, self.bias, 0)
        if [name for name, *_ in self.sequences] != list(SEQUENCES):
            raise ValueError(f"sequences must time {list(SEQUENCES)}, got {self.sequences!r}")
        if [name for name, *_ in self.tissues] != list(TISSUES):
            raise ValueError(f"tissues must give {list(TISSUES)}, got {self.tissues!r}")
        if [name for name, _ in self.layers_mm] != [name for name, _ in LAYERS_MM]:
            raise ValueError(f"layers_mm must be {[n for n, _ in LAYERS_MM]}, with thicknesses")
        times = [t for _, *values in (*self.sequences, *self.tissues) for t in values[-2:]]
        if min(times) <= 0 or min(t for _, t in self.layers_mm) <= 0:
            raise ValueError("TR, TE, T1, T2 and layer thicknesses must be positive")

    def timing(self, contrast: str) -> tuple[float, float]:
        """(TR, TE) in ms of contrast "t1" or "t2"."""
        return next((tr, te) for name, tr, te in self.sequences if name == contrast)

    def tissue(self, name: str) -> tuple[float, float, float]:
        """(relative PD, T1 ms, T2 ms) of a tissue ("lesion" included)."""
        if name == "lesion":
            return self.lesion
        return next(tuple(values) for tissue, *values in self.tissues if tissue == name)

    def contrast_only(self) -> Acquisition:
        """The same acquisition without bias and noise: what the clean volumes depend on."""
        return replace(self, noise=0.0, bias=0.0)

    def to_json(self) -> dict:
        """A JSON-able record of every setting."""
        return {
            "sequences_tr_te_ms": {name: [tr, te] for name, tr, te in self.sequences},
            "tissues_pd_t1_t2": {name: list(values) for name, *values in self.tissues},
            "lesion_pd_t1_t2": list(self.lesion),
            "layers_mm": dict(self.layers_mm),
            "noise": self.noise,
            "bias": self.bias,
        }


@dataclass(frozen=True)
class AcquisitionRanges:
    """Intervals `draw_acquisition` draws from, uniformly, each value on its own."""

    t1w_tr: tuple[float, float]
    t1w_te: tuple[float, float]
    t2w_tr: tuple[float, float]
    t2w_te: tuple[float, float]
    relaxation_t1: tuple[float, float]  # factor on each tissue's T1 (field strength: 3 T > 1.5 T)
    relaxation_t2: tuple[float, float]  # factor on each tissue's T2
    proton_density: tuple[float, float]  # factor on each tissue's PD
    layers: tuple[float, float]  # factor on each head layer's thickness
    noise: tuple[float, float]
    bias: tuple[float, float]


# "training": around the phantom's own 1.5 T scan, for training on varied acquisitions.
# "unseen": outside those intervals on every axis, towards a 3 T scanner (longer T1, shorter
# T2: Stanisz et al., MRM 54:507, 2005, measured about +20-35 % and -5-15 % from 1.5 to 3 T),
# shorter TEs, longer TRs, thicker or thinner head layers, more noise and bias: scans no
# phantom-trained model has met. Our choice of intervals; every draw keeps the tissue order
# of each contrast (WM > GM > CSF in T1w, the reverse in T2w), as real scans do.
ACQUISITION_RANGES: dict[str, AcquisitionRanges] = {
    "training": AcquisitionRanges(
        t1w_tr=(450.0, 600.0), t1w_te=(12.0, 20.0), t2w_tr=(2800.0, 3800.0),
        t2w_te=(100.0, 130.0), relaxation_t1=(0.92, 1.08), relaxation_t2=(0.95, 1.05),
        proton_density=(0.97, 1.03), layers=(0.85, 1.15), noise=(0.01, 0.03),
        bias=(0.05, 0.2),
    ),
    "unseen": AcquisitionRanges(
        t1w_tr=(650.0, 850.0), t1w_te=(6.0, 10.0), t2w_tr=(4000.0, 6000.0),
        t2w_te=(80.0, 95.0), relaxation_t1=(1.2, 1.35), relaxation_t2=(0.85, 0.93),
        proton_density=(0.93, 0.96), layers=(1.2, 1.5), noise=(0.035, 0.05),
        bias=(0.22, 0.3),
    ),
}  # fmt: skip


def draw_acquisition(seed: int, ranges: str | AcquisitionRanges = "training") -> Acquisition:
    """An acquisition drawn from `ranges` (a name of ACQUISITION_RANGES, or your own) by
    `seed`: each TR, TE, noise and bias, and each tissue's PD, T1 and T2 factor on its own."""
    if isinstance(ranges, str):
        if ranges not in ACQUISITION_RANGES:
            raise ValueError(f"ranges must be one of {list(ACQUISITION_RANGES)}, got {ranges!r}")
        ranges = ACQUISITION_RANGES[ranges]
    rng = np.random.default_rng([seed, 7])

    def draw(interval: tuple[float, float]) -> float:
        return round(float(rng.uniform(*interval)), 4)

    def tissue(values: tuple[float, float, float]) -> tuple[float, float, float]:
        pd, t1, t2 = values
        factors = (
            draw(ranges.proton_density),
            draw(ranges.relaxation_t1),
            draw(ranges.relaxation_t2),
        )
        return tuple(round(v * f, 4) for v, f in zip((pd, t1, t2), factors, strict=True))

    timing = {"t1": (draw(ranges.t1w_tr), draw(ranges.t1w_te))}
    timing["t2"] = (draw(ranges.t2w_tr), draw(ranges.t2w_te))
    return Acquisition(
        sequences=tuple((name, *timing[name]) for name in SEQUENCES),
        tissues=tuple((name, *tissue(values)) for name, values in TISSUES.items()),
        lesion=tissue(LESION_TISSUE),
        layers_mm=tuple((name, round(mm * draw(ranges.layers), 2)) for name, mm in LAYERS_MM),
        noise=draw(ranges.noise),
        bias=draw(ranges.bias),
    )


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


def tissue_signal(tissue: str, contrast: str, acquisition: Acquisition | None = None) -> float:
    """Spin-echo signal of a pure tissue ("csf", "gm", ..., "lesion") in contrast "t1" or
    "t2", S = PD * (1 - exp(-TR / T1)) * exp(-TE / T2), in `acquisition` (default: the
    phantom's own)."""
    acquisition = acquisition or Acquisition()
    pd, t1, t2 = acquisition.tissue(tissue)
    tr, te = acquisition.timing(contrast)
    return float(pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / t2))


def _gain(contrast: str, acquisition: Acquisition) -> float:
    """The one scale of a contrast: its brightest pure tissue at INTENSITY_MAX."""
    return INTENSITY_MAX / max(tissue_signal(name, contrast, acquisition) for name in TISSUES)


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
def _template() -> tuple[np.ndarray, tuple[int, int, int]]:
    """The MNI152 2009 1 mm grid: its affine and shape (nilearn's brain mask)."""
    from nilearn import datasets  # lazy: slow to import, and only needed once

    mask_img = datasets.load_mni152_brain_mask(resolution=1)
    return np.array(mask_img.affine, dtype=np.float64), tuple(int(n) for n in mask_img.shape)


@functools.lru_cache(maxsize=2)  # ~6 s each: tests and runs ask for the same few heads
def _template_fractions(layers_mm: tuple[tuple[str, float], ...]) -> dict[str, np.ndarray]:
    """Tissue fractions (x, y, z) on the whole MNI152 1 mm grid, plus "brain" (float32), with
    head layers of these thicknesses (read-only: they are cached)."""
    from nilearn import datasets

    mask_img = datasets.load_mni152_brain_mask(resolution=1)
    mask = np.asarray(mask_img.dataobj) > 0.5
    inside = mask.astype(np.float32)
    frac = {
        name: np.asarray(load(resolution=1).dataobj, dtype=np.float32) * inside
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
    del power, total
    # Head shells from 3-D distance maps (mm): thresholding one at r dilates by a ball of radius
    # r, so each shell is one more dilation. 3-D, not per slice, as the scalp has a set thickness
    # normal to the head surface (axial cuts near the top cross it obliquely). The thin CSF rim
    # follows the brain; bone and the shells outside it follow the per-slice convex hull of the
    # brain, since the skull's axial sections are convex above the skull base. Gaps between hull
    # and brain (between the hemispheres; lower down between temporal lobes, cerebellum and
    # brainstem, where a real skull base lies) hold CSF near the brain and bone further out.
    # The brain reaches the lowest plane of the grid, so the head is cut there, like a scan's
    # field of view cuts the neck.
    voxel_mm = np.abs(np.diag(mask_img.affine)[:3])
    hull = np.stack([_convex_fill(mask[:, :, z]) for z in range(mask.shape[2])], axis=2)
    d_brain, d_hull = (
        ndimage.distance_transform_edt(~m, sampling=voxel_mm).astype(np.float32)
        for m in (mask, hull)
    )
    gap_csf = np.clip(_GAP_CSF_MM + 0.5 - d_brain, 0.0, 1.0) * hull
    del hull
    covered, edge = inside, 0.0
    for i, (name, thickness) in enumerate(layers_mm):  # soft edges: partial volume
        edge += thickness
        cover = np.clip(edge + 0.5 - (d_brain if i == 0 else d_hull), 0.0, 1.0)
        cover = np.maximum(cover, gap_csf if i == 0 else covered).astype(np.float32)
        frac[name] = frac.get(name, 0.0) + np.maximum(cover - covered, 0.0)
        covered = np.maximum(cover, covered)
    # Below the foramen magnum the brainstem runs down the neck: no skull around it, muscle.
    neck = (np.arange(mask.shape[2]) * mask_img.affine[2, 2] + mask_img.affine[2, 3]) < _NECK_MM
    frac["muscle"][:, :, neck] += frac["bone"][:, :, neck]
    frac["bone"][:, :, neck] = 0.0
    frac["brain"] = inside
    for array in frac.values():
        array.flags.writeable = False
    return frac


@functools.lru_cache(maxsize=4)
def _clean_volumes(acquisition: Acquisition) -> dict[str, np.ndarray]:
    """Clean T1 and T2 (x, y, z) on the 0..255 scale, the head and brain masks and the
    tissue labels (LABELS: the largest of the CSF/GM/WM fractions inside the brain), for an
    acquisition without bias and noise."""
    frac = _template_fractions(acquisition.layers_mm)
    out = {}
    for contrast in SEQUENCES:
        gain = _gain(contrast, acquisition)  # one scale per contrast, for all voxels
        total = np.zeros(frac["brain"].shape, np.float32)
        for name in TISSUES:
            total += frac[name] * np.float32(gain * tissue_signal(name, contrast, acquisition))
        out[contrast] = total
    out["head"] = sum(frac[name] for name in TISSUES) > 0.5
    out["brain"] = frac["brain"] > 0.5
    largest = np.argmax(np.stack([frac["csf"], frac["gm"], frac["wm"]]), axis=0)
    out["labels"] = np.where(out["brain"], largest + 1, 0).astype(np.uint8)  # 1, 2, 3 as LABELS
    for array in out.values():
        array.flags.writeable = False
    return out


def _check_lesions(lesions: Sequence[float]) -> tuple[float, ...]:
    """Raise ValueError for bad lesion diameters; the diameters (mm) as a tuple of floats."""
    low, high = LESION_DIAMETERS_MM
    values = tuple(lesions) if isinstance(lesions, (tuple, list)) else None
    if (
        values is None
        or len(values) > MAX_LESIONS
        or not all(
            isinstance(d, (int, float, np.number)) and not isinstance(d, bool) and low <= d <= high
            for d in values
        )
    ):
        raise ValueError(
            f"lesions must be a list of at most {MAX_LESIONS} diameters in mm, each in "
            f"[{low:g}, {high:g}], got {lesions!r}"
        )
    return tuple(float(d) for d in values)


@functools.lru_cache(maxsize=2)
def _lesioned_volumes(
    diameters: tuple[float, ...], seed: int, acquisition: Acquisition
) -> dict[str, np.ndarray]:
    """`_clean_volumes` with lesions of these diameters (mm) in deep white matter: each voxel
    holds its lesion fraction of LESION_TISSUE's signal (partial volume at the edge), and the
    labels say 4 where that fraction is at least one half."""
    clean = _clean_volumes(acquisition.contrast_only())
    if not diameters:
        return clean
    fraction = _lesion_fraction(clean["labels"], diameters, seed)
    out = dict(clean)
    for contrast in SEQUENCES:
        gain = _gain(contrast, acquisition)
        lesion = np.float32(gain * tissue_signal("lesion", contrast, acquisition))
        out[contrast] = (clean[contrast] * (1.0 - fraction) + fraction * lesion).astype(np.float32)
    out["labels"] = np.where(fraction >= 0.5, LABELS["lesion"], clean["labels"]).astype(np.uint8)
    for name in (*SEQUENCES, "labels"):
        out[name].flags.writeable = False
    return out


def _lesion_fraction(labels: np.ndarray, diameters: tuple[float, ...], seed: int) -> np.ndarray:
    """Each lesion's volume fraction (x, y, z, float32; 1 mm voxels): spheres placed at random
    (from `seed`, largest first) where the whole sphere and 2 mm more lie in white matter,
    within the levels the slices cover, each at least _LESION_GAP_MM from the others' edges."""
    rng = np.random.default_rng([seed, 4])  # its own stream: noise and bias stay as they were
    z_range = _level_indices(_template()[0], (LEVELS_MM[0], LEVELS_MM[-1]))
    depth = ndimage.distance_transform_edt(labels == LABELS["wm"]).astype(np.float32)
    grid = np.indices(labels.shape, dtype=np.float32)  # (3, x, y, z) voxel coordinates
    fraction = np.zeros(labels.shape, np.float32)
    placed: list[tuple[np.ndarray, float]] = []
    for diameter in sorted(diameters, reverse=True):
        radius = diameter / 2.0
        room = depth >= radius + 2.0  # the 2 mm around it white matter too
        low, high = z_range[0] + int(np.ceil(radius)), z_range[1] - int(np.ceil(radius))
        room[:, :, :low] = False  # the whole sphere at the levels the slices cover
        room[:, :, high + 1 :] = False
        for centre, other in placed:  # away from the lesions already placed
            reach = radius + other + _LESION_GAP_MM
            room &= ((grid - centre[:, None, None, None]) ** 2).sum(axis=0) >= reach**2
        candidates = np.argwhere(room)
        if not len(candidates):
            raise ValueError(
                f"no room left in deep white matter for a {diameter:g} mm lesion next to the "
                f"others ({', '.join(f'{d:g}' for d in diameters)} mm); ask for fewer or "
                "smaller lesions."
            )
        centre = candidates[rng.integers(len(candidates))].astype(np.float32)
        distance = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(axis=0))
        np.maximum(fraction, np.clip(radius + 0.5 - distance, 0.0, 1.0), out=fraction)
        placed.append((centre, radius))
    return fraction


def _bias_field(rng: np.random.Generator, head: np.ndarray, bias: float) -> np.ndarray:
    """A random quadratic field in x, y, z (float32) spanning exactly [1 - bias, 1 + bias]
    over the head; coordinates run from -1 to 1 across the head's bounding box."""
    coefficients = rng.normal(size=9)
    axes = []
    for axis in range(3):
        present = np.flatnonzero(head.any(axis=tuple(a for a in range(3) if a != axis)))
        centre, half = (present[0] + present[-1]) / 2.0, max((present[-1] - present[0]) / 2, 1)
        shape = [1, 1, 1]
        shape[axis] = head.shape[axis]
        axes.append(((np.arange(head.shape[axis]) - centre) / half).reshape(shape))
    x, y, z = (a.astype(np.float32) for a in axes)
    terms = (x, y, z, x * x, y * y, z * z, x * y, x * z, y * z)
    poly = np.zeros(head.shape, np.float32)
    for c, t in zip(coefficients, terms, strict=True):
        poly += np.float32(c) * t
    lo, hi = float(poly[head].min()), float(poly[head].max())
    if bias == 0 or hi <= lo:
        return np.ones(head.shape, np.float32)
    field = 1.0 + bias * (2.0 * (poly - lo) / (hi - lo) - 1.0)
    return np.clip(field, 1.0 - bias, 1.0 + bias).astype(np.float32)


def _check_options(noise: float, bias: float, seed: int | None) -> int:
    """Raise ValueError for a bad noise, bias or seed; the seed to use (None: a random one)."""
    for name, value in (("noise", noise), ("bias", bias)):
        if not isinstance(value, (int, float, np.number)) or not 0.0 <= value <= 0.5:
            raise ValueError(f"{name} must be a number in [0, 0.5], got {value!r}")
    if seed is None:
        return int(np.random.default_rng().integers(2**32))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int in [0, inf) or None, got {seed!r}")
    return int(seed)


@functools.lru_cache(maxsize=2)
def _observed_volumes(
    acquisition: Acquisition, seed: int, lesions: tuple[float, ...] = ()
) -> dict[str, np.ndarray]:
    """Observed T1 and T2 (x, y, z, float32): one bias field per contrast, then Rician noise."""
    clean = _lesioned_volumes(lesions, seed, acquisition.contrast_only())
    rng = np.random.default_rng(seed)
    sigma = np.float32(acquisition.noise * INTENSITY_MAX)
    out = {}
    for contrast in SEQUENCES:
        signal = clean[contrast] * _bias_field(rng, clean["head"], acquisition.bias)
        if sigma > 0:
            real = rng.standard_normal(signal.shape, dtype=np.float32)
            real *= sigma
            real += signal
            imaginary = rng.standard_normal(signal.shape, dtype=np.float32)
            imaginary *= sigma
            signal = np.hypot(real, imaginary)
            del real, imaginary
        signal.flags.writeable = False
        out[contrast] = signal
    return out


def _scan(
    acquisition: Acquisition | None, noise: float | None, bias: float | None, seed: int | None
) -> tuple[Acquisition, int]:
    """The acquisition to render (`noise` and `bias` replace its own when given) and the seed;
    ValueError for a bad one."""
    if acquisition is not None and not isinstance(acquisition, Acquisition):
        raise ValueError(f"acquisition must be an Acquisition or None, got {acquisition!r}")
    acquisition = acquisition or Acquisition()
    noise = acquisition.noise if noise is None else noise
    bias = acquisition.bias if bias is None else bias
    seed = _check_options(noise, bias, seed)
    return replace(acquisition, noise=float(noise), bias=float(bias)), seed


def _nifti(data: np.ndarray, affine: np.ndarray, what: str) -> nib.Nifti1Image:
    """A NIfTI image of `data` in MNI space (qform and sform code 4), in mm."""
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=4)
    image.set_sform(affine, code=4)
    image.header["descrip"] = f"mri_helpers phantom: {what}"[:79].encode()
    return image


ACQUISITION_FILE = "phantom_acquisition.json"  # the settings a written phantom was made with
VOLUME_FILES = {
    "t1": "phantom_t1w.nii.gz",
    "t2": "phantom_t2w.nii.gz",
    "t1_clean": "phantom_t1w_clean.nii.gz",
    "t2_clean": "phantom_t2w_clean.nii.gz",
    "head_mask": "phantom_head_mask.nii.gz",
    "brain_mask": "phantom_brain_mask.nii.gz",
    "labels": "phantom_labels.nii.gz",
}


@dataclass(frozen=True)
class PhantomVolumes:
    """The whole phantom head on the MNI152 1 mm grid (197 x 233 x 189, its affine)."""

    t1: nib.Nifti1Image  # float32, observed T1 (bias and noise), the slices' 0..255 scale
    t2: nib.Nifti1Image  # float32, observed T2
    t1_clean: nib.Nifti1Image  # float32, T1 before bias and noise
    t2_clean: nib.Nifti1Image  # float32
    head_mask: nib.Nifti1Image  # uint8, 1 in the head (brain + layers)
    brain_mask: nib.Nifti1Image  # uint8
    labels: nib.Nifti1Image  # uint8, LABELS: 0 outside the brain, 1 CSF, 2 GM, 3 WM, 4 lesion
    acquisition: Acquisition = field(default_factory=Acquisition)  # how it was made

    def level_indices(self) -> np.ndarray:
        """The z indices of LEVELS_MM (the levels the course slices cover) in these volumes."""
        return _level_indices(self.t1.affine, LEVELS_MM)

    def write(self, folder: str | os.PathLike) -> dict[str, Path]:
        """Write the seven volumes as .nii.gz into `folder` (made if missing), and the
        acquisition's settings as ACQUISITION_FILE; the volumes' paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for field_name, file_name in VOLUME_FILES.items():
            paths[field_name] = folder / file_name
            nib.save(getattr(self, field_name), paths[field_name])
        text = json.dumps(self.acquisition.to_json(), indent=1)
        (folder / ACQUISITION_FILE).write_text(text + "\n", encoding="utf-8")
        return paths


def _level_indices(affine: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """z indices of axial levels (MNI z in mm) on a grid with axes aligned to RAS."""
    return np.round((np.asarray(levels) - affine[2, 3]) / affine[2, 2]).astype(int)


def make_phantom_volumes(
    *,
    noise: float | None = None,
    bias: float | None = None,
    seed: int | None = 0,
    lesions: Sequence[float] = (),
    acquisition: Acquisition | None = None,
) -> PhantomVolumes:
    """The whole phantom head as NIfTI images with the MNI152 affine: observed T1 and T2 (one
    smooth 3-D bias field per contrast, then Rician noise), their clean truths, the masks and
    the tissue labels (LABELS).

    `noise`, `bias`, `seed`, `lesions` (diameters in mm of T1-dark, T2-bright spheres in
    white matter, placed from `seed`) and `acquisition` as in `make_phantom`, whose slices are
    cut from these volumes. The first call renders the head (several seconds); later ones with
    the same acquisition's contrast reuse it.
    """
    acquisition, seed = _scan(acquisition, noise, bias, seed)
    lesions = _check_lesions(lesions)
    affine = _template()[0]
    clean = _lesioned_volumes(lesions, seed, acquisition.contrast_only())
    observed = _observed_volumes(acquisition, seed, lesions)
    images = {
        "t1": (observed["t1"], "observed T1w"),
        "t2": (observed["t2"], "observed T2w"),
        "t1_clean": (clean["t1"], "clean T1w"),
        "t2_clean": (clean["t2"], "clean T2w"),
        "head_mask": (clean["head"].astype(np.uint8), "head mask"),
        "brain_mask": (clean["brain"].astype(np.uint8), "brain mask"),
        "labels": (clean["labels"], "labels 0 bg 1 CSF 2 GM 3 WM 4 lesion"),
    }
    return PhantomVolumes(
        **{name: _nifti(np.array(data), affine, what) for name, (data, what) in images.items()},
        acquisition=acquisition,
    )


def _axial_planes(volume: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Axial planes `indices` of an (x, y, z) volume as (level, row, col): rows follow y
    (posterior at the top unless ANTERIOR_UP), columns follow x (the patient's left first)."""
    planes = np.asarray(volume)[:, :, indices].transpose(2, 1, 0)
    return planes[:, ::-1] if ANTERIOR_UP else planes


@functools.lru_cache(maxsize=8)
def _frame(shape: tuple[int, int]) -> tuple[float, tuple[float, float]]:
    """How the grid's axial planes map onto a frame of `shape`: (scale, (row, col) offset).

    Scale 1 and an integer offset (an exact crop at 1 mm) when the largest head over
    LEVELS_MM fits with the margin and the frame lies inside the grid; else scaled to fit.
    """
    levels = _level_indices(_template()[0], LEVELS_MM)  # the default head, whatever the layers
    head = _axial_planes(_clean_volumes(Acquisition().contrast_only())["head"], levels).any(axis=0)
    rows, cols = np.nonzero(head)
    extent = np.array([np.ptp(rows) + 1, np.ptp(cols) + 1], dtype=float)
    centre = np.array([rows.min() + rows.max(), cols.min() + cols.max()]) / 2.0
    room = np.array([n - 2 * max(1.0, _MARGIN * n) for n in shape])  # at least 1 px free
    scale = float(min(room / extent))
    if scale >= 1.0 and all(n <= m for n, m in zip(shape, head.shape, strict=True)):
        offset = np.round(centre - (np.array(shape) - 1) / 2.0)
        offset = np.clip(offset, 0, np.array(head.shape) - shape)
        return 1.0, (float(offset[0]), float(offset[1]))
    offset = centre - (np.array(shape) - 1) / 2.0 / scale
    return scale, (float(offset[0]), float(offset[1]))


def _to_frame(volume: np.ndarray, indices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Axial planes `indices` of an (x, y, z) grid volume in a frame of `shape` (float32);
    0 where a scaled frame reaches beyond the grid."""
    planes = _axial_planes(volume, indices).astype(np.float32)
    scale, (row, col) = _frame(shape)
    if scale == 1.0:
        r, c = int(row), int(col)
        return np.ascontiguousarray(planes[:, r : r + shape[0], c : c + shape[1]])
    blur = max(0.0, 0.5 * (1.0 / scale - 1.0))  # anti-aliasing when shrinking
    return np.stack(
        [
            ndimage.affine_transform(
                ndimage.gaussian_filter(plane, blur) if blur > 0 else plane,
                [1.0 / scale, 1.0 / scale],
                (row, col),
                output_shape=shape,
                order=1,
            )
            for plane in planes
        ]
    ).astype(np.float32)


def make_phantom(
    num_slices: int = 48,
    *,
    noise: float | None = None,
    bias: float | None = None,
    seed: int | None = 0,
    shape: tuple[int, int] = PHANTOM_SHAPE,
    lesions: Sequence[float] = (),
    acquisition: Acquisition | None = None,
) -> PhantomSlices:
    """Cut `num_slices` paired T1/T2 axial slices from the phantom volumes, evenly spread over
    LEVELS_MM (low first).

    `acquisition` sets the sequences, tissue values, head layers, noise and bias (default: the
    phantom's own 1.5 T scan; `draw_acquisition` gives others). `noise` (the Rician sigma as a
    fraction of the brightest tissue, 0 disables it) and `bias` (the half-range of the
    multiplicative bias field over the head, 0 disables it) replace the acquisition's; each
    contrast gets one smooth 3-D field for the whole head. `seed` makes bias and noise
    reproducible. In the default `shape` the slices are exact 1 mm crops of the volumes'
    axial planes; other shapes scale the head to fit. `lesions`: diameters (mm) of T1-dark,
    T2-bright spheres in white matter (placed from `seed`, as in `make_phantom_volumes`).
    """
    if isinstance(num_slices, bool) or not isinstance(num_slices, (int, np.integer)):
        raise ValueError(f"num_slices must be an int in [1, {len(LEVELS_MM)}], got {num_slices!r}")
    if not 1 <= num_slices <= len(LEVELS_MM):
        raise ValueError(f"num_slices must be in [1, {len(LEVELS_MM)}], got {num_slices}")
    acquisition, seed = _scan(acquisition, noise, bias, seed)
    lesions = _check_lesions(lesions)
    dims = tuple(shape) if isinstance(shape, (tuple, list)) else ()
    valid = [isinstance(d, (int, np.integer)) and 32 <= d <= 1024 for d in dims]
    if len(dims) != 2 or not all(valid):
        raise ValueError(f"shape must be (height, width), each in [32, 1024], got {shape!r}")
    shape = (int(dims[0]), int(dims[1]))

    n_levels = len(LEVELS_MM)
    chosen = ((np.arange(num_slices) + 0.5) * n_levels / num_slices).astype(int)
    indices = _level_indices(_template()[0], [LEVELS_MM[i] for i in chosen])
    clean = _lesioned_volumes(lesions, seed, acquisition.contrast_only())
    observed = _observed_volumes(acquisition, seed, lesions)
    images = {
        name: np.clip(np.rint(_to_frame(observed[name], indices, shape)), 0, 255).astype(np.uint8)
        for name in SEQUENCES
    }
    return PhantomSlices(
        ids=[f"phantom_z{LEVELS_MM[i]:+04d}" for i in chosen],
        t1=images["t1"],
        t2=images["t2"],
        t1_clean=_to_frame(clean["t1"], indices, shape),
        t2_clean=_to_frame(clean["t2"], indices, shape),
        head_mask=_to_frame(clean["head"], indices, shape) > 0.5,
        brain_mask=_to_frame(clean["brain"], indices, shape) > 0.5,
    )
