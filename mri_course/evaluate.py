"""`mri-course evaluate`: a run's exported generators scored on held-out slices, or on a
whole scan against its truth (the lessons' measures, from `mri_helpers.evaluation`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mri_helpers import test_time
from mri_helpers.baselines import inversion_baseline, quantile_baseline
from mri_helpers.calibration import calibration_of, without_calibration
from mri_helpers.data import MRIDataset, find_partners, load_dataset
from mri_helpers.datafiles import find_data
from mri_helpers.errors import DataError
from mri_helpers.evaluation import course_report, format_score, phantom_report, ssim_maps
from mri_helpers.export import DIRECTIONS, cleaning_of, load_generator
from mri_helpers.processing import Split, brain_region, head_mask, holdout_split

from . import scans, synthesis_scores
from .scans import HEAD_PERCENTILE


def evaluate_export(models_dir: str, data: str = "course") -> dict:
    """Evaluate a run's exported generators (both directions) on held-out slices.

    `data`: "course" (the zip, found as usual), "phantom", or a path. The held-out split is
    rebuilt from the fraction and seed recorded at export, so it is the one training never saw
    (and checked against the held-out ids the export recorded, where it did).
    Exports are also scored without their calibration (`*_uncalibrated`) and as the bare
    network, without test-time augmentation either (`*_network`), so each part's share of the
    figures stays visible.
    """
    generator_g, config = load_generator(models_dir, "t1-to-t2")
    generator_f, _ = load_generator(models_dir, "t2-to-t1")
    dataset = _evaluation_data(data, config)
    split = _recorded_split(dataset, config, models_dir)
    setting = (dataset, split, config["image_size"], cleaning_of(config))
    # The data's file name, not its path: reports are shared and committed.
    result = {"data": Path(dataset.source).name, "image_size": setting[2], "held_out": split.test}
    variants = _export_variants(generator_g, generator_f)
    if dataset.is_phantom:
        return {**result, **_phantom_scores((generator_g, generator_f), variants, setting)}
    return {**result, **_course_scores((generator_g, generator_f), variants, setting)}


VARIANT_TITLES = {"uncalibrated": "without calibration", "network": "network alone"}


def _evaluation_data(data: str, config: dict) -> MRIDataset:
    """The data set to score on: the course zip found as usual, the phantom, or a path."""
    if data != "course":
        return load_dataset(data, num_slices=config.get("num_phantom_slices", 48))
    found = find_data()
    if found is None:
        raise DataError("no course data found for --data course; set MRI_DATA or use data/.")
    return load_dataset(found)


def _recorded_split(dataset: MRIDataset, config: dict, models_dir: str) -> Split:
    """The held-out split the export was trained without, rebuilt and checked."""
    try:
        split = holdout_split(dataset, config.get("holdout_fraction", 0.1), config.get("seed", 0))
    except DataError as error:
        raise DataError(f"{dataset.source}: {error}") from None
    recorded = config.get("held_out")  # exports since the course recorded them
    if recorded is not None and recorded != split.test:
        raise DataError(
            f"{dataset.source}: the held-out slices recorded in {models_dir}'s model.json are "
            "not the ones this data set and the recorded split give; evaluate with the data "
            "the model was trained on (--data)."
        )
    return split


def _export_variants(generator_g, generator_f) -> dict[str, tuple]:
    """The export with its parts taken off, one at a time: its calibration, then its copies."""
    uncalibrated = without_calibration(generator_g), without_calibration(generator_f)
    variants = {}
    if any(calibration_of(g) is not None for g in (generator_g, generator_f)):
        variants["uncalibrated"] = uncalibrated
    if any(test_time.is_averaged(g) for g in uncalibrated):
        variants["network"] = tuple(test_time.without_copies(g) for g in uncalibrated)
    return variants


def _phantom_scores(generators: tuple, variants: dict[str, tuple], setting: tuple) -> dict:
    """The phantom report of the export and of each variant, with a summary."""
    report = phantom_report(dict(zip(DIRECTIONS, generators, strict=True)), *setting)
    summary = [
        f"{direction}: SSIM {r['model']['whole']['ssim']:.3f} (whole slice), "
        f"{r['model']['head']['ssim']:.3f} (head), {format_score(r['model']['brain']['ssim'])} "
        "(brain); best baseline "
        f"{max(r['inversion']['whole']['ssim'], r['quantile']['whole']['ssim']):.3f}"
        for direction, r in report.items()
    ]
    result = {"phantom": report}
    for name, pair in variants.items():
        part = phantom_report(dict(zip(DIRECTIONS, pair, strict=True)), *setting, baselines=False)
        result[f"phantom_{name}"] = part
        summary.append(
            f"{VARIANT_TITLES[name]}: "
            + ", ".join(f"{d} {r['model']['whole']['ssim']:.3f}" for d, r in part.items())
        )
    return {**result, "summary": summary}


def _course_scores(generators: tuple, variants: dict[str, tuple], setting: tuple) -> dict:
    """The course report of the export and of each variant, with a summary."""
    partners = find_partners(setting[0])
    report = course_report(*generators, *setting, partners)
    summary = [
        f"cycle SSIM T1->T2->T1 {report['cycle_ssim_t1']:.3f}, "
        f"T2->T1->T2 {report['cycle_ssim_t2']:.3f} (against the cleaned input the "
        f"networks saw: {report['cycle_ssim_t1_input']:.3f}, "
        f"{report['cycle_ssim_t2_input']:.3f})",
        f"rank correlation T1 vs generated T2 in the brain "
        f"{report['rank_correlation_t1_vs_generated_t2']:.2f}",
        "histogram distance to real T2: generated "
        f"{report['histogram_distance_generated_t2']:.1f} vs input T1 "
        f"{report['histogram_distance_input_t1']:.1f} "
        f"(ratio {report['histogram_distance_ratio']:.2f})",
    ]
    for direction in DIRECTIONS:
        key = f"partner_ssim_{direction.replace('-', '_')}"
        if key in report:
            best = max(report[f"{key}_quantile_baseline"], report[f"{key}_inversion_baseline"])
            summary.append(
                f"{direction} against each held-out slice's partner: SSIM "
                f"{report[key]:.3f} (head {report[key + '_head']:.3f}, brain "
                f"{format_score(report[key + '_brain'])}); best baseline {best:.3f}"
            )
    result = {"course": report, "partners": len(partners)}
    for name, pair in variants.items():
        part = course_report(*pair, *setting, partners)
        result[f"course_{name}"] = part
        summary.append(
            f"{VARIANT_TITLES[name]}: cycle SSIM {part['cycle_ssim_t1']:.3f}, "
            f"{part['cycle_ssim_t2']:.3f}; histogram ratio "
            f"{part['histogram_distance_ratio']:.2f}"
        )
    return {**result, "summary": summary}


# --- whole volumes (mri-course evaluate --scan SCAN --truth TRUTH) ------------------------
def evaluate_volume(
    models_dir: str | os.PathLike,
    direction: str,
    scan: str | os.PathLike,
    truth: str | os.PathLike,
    series: str | None = None,
    truth_series: str | None = None,
    levels_mm: tuple[float, float] | None = None,
    mixed_precision: str = "auto",
    labels: str | os.PathLike | None = None,
) -> dict:
    """A scan translated with an export, scored against a paired true volume of the other
    contrast lying on the same voxel grid, next to the two classical baselines.

    The `brasyn` block scores the whole volume again as the field does
    (`synthesis_scores.score_synthesis`): each volume normalised on its own, SSIM in the head,
    the brain and the lesions, PSNR and MAE; with `labels` (a NIfTI on the scan's grid, 0
    background, 1 CSF, 2 GM, 3 WM, 4 lesion, as the phantom writes), tissue Dice of a fixed
    segmentation and whether each lesion stays visible and none is invented.

    `levels_mm` (low, high): also score on their own the axial slices whose centre lies at a
    scanner height (superior axis, mm) in that range, e.g. the levels a model was trained on,
    and the slices outside it.

    Both volumes are brought to the grey scale the model was trained on by their own robust
    scaling (`scans.robust_scaling`), so no figure depends on a scanner's units; then each
    candidate (the model, each baseline) gets one gain that matches its head's 95th percentile
    to the truth's (recorded as `gains`), as a reader sets the window. SSIM is the mean
    over the axial slices that hold head, inside the true volume's head and inside its brain
    region (`processing.brain_region`); PSNR and MAE pool every head voxel. The reversed
    histogram matching baseline is given the true volume's own head histogram: an optimistic
    baseline, which the model has to beat.
    """
    generator, config = load_generator(models_dir, direction)
    scan_volume, true_volume = _paired_volumes(scan, truth, series, truth_series)
    label_voxels = None if labels is None else _read_labels(labels, scan_volume, scan)
    synthetic, _, record = scans.translate_volume(
        generator, config, scan_volume.voxels(), scan_volume.affine,
        mixed_precision=mixed_precision,
    )  # fmt: skip
    slices = _axial_on_model_scale(
        config, direction, scan_volume, true_volume, synthetic, label_voxels
    )
    scored = _ScoredSlices.of(slices, truth)
    whole = scored.scores(range(len(scored.truths)))
    brasyn = _brasyn_scores(scored, slices, DIRECTIONS[direction][1])
    result = {
        "scan": Path(scan).name,
        "truth": Path(truth).name,
        "direction": direction,
        "axial_slices_scored": len(scored.truths),
        "gains": scored.gains,
        "volume": whole,
        "brasyn": brasyn,
        "translation": record,
        "summary": [_summary_line(direction, whole, len(scored.truths), "whole volume")],
    }
    if levels_mm is not None:
        result["levels"], lines = _scores_by_level(scored, levels_mm, direction, scan)
        result["summary"] += lines
    result["summary"] += _brasyn_lines(brasyn)
    return result


def _paired_volumes(scan, truth, series: str | None, truth_series: str | None) -> tuple:
    """The scan and its true volume, which must lie on the same voxel grid."""
    scan_volume = scans.collect_scans([scan], series)[0]
    true_volume = scans.collect_scans([truth], truth_series)[0]
    if scan_volume.shape != true_volume.shape or not np.allclose(
        scan_volume.affine, true_volume.affine, atol=1e-3
    ):
        raise DataError(
            f"{truth} does not lie on the voxel grid of {scan} (shape {true_volume.shape} vs "
            f"{scan_volume.shape}, or another affine): resample it onto the scan first, e.g. "
            "with nilearn.image.resample_to_img."
        )
    return scan_volume, true_volume


def _axial_on_model_scale(
    config: dict,
    direction: str,
    scan_volume,
    true_volume,
    synthetic: np.ndarray,
    labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The synthetic, true and input volumes as axial slices (model frame) on the grey scale
    the model was trained on, the labels (if given) in that frame, each slice's scanner height
    ("heights") and the frame's affine ("model_affine")."""
    source, target = DIRECTIONS[direction]
    levels = scans.model_head_levels(config)

    def on_model_scale(data: np.ndarray, contrast: str, name) -> np.ndarray:
        scaling, _, _ = scans.robust_scaling(data, contrast, name, levels[contrast])
        return np.clip(scaling.apply(data), 0, 255)

    true_scaled = on_model_scale(true_volume.voxels(), target, true_volume.source)
    input_scaled = on_model_scale(scan_volume.voxels(), source, scan_volume.source)
    axial = scans.reorientation(scan_volume.affine, scan_volume.shape, "AR")
    slices = {
        name: axial.apply(volume)
        for name, volume in (("model", synthetic), ("truth", true_scaled), ("input", input_scaled))
    }
    if labels is not None:
        slices["labels"] = axial.apply(labels)
    slices["heights"] = _slice_heights(scan_volume.affine, axial, slices["truth"].shape)
    slices["model_affine"] = _model_affine(scan_volume.affine, axial, slices["truth"].shape)
    return slices


