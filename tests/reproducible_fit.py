"""Three short fits of course-shaped networks with `REPRODUCIBLE` on (subprocess).

Run by tests/test_training.py: `mh.set_seed(..., one_op_at_a_time=True)` must come before
TensorFlow starts, so this runs in its own interpreter and prints what it measured. At 128 px
with the `compact` networks, ops run side by side (TensorFlow's default) part two same-seed
runs in the last bits within a few steps; tiny networks rarely show it.
"""

import json

import numpy as np

import mri_helpers as mh
from mri_helpers import models, processing, training

SIZE, STEPS = 128, 8


def images(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (8, SIZE, SIZE, 1)).astype(np.float32)


def fit(seed: int) -> tuple[dict[str, list[float]], list[np.ndarray], np.ndarray]:
    mh.set_seed(seed, one_op_at_a_time=True)
    config = training.TrainingConfig(epochs=1, steps_per_epoch=STEPS, pool_size=4)
    model = training.CycleGAN(
        models.unet_generator("compact", SIZE),
        models.unet_generator("compact", SIZE),
        models.patchgan_discriminator("compact", SIZE),
        models.patchgan_discriminator("compact", SIZE),
        config,
        seed=seed,
    )
    model.compile_for_training(jit_compile=False)
    data = processing.training_pipeline(images(10), images(11), batch_size=4, seed=seed)
    history = model.fit(data, epochs=1, steps_per_epoch=STEPS, verbose=0, shuffle=False)
    weights = [w for network in model._all_networks() for w in network.get_weights()]
    return history.history, weights, model.generator_g(images(12)[:2], training=False).numpy()


def largest(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def loss_gap(a: dict[str, list[float]], b: dict[str, list[float]]) -> float:
    """Largest relative difference between two runs' logged losses."""
    return max(abs(a[k][0] - b[k][0]) / max(abs(a[k][0]), 1e-12) for k in a)


(history_a, weights_a, out_a), (history_b, weights_b, out_b), (history_c, weights_c, _) = (
    fit(5),
    fit(5),
    fit(6),
)
from mri_helpers._tf import tf  # noqa: E402  (imported by the fits; read its setting)

print(
    json.dumps(
        {
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "same_seed_weights": largest(weights_a, weights_b),
            "same_seed_images": float(np.abs(out_a - out_b).max()),
            "same_seed_losses": loss_gap(history_a, history_b),
            "other_seed_weights": largest(weights_a, weights_c),
            "other_seed_losses": loss_gap(history_a, history_c),
        }
    )
)
