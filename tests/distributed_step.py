"""One CycleGAN step on two logical CPUs under MirroredStrategy vs one device (subprocess).

Run by tests/test_training.py: logical devices must be set before TensorFlow starts, so this
runs in its own interpreter and prints the largest weight difference.

With the argument `lesson DIR` (run by tests/test_multi_worker.py) it runs instead what lesson
04 does around `fit()` under the two replicas: the head start (`warm_start_generators`), then
`fit()` with the callbacks that translate held-out slices (QualityOverTime, SampleImages,
PeriodicExport with calibration and test-time copies) writing into DIR, then `translate`
inside and outside the strategy's scope; it prints what they gave, one `key value` a line.
"""

import sys

import numpy as np

from mri_course import callbacks
from mri_helpers._tf import tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import mri_helpers as mh  # noqa: E402
from mri_helpers import head_start, models, training  # noqa: E402

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


def lesson(folder: str) -> None:
    """Lesson 04 around fit() under two replicas, against the same work in one process."""
    import os

    from mri_helpers import evaluation, export, processing
    from mri_helpers._tf import keras

    os.makedirs(folder, exist_ok=True)
    phantom = mh.load_dataset("phantom", num_slices=10)
    split = processing.holdout_split(phantom, 0.3, seed=0)
    cleaning = processing.Cleaning()
    warm = (phantom, split, SIZE, cleaning, 6, 4, 3)  # steps, global batch, seed

    alone = build()
    alone_losses = head_start.warm_start_generators(alone, *warm)
    with mirrored.scope():
        model = build()
    losses = head_start.warm_start_generators(model, *warm)
    generators = [model.generator_g, model.generator_f]
    alone_generators = [alone.generator_g, alone.generator_f]
    print("head_start_loss_difference", max(abs(losses[d] - alone_losses[d]) for d in losses))
    replica_difference = max(  # each replica's copy of every generator weight
        float(np.abs(v.values[0].numpy() - v.values[1].numpy()).max())
        for generator in generators
        for v in (w.value for w in generator.weights)
    )
    print("head_start_replica_difference", replica_difference)
    head_start_difference = max(
        float(np.abs(a - b).max())
        for g, a_g in zip(generators, alone_generators, strict=True)
        for a, b in zip(g.get_weights(), a_g.get_weights(), strict=True)
    )
    print("head_start_difference", head_start_difference)
    untrained = [w for g in build()._all_networks()[:2] for w in g.get_weights()]
    print("head_start_moved", max(
        float(np.abs(a - b).max())
        for a, b in zip([w for g in generators for w in g.get_weights()], untrained, strict=True)
    ))  # fmt: skip

    t1 = processing.prepare(processing.select(phantom, "t1", split.train["t1"]), SIZE, cleaning)
    t2 = processing.prepare(processing.select(phantom, "t2", split.train["t2"]), SIZE, cleaning)
    held_out = processing.select(phantom, "t1", split.test["t1"])
    chain = [
        evaluation.QualityOverTime(
            evaluation.phantom_scorer(phantom, split, SIZE, cleaning),
            os.path.join(folder, "quality.csv"),
        ),
        callbacks.SampleImages(t1[:3], t2[:3], os.path.join(folder, "samples")),
        callbacks.PeriodicExport(
            os.path.join(folder, "models"), 1, SIZE, {}, (t1, t2), test_time_augmentation=True
        ),
    ]
    data = tf.data.Dataset.from_tensors((t1[:2], t2[:2])).repeat()
    model.fit(data, epochs=1, steps_per_epoch=1, callbacks=chain, verbose=0)
    print("held_out", len(held_out))
    with mirrored.scope():
        print("translated_in_scope", len(export.translate(model.generator_g, held_out, SIZE)))
    network = export.translate(model.generator_g, held_out, SIZE, cleaning)
    print("translated", len(network))
    copy = keras.models.clone_model(model.generator_g)  # made outside the strategy
    copy.set_weights(model.generator_g.get_weights())
    alone_network = export.translate(copy, held_out, SIZE, cleaning)
    print("translate_difference", max(
        int(np.abs(a.astype(int) - b).max()) for a, b in zip(network, alone_network, strict=True)
    ))  # fmt: skip
    shipped = export.load_generator(os.path.join(folder, "models"), "t1-to-t2")[0]
    print("exported_translated", len(export.translate(shipped, held_out, SIZE, cleaning)))


mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert mirrored.num_replicas_in_sync == 2
if sys.argv[1:2] == ["lesson"]:
    lesson(sys.argv[2])
    sys.exit(0)
single = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"))
double = one_step(mirrored)
fresh = network_weights(build())
difference = max(float(np.abs(a - b).max()) for a, b in zip(single, double, strict=True))
moved = max(float(np.abs(a - b).max()) for a, b in zip(single, fresh, strict=True))
print(f"replicas 2 max_difference {difference:.3e} moved {moved:.3e}")
