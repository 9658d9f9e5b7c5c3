"""A few CycleGAN steps as one process of a two-worker MultiWorkerMirroredStrategy run, or as
one process alone on the same global batch (subprocess; run by tests/test_multi_worker.py).

Usage: python multi_worker_step.py OUT.npz [RUN_DIR EPOCHS [STOP_AFTER]]. The strategy comes
from the environment's TF_CONFIG (`distribution.distribution_strategy`), as in lesson 04. Each
worker reads its own half of every global batch; the four networks' weights after the steps
are saved to OUT.npz. With RUN_DIR the run is resumable as lesson 04's is: each process writes
into `distribution.writing_folder(RUN_DIR)` (checkpoint, history.csv), resumes from the chief's
checkpoint, and with STOP_AFTER exits with code 3 after that epoch's checkpoint.
"""

import os
import sys

import numpy as np

import mri_helpers as mh
from mri_course import checkpoints, distribution
from mri_helpers import models, training
from mri_helpers._tf import keras, tf

SIZE, GLOBAL_BATCH, STEPS = 32, 4, 3
G = models.GeneratorConfig((8, 16, 32), dropout_blocks=0)  # no dropout: no random masks
D = models.DiscriminatorConfig((8, 16, 32))

out, *resumable = sys.argv[1:]
epochs = int(resumable[1]) if resumable else 1
stop_after = int(resumable[2]) if len(resumable) > 2 else None
strategy = distribution.distribution_strategy()
mh.set_seed(0)
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (GLOBAL_BATCH, SIZE, SIZE, 1)).astype(np.float32)
y = rng.uniform(-1, 1, (GLOBAL_BATCH, SIZE, SIZE, 1)).astype(np.float32)


def this_workers_part(context: tf.distribute.InputContext) -> tf.data.Dataset:
    size = context.get_per_replica_batch_size(GLOBAL_BATCH)
    part = slice(context.input_pipeline_id * size, (context.input_pipeline_id + 1) * size)
    return tf.data.Dataset.from_tensors((x[part], y[part])).repeat()


class Interrupted(Exception):
    pass


class InterruptAfter(keras.callbacks.Callback):
    """Stop the process after `epoch` epochs, as a kill would (after the checkpoint)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise Interrupted


with strategy.scope():
    model = training.CycleGAN(
        models.unet_generator(G, SIZE),
        models.unet_generator(G, SIZE),
        models.patchgan_discriminator(D, SIZE),
        models.patchgan_discriminator(D, SIZE),
        # No history pool: each replica would keep its own, so pools differ between runs.
        training.TrainingConfig(epochs=epochs, steps_per_epoch=STEPS, pool_size=0),
    )
    model.compile_for_training(jit_compile=False)
data = strategy.distribute_datasets_from_function(this_workers_part)
callbacks = []
if resumable:
    write_dir = distribution.writing_folder(resumable[0], strategy)
    print(f"writing into {write_dir}", flush=True)
    resuming = checkpoints.resume_or_start(write_dir, {"EPOCHS": epochs})
    callbacks = [
        checkpoints.BackupAndRestore(
            os.path.join(write_dir, "backup"), strategy, double_checkpoint=True
        ),
        keras.callbacks.CSVLogger(os.path.join(write_dir, "history.csv"), append=True),
        *([InterruptAfter(stop_after)] if stop_after else []),
    ]
try:
    model.fit(data, epochs=epochs, steps_per_epoch=STEPS, callbacks=callbacks, verbose=0)
except Interrupted:
    print(f"interrupted after epoch {stop_after}", flush=True)
    sys.exit(3)
weights = [w for network in model._all_networks() for w in network.get_weights()]
np.savez(out, *weights)
print(f"replicas {strategy.num_replicas_in_sync} chief {distribution.is_chief(strategy)}")
if resumable:
    print(f"resumed {resuming} at epoch {model._initial_epoch or 0}")
