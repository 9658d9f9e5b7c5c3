"""Training the CycleGAN (explained in 04_training).

`CycleGAN` is a `keras.Model` whose `train_step` runs one step of all four networks, so
`fit()` brings progress, callbacks, checkpoints, TensorBoard and `tf.distribute` for free.
Beyond the TensorFlow tutorial it has what the best CycleGAN implementations have: a history
pool of generated images for the discriminators, a constant-then-linear learning-rate decay,
and seeded, reproducible runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from . import losses
from ._tf import keras, tf
from .domain_randomisation import RandomAcquisition, randomise_acquisition


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
    # Re-acquire the generators' inputs at random (domain randomisation); None: off
    random_acquisition: RandomAcquisition | None = None

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


@dataclass(frozen=True)
class CycleGANLosses:
    """The four loss functions a CycleGAN trains with, weights included (lesson 04 writes them
    and hands them to `compile_for_training`, as keras.io's example passes its loss functions
    to `compile`)."""

    generator: Callable[[tf.Tensor], tf.Tensor]  # fake logits -> adversarial loss of G or F
    discriminator: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # real, fake logits -> loss
    cycle: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # real, cycled images -> loss
    identity: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # real, same images -> loss

    @classmethod
    def of(cls, config: TrainingConfig) -> CycleGANLosses:
        """Lesson 03's losses with `config`'s weights and kind of adversarial loss."""
        kind, weight = config.adversarial, config.lambda_cycle
        identity = config.identity_weight * weight
        return cls(
            generator=functools.partial(losses.generator_adversarial_loss, kind=kind),
            discriminator=functools.partial(losses.discriminator_loss, kind=kind),
            cycle=functools.partial(losses.cycle_loss, weight=weight),
            identity=functools.partial(losses.identity_loss, weight=identity),
        )


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
        self.loss_functions = CycleGANLosses.of(config)  # until compile_for_training says
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
        if config.random_acquisition is not None:  # no new state in runs without it
            self.acquisition_seed = keras.random.SeedGenerator(seed + 3)
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

    def compile_for_training(
        self,
        loss_functions: CycleGANLosses | None = None,
        mixed_precision: bool = False,
        **compile_kwargs,
    ) -> None:
        """Train with `loss_functions` (default: lesson 03's with the config's weights), and
        four Adam optimizers (beta_1 0.5) on one constant-then-linear schedule."""
        self.loss_functions = loss_functions or CycleGANLosses.of(self.config)
        self.schedule = ConstantThenLinearDecay(
            self.config.learning_rate, self.config.decay_start_step, self.config.total_steps
        )

        self.network_optimizers = adam_optimizers(self.config, self.schedule, mixed_precision)
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
        input_t1, input_t2 = self._acquired(real_t1, training), self._acquired(real_t2, training)
        fake_t2, same_t2 = _translate(self.generator_g, input_t1, real_t2, identity, training)
        fake_t1, same_t1 = _translate(self.generator_f, input_t2, real_t1, identity, training)
        cycled_t1 = self.generator_f(self._with_cycle_noise(fake_t2, training), training=training)
        cycled_t2 = self.generator_g(self._with_cycle_noise(fake_t1, training), training=training)
        real_logits_t2, pooled_logits_t2, fake_logits_t2 = discriminator_logits(
            self.discriminator_t2, self.pool_t2 if self.config.pool_size else None, real_t2,
            fake_t2, training,
        )  # fmt: skip
        real_logits_t1, pooled_logits_t1, fake_logits_t1 = discriminator_logits(
            self.discriminator_t1, self.pool_t1 if self.config.pool_size else None, real_t1,
            fake_t1, training,
        )  # fmt: skip

        loss = self.loss_functions
        cycle = loss.cycle(real_t1, cycled_t1) + loss.cycle(real_t2, cycled_t2)
        identity_g = identity_f = tf.constant(0.0)
        if identity:
            identity_g = loss.identity(real_t2, same_t2)
            identity_f = loss.identity(real_t1, same_t1)
        adversarial_g = loss.generator(fake_logits_t2)
        adversarial_f = loss.generator(fake_logits_t1)
        d_t2 = loss.discriminator(real_logits_t2, pooled_logits_t2)
        d_t1 = loss.discriminator(real_logits_t1, pooled_logits_t1)
        return {
            "g_t1_to_t2": adversarial_g + cycle + identity_g,
            "f_t2_to_t1": adversarial_f + cycle + identity_f,
            "d_t2": d_t2,
            "d_t1": d_t1,
            "cycle": cycle,
            "identity": identity_g + identity_f,
        }

    def _acquired(self, real: tf.Tensor, training: bool) -> tf.Tensor:
        """A generator's input: while training with `random_acquisition`, the real images
        re-acquired at random (the cycle still returns to the real ones); else as they are."""
        if not training or self.config.random_acquisition is None:
            return real
        return randomise_acquisition(real, self.acquisition_seed, self.config.random_acquisition)

    def _with_cycle_noise(self, fake: tf.Tensor, training: bool) -> tf.Tensor:
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
        if across_workers(tf.distribute.get_strategy()):
            # Keras averages a multi-worker run's logs along their first axis, which scalars
            # lack (keras-team/keras#20585): give each one, reduced back to a scalar.
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results


def adam_optimizers(
    config: TrainingConfig, schedule: ConstantThenLinearDecay, mixed_precision: bool
) -> dict[str, keras.optimizers.Optimizer]:
    """One Adam per network (beta_1 0.5) on the schedule; the generators' keep a weight
    average with `generator_average`; loss-scaled where the policy computes in float16."""

    def adam(name: str, average: float = 0.0) -> keras.optimizers.Optimizer:
        optimizer = keras.optimizers.Adam(
            schedule,
            beta_1=config.beta_1,
            use_ema=average > 0,
            ema_momentum=average or 0.99,
            name=f"adam_{name}",
        )
        return loss_scaled(optimizer) if mixed_precision else optimizer

    average = config.generator_average
    return {
        "g": adam("g", average),
        "f": adam("f", average),
        "d_t2": adam("d_t2"),
        "d_t1": adam("d_t1"),
    }


def discriminator_logits(
    discriminator: keras.Model, pool: ImagePool | None, real: tf.Tensor, fake: tf.Tensor,
    training: bool,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:  # fmt: skip
    """Discriminator logits for real images, pooled fakes (its own loss) and fresh fakes
    (the generator's loss). Without a pool (None) the pooled fakes are the fresh ones, so
    they are judged once: exactly the tutorial's arithmetic. With one, the fresh fakes get a
    call of their own: the generators' gradients then pass back through the discriminator
    on those images alone (8 % less work per `course` step)."""
    batch = tf.shape(real)[0]
    if not (training and pool is not None):
        real_logits, fake_logits = tf.split(
            discriminator(tf.concat([real, fake], 0), training=training), [batch, batch]
        )
        return real_logits, fake_logits, fake_logits
    pooled = tf.stop_gradient(pool(fake))
    real_logits, pooled_logits = tf.split(
        discriminator(tf.concat([real, pooled], 0), training=training), [batch, batch]
    )
    return real_logits, pooled_logits, discriminator(fake, training=training)


def across_workers(strategy: tf.distribute.Strategy) -> bool:
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


def loss_scaled(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """`optimizer` with loss scaling if the policy computes in float16, whose small gradients
    underflow without it; unchanged otherwise (bfloat16 has float32's range)."""
    if keras.mixed_precision.global_policy().compute_dtype == "float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
