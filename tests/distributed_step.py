"""One CycleGAN step on two logical CPUs under MirroredStrategy vs one device (subprocess).

Run by tests/test_training.py: logical devices must be set before TensorFlow starts, so this
runs in its own interpreter and prints the largest weight difference.
"""

import numpy as np

from mri_helpers._tf import tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import mri_helpers as mh  # noqa: E402
from mri_helpers import models, training  # noqa: E402

SIZE = 32
G = models.GeneratorConfig((8, 16, 32), dropout_blocks=0)
D = models.DiscriminatorConfig((8, 16, 32))


def build():
    mh.set_seed(0)
    model = training.CycleGAN(
        models.unet_generator(G, SIZE),
        models.unet_generator(G, SIZE),
        models.patchgan_discriminator(D, SIZE),
        models.patchgan_discriminator(D, SIZE),
        training.TrainingConfig(epochs=1, steps_per_epoch=1, pool_size=8),
    )
    model.compile_for_training(jit_compile=False)
    return model


rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (4, SIZE, SIZE, 1)).astype(np.float32)
y = rng.uniform(-1, 1, (4, SIZE, SIZE, 1)).astype(np.float32)


def one_step(strategy):
    with strategy.scope():
        model = build()
    data = tf.data.Dataset.from_tensors((x, y))
    model.fit(data, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    return network_weights(model)


def network_weights(model):
    """The four networks' weights (each replica keeps its own image pool, so pools differ)."""
    return [w for network in model._all_networks() for w in network.get_weights()]


mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert mirrored.num_replicas_in_sync == 2
single = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"))
double = one_step(mirrored)
fresh = network_weights(build())
difference = max(float(np.abs(a - b).max()) for a, b in zip(single, double, strict=True))
moved = max(float(np.abs(a - b).max()) for a, b in zip(single, fresh, strict=True))
print(f"replicas 2 max_difference {difference:.3e} moved {moved:.3e}")
