"""The paired upper bound: pix2pix on the phantom's pairs, with the CycleGAN's networks and budget.

An unpaired method never sees which T2 belongs to which T1; pix2pix (Isola et al., 2017) does:
each generator learns from pairs with an L1 loss to the true image and a conditional PatchGAN
that judges (input, output) together. On small MRI data sets it is the strongest published
baseline, so what it reaches with the same networks, steps and images is what pairs would buy.

`train_paired_bound(run_dir)` reads a finished phantom run of the course (its data, held-out
split, cleaning, sizes and networks), trains both directions on the training slices' pairs
(every training slice in both contrasts: the pairs the phantom has and the CycleGAN was not
given) for as many steps as the run's head start plus training, at its batch size and learning
rate schedule, and exports them into `RUN_DIR/paired/models` as the course exports (averaged
over copies, calibrated), so `mri-course evaluate` scores them as it scores the CycleGAN.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mri_helpers import calibration, losses, models, processing, set_seed, test_time
from mri_helpers._tf import keras, tf
from mri_helpers.errors import ParameterError
from mri_helpers.export import DIRECTIONS, export_generator, float32_copy
from mri_helpers.lessons import EarlierLessons, earlier_lessons
from mri_helpers.training import ConstantThenLinearDecay, loss_scaled

from . import precision
from .training_run import export_record

L1_WEIGHT = 100.0  # pix2pix's lambda: the L1 to the true image outweighs the adversarial term


@dataclass(frozen=True)
class PairedBudget:
    """What the paired run may spend: the CycleGAN run's steps, batch and learning rate."""

    steps: int
    batch_size: int
    learning_rate: float
    decay_start: int  # step at which the learning rate starts its linear fall to 0


class Pix2Pix(keras.Model):
    """Two pix2pix translators trained together: for each direction a U-Net generator and a
    conditional PatchGAN that judges (input, output) pairs. Each dataset element is a
    (T1 batch, T2 batch) of the *same* slices."""

    def __init__(self, generators: dict[str, keras.Model], discriminators: dict[str, keras.Model]):
        super().__init__()
        self.generators, self.discriminators = generators, discriminators
        self.trackers = {
            f"{kind}_{d}": keras.metrics.Mean(name=f"{kind}_{d}")
            for d in DIRECTIONS
            for kind in ("l1", "g", "d")
        }
        self.built = True

    def compile_for_training(self, budget: PairedBudget, mixed_precision: bool = False) -> None:
        """An Adam (beta_1 0.5) per network on the CycleGAN's constant-then-linear schedule."""
        schedule = ConstantThenLinearDecay(budget.learning_rate, budget.decay_start, budget.steps)

        def adam(name: str) -> keras.optimizers.Optimizer:
            optimizer = keras.optimizers.Adam(schedule, beta_1=0.5, name=f"adam_{name}")
            return loss_scaled(optimizer) if mixed_precision else optimizer

        self.network_optimizers = {
            (role, d): adam(f"{role}_{d}") for d in DIRECTIONS for role in ("g", "d")
        }
        super().compile()

    def fit(self, *args, shuffle: bool = False, **kwargs):
        """Keras's `fit()` on a pipeline that shuffles itself (Keras would only warn)."""
        return super().fit(*args, shuffle=shuffle, **kwargs)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    def compute_losses(self, images: dict[str, tf.Tensor], direction: str, training: bool):
        """(generator loss, discriminator loss, L1) of one direction on paired images."""
        source, target = (images[c] for c in DIRECTIONS[direction])
        fake = self.generators[direction](source, training=training)
        judge = self.discriminators[direction]
        real_logits = judge(tf.concat([source, target], -1), training=training)
        fake_logits = judge(
            tf.concat([source, tf.cast(fake, source.dtype)], -1), training=training
        )
        l1 = tf.reduce_mean(tf.abs(tf.cast(target, tf.float32) - tf.cast(fake, tf.float32)))
        generator = losses.generator_adversarial_loss(fake_logits) + L1_WEIGHT * l1
        return generator, losses.discriminator_loss(real_logits, fake_logits), l1

    def train_step(self, data):
        images = dict(zip(("t1", "t2"), data, strict=True))
        for direction in DIRECTIONS:
            with tf.GradientTape(persistent=True) as tape:
                g_loss, d_loss, l1 = self.compute_losses(images, direction, training=True)
            for role, loss, network in (
                ("g", g_loss, self.generators[direction]),
                ("d", d_loss, self.discriminators[direction]),
            ):
                optimizer = self.network_optimizers[(role, direction)]
                variables = network.trainable_variables
                gradients = tape.gradient(optimizer.scale_loss(loss), variables)
                optimizer.apply_gradients(zip(gradients, variables, strict=True))
            del tape
            for kind, value in (("l1", l1), ("g", g_loss), ("d", d_loss)):
                self.trackers[f"{kind}_{direction}"].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