@dataclass
class _ScoredSlices:
    """The axial slices with head: truth, head and brain masks, heights, and each candidate's
    images (model, inversion, quantile) after its gain."""

    truths: list[np.ndarray]
    heads: list[np.ndarray]
    brains: list[np.ndarray]
    heights: list[float]
    candidates: dict[str, list[np.ndarray]]
    gains: dict[str, float]
    kept: list[int] = field(default_factory=list)  # their indices among all axial slices
    # each candidate's SSIM per slice in the head and the brain (NaN: no pixel to score)
    slice_ssim: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def of(cls, slices: dict[str, np.ndarray], truth) -> _ScoredSlices:
        head = scans.head_mask_3d(slices["truth"])
        values = np.sort(slices["truth"][head])  # sorted once for every slice's baseline
        kept = cls([], [], [], [], {"model": [], "inversion": [], "quantile": []}, {})
        for k in np.flatnonzero(head.any(axis=(1, 2))):
            truth_k, input_k = slices["truth"][k], slices["input"][k].round().astype(np.uint8)
            kept.truths.append(truth_k)
            kept.heads.append(head[k])
            kept.brains.append(brain_region(truth_k.round().astype(np.uint8)) & head[k])
            kept.heights.append(float(slices["heights"][k]))
            kept.kept.append(int(k))
            input_head = head_mask(input_k)
            kept.candidates["model"].append(slices["model"][k])
            kept.candidates["inversion"].append(inversion_baseline(input_k, input_head))
            kept.candidates["quantile"].append(quantile_baseline(input_k, input_head, values))
        if not kept.truths:
            raise DataError(f"{truth}: no head found in the true volume; nothing to score.")
        kept._match_gains()
        kept._score_slices()
        return kept

    def _match_gains(self) -> None:
        """One gain per candidate matches its head's 95th percentile to the truth's: a global
        brightness difference, which a reader's window setting removes, is not scored."""
        pairs = zip(self.truths, self.heads, strict=True)
        true_level = np.percentile(np.concatenate([t[m] for t, m in pairs]), HEAD_PERCENTILE)
        for name, images in self.candidates.items():
            inside = np.concatenate([i[m] for i, m in zip(images, self.heads, strict=True)])
            level = np.percentile(inside, HEAD_PERCENTILE)
            self.gains[name] = float(true_level / level) if level > 1e-3 else 1.0
            self.candidates[name] = [image * self.gains[name] for image in images]

    def _score_slices(self) -> None:
        """Each candidate's SSIM map of every slice, once (batched), read in each region: the
        mean of the map over the region's pixels, as `evaluation.image_metrics` scores one."""
        truths = np.stack(self.truths)
        for name, images in self.candidates.items():
            maps = ssim_maps(np.stack(images), truths)
            self.slice_ssim[name] = {
                region: np.array(
                    [_mean_or_nan(m[mask]) for m, mask in zip(maps, masks, strict=True)]
                )
                for region, masks in (("head", self.heads), ("brain", self.brains))
            }

    def scores(self, chosen) -> dict[str, dict[str, float | None]]:
        """SSIM in the head and the brain (the mean over the chosen slices that have pixels
        to score there), PSNR and MAE in the head, of the chosen slices."""
        chosen = list(chosen)
        true, heads = ([x[i] for i in chosen] for x in (self.truths, self.heads))
        report = {}
        for name, images in self.candidates.items():
            mine = [images[i] for i in chosen]
            errors = zip(mine, true, heads, strict=True)
            pooled = np.concatenate([np.abs(i - t)[m] for i, t, m in errors])
            mse = float(np.mean(pooled**2))
            ssim = {r: _mean_or_nan(v[chosen]) for r, v in self.slice_ssim[name].items()}
            report[name] = {
                "ssim_head": None if np.isnan(ssim["head"]) else ssim["head"],
                "ssim_brain": None if np.isnan(ssim["brain"]) else ssim["brain"],
                "psnr_head": float(10 * np.log10(255.0**2 / max(mse, 1e-10))),
                "mae_head": float(pooled.mean()),
            }
        return report


