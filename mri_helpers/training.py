"""Training the CycleGAN (explained in 04_training).

`CycleGAN` is a `keras.Model` whose `train_step` runs one step of all four networks, so
`fit()` brings progress, callbacks, checkpoints, TensorBoard and `tf.distribute` for free.
Beyond the TensorFlow tutorial it has what the best CycleGAN implementations have: a history
pool of generated images for the discriminators, a constant-then-linear learning-rate decay,
and seeded, reproducible runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

from . import fileio, losses
from ._tf import keras, tf
from .errors import CourseError


@dataclass(frozen=True)
class TrainingConfig:
    """The knobs of one training run; defaults are the CycleGAN paper's."""

    epochs: int
    steps_per_epoch: int
    learning_rate: float = 2e-4
    beta_1: float = 0.5
    decay_from_epoch: int | None = None  # None: half-way, as in the paper (100 of 200)
    lambda_cycle: float = losses.LAMBDA_CYCLE
    identity_weight: float = 0.5  # identity loss weight, as a share of lambda_cycle
    adversarial: str = "lsgan"
    pool_size: int = 50
    cycle_noise: float = 0.0  # std of noise added to fakes before the way back ([-1, 1] scale)
    generator_average: float = 0.0  # momentum of the generators' weight average; 0: off

    def __post_init__(self) -> None:
        for name in ("epochs", "steps_per_epoch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1.")
        if self.pool_size < 0:
            raise ValueError(f"pool_size={self.pool_size} must be 0 (off) or more.")
        if not 0.0 <= self.generator_average < 1.0:
            raise ValueError(
                f"generator_average={self.generator_average} must be in [0, 1): 0 for off, "
                "or a momentum such as 0.999."
            )
        losses.check_adversarial_kind(self.adversarial)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def decay_start_step(self) -> int:
        start = self.epochs // 2 if self.decay_from_epoch is None else self.decay_from_epoch
        return min(start, self.epochs) * self.steps_per_epoch


