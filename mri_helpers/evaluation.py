"""Measuring translation quality honestly (explained in 04_training, "Evaluation").

Everything is measured on held-out slices at the slices' own geometry (181x217), after the
network's output has been brought back by the exact inverse of the input processing.

- Phantom (paired truth): SSIM, PSNR and MAE of T1->T2 and T2->T1 against the true slice of
  the other contrast before noise and bias, over the whole slice and inside the head, next to
  two classical unpaired baselines computed the same way.
- Course data (no truth): cycle consistency (T1->T2->T1 against T1, and back), whether
  generated T2 darkens where T1 brightens in the brain (rank correlation), and how close the
  intensity histogram of generated T2 comes to that of real T2.

SSIM and PSNR are TensorFlow's (`tf.image.ssim`, `tf.image.psnr`), on the 0..255 scale.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from . import test_time
from ._tf import keras, tf
from .baselines import inversion_baseline, quantile_baseline
from .calibration import calibration_of, without_calibration
from .data import MRIDataset, Slice, find_data, find_partners, load_dataset
from .errors import DataError
from .export import DIRECTIONS, cleaning_of, load_generator, translate, translate_through
from .processing import (
    Cleaning,
    Split,
    brain_region,
    clean_slice,
    head_mask,
    holdout_split,
    select,
)

SSIM_BORDER = 5  # tf.image.ssim's 11x11 window: its index map is 5 pixels smaller each side


def cycle(
    generator: keras.Model,
    back: keras.Model,
    slices: Sequence[Slice],
    image_size: int,
    cleaning: Cleaning | None = None,
    batch_size: int = 8,
) -> list[np.ndarray]:
    """back(generator(x)) as training computes it (the intermediate image stays in the graph,
    neither rounded to 8 bits nor cleaned again), at each slice's own geometry."""
    return translate_through([generator, back], slices, image_size, cleaning, batch_size)


def image_metrics(
    predicted: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, float]:
    """SSIM, PSNR and MAE of one 2-D image against the truth (0..255 scale); with a mask, SSIM
    and MAE are averaged over the masked pixels only (the SSIM map is cropped to match)."""
    a = tf.constant(np.asarray(predicted, np.float32)[None, ..., None])
    b = tf.constant(np.asarray(truth, np.float32)[None, ..., None])
    if mask is None:
        return {
            "ssim": float(tf.image.ssim(a, b, max_val=255.0)[0]),
            "psnr": float(tf.image.psnr(a, b, max_val=255.0)[0]),
            "mae": float(tf.reduce_mean(tf.abs(a - b))),
        }
    ssim_map = tf.image.ssim(a, b, max_val=255.0, return_index_map=True).numpy()[0]
    border = SSIM_BORDER
    inner = mask[border : mask.shape[0] - border, border : mask.shape[1] - border]
    difference = np.abs(np.asarray(predicted, np.float32) - truth)[mask]
    return {
        "ssim": float(ssim_map[inner].mean()),
        "psnr": float(10 * np.log10(255.0**2 / max(float(np.mean(difference**2)), 1e-10))),
        "mae": float(difference.mean()),
    }


def mean_metrics(
    predictions: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None = None,
) -> dict[str, float]:
    """`image_metrics` averaged over slices; slices whose mask selects no pixel SSIM can
    score (none away from the border) are left out, and with none left the figures are None."""
    masks = masks or [None] * len(predictions)
    rows = [
        image_metrics(p, t, m)
        for p, t, m in zip(predictions, truths, masks, strict=True)
        if m is None or np.asarray(m)[SSIM_BORDER:-SSIM_BORDER, SSIM_BORDER:-SSIM_BORDER].any()
    ]
    if not rows:
        return {"ssim": None, "psnr": None, "mae": None}
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}


def shown(value: float | None) -> str:
    """A figure for a report line: three decimals, or "n/a" where nothing could be scored."""
    return "n/a" if value is None else f"{value:.3f}"


def head_intensities(images: Sequence[np.ndarray], slices: Sequence[Slice]) -> np.ndarray:
    """The grey levels of `images` inside the head of the matching `slices`, as one array."""
    return np.concatenate(
        [np.asarray(i)[head_mask(s.image)] for i, s in zip(images, slices, strict=True)]
    )