def _mean_or_nan(values: np.ndarray) -> float:
    """The mean of the values that are not NaN; NaN when none is."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _scores_by_level(
    scored: _ScoredSlices, levels_mm: tuple[float, float], direction: str, scan
) -> tuple[dict, list[str]]:
    """The scores of the slices between the two heights, and of the others, with their lines."""
    low, high = sorted(float(v) for v in levels_mm)
    everything = range(len(scored.truths))
    inside = [i for i in everything if low - 0.5 <= scored.heights[i] <= high + 0.5]
    outside = [i for i in everything if i not in inside]
    if not inside:
        raise DataError(
            f"no axial slice of {scan} with head lies between {low:g} and {high:g} mm (its "
            f"slices span {min(scored.heights):.0f} to {max(scored.heights):.0f} mm): check the "
            "levels."
        )
    levels = {"range_mm": [low, high], "inside": scored.scores(inside)}
    levels["inside"]["axial_slices"] = len(inside)
    where = f"levels {low:g} to {high:g} mm"
    lines = [_summary_line(direction, levels["inside"], len(inside), where)]
    if outside:
        levels["outside"] = scored.scores(outside)
        levels["outside"]["axial_slices"] = len(outside)
        lines.append(_summary_line(direction, levels["outside"], len(outside), "the other levels"))
    return levels, lines


def _summary_line(direction: str, report: dict, count: int, where: str) -> str:
    best = max(report["inversion"]["ssim_head"], report["quantile"]["ssim_head"])
    return (
        f"{direction}, {where} ({count} axial slices with head): SSIM "
        f"{report['model']['ssim_head']:.3f} in the head, "
        f"{format_score(report['model']['ssim_brain'])} in the brain; PSNR "
        f"{report['model']['psnr_head']:.1f} dB, MAE {report['model']['mae_head']:.1f}; "
        f"best baseline SSIM {best:.3f}"
    )


def _slice_heights(affine: np.ndarray, axial, model_shape: tuple[int, ...]) -> np.ndarray:
    """The scanner height (superior axis, mm) of the centre of each model-frame axial slice."""
    model_affine = _model_affine(affine, axial, model_shape)
    k = np.arange(model_shape[0], dtype=float)
    rows, columns = (np.full_like(k, (n - 1) / 2.0) for n in model_shape[1:])
    return (model_affine @ np.stack([k, rows, columns, np.ones_like(k)]))[2]


def _model_affine(affine: np.ndarray, axial, model_shape: tuple[int, ...]) -> np.ndarray:
    """Model-frame voxel (slice, row, column) -> scanner millimetres."""
    from nibabel.orientations import inv_ornt_aff

    input_shape = [0, 0, 0]
    for model_axis, (input_axis, _) in enumerate(axial.to_input):
        input_shape[int(input_axis)] = model_shape[model_axis]
    return affine @ inv_ornt_aff(axial.to_model, input_shape)


# --- scored as the field scores (the `brasyn` block) ----------------------------------------
LABEL_VALUES = (0, 1, 2, 3, 4)  # background, CSF, GM, WM, lesion: mri_helpers.phantom.LABELS


def _read_labels(labels, scan_volume, scan) -> np.ndarray:
    """The label volume (uint8), checked: NIfTI on the scan's grid, values LABEL_VALUES only,
    some CSF, GM or WM."""
    if not scans.is_nifti(labels):
        raise DataError(f"--labels {labels}: pass a .nii or .nii.gz label volume.")
    image = scans.read_nifti(labels)
    if image.shape != scan_volume.shape or not np.allclose(
        image.affine, scan_volume.affine, atol=1e-3
    ):
        raise DataError(
            f"{labels} does not lie on the voxel grid of {scan} (shape {image.shape} vs "
            f"{scan_volume.shape}, or another affine): resample it onto the scan first with "
            "nearest-neighbour interpolation, e.g. nilearn.image.resample_to_img(..., "
            "interpolation='nearest')."
        )
    voxels = image.voxels()
    found = np.unique(voxels)
    strange = [float(v) for v in found if v not in LABEL_VALUES][:5]
    if strange:
        raise DataError(
            f"{labels} holds values other than 0 (background), 1 (CSF), 2 (GM), 3 (WM) and 4 "
            f"(lesion), e.g. {', '.join(f'{v:g}' for v in strange)}: pass a label volume with "
            "those values only."
        )
    if not np.isin(found, (1, 2, 3)).any():
        raise DataError(f"{labels} labels no CSF, GM or WM (values 1, 2, 3): nothing to score.")
    return voxels.astype(np.uint8)


def _brasyn_scores(scored: _ScoredSlices, slices: dict[str, np.ndarray], target: str) -> dict:
    """The `brasyn` block of the axial slices with head, as whole volumes again (slices
    without head stay empty): the truth, the model and the baselines after their gains."""
    shape = slices["truth"].shape

    def whole(images: list[np.ndarray], dtype=np.float32) -> np.ndarray:
        volume = np.zeros(shape, dtype)
        volume[scored.kept] = np.stack(images)
        return volume

    volumes = {"truth": whole(scored.truths)}
    volumes.update({name: whole(images) for name, images in scored.candidates.items()})
    head = whole(scored.heads, bool)
    labels = slices.get("labels")
    # The true brain where labels say it; else the brain region the other figures use.
    brain = labels > 0 if labels is not None else whole(scored.brains, bool)
    field_of_view = np.zeros(shape, bool)
    field_of_view[scored.kept] = True
    return synthesis_scores.score_synthesis(
        volumes, head, brain, target, labels, slices["model_affine"], field_of_view
    )


def _brasyn_lines(block: dict) -> list[str]:
    """The summary lines of the `brasyn` block."""
    model = block["images"]["model"]
    lines = [
        "BraSyn-style (each volume to its own 0.5-99.5 percentiles): model SSIM "
        f"{format_score(model['ssim_head'])} head, {format_score(model['ssim_brain'])} brain"
        + (f", {format_score(model['ssim_lesion'])} lesions" if "ssim_lesion" in model else "")
        + f"; PSNR {model['psnr_head']:.1f} dB, MAE {model['mae_head']:.3f}"
    ]
    if "segmentation" in block:
        dice = block["segmentation"]["dice"]
        best = max(v["mean"] for k, v in dice.items() if k not in ("model", "truth"))
        lines.append(
            f"tissue Dice (CSF/GM/WM mean): model {dice['model']['mean']:.3f}, true volume "
            f"{dice['truth']['mean']:.3f} (same method, real T2), best baseline {best:.3f}"
        )
    if "lesions" in block:
        seen = sum(row["visible"]["model"] for row in block["lesions"])
        kept = sum(row["keeps_contrast"]["model"] for row in block["lesions"])
        lines.append(
            f"lesions visible in the model's volume: {seen} of {len(block['lesions'])}, "
            f"{kept} with at least half their true contrast"
        )
    if "invented" in block:
        lines.append(
            f"lesion-like blobs where the truth has none: model {len(block['invented']['model'])}"
            f", true volume {len(block['invented']['truth'])}"
        )
    return lines