@keras.saving.register_keras_serializable(package="mri_helpers")
class ConstantThenLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate stays at `initial` until `decay_start`, then falls linearly to 0.

    `decay_start` and `total_steps` are variables, so `refit` can shorten the schedule of a
    running `fit()` (the time budget does) without tracing the step again.
    """

    def __init__(self, initial: float, decay_start: int, total_steps: int):
        self.initial = float(initial)
        self._decay_start = tf.Variable(float(decay_start), trainable=False, dtype=tf.float32)
        self._total_steps = tf.Variable(float(total_steps), trainable=False, dtype=tf.float32)

    @property
    def decay_start(self) -> int:
        return int(self._decay_start.numpy())

    @property
    def total_steps(self) -> int:
        return int(self._total_steps.numpy())

    def refit(self, decay_start: int, total_steps: int) -> None:
        """Decay from `decay_start` to 0 at `total_steps` instead."""
        self._decay_start.assign(float(decay_start))
        self._total_steps.assign(float(total_steps))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        decay_steps = tf.maximum(1.0, self._total_steps - self._decay_start)
        fraction = tf.clip_by_value((step - self._decay_start) / decay_steps, 0.0, 1.0)
        return self.initial * (1.0 - fraction)

    def get_config(self) -> dict:
        return {
            "initial": self.initial,
            "decay_start": self.decay_start,
            "total_steps": self.total_steps,
        }


class ImagePool(keras.layers.Layer):
    """A history of generated images, so the discriminator also sees older fakes.

    Until the pool is full, new images are stored and passed on. After that each new image is,
    with probability 1/2, swapped for a random stored one (which is passed on instead). This
    keeps the discriminator from forgetting what the generator did a few hundred steps ago and
    damps the two networks' oscillation (Shrivastava et al. 2017; the CycleGAN paper, 50).

    The pool is part of the model's weights, so checkpoints save and restore it. Under a
    distribution strategy the first replica's updates are kept ("only_first_replica").
    """

    def __init__(self, size: int, image_shape: tuple[int, int, int], seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.image_shape = tuple(image_shape)
        self.seed_generator = keras.random.SeedGenerator(seed)
        if size:
            self.images = self.add_weight(
                shape=(size, *self.image_shape),
                initializer="zeros",
                trainable=False,
                aggregation="only_first_replica",
                name="images",
            )
            self.count = self.add_weight(
                shape=(),
                initializer="zeros",
                dtype="int32",
                trainable=False,
                aggregation="only_first_replica",
                name="count",
            )

    def call(self, images: tf.Tensor) -> tf.Tensor:
        if not self.size:
            return images
        images = tf.cast(images, self.images.dtype)
        batch = tf.shape(images)[0]
        swap_draw = keras.random.uniform((batch,), seed=self.seed_generator)
        random_slot = keras.random.randint((batch,), 0, self.size, seed=self.seed_generator)
        position = self.count + tf.range(batch, dtype=tf.int32)
        filling = position < self.size
        swap = tf.logical_and(tf.logical_not(filling), swap_draw > 0.5)
        slot = tf.where(filling, position, random_slot)
        stored = tf.gather(self.images, tf.minimum(slot, self.size - 1))
        out = tf.where(swap[:, None, None, None], stored, images)
        write = tf.logical_or(filling, swap)
        self.images.assign(
            tf.tensor_scatter_nd_update(
                self.images, tf.boolean_mask(slot, write)[:, None], tf.boolean_mask(images, write)
            )
        )
        self.count.assign(tf.minimum(self.count + batch, self.size))
        return out


LOSS_NAMES = ("g_t1_to_t2", "f_t2_to_t1", "d_t2", "d_t1", "cycle", "identity")
NETWORK_LOSSES = {"g": "g_t1_to_t2", "f": "f_t2_to_t1", "d_t2": "d_t2", "d_t1": "d_t1"}


class CycleGAN(keras.Model):
    """Two generators (G: T1->T2, F: T2->T1) and two discriminators, trained together.

    Calling the model translates T1 to T2 with G. Train with `compile_for_training()` and
    `fit(dataset)`, where each dataset element is a (T1 batch, T2 batch) pair of unrelated
    images.
    """

    def __init__(
        self,
        generator_g: keras.Model,
        generator_f: keras.Model,
        discriminator_t2: keras.Model,
        discriminator_t1: keras.Model,
        config: TrainingConfig,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.generator_g = generator_g
        self.generator_f = generator_f
        self.discriminator_t2 = discriminator_t2
        self.discriminator_t1 = discriminator_t1
        self.config = config
        image_shape = tuple(generator_g.input_shape[1:])
        # The pools hold the generators' float32 outputs, whatever the precision policy.
        self.pool_t2 = ImagePool(
            config.pool_size, image_shape, seed=seed, name="pool_t2", dtype="float32"
        )
        self.pool_t1 = ImagePool(
            config.pool_size, image_shape, seed=seed + 1, name="pool_t1", dtype="float32"
        )
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}
        self.noise_seed = keras.random.SeedGenerator(seed + 2)
        self.built = True  # its networks are built; checkpoints need a built model

    def call(self, images, training=False):
        return self.generator_g(images, training=training)

    def fit(self, *args, shuffle: bool = False, **kwargs):
        """Keras's `fit()`; the input is a `tf.data` pipeline that shuffles itself, so Keras is
        not asked to shuffle (it would only warn that it cannot)."""
        return super().fit(*args, shuffle=shuffle, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds a model at the start of fit() by averaging its first batch over the
        # replicas, which fails under MultiWorkerMirroredStrategy (keras-team/keras#20585).
        # Nothing here needs it: compile_for_training() builds the networks, optimizers and
        # pools, and the losses are this model's own.
        return

    def compile_for_training(self, mixed_precision: bool = False, **compile_kwargs) -> None:
        """Four Adam optimizers (2e-4, beta_1 0.5) on one constant-then-linear schedule."""
        self.schedule = ConstantThenLinearDecay(
            self.config.learning_rate, self.config.decay_start_step, self.config.total_steps
        )

        def adam(name: str, average: float = 0.0) -> keras.optimizers.Optimizer:
            optimizer = keras.optimizers.Adam(
                self.schedule,
                beta_1=self.config.beta_1,
                use_ema=average > 0,
                ema_momentum=average or 0.99,
                name=f"adam_{name}",
            )
            return loss_scaled(optimizer) if mixed_precision else optimizer

        average = self.config.generator_average
        self.network_optimizers = {
            "g": adam("g", average),
            "f": adam("f", average),
            "d_t2": adam("d_t2"),
            "d_t1": adam("d_t1"),
        }
        super().compile(**compile_kwargs)
        # Build the optimizers and pools now, so BackupAndRestore can restore into them.
        for name, networks in self._trained_networks().items():
            self.network_optimizers[name].build(_variables(networks))
        for pool in (self.pool_t1, self.pool_t2):
            if not pool.built:
                pool.build(None)

    def _all_networks(self) -> list[keras.Model]:
        return [self.generator_g, self.generator_f, self.discriminator_t2, self.discriminator_t1]

    def _trained_networks(self) -> dict[str, list[keras.Model]]:
        return {
            "g": [self.generator_g],
            "f": [self.generator_f],
            "d_t2": [self.discriminator_t2],
            "d_t1": [self.discriminator_t1],
        }

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    def compute_losses(
        self, real_t1: tf.Tensor, real_t2: tf.Tensor, training: bool = True
    ) -> dict[str, tf.Tensor]:
        """All losses of one step; the arithmetic of the CycleGAN paper, in few network calls.

        Each generator runs once on every image that goes through it before the cycle (the
        real image of the other contrast, and its own contrast for the identity loss), and each
        discriminator once on real, pooled and fresh fakes together. Instance normalisation
        works image by image, so batching them changes nothing in the mathematics.
        """
        c = self.config
        # Without an identity loss (weight 0, as in `course`) its images are not computed.
        identity = c.identity_weight != 0
        fake_t2, same_t2 = _translate(self.generator_g, real_t1, real_t2, identity, training)
        fake_t1, same_t1 = _translate(self.generator_f, real_t2, real_t1, identity, training)
        cycled_t1 = self.generator_f(self._hide_nothing(fake_t2, training), training=training)
        cycled_t2 = self.generator_g(self._hide_nothing(fake_t1, training), training=training)
        real_logits_t2, pooled_logits_t2, fake_logits_t2 = self._judge(
            self.discriminator_t2, self.pool_t2, real_t2, fake_t2, training
        )
        real_logits_t1, pooled_logits_t1, fake_logits_t1 = self._judge(
            self.discriminator_t1, self.pool_t1, real_t1, fake_t1, training
        )

        cycle = losses.cycle_loss(real_t1, cycled_t1, c.lambda_cycle) + losses.cycle_loss(
            real_t2, cycled_t2, c.lambda_cycle
        )
        identity_weight = c.identity_weight * c.lambda_cycle
        identity_g = identity_f = tf.constant(0.0)
        if identity:
            identity_g = losses.identity_loss(real_t2, same_t2, identity_weight)
            identity_f = losses.identity_loss(real_t1, same_t1, identity_weight)
        adversarial_g = losses.generator_adversarial_loss(fake_logits_t2, c.adversarial)
        adversarial_f = losses.generator_adversarial_loss(fake_logits_t1, c.adversarial)
        d_t2 = losses.discriminator_loss(real_logits_t2, pooled_logits_t2, c.adversarial)
        d_t1 = losses.discriminator_loss(real_logits_t1, pooled_logits_t1, c.adversarial)
        return {
            "g_t1_to_t2": adversarial_g + cycle + identity_g,
            "f_t2_to_t1": adversarial_f + cycle + identity_f,
            "d_t2": d_t2,
            "d_t1": d_t1,
            "cycle": cycle,
            "identity": identity_g + identity_f,
        }

    def _judge(self, discriminator, pool, real, fake, training: bool):
        """Discriminator logits for real images, pooled fakes (its own loss) and fresh fakes
        (the generator's loss). Without a pool the pooled fakes are the fresh ones, so they
        are judged once: exactly the tutorial's arithmetic. With one, the fresh fakes get a
        call of their own: the generators' gradients then pass back through the
        discriminator on those images alone (8 % less work per `course` step)."""
        batch = tf.shape(real)[0]
        if not (training and self.config.pool_size):
            real_logits, fake_logits = tf.split(
                discriminator(tf.concat([real, fake], 0), training=training), [batch, batch]
            )
            return real_logits, fake_logits, fake_logits
        pooled = tf.stop_gradient(pool(fake))
        real_logits, pooled_logits = tf.split(
            discriminator(tf.concat([real, pooled], 0), training=training), [batch, batch]
        )
        return real_logits, pooled_logits, discriminator(fake, training=training)

    def _hide_nothing(self, fake: tf.Tensor, training: bool) -> tf.Tensor:
        """Noise on a fake before the way back, so no invisible signal survives the cycle.

        A CycleGAN can cheat the cycle loss by hiding the input in faint patterns of its
        output (Chu et al. 2017, "CycleGAN, a master of steganography"): then it may paint
        the ventricles dark in "T2" and still recover the T1. Noise destroys such patterns,
        so only what is visible in the fake can bring the input back.
        """
        if not training or not self.config.cycle_noise:
            return fake
        noise = keras.random.normal(tf.shape(fake), seed=self.noise_seed)
        return fake + self.config.cycle_noise * tf.cast(noise, fake.dtype)

    def train_step(self, data):
        real_t1, real_t2 = data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape(persistent=True) as tape:
            step_losses = self.compute_losses(real_t1, real_t2, training=True)
            # Gradients are summed over replicas, so each replica contributes its share.
            scaled = {
                name: self.network_optimizers[name].scale_loss(step_losses[key] / replicas)
                for name, key in NETWORK_LOSSES.items()
            }
        # One gradient per network, of its own loss, as in the tutorial. (One pass for both
        # generators, of all their terms, gives the same gradients but measured slower here:
        # TensorFlow's graph optimiser already shares the work the four passes repeat.)
        for name, networks in self._trained_networks().items():
            variables = _variables(networks)
            gradients = tape.gradient(scaled[name], variables)
            self.network_optimizers[name].apply_gradients(zip(gradients, variables, strict=True))
        del tape
        for name, value in step_losses.items():
            self.trackers[name].update_state(value)
        results = {name: tracker.result() for name, tracker in self.trackers.items()}
        if _across_workers(tf.distribute.get_strategy()):
            # Keras averages a multi-worker run's logs along their first axis, which scalars
            # lack (keras-team/keras#20585): give each one, reduced back to a scalar.
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results


def _across_workers(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` trains across several worker processes."""
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )


