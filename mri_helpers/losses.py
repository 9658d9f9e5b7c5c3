"""The CycleGAN's losses (explained in 03_model_building, "Losses").

Each is a small function of tensors, so a learner can evaluate it on numbers they can check by
hand. Discriminator outputs are logits: any real number, > 0 meaning "looks real".
"""

from __future__ import annotations

from ._tf import keras, tf

ADVERSARIAL_KINDS = ("lsgan", "bce")
LAMBDA_CYCLE = 10.0  # the CycleGAN paper's weight of cycle consistency
_bce = keras.losses.BinaryCrossentropy(from_logits=True)


def _check_kind(kind: str) -> None:
    if kind not in ADVERSARIAL_KINDS:
        raise ValueError(f"unknown adversarial loss {kind!r}; use one of {ADVERSARIAL_KINDS}")


def generator_adversarial_loss(fake_logits: tf.Tensor, kind: str = "lsgan") -> tf.Tensor:
    """Pushes the generator to make images the discriminator scores as real (target 1).

    lsgan: mean((D(fake) - 1)^2), the least-squares GAN loss the CycleGAN paper uses: smooth
    gradients even for fakes the discriminator is sure about. bce: cross-entropy from logits.
    """
    _check_kind(kind)
    if kind == "lsgan":
        return tf.reduce_mean(tf.square(fake_logits - 1.0))
    return _bce(tf.ones_like(fake_logits), fake_logits)


def discriminator_loss(
    real_logits: tf.Tensor, fake_logits: tf.Tensor, kind: str = "lsgan"
) -> tf.Tensor:
    """Pushes the discriminator to score real images 1 and generated ones 0; halved, as in the
    paper, so it learns more slowly than the generator."""
    _check_kind(kind)
    if kind == "lsgan":
        real = tf.reduce_mean(tf.square(real_logits - 1.0))
        fake = tf.reduce_mean(tf.square(fake_logits))
    else:
        real = _bce(tf.ones_like(real_logits), real_logits)
        fake = _bce(tf.zeros_like(fake_logits), fake_logits)
    return 0.5 * (real + fake)


def cycle_loss(real: tf.Tensor, cycled: tf.Tensor, weight: float = LAMBDA_CYCLE) -> tf.Tensor:
    """weight * mean|x - F(G(x))|: translating there and back must return the input, so the
    generator has to keep the anatomy (without it, any realistic T2 would do)."""
    return weight * tf.reduce_mean(tf.abs(real - cycled))


def identity_loss(
    real: tf.Tensor, same: tf.Tensor, weight: float = 0.5 * LAMBDA_CYCLE
) -> tf.Tensor:
    """weight * mean|y - G(y)|: a T2 image given to the T1->T2 generator should come out
    unchanged, which keeps the generator from shifting intensities it need not touch."""
    return weight * tf.reduce_mean(tf.abs(real - same))