# --- reports -----------------------------------------------------------------------------
def phantom_report(
    generators: dict[str, keras.Model],
    dataset: MRIDataset,
    split: Split,
    image_size: int,
    cleaning: Cleaning | None = None,
    baselines: bool = True,
) -> dict[str, dict]:
    """Phantom held-out slices: model and baselines against the clean truth, both directions.

    `generators` maps "t1-to-t2" and/or "t2-to-t1" to a generator. Returns, per direction,
    {"model" | "inversion" | "quantile": {"whole": metrics, "head": metrics}}.
    """
    if not dataset.is_phantom:
        raise ValueError("phantom_report needs the phantom dataset (it has the true slices)")
    report = {}
    for direction, generator in generators.items():
        source, target = DIRECTIONS[direction]
        inputs = select(dataset, source, split.test[source])
        truths = select(dataset, target, split.test[source])  # the same slices, other contrast
        target_values = np.concatenate(
            [s.image[s.head_mask] for s in select(dataset, target, split.train[target])]
        )
        candidates = {"model": translate(generator, inputs, image_size, cleaning)}
        if baselines:
            candidates["inversion"] = [inversion_baseline(s.image, s.head_mask) for s in inputs]
            candidates["quantile"] = [
                quantile_baseline(s.image, s.head_mask, target_values) for s in inputs
            ]
        clean = [t.clean for t in truths]
        report[direction] = {
            name: {
                "whole": mean_metrics(images, clean),
                "head": mean_metrics(images, clean, [t.head_mask for t in truths]),
                "brain": mean_metrics(images, clean, [t.brain_mask for t in truths]),
            }
            for name, images in candidates.items()
        }
    return report


def phantom_scorer(
    dataset: MRIDataset, split: Split, image_size: int, cleaning: Cleaning | None = None
):
    """A function model -> {direction: held-out whole-slice SSIM}, for QualityOverTime."""

    def score(model) -> dict[str, float]:
        generators = {"t1-to-t2": model.generator_g, "t2-to-t1": model.generator_f}
        report = phantom_report(generators, dataset, split, image_size, cleaning, False)
        return {direction: rows["model"]["whole"]["ssim"] for direction, rows in report.items()}

    return score


class QualityOverTime(keras.callbacks.Callback):
    """Every `every` epochs, score held-out phantom slices against their truth and record
    (training minutes, SSIM) in `quality.csv`: the time-to-quality curve of a run."""

    def __init__(self, evaluate, path: str | os.PathLike, every: int = 1):
        super().__init__()
        self.evaluate, self.path, self.every = evaluate, Path(path), max(1, every)

    def on_train_begin(self, logs=None):
        self.start, self.scoring_seconds = time.perf_counter(), 0.0
        if not self.path.exists():
            self.path.write_text("epoch,training_minutes,ssim_t1_to_t2,ssim_t2_to_t1\n")

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every and epoch + 1 != self.params.get("epochs"):
            return
        now = time.perf_counter()
        minutes = (now - self.start - self.scoring_seconds) / 60  # wall time, scoring excluded
        scores = self.evaluate(self.model)
        self.scoring_seconds += time.perf_counter() - now
        with self.path.open("a") as f:
            f.write(
                f"{epoch + 1},{minutes:.2f},{scores['t1-to-t2']:.4f},{scores['t2-to-t1']:.4f}\n"
            )


def against_partners(
    generator: keras.Model,
    slices: Sequence[Slice],
    partner_of: dict[str, str],
    dataset: MRIDataset,
    split: Split,
    image_size: int,
    cleaning: Cleaning | None = None,
) -> dict[str, float]:
    """Held-out slices translated and scored against their partners in the other set (the
    same level of the same head), whole slice, inside the partner's head and inside its brain
    region (`processing.brain_region`), next to the two classical baselines; empty when no
    slice has a partner. Keys name the direction, e.g. `partner_ssim_t1_to_t2_brain`."""
    pairs = [(s, partner_of[s.id]) for s in slices if s.id in partner_of]
    if not pairs:
        return {}
    source = slices[0].modality
    target = "t2" if source == "t1" else "t1"
    by_id = {s.id: s for s in dataset[target]}
    inputs = [s for s, _ in pairs]
    truths = [by_id[partner].image for _, partner in pairs]
    masks = [head_mask(truth) for truth in truths]
    brains = [brain_region(truth) for truth in truths]
    values = np.concatenate(
        [s.image[head_mask(s.image)] for s in select(dataset, target, split.train[target])]
    )
    candidates = {
        "": translate(generator, inputs, image_size, cleaning),
        "_quantile_baseline": [
            quantile_baseline(s.image, head_mask(s.image), values) for s in inputs
        ],
        "_inversion_baseline": [inversion_baseline(s.image, head_mask(s.image)) for s in inputs],
    }
    direction = f"{source}_to_{target}"
    metrics = {}
    for suffix, images in candidates.items():
        whole, head = mean_metrics(images, truths), mean_metrics(images, truths, masks)
        metrics[f"partner_ssim_{direction}{suffix}"] = whole["ssim"]
        metrics[f"partner_ssim_{direction}{suffix}_head"] = head["ssim"]
        brain = mean_metrics(images, truths, brains)["ssim"]
        metrics[f"partner_ssim_{direction}{suffix}_brain"] = brain
        if not suffix:
            metrics[f"partner_psnr_{direction}"] = whole["psnr"]
            metrics[f"partner_mae_{direction}_head"] = head["mae"]
    return metrics