def _translate(generator, real, own, identity: bool, training: bool):
    """`generator` on `real` images (the fakes) and, for the identity loss, on its own
    contrast's images in the same call; (fakes, same) or, without `identity`, (fakes, None)."""
    if not identity:
        return generator(real, training=training), None
    return _halves(generator(tf.concat([real, own], 0), training=training))


def _halves(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    first, second = tf.split(images, 2)
    return first, second


def _variables(networks: list[keras.Model]) -> list:
    return [v for network in networks for v in network.trainable_variables]


# --- callbacks (04_training, "Watching training") ------------------------------------------
class ProgressLog(keras.callbacks.Callback):
    """One line per epoch: the losses, the time so far and an estimate of the time left.

    Keras's own progress bar redraws itself many times a second, which floods notebooks, CI
    logs and the batch runner's output; one line an epoch reads well in all three.
    """

    def __init__(self, every: int = 1):
        super().__init__()
        self.every = max(1, every)

    def on_train_begin(self, logs=None):
        self._start, self._first_epoch = time.perf_counter(), None

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch is None:  # a resumed run starts at its checkpoint's epoch
            self._first_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        total = self.params.get("epochs") or epoch + 1
        if (epoch + 1) % self.every and epoch + 1 != total:
            return
        logs = logs or {}
        losses_text = "  ".join(f"{k} {logs[k]:.3f}" for k in LOSS_NAMES if k in logs)
        elapsed = time.perf_counter() - self._start
        left = elapsed / (epoch + 1 - self._first_epoch) * (total - epoch - 1)
        print(
            f"epoch {epoch + 1}/{total}  {losses_text}  | {duration(elapsed)} so far, "
            f"about {duration(left)} left",
            flush=True,
        )


def duration(seconds: float) -> str:
    """`seconds` as a short text: "42 s", "3.5 min", "1.2 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


CONFIGURATION_FILE = "configuration.json"  # in RUN_DIR/backup: what made the checkpoint


def resume_or_start(
    run_dir: str | os.PathLike, configuration: dict[str, Any], restart: bool = False
) -> bool:
    """Whether training in `run_dir` resumes an interrupted run from its checkpoint
    (BackupAndRestore's, in `run_dir/backup`).

    A checkpoint records the `configuration` that made it. A run with the same configuration
    resumes; one with another is refused before any training, naming each change, unless
    `restart`: then the old checkpoint is deleted. A fresh start also removes the history,
    quality log, samples and TensorBoard logs a finished run left, so the new run's files are
    its own (its exports replace the old ones as they are written); only the damaged
    checkpoints BackupAndRestore set aside stay, unless `restart`.
    """
    run_dir = Path(run_dir)
    backup = run_dir / "backup"
    configuration = json.loads(json.dumps(configuration, default=str))  # as it is stored
    has_checkpoint = any((backup / name).exists() for name in CHECKPOINT_FILES)
    if has_checkpoint and not restart:
        try:
            recorded = json.loads((backup / CONFIGURATION_FILE).read_text())
        except (OSError, ValueError):
            recorded = None
        changes = configuration_changes(recorded, configuration)
        if not changes:
            return True
        raise CourseError(
            f"{backup} holds the checkpoint of an interrupted run with other settings: "
            f"{'; '.join(changes)}. Resuming it with these settings would mix two runs. Either "
            "choose a new RUN_DIR, or start afresh here with RESTART = True (which deletes that "
            "checkpoint)."
        )
    _clear_backup(backup, keep_damaged=not restart)
    for folder in (run_dir / "samples", run_dir / "tensorboard"):
        shutil.rmtree(folder, ignore_errors=True)
    (run_dir / "history.csv").unlink(missing_ok=True)
    (run_dir / "quality.csv").unlink(missing_ok=True)
    backup.mkdir(parents=True, exist_ok=True)
    fileio.write_text(
        backup / CONFIGURATION_FILE, json.dumps(configuration, indent=2, sort_keys=True)
    )
    return False


def _clear_backup(backup: Path, keep_damaged: bool) -> None:
    """Remove `backup`, or all in it but the damaged checkpoints BackupAndRestore set aside."""
    kept = list(backup.glob(f"*{DAMAGED}*")) if keep_damaged and backup.is_dir() else []
    if not kept:
        shutil.rmtree(backup, ignore_errors=True)
        return
    for path in backup.iterdir():
        if path in kept:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


CHECKPOINT_FILES = ("latest.weights.h5", "latest.weights.h5.bkp")  # BackupAndRestore's
DAMAGED = ".damaged-"  # a checkpoint that could not be restored: NAME.damaged-<time>, kept


def configuration_changes(recorded: Any, current: dict[str, Any]) -> list[str]:
    """Each difference between a recorded configuration and the current one, as
    "NAME old -> new"; a missing or unreadable record is one difference."""
    if not isinstance(recorded, dict):
        return ["the checkpoint does not record its settings (unreadable or missing)"]
    names = sorted(set(recorded) | set(current))
    missing = "(not set)"
    return [
        f"{name} {recorded.get(name, missing)!r} -> {current.get(name, missing)!r}"
        for name in names
        if recorded.get(name, missing) != current.get(name, missing)
    ]


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop at the first NaN or Inf loss, say which loss at which step, keep good weights.

    Keras's TerminateOnNaN watches only a loss called "loss" and keeps the broken weights; a
    CycleGAN has six losses, and a NaN step has already written NaN into the weights. So the
    weights are copied at the end of every epoch and put back when training stops. The first
    copy is taken when the first epoch begins, after every callback's `on_train_begin` (a
    resumed run's checkpoint is restored there).
    """

    def on_train_begin(self, logs=None):
        self.good_weights, self.message = None, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.good_weights is None:
            self.good_weights, self.good_epoch = self.model.get_weights(), epoch

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if name in LOSS_NAMES and not np.isfinite(float(value)):
                self.message = (
                    f"training stopped: loss {name!r} became {float(value)} at epoch "
                    f"{self.epoch + 1}, step {batch + 1}. The weights are those after epoch "
                    f"{self.good_epoch}. Lower the learning rate or check the input data."
                )
                print(self.message, flush=True)
                self.model.set_weights(self.good_weights)
                self.model.stop_training = True
                return

    def on_epoch_end(self, epoch, logs=None):
        if self.message is None:
            self.good_weights = self.model.get_weights()
            self.good_epoch = epoch + 1


class AveragedGenerators(keras.callbacks.Callback):
    """Hand the callbacks after it the generators' weight average, and keep it at the end.

    A GAN's weights never settle: each step moves them against a discriminator that moves
    too, so the images of any one step carry that step's jitter. The exponential moving
    average of the weights (Adam's `use_ema`; Yazici et al. 2019, as in StyleGAN and BigGAN)
    is steadier, for long runs. In a short run it lags: on the phantom, 1,500 steps with a
    momentum of 0.999 scored below the raw weights, so the `course` profile leaves it off.
    Training itself always continues from the raw weights.
    """

    def __init__(self):
        super().__init__()
        self.raw_weights = None  # the generators' own weights while the average is shown

    def on_epoch_begin(self, epoch, logs=None):
        if self.raw_weights is not None:
            for generator, weights in zip(self._generators(), self.raw_weights, strict=True):
                generator.set_weights(weights)
        self.raw_weights = None

    def on_epoch_end(self, epoch, logs=None):
        self.raw_weights = [generator.get_weights() for generator in self._generators()]
        for name, generator in zip(("g", "f"), self._generators(), strict=True):
            self.model.network_optimizers[name].finalize_variable_values(
                generator.trainable_variables
            )

    def on_train_end(self, logs=None):
        self.raw_weights = None  # the trained generators are the averaged ones

    def _generators(self) -> list[keras.Model]:
        return [self.model.generator_g, self.model.generator_f]


class SampleImages(keras.callbacks.Callback):
    """After every epoch, translate fixed held-out slices both ways and save a PNG; at the end,
    join them into an animated GIF of training."""

    def __init__(self, t1: np.ndarray, t2: np.ndarray, folder: str | os.PathLike):
        super().__init__()
        self.t1, self.t2 = t1, t2
        self.folder = Path(folder)
        self.frames: list[Path] = []

    def on_epoch_end(self, epoch, logs=None):
        fake_t2 = self.model.generator_g(self.t1, training=False).numpy()
        fake_t1 = self.model.generator_f(self.t2, training=False).numpy()
        rows = [np.concatenate(list(images[..., 0]), axis=1) for images in (
            self.t1, fake_t2, self.t2, fake_t1
        )]  # fmt: skip
        grid = np.clip(np.round((np.concatenate(rows) + 1.0) * 127.5), 0, 255).astype(np.uint8)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"epoch_{epoch + 1:03d}.png"
        Image.fromarray(grid).save(path)
        self.frames.append(path)

    def on_train_end(self, logs=None):
        if self.frames:
            frames = [Image.open(p) for p in sorted(self.folder.glob("epoch_*.png"))]
            frames[0].save(
                self.folder / "training.gif", save_all=True, append_images=frames[1:],
                duration=400, loop=0,
            )  # fmt: skip


def use_mixed_precision(setting: str = "auto") -> bool:
    """Set Keras's precision policy (`precision_policy`); say whether it is a mixed one.

    Call before building the models.
    """
    policy = precision_policy(setting)
    keras.mixed_precision.set_global_policy(policy)
    return policy != "float32"


def precision_policy(
    setting: str = "auto", gpu: bool | None = None, native_bf16: bool | None = None
) -> str:
    """The Keras policy for `setting` "auto", "on" or "off" on this machine.

    Mixed precision computes in 16 bits and keeps the weights in float32. On a GPU that is
    float16 (roughly twice the throughput). On a CPU it is bfloat16, which pays only where the
    processor computes it natively (AVX512_BF16 or AMX): there the tutorial's step measured
    1.6x faster (docs/performance.md); elsewhere it is emulated and slower, so "auto" keeps
    float32.
    """
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"mixed precision {setting!r}: use 'auto', 'on' or 'off'.")
    gpu = bool(tf.config.list_logical_devices("GPU")) if gpu is None else gpu
    native_bf16 = cpu_computes_bfloat16() if native_bf16 is None else native_bf16
    if setting == "off" or (setting == "auto" and not gpu and not native_bf16):
        return "float32"
    return "mixed_float16" if gpu else "mixed_bfloat16"


def cpu_computes_bfloat16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether the processor has bfloat16 instructions (Linux `cpuinfo` flags)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False  # not Linux, or unreadable: do not guess
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def loss_scaled(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """`optimizer` with loss scaling if the policy computes in float16, whose small gradients
    underflow without it; unchanged otherwise (bfloat16 has float32's range)."""
    if keras.mixed_precision.global_policy().compute_dtype == "float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def distribution_strategy() -> tf.distribute.Strategy:
    """The strategy this process trains under: MultiWorkerMirroredStrategy when the
    environment's TF_CONFIG names several workers (one process of a run across machines),
    MirroredStrategy over all GPUs when there are several, else the default strategy."""
    if len(cluster_workers()) > 1:
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:  # "Collective ops must be configured at program startup"
            if "startup" not in str(error):
                raise
            raise CourseError(
                "a run across machines (TF_CONFIG) must create its strategy before TensorFlow "
                "runs anything: call training.distribution_strategy() first (lesson 04 does, at "
                "the top of its first cell after the parameters), then restart the kernel or "
                "the process."
            ) from None
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def cluster_workers() -> list[str]:
    """The addresses of the workers (and chief) TF_CONFIG names; empty without TF_CONFIG."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return []
    try:
        cluster = json.loads(text)["cluster"]
        return [*cluster.get("chief", []), *cluster.get("worker", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CourseError(
            'TF_CONFIG is not valid: it must be JSON like {"cluster": {"worker": '
            '["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}.'
        ) from None


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: the only process, or in a multi-worker
    run the chief (the "chief" task, else worker 0), as TensorFlow's multi-worker guide has
    it; the other workers compute the same steps and write nothing that lasts."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (
        not has_chief and resolver.task_type == "worker" and resolver.task_id == 0
    )


def writing_folder(run_dir: str | os.PathLike, strategy: tf.distribute.Strategy) -> str:
    """Where this process writes the run's files: `run_dir` on the chief or a lone process.

    Any other worker of a run across machines gets a temporary folder, removed when the
    process exits, so it never writes into the chief's (shared) run folder. The folder starts
    with a copy of the chief's checkpoint (`run_dir/backup`, read only): there the worker
    decides to resume (`resume_or_start`) and backs up, as the chief does in `run_dir`.
    """
    if is_chief(strategy):
        return os.fspath(run_dir)
    import atexit
    import tempfile

    task = strategy.cluster_resolver.task_id
    folder = Path(tempfile.mkdtemp(prefix=f"mri-course-worker{task}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    shared = Path(run_dir) / "backup"
    if shared.is_dir():
        (folder / "backup").mkdir()
        for file in shared.iterdir():
            try:
                shutil.copy2(file, folder / "backup" / file.name)
            except FileNotFoundError:  # the chief removed it as it started afresh (RESTART)
                continue
    return os.fspath(folder)


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore, with checkpoints written whole or not at all, a damaged one
    set aside for the one before it, and in a run across machines a first check that every
    worker resumes at the same epoch (a clear error otherwise, before any step).

    Every file is written under a temporary name in its folder and renamed into place, and
    the previous checkpoint (`double_checkpoint`) is kept by a rename, so a kill leaves whole
    files only. The weights file holds its own epoch (an HDF5 attribute, set before it is
    renamed into place) and restoring trusts it over the JSON beside it: weights and epoch
    agree wherever a kill falls.

    Give each process its own folder (`writing_folder(RUN_DIR, strategy)/backup`): the
    callback writes wherever it is given, on every worker.
    """

    def __init__(self, backup_dir: str | os.PathLike, strategy: tf.distribute.Strategy, **kw):
        super().__init__(os.fspath(backup_dir), **kw)
        self.strategy = strategy

    def on_train_begin(self, logs=None):
        if _across_workers(self.strategy):  # before restoring, which may be a collective
            epochs = workers_values(self.strategy, self._checkpoint_epoch())
            if len(set(epochs)) > 1:
                raise CourseError(
                    "the workers would start at different epochs "
                    f"({', '.join(map(str, epochs))}, chief first): they do not see the same "
                    "checkpoint. Give every machine the same run folder on a shared file "
                    "system; start every worker of a fresh run without --resume, and every "
                    "worker of an interrupted one with --resume."
                )
        with self.strategy.scope():  # restoring may build the optimizers' variables
            self._restore()

    def _save_model(self):
        """The checkpoint: its weights with their epoch, then the JSON of that epoch, each
        renamed into place whole; the previous weights and JSON kept by renames first."""
        os.makedirs(self.backup_dir, exist_ok=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        with fileio.replacing(self._weights_path) as partial:
            self.model.save_weights(partial, overwrite=True)
            with h5py.File(partial, "a") as written:
                written.attrs.update(metadata)
            with partial.open("rb+") as written:  # on disk before the previous one moves
                os.fsync(written.fileno())
            if self.double_checkpoint and os.path.isfile(self._weights_path):
                os.replace(self._weights_path, self._prev_weights_path)
                if os.path.isfile(self._training_metadata_path):
                    os.replace(self._training_metadata_path, self._prev_training_metadata_path)
        fileio.write_json(self._training_metadata_path, metadata)

    def _restore(self) -> None:
        """Load the latest checkpoint, or the previous one when the latest is missing or
        damaged; a damaged one is named and set aside (never deleted); without a sound one,
        training starts afresh."""
        if not self.model.built:
            raise ValueError(
                "To use the BackupAndRestore callback, your model must be built before you "
                f"call `fit()`. Model {self.model} is unbuilt. You can build it beforehand by "
                "calling it on a batch of data."
            )
        for leftover in Path(self.backup_dir).glob(".*.partial*"):  # of a killed write
            leftover.unlink(missing_ok=True)
        latest = self._weights_path
        sources = [p for p in (latest, self._prev_weights_path) if os.path.isfile(p)]
        if not sources:
            return  # a fresh run
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:  # its variables exist to be loaded
            optimizer.build(self.model.trainable_variables)
        snapshot = None  # the model as it was, should a failed load leave it half loaded
        try:
            for source in sources:
                try:
                    epoch, batch = self._stored_state(source)
                except Exception as error:  # whatever the damage: set aside
                    self._set_aside(source, error)
                    continue
                if source != latest:  # the previous checkpoint becomes the latest
                    os.replace(source, latest)
                if snapshot is None:
                    snapshot = self._snapshot()
                try:
                    self.model.load_weights(latest)
                except Exception as error:  # a mismatch, or damage h5py let by
                    self._set_aside(latest, error, source)
                    continue
                self.model._initial_epoch = epoch
                self._record(epoch, batch)
                if source != latest:
                    print(
                        f"resuming from the previous checkpoint {source} (after epoch {epoch}).",
                        flush=True,
                    )
                return
            if snapshot is not None:
                self.model.load_weights(snapshot)
            print(
                f"no sound checkpoint left in {self.backup_dir}: training starts afresh.",
                flush=True,
            )
        finally:
            if snapshot is not None:
                os.unlink(snapshot)

    def _stored_state(self, path: str) -> tuple[int, int]:
        """(epoch, batch) of the weights file `path`, every array of which is read: an
        exception if it is damaged or incomplete."""
        with h5py.File(path, "r") as stored:
            stored.visititems(_read_dataset)
            if "epoch" in stored.attrs:
                return int(stored.attrs["epoch"]), int(stored.attrs.get("batch", 0))
        # Written before the weights held their epoch: the JSON beside them, as Keras reads.
        json_path = (
            self._training_metadata_path
            if path == self._weights_path
            else self._prev_training_metadata_path
        )
        try:
            recorded = json.loads(Path(json_path).read_text())
            return int(recorded["epoch"]), int(recorded.get("batch", 0))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return 0, 0

    def _checkpoint_epoch(self) -> int:
        """The epoch the checkpoint in this worker's folder resumes at; 0 without one."""
        for path in (self._weights_path, self._prev_weights_path):
            if os.path.isfile(path):
                with contextlib.suppress(Exception):  # damaged: restoring sets it aside
                    return self._stored_state(path)[0]
        return 0

    def _snapshot(self) -> str:
        """The model's weights (and optimizers'), saved to a temporary file."""
        handle, path = tempfile.mkstemp(
            prefix=".restore-snapshot.", suffix=".partial.weights.h5", dir=self.backup_dir
        )
        os.close(handle)
        self.model.save_weights(path, overwrite=True)
        return path

    def _set_aside(self, path: str, error: Exception, source: str | None = None) -> None:
        """Rename the damaged checkpoint `path` (first written as `source`) to
        SOURCE.damaged-<time>, and say so in one line."""
        source = source or path
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside, count = Path(f"{source}{DAMAGED}{stamp}"), 1
        while aside.exists():
            count += 1
            aside = Path(f"{source}{DAMAGED}{stamp}-{count}")
        os.replace(path, aside)
        reason = (str(error).strip().splitlines() or [""])[0][:160]
        print(
            f"checkpoint {source} is damaged or incomplete "
            f"({type(error).__name__}: {reason}); set aside as {aside.name}.",
            flush=True,
        )

    def _record(self, epoch: int, batch: int) -> None:
        """The training metadata JSON, made to agree with the restored weights."""
        metadata = {"epoch": epoch, "batch": batch}
        try:
            if json.loads(Path(self._training_metadata_path).read_text()) == metadata:
                return
        except (OSError, ValueError):
            pass
        fileio.write_json(self._training_metadata_path, metadata)

    def on_train_end(self, logs=None):
        """A finished run's checkpoint is deleted (`delete_checkpoint`), not the damaged
        ones set aside."""
        if self.delete_checkpoint:
            _clear_backup(Path(self.backup_dir), keep_damaged=True)


def _read_dataset(name: str, item: Any) -> None:
    """Read an HDF5 dataset whole (h5py's `visititems`; None: go on)."""
    if isinstance(item, h5py.Dataset):
        item[()]


def workers_values(strategy: tf.distribute.Strategy, value: int) -> list[int]:
    """`value` of every worker (each replica's), in worker order; a collective, so every
    worker must call it at the same point."""
    per_replica = strategy.run(lambda: tf.constant([value], tf.int64))
    gathered = strategy.gather(per_replica, axis=0).numpy().tolist()
    replicas_per_worker = strategy.num_replicas_in_sync // len(cluster_workers())
    return gathered[::replicas_per_worker]


# --- time budget (04_training, TIME_BUDGET_MINUTES) ----------------------------------------
class TimeBudget(keras.callbacks.Callback):
    """Fit the run's epochs and learning-rate decay to `minutes` of training.

    After the first epochs (the first one also traces the step, so the second is timed), the
    remaining time is divided by the measured seconds per epoch: if fewer epochs than asked
    fit, the run is shortened to them and the schedule refitted so that the learning rate still
    decays to zero at the new end, from the same share of the run as before. It only ever
    shortens a run. The decision is written to `record` (JSON), so a resumed run keeps it.
    """

    def __init__(
        self, minutes: float, record: str | os.PathLike, reserve: float = 0.05, clock=None
    ):
        super().__init__()
        self.clock = clock or time.perf_counter  # seconds; tests pass their own
        if not minutes > 0:
            raise ValueError(f"minutes={minutes!r} must be > 0 (leave the budget off instead).")
        self.minutes, self.record, self.reserve = float(minutes), Path(record), reserve
        self.epochs: int | None = None  # the fitted number of epochs, once decided

    def on_train_begin(self, logs=None):
        if len(cluster_workers()) > 1:
            raise CourseError(
                "TIME_BUDGET_MINUTES times one machine; workers of a multi-machine run would "
                "each decide their own schedule. Set TIME_BUDGET_MINUTES=0 and choose EPOCHS."
            )
        self._start, self._epoch_start, self._first_epoch = self.clock(), None, None
        self._epoch_seconds: list[float] = []
        self.asked = self.params["epochs"]

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch is None:
            self._first_epoch = epoch
            if epoch > 0 and self.record.is_file():  # resumed: keep the earlier decision
                self._apply(int(json.loads(self.record.read_text())["epochs"]))
        self._epoch_start = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        self._epoch_seconds.append(self.clock() - self._epoch_start)
        if self.epochs is None and (len(self._epoch_seconds) >= 2 or epoch == 1):
            timed = self._epoch_seconds[1:] or self._epoch_seconds
            per_epoch = sum(timed) / len(timed)
            left = self.minutes * 60 * (1 - self.reserve) - (self.clock() - self._start)
            fitted = min(self.asked, epoch + 1 + max(0, int(left // per_epoch)))
            self._apply(max(fitted, epoch + 1))
            self.record.parent.mkdir(parents=True, exist_ok=True)
            fileio.write_json(
                self.record,
                {
                    "minutes": self.minutes,
                    "epochs": self.epochs,
                    "asked": self.asked,
                    "seconds_per_epoch": round(per_epoch, 2),
                },
            )
            print(
                f"time budget {self.minutes:g} min: {per_epoch:.1f} s per epoch, so "
                f"{self.epochs} of {self.asked} epochs",
                flush=True,
            )
        if self.epochs is not None and epoch + 1 >= self.epochs:
            self.model.stop_training = True

    def _apply(self, epochs: int) -> None:
        asked = self.asked
        self.epochs = min(epochs, asked)
        schedule = self.model.schedule
        steps = self.params["steps"] or schedule.total_steps // asked
        share = schedule.decay_start / max(1, schedule.total_steps)
        schedule.refit(round(share * self.epochs) * steps, self.epochs * steps)
        self.params["epochs"] = self.epochs  # the progress line's "epoch n/N" and time left
