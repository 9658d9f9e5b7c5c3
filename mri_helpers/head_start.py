"""The head start (04_training, "A head start"): each generator first fitted to the classical
unpaired guess (`baselines.quantile_baseline`) for its training slices, so that adversarial
training only has to correct what a monotone map gets wrong.
"""

from __future__ import annotations

import numpy as np

from ._tf import keras, tf
from .baselines import quantile_baseline
from .processing import clean_slice, head_mask, prepare_images, select
from .training import CycleGAN, loss_scaled


def baseline_targets(
    sources: list[np.ndarray], target_examples: list[np.ndarray]
) -> list[np.ndarray]:
    """Classical unpaired guesses for each source slice: its head's intensities matched to
    the reversed histogram of the other contrast (`quantile_baseline`).

    Uses no pairs: only the target contrast's overall intensity distribution.
    """
    values = np.concatenate([t[head_mask(t)] for t in target_examples])
    return [quantile_baseline(s, head_mask(s), values) for s in sources]


def warm_start(
    generator: keras.Model,
    sources: np.ndarray,
    targets: np.ndarray,
    steps: int,
    batch_size: int,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> float:
    """Fit a generator by L1 to classical guesses for `steps` steps; return the last loss.

    A CycleGAN starts near the identity map, and T1 -> T2 is nearly an inversion: on the way
    from one to the other lie low-contrast maps that lose information, which the cycle loss
    punishes, and training stalls there (dark ventricles in "T2"). Starting from the
    classical inversion, the adversarial and cycle losses only have to correct what it gets
    wrong (fat, bone, noise), which takes far fewer steps.
    """
    if steps <= 0:
        return float("nan")
    data = tf.data.Dataset.from_tensor_slices((sources, targets))
    data = data.shuffle(len(sources), seed=seed).repeat().batch(batch_size, drop_remainder=True)
    strategy = generator.distribute_strategy  # the one its variables were made under
    with strategy.scope():
        distributed = tf.distribute.has_strategy()  # False for the default strategy
    if distributed:
        return _distributed_warm_start(generator, strategy, data, steps, learning_rate)
    optimizer = loss_scaled(keras.optimizers.Adam(learning_rate, beta_1=0.5))
    variables = generator.trainable_variables

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(generator(x, training=True) - y))
            scaled = optimizer.scale_loss(loss)  # the loss itself unless loss-scaled
        optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables, strict=True))
        return loss

    loss = float("nan")
    for x, y in data.take(steps):
        loss = float(step(x, y))
    return loss


def _distributed_warm_start(
    generator: keras.Model,
    strategy: tf.distribute.Strategy,
    data: tf.data.Dataset,
    steps: int,
    learning_rate: float,
) -> float:
    """`warm_start` for a generator made under a `tf.distribute` strategy (lesson 04 on
    several GPUs or machines): the same steps on the same global batches, each replica
    computing its share of every batch and the gradients summed over the replicas, as
    `CycleGAN.train_step` does. Every replica and worker applies the same summed gradients
    to the same starting weights, so all end with the same generator."""
    replicas = strategy.num_replicas_in_sync
    batch_size = data.element_spec[0].shape[0]
    if batch_size % replicas:
        raise ValueError(
            f"batch_size={batch_size} must be a multiple of the {replicas} replicas training "
            "together, so that each gets an equal share of every batch."
        )
    variables = generator.trainable_variables
    with strategy.scope():  # its slots mirrored like the generator's, made before the steps
        optimizer = loss_scaled(keras.optimizers.Adam(learning_rate, beta_1=0.5))
        optimizer.build(variables)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(generator(x, training=True) - y))
            # Gradients are summed over the replicas: each contributes its share.
            scaled = optimizer.scale_loss(loss / replicas)
        optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables, strict=True))
        return loss

    @tf.function
    def step(batch):
        losses = strategy.run(replica_step, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

    # Every worker builds the same seeded pipeline; each reads its replicas' share of it.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    batches = iter(strategy.experimental_distribute_dataset(data.with_options(options)))
    loss = float("nan")
    for _ in range(steps):
        loss = float(step(next(batches)))
    return loss


def warm_start_generators(
    model: CycleGAN,
    dataset,
    split,
    image_size: int,
    cleaning,
    steps: int,
    batch_size: int,
    seed: int = 0,
) -> dict[str, float]:
    """Warm-start both generators of `model` from the classical guesses for the training
    slices; return the final L1 loss of each."""
    cleaned = {
        m: [clean_slice(s.image, cleaning) for s in select(dataset, m, split.train[m])]
        for m in ("t1", "t2")
    }
    losses_by_direction = {}
    for direction, generator, source, target in (
        ("t1-to-t2", model.generator_g, "t1", "t2"),
        ("t2-to-t1", model.generator_f, "t2", "t1"),
    ):
        guesses = baseline_targets(cleaned[source], cleaned[target])
        losses_by_direction[direction] = warm_start(
            generator,
            prepare_images(cleaned[source], image_size),
            prepare_images(guesses, image_size),
            steps,
            batch_size,
            seed=seed,
        )
    return losses_by_direction
