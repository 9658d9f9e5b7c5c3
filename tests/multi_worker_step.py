"""A few CycleGAN steps as one process of a two-worker MultiWorkerMirroredStrategy run, or as
one process alone on the same global batch (subprocess; run by tests/test_training.py).

Usage: python multi_worker_step.py OUT.npz. The strategy comes from the environment's TF_CONFIG
(`training.distribution_strategy`), as in lesson 04. Each worker reads its own half of every
global batch; the four networks' weights after the steps are saved to OUT.npz.
"""

import sys

import numpy as np

import mri_helpers as mh
from mri_helpers import models, training
from mri_helpers._tf import tf

SIZE, GLOBAL_BATCH, STEPS = 32, 4, 3
G = models.GeneratorConfig((8, 16, 32), dropout_blocks=0)  # no dropout: no random masks
D = models.DiscriminatorConfig((8, 16, 32))

strategy = training.distribution_strategy()
mh.set_seed(0)
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (GLOBAL_BATCH, SIZE, SIZE, 1)).astype(np.float32)
y = rng.uniform(-1, 1, (GLOBAL_BATCH, SIZE, SIZE, 1)).astype(np.float32)


def this_workers_part(context: tf.distribute.InputContext) -> tf.data.Dataset:
    size = context.get_per_replica_batch_size(GLOBAL_BATCH)
    part = slice(context.input_pipeline_id * size, (context.input_pipeline_id + 1) * size)
    return tf.data.Dataset.from_tensors((x[part], y[part])).repeat()


with strategy.scope():
    model = training.CycleGAN(
        models.unet_generator(G, SIZE),
        models.unet_generator(G, SIZE),
        models.patchgan_discriminator(D, SIZE),
        models.patchgan_discriminator(D, SIZE),
        # No history pool: each replica would keep its own, so pools differ between runs.
        training.TrainingConfig(epochs=1, steps_per_epoch=STEPS, pool_size=0),
    )
    model.compile_for_training(jit_compile=False)
data = strategy.distribute_datasets_from_function(this_workers_part)
model.fit(data, epochs=1, steps_per_epoch=STEPS, verbose=0)
weights = [w for network in model._all_networks() for w in network.get_weights()]
np.savez(sys.argv[1], *weights)
print(f"replicas {strategy.num_replicas_in_sync} chief {training.is_chief(strategy)}")
