"""The losses on small tensors whose values are computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mri_helpers import losses


def test_lsgan_losses_by_hand() -> None:
    fake = np.array([0.0, 0.5, 1.0, 2.0], np.float32)
    real = np.array([1.0, 0.0], np.float32)
    # (0-1)^2, (0.5-1)^2, 0, 1 -> mean 2.25 / 4
    assert float(losses.generator_adversarial_loss(fake)) == pytest.approx(0.5625)
    # real: ((0)^2 + (1)^2)/2 = 0.5 ; fake: (0 + .25 + 1 + 4)/4 = 1.3125 ; half the sum
    assert float(losses.discriminator_loss(real, fake)) == pytest.approx(0.5 * (0.5 + 1.3125))


def test_bce_losses_by_hand() -> None:
    logits = np.array([0.0, math.log(3.0)], np.float32)  # sigmoid: 0.5, 0.75
    expected_gen = -(math.log(0.5) + math.log(0.75)) / 2
    assert float(losses.generator_adversarial_loss(logits, "bce")) == pytest.approx(
        expected_gen, rel=1e-5
    )
    expected_disc = 0.5 * (expected_gen + -(math.log(0.5) + math.log(0.25)) / 2)
    assert float(losses.discriminator_loss(logits, logits, "bce")) == pytest.approx(
        expected_disc, rel=1e-5
    )
    with pytest.raises(ValueError, match="use one of"):
        losses.generator_adversarial_loss(logits, "wgan")


def test_cycle_and_identity_losses_by_hand() -> None:
    real = np.array([[0.0, 1.0], [-1.0, 0.5]], np.float32)
    cycled = np.array([[0.5, 1.0], [-0.5, 0.5]], np.float32)  # mean |diff| = 0.25
    assert float(losses.cycle_loss(real, cycled)) == pytest.approx(2.5)
    assert float(losses.identity_loss(real, cycled)) == pytest.approx(1.25)
    assert float(losses.cycle_loss(real, real)) == 0.0


def test_without_identity_loss_the_step_skips_its_images_and_keeps_its_losses() -> None:
    """With identity weight 0 (the `course` profile) the training step leaves the identity
    images out: the losses are those of the step that computes them (dropout and pool on)."""
    from mri_helpers import models, set_seed, training

    set_seed(0)
    g = models.GeneratorConfig((8, 16, 32), dropout_blocks=2, full_resolution=4)
    d = models.DiscriminatorConfig((8, 16, 32))
    networks = [models.unet_generator(g, 32), models.unet_generator(g, 32)]
    networks += [models.patchgan_discriminator(d, 32), models.patchgan_discriminator(d, 32)]
    rng = np.random.default_rng(0)
    x, y = (rng.uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32) for _ in range(2))
    calls = []
    state = [v.numpy() for n in networks for v in n.variables]  # dropout seeds included

    def step_losses(identity_weight: float) -> dict[str, float]:
        for variable, value in zip((v for n in networks for v in n.variables), state, strict=True):
            variable.assign(value)
        config = training.TrainingConfig(1, 1, identity_weight=identity_weight, pool_size=4)
        model = training.CycleGAN(*networks, config)
        model.compile_for_training(jit_compile=False)
        batches = []
        generator = networks[0]
        original = generator.call
        generator.call = lambda images, **kw: (
            batches.append(images.shape[0]) or original(images, **kw)
        )
        try:
            found = model.compute_losses(x, y, training=True)
        finally:
            del generator.call
        calls.append(batches)
        return {name: float(value) for name, value in found.items()}

    skipped, computed = step_losses(0.0), step_losses(1e-12)  # 1e-12: computed, ~no weight
    assert calls == [[2, 2], [4, 2]]  # G on the T1 images (and the T2 ones), then the cycle
    assert skipped["identity"] == 0.0 and computed["identity"] > 0.0
    for name in ("g_t1_to_t2", "f_t2_to_t1", "d_t2", "d_t1", "cycle"):
        assert skipped[name] == pytest.approx(computed[name], rel=1e-5), name


def test_the_fresh_fakes_judged_apart_score_as_judged_together() -> None:
    """With a pool the step judges real and pooled images in one call and the fresh fakes
    in another: per image the same logits as one call on all of them (instance norm works
    image by image)."""
    from mri_helpers import models, set_seed, training

    set_seed(0)
    d = models.DiscriminatorConfig((8, 16, 32))
    discriminator = models.patchgan_discriminator(d, 32)
    generator = models.unet_generator(models.GeneratorConfig((8, 16, 32)), 32)
    config = training.TrainingConfig(1, 1, pool_size=4)
    model = training.CycleGAN(generator, generator, discriminator, discriminator, config)
    model.compile_for_training(jit_compile=False)
    rng = np.random.default_rng(1)
    real, fake = (rng.uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32) for _ in range(2))
    pool = model.pool_t2
    for _ in range(3):  # fill the pool, so it also hands back older fakes
        pool(rng.uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32))
    state = [v.numpy() for v in pool.variables]  # contents, count and random state
    pooled = pool(fake).numpy()
    for variable, value in zip(pool.variables, state, strict=True):
        variable.assign(value)
    judged = training.discriminator_logits(discriminator, pool, real, fake, training=True)
    together = discriminator(np.concatenate([real, pooled, fake]), training=True).numpy()
    for part, expected in zip(judged, np.split(together, 3), strict=True):
        np.testing.assert_allclose(part, expected, rtol=1e-5, atol=1e-6)


def test_fit_trains_the_loss_functions_it_is_given() -> None:
    """`compile_for_training(loss_functions)` is what `fit()` trains: a lesson that changes a
    loss changes training. Doubling the cycle loss doubles the logged cycle term, and a
    generator whose only loss is an L1 to 0.5 is pulled towards 0.5 by `fit()`."""
    from mri_helpers import models, set_seed, training
    from mri_helpers._tf import tf

    def build(loss_functions):
        set_seed(0)
        g = models.GeneratorConfig((8, 16, 32), dropout_blocks=0)
        d = models.DiscriminatorConfig((8, 16, 32))
        networks = [models.unet_generator(g, 32), models.unet_generator(g, 32)]
        networks += [models.patchgan_discriminator(d, 32), models.patchgan_discriminator(d, 32)]
        config = training.TrainingConfig(1, 8, learning_rate=1e-2, pool_size=0)
        model = training.CycleGAN(*networks, config)
        model.compile_for_training(loss_functions, jit_compile=False)
        return model, config

    rng = np.random.default_rng(2)
    x, y = (rng.uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32) for _ in range(2))
    model, config = build(None)
    lesson = training.CycleGANLosses.of(config)
    doubled = training.CycleGANLosses(
        lesson.generator,
        lesson.discriminator,
        lambda a, b: 2 * lesson.cycle(a, b),
        lesson.identity,
    )
    plain = float(model.compute_losses(x, y, training=False)["cycle"])
    model, _ = build(doubled)
    assert float(model.compute_losses(x, y, training=False)["cycle"]) == pytest.approx(2 * plain)

    def zero(*tensors):  # no pull at all (zero gradients, not none)
        return 0.0 * tf.add_n([tf.reduce_mean(t) for t in tensors])

    def to_half(real, fake_or_cycled):  # the generators' only loss: be 0.5 on the way back
        return tf.reduce_mean(tf.abs(fake_or_cycled - 0.5))

    model, _ = build(training.CycleGANLosses(zero, zero, to_half, zero))
    before = float(model.compute_losses(x, y, training=False)["cycle"])
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(data, epochs=1, steps_per_epoch=8, verbose=0)
    after = float(model.compute_losses(x, y, training=False)["cycle"])
    assert after < 0.5 * before