def paired_pipeline(t1: np.ndarray, t2: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless shuffled batches of pairs, each pair moved by one augmentation (the same seed
    for both images, so they stay aligned)."""
    data = tf.data.Dataset.from_tensor_slices((t1, t2)).cache()
    data = data.shuffle(len(t1), seed=seed, reshuffle_each_iteration=True).repeat()
    counter = tf.data.Dataset.counter()

    def moved(pair, i):
        key = tf.stack([tf.cast(seed, tf.int64), i])
        return tuple(processing.augment(image, key) for image in pair)

    data = tf.data.Dataset.zip((data, counter)).map(moved, num_parallel_calls=tf.data.AUTOTUNE)
    return data.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def budget_of(run_dir: Path) -> PairedBudget:
    """The budget of the finished CycleGAN run in `run_dir` (its run.json): head start plus
    training steps, its batch size and learning rate, decaying from the same step."""
    record = run_dir / "run.json"
    if not record.is_file():
        raise ParameterError(
            f"{record} is missing: the paired bound trains beside a finished course run; run "
            "`mri-course run --data phantom --out RUN_DIR` first."
        )
    p = json.loads(record.read_text())["parameters"]
    if p.get("DATA") != "phantom":
        raise ParameterError(
            f"{run_dir} is a run on {p.get('DATA')!r}: the paired bound needs the phantom's "
            "pairs (`mri-course run --data phantom`)."
        )
    earlier = earlier_lessons(run_dir)
    per_epoch = p["STEPS_PER_EPOCH"] or processing.steps_per_epoch(
        len(earlier.split.train["t1"]), len(earlier.split.train["t2"]), p["BATCH_SIZE"]
    )
    training_steps, head_start = p["EPOCHS"] * per_epoch, p.get("WARM_START_STEPS", 0)
    return PairedBudget(
        steps=head_start + training_steps,
        batch_size=p["BATCH_SIZE"],
        learning_rate=p["LEARNING_RATE"],
        decay_start=head_start + training_steps // 2,
    )


def paired_images(earlier: EarlierLessons) -> tuple[np.ndarray, np.ndarray]:
    """Every training slice of the run in both contrasts, prepared as the lessons prepare
    them: (T1, T2) arrays whose i-th images are one slice."""
    ids = sorted(set(earlier.split.train["t1"]) | set(earlier.split.train["t2"]))
    return tuple(
        processing.prepare(
            processing.select(earlier.dataset, c, ids), earlier.image_size, earlier.cleaning
        )
        for c in ("t1", "t2")
    )


def train_paired_bound(
    run_dir: str | os.PathLike, steps: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """Train pix2pix beside the phantom run in `run_dir` and export it into
    `run_dir/paired/models`; its budget, history and export folder. `steps` overrides the
    budget's (tests)."""
    run_dir = Path(run_dir)
    budget = budget_of(run_dir)
    if steps is not None:
        budget = PairedBudget(steps, budget.batch_size, budget.learning_rate, steps // 2)
    policy = keras.mixed_precision.global_policy()
    try:
        return _train_and_export(run_dir, budget, seed)
    finally:
        keras.mixed_precision.set_global_policy(policy)  # as it was, for the caller


def _train_and_export(run_dir: Path, budget: PairedBudget, seed: int) -> dict[str, Any]:
    earlier = earlier_lessons(run_dir)
    mixed = precision.use_mixed_precision("auto")
    set_seed(seed)
    size, networks = earlier.image_size, earlier.networks
    model = Pix2Pix(
        {
            d: models.unet_generator(networks["GENERATOR"], size, name=f"pix2pix_{d}")
            for d in DIRECTIONS
        },
        {
            d: models.patchgan_discriminator(networks["DISCRIMINATOR"], size, channels=2)
            for d in DIRECTIONS
        },
    )
    model.compile_for_training(budget, mixed_precision=mixed)
    t1, t2 = paired_images(earlier)
    history = model.fit(
        paired_pipeline(t1, t2, budget.batch_size, seed),
        epochs=1,
        steps_per_epoch=budget.steps,
        verbose=0,
    )
    models_dir = run_dir / "paired" / "models"
    record = {**export_record(earlier, seed), "trained_on_pairs": True, "steps": budget.steps}
    for direction, (source, target) in DIRECTIONS.items():
        images = {"t1": t1, "t2": t2}
        generator = test_time.averaged_over_copies(float32_copy(model.generators[direction]))
        fitted = calibration.fit_calibration(generator, images[source], images[target])
        extra = {**record, "calibrated": True, "test_time_augmentation": True}
        export_generator(
            calibration.calibrated(generator, fitted), models_dir, direction, size, extra
        )
    last = {name: round(float(values[-1]), 4) for name, values in history.history.items()}
    return {"budget": vars(budget), "final_losses": last, "models": str(models_dir)}
