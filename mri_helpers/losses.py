"""The CycleGAN's losses, each a small function of tensors.

Generated from the lessons' `# @save` cells by `mri-course export-lessons`: edit the
lesson, then run it (never this file).
"""

from __future__ import annotations

from mri_helpers._tf import keras, tf

# Defined in 03_model_building, 'The losses'.
ADVERSARIAL_KINDS = ("lsgan", "bce")


LAMBDA_CYCLE = 10.0  # the CycleGAN paper's weight of cycle consistency


def check_adversarial_kind(kind: str) -> None:
    """Refuse an adversarial loss other than "lsgan" or "bce", saying which exist."""
    if kind not in ADVERSARIAL_KINDS:
        raise ValueError(f"unknown adversarial loss {kind!r}; use one of {ADVERSARIAL_KINDS}")


def generator_adversarial_loss(fake_logits: tf.Tensor, kind: str = "lsgan") -> tf.Tensor:
    """Pushes the generator to make images the discriminator scores as real (target 1).

    lsgan: mean((D(fake) - 1)^2), the least-squares GAN loss the CycleGAN paper uses: smooth
    gradients even for fakes the discriminator is sure about. bce: cross-entropy from logits.
    """
    check_adversarial_kind(kind)
    if kind == "lsgan":
        return tf.reduce_mean(tf.square(fake_logits - 1.0))
    return keras.losses.BinaryCrossentropy(from_logits=True)(
        tf.ones_like(fake_logits), fake_logits
    )


def discriminator_loss(
    real_logits: tf.Tensor, fake_logits: tf.Tensor, kind: str = "lsgan"
) -> tf.Tensor:
    """Pushes the discriminator to score real images 1 and generated ones 0; halved, as in the
    paper, so it learns more slowly than the generator."""
    check_adversarial_kind(kind)
    if kind == "lsgan":
        real = tf.reduce_mean(tf.square(real_logits - 1.0))
        fake = tf.reduce_mean(tf.square(fake_logits))
    else:
        bce = keras.losses.BinaryCrossentropy(from_logits=True)
        real = bce(tf.ones_like(real_logits), real_logits)
        fake = bce(tf.zeros_like(fake_logits), fake_logits)
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
