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

from ._tf import keras, tf
from .baselines import inversion_baseline, quantile_baseline
from .data import MRIDataset, Slice, find_partners
from .export import DIRECTIONS, translate, translate_through
from .processing import (
    Cleaning,
    Split,
    brain_region,
    clean_slice,
    head_mask,
    select,
)

SSIM_BORDER = 5  # tf.image.ssim's 11x11 window: its index map is 5 pixels smaller each side


def round_trips(
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


def ssim_maps(
    predictions: np.ndarray, truths: np.ndarray, max_val: float = 255.0, batch_size: int = 16
) -> np.ndarray:
    """`tf.image.ssim`'s index map of each slice pair of two (n, height, width) stacks, padded
    back to (n, height, width) with NaN where the 11x11 window does not fit (SSIM_BORDER pixels
    each side): the mean of a map over a region's pixels is its SSIM there, pixel-weighted."""
    predictions, truths = (np.asarray(x, np.float32) for x in (predictions, truths))
    maps = np.full(predictions.shape, np.nan, np.float32)
    border = SSIM_BORDER
    for start in range(0, len(predictions), batch_size):
        part = slice(start, start + batch_size)
        a, b = (tf.constant(x[part][..., None]) for x in (predictions, truths))
        index = tf.image.ssim(a, b, max_val=max_val, return_index_map=True).numpy()
        maps[part, border : maps.shape[1] - border, border : maps.shape[2] - border] = index
    return maps


def mean_metrics(
    predictions: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None = None,
) -> dict[str, float]:
    """`image_metrics` averaged over slices; slices whose mask selects no pixel SSIM can
    score (none away from the border) are left out, and with none left the figures are None.
    The SSIM maps of slices of one shape are computed together (`ssim_maps`): one batched
    call instead of one per slice, the same figures."""
    masks = masks or [None] * len(predictions)
    border = SSIM_BORDER
    kept = [
        (np.asarray(p, np.float32), np.asarray(t, np.float32), m)
        for p, t, m in zip(predictions, truths, masks, strict=True)
        if m is None or np.asarray(m)[border:-border, border:-border].any()
    ]
    if not kept:
        return {"ssim": None, "psnr": None, "mae": None}
    ssim = np.empty(len(kept))
    shapes = {p.shape for p, _, _ in kept}
    for shape in shapes:  # one batch of maps per slice shape
        chosen = [i for i, (p, _, _) in enumerate(kept) if p.shape == shape]
        maps = ssim_maps(
            np.stack([kept[i][0] for i in chosen]), np.stack([kept[i][1] for i in chosen])
        )
        for i, index_map in zip(chosen, maps, strict=True):
            mask = kept[i][2]
            inside = index_map if mask is None else index_map[np.asarray(mask, bool)]
            ssim[i] = np.nanmean(inside)
    psnr, mae = [], []
    for p, t, m in kept:
        difference = np.abs(p - t) if m is None else np.abs(p - t)[np.asarray(m, bool)]
        psnr.append(10 * np.log10(255.0**2 / max(float(np.mean(difference**2)), 1e-10)))
        mae.append(float(difference.mean()))
    return {"ssim": float(ssim.mean()), "psnr": float(np.mean(psnr)), "mae": float(np.mean(mae))}


def format_score(value: float | None) -> str:
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
        cycled = round_trips(there, back, slices, image_size, cleaning)
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
                f"{whole['mae']:6.1f}   {head['ssim']:6.3f} {format_score(brain['ssim']):>6}"
            )
    return "\n".join(lines)
