"""`mri-course evaluate`: a run's exported generators scored on held-out slices, or on a
whole scan against its truth (the lessons' measures, from `mri_helpers.evaluation`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mri_helpers import test_time
from mri_helpers.baselines import inversion_baseline, quantile_baseline
from mri_helpers.calibration import calibration_of, without_calibration
from mri_helpers.data import find_data, find_partners, load_dataset
from mri_helpers.errors import DataError
from mri_helpers.evaluation import course_report, mean_metrics, phantom_report, shown
from mri_helpers.export import DIRECTIONS, cleaning_of, load_generator
from mri_helpers.processing import brain_region, head_mask, holdout_split

from . import scans as volumes


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
    if data == "course":
        found = find_data()
        if found is None:
            raise DataError("no course data found for --data course; set MRI_DATA or use data/.")
        dataset = load_dataset(found)
    else:
        dataset = load_dataset(data, num_slices=config.get("num_phantom_slices", 48))
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
    size = config["image_size"]
    cleaning = cleaning_of(config)
    # The data's file name, not its path: reports are shared and committed.
    result = {"data": Path(dataset.source).name, "image_size": size, "held_out": split.test}
    is_calibrated = any(calibration_of(g) is not None for g in (generator_g, generator_f))
    uncalibrated = without_calibration(generator_g), without_calibration(generator_f)
    variants = {}  # the export with its parts taken off, one at a time
    if is_calibrated:
        variants["uncalibrated"] = uncalibrated
    if any(test_time.is_averaged(g) for g in uncalibrated):
        variants["network"] = tuple(test_time.without_copies(g) for g in uncalibrated)
    titles = {"uncalibrated": "without calibration", "network": "network alone"}
    if dataset.is_phantom:
        report = phantom_report(
            {"t1-to-t2": generator_g, "t2-to-t1": generator_f}, dataset, split, size, cleaning
        )
        result["phantom"] = report
        result["summary"] = [
            f"{direction}: SSIM {r['model']['whole']['ssim']:.3f} (whole slice), "
            f"{r['model']['head']['ssim']:.3f} (head), {shown(r['model']['brain']['ssim'])} "
            "(brain); best baseline "
            f"{max(r['inversion']['whole']['ssim'], r['quantile']['whole']['ssim']):.3f}"
            for direction, r in report.items()
        ]
        for name, pair in variants.items():
            part = phantom_report(
                dict(zip(DIRECTIONS, pair, strict=True)),
                dataset,
                split,
                size,
                cleaning,
                baselines=False,
            )
            result[f"phantom_{name}"] = part
            result["summary"].append(
                f"{titles[name]}: "
                + ", ".join(f"{d} {r['model']['whole']['ssim']:.3f}" for d, r in part.items())
            )
    else:
        partners = find_partners(dataset)
        report = course_report(generator_g, generator_f, dataset, split, size, cleaning, partners)
        result["course"] = report
        result["partners"] = len(partners)
        result["summary"] = [
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
                result["summary"].append(
                    f"{direction} against each held-out slice's partner: SSIM "
                    f"{report[key]:.3f} (head {report[key + '_head']:.3f}, brain "
                    f"{shown(report[key + '_brain'])}); best baseline {best:.3f}"
                )
        for name, pair in variants.items():
            part = course_report(*pair, dataset, split, size, cleaning, partners)
            result[f"course_{name}"] = part
            result["summary"].append(
                f"{titles[name]}: cycle SSIM {part['cycle_ssim_t1']:.3f}, "
                f"{part['cycle_ssim_t2']:.3f}; histogram ratio "
                f"{part['histogram_distance_ratio']:.2f}"
            )
    return result


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
) -> dict:
    """A scan translated with an export, scored against a paired true volume of the other
    contrast lying on the same voxel grid, next to the two classical baselines.

    `levels_mm` (low, high): also score on their own the axial slices whose centre lies at a
    scanner height (superior axis, mm) in that range, e.g. the levels a model was trained on,
    and the slices outside it.

    Both volumes are brought to the grey scale the model was trained on by their own robust
    scaling (`volumes.robust_scaling`), so no figure depends on a scanner's units; then each
    candidate (the model, each baseline) gets one gain that matches its head's 95th percentile
    to the truth's (recorded as `gains`), as a reader sets the window. SSIM is the mean
    over the axial slices that hold head, inside the true volume's head and inside its brain
    region (`processing.brain_region`); PSNR and MAE pool every head voxel. The reversed
    histogram matching baseline is given the true volume's own head histogram: an optimistic
    baseline, which the model has to beat.
    """

    generator, config = load_generator(models_dir, direction)
    source, target = DIRECTIONS[direction]
    scan_volume = volumes.collect_scans([scan], series)[0]
    true_volume = volumes.collect_scans([truth], truth_series)[0]
    if scan_volume.shape != true_volume.shape or not np.allclose(
        scan_volume.affine, true_volume.affine, atol=1e-3
    ):
        raise DataError(
            f"{truth} does not lie on the voxel grid of {scan} (shape {true_volume.shape} vs "
            f"{scan_volume.shape}, or another affine): resample it onto the scan first, e.g. "
            "with nilearn.image.resample_to_img."
        )
    synthetic, _, record = volumes.translate_volume(
        generator, config, scan_volume.voxels(), scan_volume.affine,
        mixed_precision=mixed_precision,
    )  # fmt: skip

    levels = volumes.model_head_levels(config)  # the grey scale the model was trained on

    def on_course_scale(data: np.ndarray, contrast: str, name) -> np.ndarray:
        scaling, _, _ = volumes.robust_scaling(data, contrast, name, levels[contrast])
        return np.clip(scaling.apply(data), 0, 255)

    true_scaled = on_course_scale(true_volume.voxels(), target, truth)
    input_scaled = on_course_scale(scan_volume.voxels(), source, scan)
    axial = volumes.reorientation(scan_volume.affine, scan_volume.shape, "AR")
    slices = {
        name: axial.apply(volume)
        for name, volume in (("model", synthetic), ("truth", true_scaled), ("input", input_scaled))
    }
    heights = _slice_heights(scan_volume.affine, axial, slices["truth"].shape)
    head = volumes.head_mask_3d(slices["truth"])
    values = slices["truth"][head]
    candidates: dict[str, list[np.ndarray]] = {"model": [], "inversion": [], "quantile": []}
    truths, heads, brains, levels = [], [], [], []
    for k in range(slices["truth"].shape[0]):
        if not head[k].any():
            continue
        truth_k = slices["truth"][k]
        input_k = slices["input"][k].round().astype(np.uint8)
        truths.append(truth_k)
        heads.append(head[k])
        brains.append(brain_region(truth_k.round().astype(np.uint8)) & head[k])
        levels.append(float(heights[k]))
        input_head = head_mask(input_k)
        candidates["model"].append(slices["model"][k])
        candidates["inversion"].append(inversion_baseline(input_k, input_head))
        candidates["quantile"].append(quantile_baseline(input_k, input_head, values))
    if not truths:
        raise DataError(f"{truth}: no head found in the true volume; nothing to score.")
    # One gain per candidate volume matches its head's 95th percentile to the truth's: a
    # global brightness difference, which a reader's window setting removes, is not scored.
    true_level = np.percentile(np.concatenate([t[m] for t, m in zip(truths, heads, strict=True)]),
                               volumes.HEAD_PERCENTILE)  # fmt: skip
    gains = {}
    for name, images in candidates.items():
        inside = np.concatenate([i[m] for i, m in zip(images, heads, strict=True)])
        level = np.percentile(inside, volumes.HEAD_PERCENTILE)
        gains[name] = float(true_level / level) if level > 1e-3 else 1.0
        candidates[name] = [image * gains[name] for image in images]

    def scores(chosen: list[int]) -> dict[str, dict[str, float | None]]:
        true, head_masks, brain_masks = ([x[i] for i in chosen] for x in (truths, heads, brains))
        report = {}
        for name, images in candidates.items():
            mine = [images[i] for i in chosen]
            errors = zip(mine, true, head_masks, strict=True)
            pooled = np.concatenate([np.abs(i - t)[m] for i, t, m in errors])
            mse = float(np.mean(pooled**2))
            report[name] = {
                "ssim_head": mean_metrics(mine, true, head_masks)["ssim"],
                "ssim_brain": mean_metrics(mine, true, brain_masks)["ssim"],
                "psnr_head": float(10 * np.log10(255.0**2 / max(mse, 1e-10))),
                "mae_head": float(pooled.mean()),
            }
        return report

    def line(report: dict, count: int, where: str) -> str:
        best = max(report["inversion"]["ssim_head"], report["quantile"]["ssim_head"])
        return (
            f"{direction}, {where} ({count} axial slices with head): SSIM "
            f"{report['model']['ssim_head']:.3f} in the head, "
            f"{shown(report['model']['ssim_brain'])} in the brain; PSNR "
            f"{report['model']['psnr_head']:.1f} dB, MAE {report['model']['mae_head']:.1f}; "
            f"best baseline SSIM {best:.3f}"
        )

    everything = list(range(len(truths)))
    whole = scores(everything)
    result = {
        "scan": Path(scan).name,
        "truth": Path(truth).name,
        "direction": direction,
        "axial_slices_scored": len(truths),
        "gains": gains,
        "volume": whole,
        "translation": record,
        "summary": [line(whole, len(truths), "whole volume")],
    }
    if levels_mm is not None:
        low, high = sorted(float(v) for v in levels_mm)
        inside = [i for i in everything if low - 0.5 <= levels[i] <= high + 0.5]
        outside = [i for i in everything if i not in inside]
        if not inside:
            raise DataError(
                f"no axial slice of {scan} with head lies between {low:g} and {high:g} mm "
                f"(its slices span {min(levels):.0f} to {max(levels):.0f} mm): check the levels."
            )
        result["levels"] = {"range_mm": [low, high], "inside": scores(inside)}
        result["levels"]["inside"]["axial_slices"] = len(inside)
        result["summary"].append(
            line(result["levels"]["inside"], len(inside), f"levels {low:g} to {high:g} mm")
        )
        if outside:
            result["levels"]["outside"] = scores(outside)
            result["levels"]["outside"]["axial_slices"] = len(outside)
            result["summary"].append(
                line(result["levels"]["outside"], len(outside), "the other levels")
            )
    return result


def _slice_heights(affine: np.ndarray, axial, model_shape: tuple[int, ...]) -> np.ndarray:
    """The scanner height (superior axis, mm) of the centre of each model-frame axial slice."""
    from nibabel.orientations import inv_ornt_aff

    input_shape = [0, 0, 0]
    for model_axis, (input_axis, _) in enumerate(axial.to_input):
        input_shape[int(input_axis)] = model_shape[model_axis]
    model_affine = affine @ inv_ornt_aff(axial.to_model, input_shape)  # model voxel -> mm
    k = np.arange(model_shape[0], dtype=float)
    rows, columns = (np.full_like(k, (n - 1) / 2.0) for n in model_shape[1:])
    return (model_affine @ np.stack([k, rows, columns, np.ones_like(k)]))[2]