def course_report(
    generator_g: keras.Model,
    generator_f: keras.Model,
    dataset: MRIDataset,
    split: Split,
    image_size: int,
    cleaning: Cleaning | None = None,
    partners: dict[str, str] | None = None,
) -> dict[str, float]:
    """Course held-out slices: cycle consistency both ways, T1/T2 rank correlation in the
    brain, the histogram distance of generated T2 to real T2 against that of T1, and, for
    slices with a hidden partner in the other set (`data.find_partners`, computed unless
    given), the translation against that partner next to the classical baselines.

    The cycle is scored against the stored slice (`cycle_*`: noise the cleaning removed
    counts as error) and against the cleaned slice the networks were given (`cycle_*_input`).
    """
    t1 = select(dataset, "t1", split.test["t1"])
    t2 = select(dataset, "t2", split.test["t2"])
    fake_t2 = translate(generator_g, t1, image_size, cleaning)
    partners = find_partners(dataset) if partners is None else partners
    metrics = {
        **against_partners(generator_g, t1, partners, dataset, split, image_size, cleaning),
        **against_partners(
            generator_f, t2, {b: a for a, b in partners.items()}, dataset, split, image_size,
            cleaning,
        ),
    }  # fmt: skip
    for modality, slices, there, back in (
        ("t1", t1, generator_g, generator_f),
        ("t2", t2, generator_f, generator_g),
    ):
        cycled = cycle(there, back, slices, image_size, cleaning)
        stored = [s.image for s in slices]
        given = [clean_slice(s.image, cleaning) for s in slices] if cleaning else stored
        for suffix, reference in (("", stored), ("_input", given)):
            for name, value in mean_metrics(cycled, reference).items():
                metrics[f"cycle_{name}_{modality}{suffix}"] = value

    correlations = []
    for s, generated in zip(t1, fake_t2, strict=True):
        region = brain_region(s.image)
        correlations.append(stats.spearmanr(s.image[region], generated[region]).statistic)
    real_t2 = head_intensities([s.image for s in t2], t2)
    generated_t2 = head_intensities(fake_t2, t1)
    input_t1 = head_intensities([s.image for s in t1], t1)
    distance_generated = stats.wasserstein_distance(generated_t2, real_t2)
    distance_input = stats.wasserstein_distance(input_t1, real_t2)
    return {
        **metrics,
        "rank_correlation_t1_vs_generated_t2": float(np.mean(correlations)),
        "histogram_distance_generated_t2": float(distance_generated),
        "histogram_distance_input_t1": float(distance_input),
        "histogram_distance_ratio": float(distance_generated / max(distance_input, 1e-9)),
    }


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


def format_phantom_report(report: dict) -> str:
    """The phantom report as a small text table: SSIM / PSNR / MAE over the whole slice, and
    SSIM inside the head and inside the brain alone (what a reader of the scan looks at; the
    head adds the thin skull and scalp layers, the whole slice the background)."""
    lines = [f"{'':>10} {'':>10} {'SSIM':>6} {'PSNR':>6} {'MAE':>6}   {'head':>6} {'brain':>6}"]
    for direction, rows in report.items():
        for name, values in rows.items():
            whole, head, brain = values["whole"], values["head"], values["brain"]
            lines.append(
                f"{direction:>10} {name:>10} {whole['ssim']:6.3f} {whole['psnr']:6.1f} "
                f"{whole['mae']:6.1f}   {head['ssim']:6.3f} {shown(brain['ssim']):>6}"
            )
    return "\n".join(lines)


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
    from . import volumes

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
