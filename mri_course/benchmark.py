"""The course's benchmark: side by side with the TensorFlow CycleGAN tutorial, in one run.

`mri-course bench [--quick] [--out DIR]` measures, each item in a fresh subprocess (so peak
memory and thread pools do not leak between them):

1. ceiling: the machine's conv2d throughput, the ceiling every step is compared with;
2. reference: the tutorial's training step (its architecture, BCE losses and `tf.function`
   step, written here from the tutorial's description) at 256x256x1, batch 1;
3. project: this package's step through `fit()` at the same `tutorial` configuration, at the
   precision a learner gets (`MIXED_PRECISION="auto"`: bfloat16 on a CPU with bfloat16
   instructions), and project_float32: the same in float32, the reference's precision;
4. course: the `course` profile's configuration and training settings, at "auto";
   course_float32: the same in float32 (what "auto" gives a CPU without bfloat16);
   course_reproducible: `REPRODUCIBLE` on (`set_seed(one_op_at_a_time=True)`), the price of
   bit-identical runs; head_start (and head_start_float32): the generators' head start;
5. translate: the exported generator's inference (copies averaged, calibrated as the course
   exports it), slices per second through the whole translate path; volume: a whole phantom
   head through `scans.translate_volume` with such an export, axial slices per second, at
   "auto" (volume) and in float32 (volume_float32);
   pipeline: the input pipeline's images per second.

Timings on shared machines are noisy, so results are ratios within one run. FLOPs are counted
from the layers (2 x multiply-adds of every convolution, forward; a training pass counts
3 x forward: the forward pass and the two gradient products of the backward pass).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from mri_helpers._tf import keras, tf

from .precision import use_mixed_precision

# Through fit(); "float32" items run with MIXED_PRECISION off, the others at "auto".
FIT_ITEMS = ("project", "project_float32", "course", "course_float32", "course_reproducible")
HEAD_START_ITEMS = ("head_start", "head_start_float32")
VOLUME_ITEMS = ("volume", "volume_float32")
ITEMS = (
    "ceiling",
    "reference",
    *FIT_ITEMS,
    *HEAD_START_ITEMS,
    "translate",
    *VOLUME_ITEMS,
    "pipeline",
)


# --- FLOP counting -------------------------------------------------------------------------
def forward_flops(model) -> int:
    """FLOPs of one forward pass of one image: 2 x multiply-adds of every (transposed) conv."""
    total = 0
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, height, width, channels = layer.input.shape
            kernel = np.prod(layer.kernel_size)
            total += 2 * height * width * channels * layer.filters * kernel
        elif isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            kernel = np.prod(layer.kernel_size)
            total += 2 * height * width * filters * layer.input.shape[-1] * kernel
    return int(total)


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _leaf_layers(layer)
        else:
            yield layer


def step_flops(
    generator, discriminator, batch: int, discriminator_images: int, generator_images: int = 3
) -> int:
    """FLOPs of one CycleGAN step: per generator `generator_images` passes per image
    (translate, cycle and, with an identity loss, identity), per discriminator
    `discriminator_images`; training = 3 x forward."""
    per_image = 2 * generator_images * forward_flops(generator)
    per_image += 2 * discriminator_images * forward_flops(discriminator)
    return 3 * per_image * batch


# --- the tutorial's step, as the reference ---------------------------------------------------
def reference_networks(size: int = 256):
    """The tutorial's pix2pix U-Net generator and PatchGAN, instance norm, one channel."""

    init = keras.initializers.RandomNormal(0.0, 0.02)

    def down(filters, norm=True):
        block = [
            keras.layers.Conv2D(filters, 4, 2, "same", kernel_initializer=init, use_bias=False)
        ]
        if norm:
            block.append(keras.layers.GroupNormalization(groups=-1, epsilon=1e-5))
        return keras.Sequential([*block, keras.layers.LeakyReLU(0.2)])

    def up(filters, dropout=False):
        block = [
            keras.layers.Conv2DTranspose(
                filters, 4, 2, "same", kernel_initializer=init, use_bias=False
            ),
            keras.layers.GroupNormalization(groups=-1, epsilon=1e-5),
        ]
        if dropout:
            block.append(keras.layers.Dropout(0.5))
        return keras.Sequential([*block, keras.layers.ReLU()])

    inputs = keras.Input((size, size, 1))
    downs = [down(64, False), down(128), down(256)] + [down(512) for _ in range(5)]
    ups = [up(512, True), up(512, True), up(512, True), up(512), up(256), up(128), up(64)]
    x, skips = inputs, []
    for block in downs:
        x = block(x)
        skips.append(x)
    for block, skip in zip(ups, reversed(skips[:-1]), strict=True):
        x = keras.layers.Concatenate()([block(x), skip])
    last = keras.layers.Conv2DTranspose(
        1, 4, 2, "same", kernel_initializer=init, activation="tanh"
    )
    generator = keras.Model(inputs, last(x))

    image = keras.Input((size, size, 1))
    y = down(64, False)(image)
    y = down(128)(y)
    y = down(256)(y)
    y = keras.layers.ZeroPadding2D()(y)
    y = keras.layers.Conv2D(512, 4, kernel_initializer=init, use_bias=False)(y)
    y = keras.layers.LeakyReLU(0.2)(keras.layers.GroupNormalization(groups=-1, epsilon=1e-5)(y))
    y = keras.layers.ZeroPadding2D()(y)
    discriminator = keras.Model(image, keras.layers.Conv2D(1, 4, kernel_initializer=init)(y))
    return generator, discriminator


def reference_step(size: int = 256):
    """The tutorial's `train_step`: separate calls, BCE losses, one persistent tape."""

    g, d_y = reference_networks(size)
    f, d_x = reference_networks(size)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    optimizers = [keras.optimizers.Adam(2e-4, beta_1=0.5) for _ in range(4)]
    lam = 10.0

    @tf.function
    def step(real_x, real_y):
        with tf.GradientTape(persistent=True) as tape:
            fake_y = g(real_x, training=True)
            cycled_x = f(fake_y, training=True)
            fake_x = f(real_y, training=True)
            cycled_y = g(fake_x, training=True)
            same_x = f(real_x, training=True)
            same_y = g(real_y, training=True)
            disc_real_x, disc_real_y = d_x(real_x, training=True), d_y(real_y, training=True)
            disc_fake_x, disc_fake_y = d_x(fake_x, training=True), d_y(fake_y, training=True)
            cycle = lam * (
                tf.reduce_mean(tf.abs(real_x - cycled_x))
                + tf.reduce_mean(tf.abs(real_y - cycled_y))
            )
            g_loss = bce(tf.ones_like(disc_fake_y), disc_fake_y) + cycle
            g_loss += 0.5 * lam * tf.reduce_mean(tf.abs(real_y - same_y))
            f_loss = bce(tf.ones_like(disc_fake_x), disc_fake_x) + cycle
            f_loss += 0.5 * lam * tf.reduce_mean(tf.abs(real_x - same_x))
            dx_loss = 0.5 * (
                bce(tf.ones_like(disc_real_x), disc_real_x)
                + bce(tf.zeros_like(disc_fake_x), disc_fake_x)
            )
            dy_loss = 0.5 * (
                bce(tf.ones_like(disc_real_y), disc_real_y)
                + bce(tf.zeros_like(disc_fake_y), disc_fake_y)
            )
        for loss, net, opt in zip(
            (g_loss, f_loss, dx_loss, dy_loss), (g, f, d_x, d_y), optimizers, strict=True
        ):
            grads = tape.gradient(loss, net.trainable_variables)
            opt.apply_gradients(zip(grads, net.trainable_variables, strict=True))
        return g_loss

    return step, g, d_y


# --- items, each run in its own process ------------------------------------------------------
def _timed(function, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        function()
    start = time.perf_counter()
    for _ in range(steps):
        function()
    return (time.perf_counter() - start) / steps


def measure(item: str, steps: int) -> dict[str, Any]:
    """Measure one item in this process; return its row."""

    rng = np.random.default_rng(0)
    if item == "ceiling":
        x = tf.constant(rng.standard_normal((8, 64, 64, 256)), tf.float32)
        w = tf.constant(rng.standard_normal((3, 3, 256, 256)), tf.float32)
        conv = tf.function(lambda: tf.nn.conv2d(x, w, 1, "SAME"))
        seconds = _timed(lambda: conv().numpy(), max(steps, 5), 2)
        flops = 2 * 8 * 64 * 64 * 256 * 256 * 9
        return {"seconds_per_step": seconds, "flops_per_step": flops, "images_per_step": 8}
    if item == "reference":
        step, g, d = reference_step(256)
        x = tf.constant(rng.uniform(-1, 1, (1, 256, 256, 1)), tf.float32)
        y = tf.constant(rng.uniform(-1, 1, (1, 256, 256, 1)), tf.float32)
        seconds = _timed(lambda: step(x, y).numpy(), steps, 2)
        return {
            "seconds_per_step": seconds,
            "flops_per_step": step_flops(g, d, 1, 2),
            "images_per_step": 2,
        }
    if item in FIT_ITEMS:
        configuration = "course" if item.startswith("course") else "tutorial"
        precision = "off" if item.endswith("float32") else "auto"
        # The course items are seeded as notebook 04 seeds (op determinism, and ops one at a
        # time only for course_reproducible); the project items run as the reference does.
        seeded = item.startswith("course")
        return _measure_fit(configuration, steps, precision, seeded, item == "course_reproducible")
    if item in HEAD_START_ITEMS:
        return _measure_head_start(steps, "off" if item.endswith("float32") else "auto")
    if item == "translate":
        return _measure_translate(steps)
    if item in VOLUME_ITEMS:
        return _measure_volume(steps, "off" if item.endswith("float32") else "auto")
    if item == "pipeline":
        return _measure_pipeline(steps)
    raise ValueError(f"unknown item {item!r}; use one of {ITEMS}")


def _measure_fit(
    profile: str,
    steps: int,
    precision: str = "auto",
    seeded: bool = False,
    one_op_at_a_time: bool = False,
) -> dict[str, Any]:
    from mri_helpers import models, profiles, set_seed, training

    if seeded:
        set_seed(0, one_op_at_a_time)  # first, as notebook 04 does: it decides how ops run
    use_mixed_precision(precision)
    if profile == "tutorial":
        size, batch, g_name, d_name = 256, 1, "tutorial", "tutorial"
        # The tutorial has no history pool; without one the step is the tutorial's arithmetic.
        settings = {"pool_size": 0}
    else:
        p = profiles.load_profile("course")
        size, batch, g_name, d_name = (
            p["IMAGE_SIZE"], p["BATCH_SIZE"], p["GENERATOR"], p["DISCRIMINATOR"],
        )  # fmt: skip
        settings = course_settings(p)
    config = training.TrainingConfig(epochs=1, steps_per_epoch=steps + 2, **settings)
    pool = config.pool_size
    model = training.CycleGAN(
        models.unet_generator(g_name, size),
        models.unet_generator(g_name, size),
        models.patchgan_discriminator(d_name, size),
        models.patchgan_discriminator(d_name, size),
        config,
    )
    model.compile_for_training(mixed_precision=precision != "off", jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch, size, size, 1)).astype(np.float32)
    data = tf.data.Dataset.from_tensors((x, x)).repeat()
    times = StepTimer()
    model.fit(data, epochs=1, steps_per_epoch=steps + 2, verbose=0, callbacks=[times])
    return {
        "seconds_per_step": float(np.mean(times.seconds[2:])),  # the first steps trace
        "flops_per_step": step_flops(
            model.generator_g,
            model.discriminator_t2,
            batch,
            3 if pool else 2,
            3 if config.identity_weight else 2,
        ),
        "images_per_step": 2 * batch,
        "configuration": f"{g_name} {size}px batch {batch}",
        "precision": keras.mixed_precision.global_policy().name,
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),  # 0: TF's
    }


def course_settings(profile: dict[str, Any]) -> dict[str, Any]:
    """The `TrainingConfig` settings notebook 04 takes from a profile (beyond the schedule)."""
    return {
        "learning_rate": profile["LEARNING_RATE"],
        "lambda_cycle": profile["LAMBDA_CYCLE"],
        "identity_weight": profile["IDENTITY_WEIGHT"],
        "generator_average": profile["GENERATOR_AVERAGE"],
    }


class StepTimer(keras.callbacks.Callback):
    """Records each training step's wall time."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def _measure_head_start(steps: int, precision: str) -> dict[str, Any]:
    """The head start (`head_start.warm_start_generators`) at the course configuration: seconds
    per step of one generator (`head_start.warm_start`, the difference of a long and a short
    call, so tracing is left out; only meaningful for many steps) and setup_seconds, the
    cleaning of the phantom's training slices and their classical guesses, done once."""
    from mri_helpers import head_start, models, profiles, set_seed, training
    from mri_helpers.data import load_phantom
    from mri_helpers.processing import Cleaning, holdout_split

    set_seed(0)
    use_mixed_precision(precision)
    p = profiles.load_profile("course")
    size, batch = p["IMAGE_SIZE"], p["BATCH_SIZE"]
    config = training.TrainingConfig(epochs=1, steps_per_epoch=1, **course_settings(p))
    generator = models.unet_generator(p["GENERATOR"], size)
    discriminator = models.patchgan_discriminator(p["DISCRIMINATOR"], size)
    model = training.CycleGAN(generator, generator, discriminator, discriminator, config)
    dataset = load_phantom()
    start = time.perf_counter()  # no steps: the cleaning and the classical guesses only
    head_start.warm_start_generators(
        model, dataset, holdout_split(dataset), size, Cleaning(), 0, 4
    )
    setup = time.perf_counter() - start
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (46, size, size, 1)).astype(np.float32)

    def warm_start_seconds(count: int) -> float:
        start = time.perf_counter()
        head_start.warm_start(generator, images, images, count, batch)
        return time.perf_counter() - start

    # Each call traces its step anew; the fastest of two calls of each length, so that a
    # slow trace under load does not pass for training time.
    short = min(warm_start_seconds(2), warm_start_seconds(2))
    longer = min(warm_start_seconds(2 + steps), warm_start_seconds(2 + steps))
    seconds = (longer - short) / steps
    return {
        "seconds_per_step": seconds,
        "flops_per_step": 3 * forward_flops(generator) * batch,
        "images_per_step": batch,
        "setup_seconds": setup,
        "configuration": f"{p['GENERATOR']} {size}px batch {batch}",
        "precision": keras.mixed_precision.global_policy().name,
    }


def _course_export(folder: Path) -> Path:
    """An export of an untrained `course` generator as the course ships it: averaged over
    copies and calibrated (identity table; any table costs the same)."""
    from mri_helpers import calibration, export, models, profiles, test_time
    from mri_helpers.processing import Cleaning

    p = profiles.load_profile("course")
    generator = models.unet_generator(p["GENERATOR"], p["IMAGE_SIZE"])
    extra: dict[str, Any] = {"cleaning": dataclasses.asdict(Cleaning())}  # the course's
    if p["TEST_TIME_AUGMENTATION"]:
        generator = test_time.averaged_over_copies(generator)
        extra["test_time_augmentation"] = True
    if p["CALIBRATE"]:
        identity = np.linspace(-1, 1, calibration.TABLE_SIZE)
        generator = calibration.calibrated(generator, calibration.IntensityCalibration(identity))
        extra["calibrated"] = True
    return export.export_generator(
        generator, folder, "t1-to-t2", p["IMAGE_SIZE"], extra, saved_model=False
    )


def _measure_volume(steps: int, mixed_precision: str) -> dict[str, Any]:
    """`scans.translate_volume` on the phantom's whole T1 head (197 x 233 x 189 voxels) with
    a `course` export, the network at `mixed_precision`: axial slices per second,
    reorientation and rescaling included."""
    import tempfile

    from mri_helpers import export
    from mri_helpers.phantom import make_phantom_volumes

    from . import scans

    head = make_phantom_volumes().t1
    data, affine = np.asarray(head.dataobj, np.float32), head.affine
    with tempfile.TemporaryDirectory() as folder:
        generator, config = export.load_generator(_course_export(Path(folder)))
    translate_volume = partial(scans.translate_volume, mixed_precision=mixed_precision)
    translate_volume(generator, config, data[:, :, 80:96], affine)  # warm up
    record = {}

    def translate() -> None:
        record.update(translate_volume(generator, config, data, affine)[2])

    seconds = _timed(translate, steps, 0)
    return {
        "seconds_per_step": seconds,
        "images_per_step": record["geometry"]["slices"],
        "flops_per_step": None,
        "volume_shape": list(data.shape),
        "precision": record["computed_in"],
    }


def _measure_translate(steps: int) -> dict[str, Any]:
    from mri_helpers import calibration, export, models, profiles, test_time
    from mri_helpers.data import Slice
    from mri_helpers.processing import Cleaning

    p = profiles.load_profile("course")
    generator = models.unet_generator(p["GENERATOR"], p["IMAGE_SIZE"])
    # As the course exports it: averaged over copies, then a calibration table (here the
    # identity; any table costs the same).
    if p["TEST_TIME_AUGMENTATION"]:
        generator = test_time.averaged_over_copies(generator)
    if p["CALIBRATE"]:
        identity = np.linspace(-1, 1, calibration.TABLE_SIZE)
        generator = calibration.calibrated(generator, calibration.IntensityCalibration(identity))
    rng = np.random.default_rng(0)
    slices = [
        Slice(f"s{i}", "t1", rng.integers(0, 256, (217, 181), dtype=np.uint8)) for i in range(32)
    ]
    cleaning = Cleaning()  # the whole path, cleaning included
    export.translate(generator, slices[:8], p["IMAGE_SIZE"], cleaning)  # warm up
    seconds = _timed(
        lambda: export.translate(generator, slices, p["IMAGE_SIZE"], cleaning), steps, 0
    )
    return {"seconds_per_step": seconds, "images_per_step": len(slices), "flops_per_step": None}


def _measure_pipeline(steps: int) -> dict[str, Any]:
    from mri_helpers import processing, profiles

    p = profiles.load_profile("course")
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (46, p["IMAGE_SIZE"], p["IMAGE_SIZE"], 1)).astype(np.float32)
    pipeline = processing.training_pipeline(images, images, p["BATCH_SIZE"], seed=0)
    iterator = iter(pipeline)
    next(iterator)
    count = 50 * steps
    start = time.perf_counter()
    for _ in range(count):
        next(iterator)
    seconds = (time.perf_counter() - start) / count
    return {
        "seconds_per_step": seconds,
        "images_per_step": 2 * p["BATCH_SIZE"],
        "flops_per_step": None,
    }


def _run_item(item: str, steps: int) -> dict[str, Any]:
    """Run one item in a fresh interpreter; add its peak memory."""
    done = subprocess.run(  # noqa: S603 (fixed argument list, no shell, no user text)
        [sys.executable, "-m", "mri_course.benchmark", "--item", item, "--steps", str(steps)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark item {item} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False, out: str | os.PathLike = "benchmarks/results") -> dict[str, Any]:
    """Run every item; write results.json and results.md into `out`; return the results."""
    slow = 3 if quick else 8
    steps = {"ceiling": 10, "reference": slow, "project": slow, "project_float32": slow}
    steps.update({item: 10 if quick else 30 for item in HEAD_START_ITEMS})
    steps.update({item: 1 if quick else 2 for item in VOLUME_ITEMS})
    rows = {}
    for item in ITEMS:
        print(f"measuring {item} ...", flush=True)
        rows[item] = _run_item(item, steps.get(item, 5 if quick else 20))
    ceiling = rows["ceiling"]["flops_per_step"] / rows["ceiling"]["seconds_per_step"] / 1e9
    for row in rows.values():
        row["images_per_s"] = row["images_per_step"] / row["seconds_per_step"]
        if row.get("flops_per_step"):
            row["gflops"] = row["flops_per_step"] / row["seconds_per_step"] / 1e9
            row["fraction_of_ceiling"] = row["gflops"] / ceiling
    results = {
        "ceiling_gflops": ceiling,
        "speedup_vs_reference": rows["project"]["images_per_s"]
        / rows["reference"]["images_per_s"],
        "fraction_of_ceiling": rows["project"]["fraction_of_ceiling"],
        "project_precision": rows["project"]["precision"],
        "speedup_vs_reference_float32": rows["project_float32"]["images_per_s"]
        / rows["reference"]["images_per_s"],
        "fraction_of_ceiling_float32": rows["project_float32"]["fraction_of_ceiling"],
        "course_images_per_s": rows["course"]["images_per_s"],
        "course_precision": rows["course"]["precision"],
        "course_fraction_of_ceiling": rows["course"]["fraction_of_ceiling"],
        "course_float32_images_per_s": rows["course_float32"]["images_per_s"],
        "course_float32_fraction_of_ceiling": rows["course_float32"]["fraction_of_ceiling"],
        "course_float32_vs_course": rows["course_float32"]["images_per_s"]
        / rows["course"]["images_per_s"],
        "course_training_minutes": _course_minutes(rows["course"], rows["head_start"]),
        "course_float32_training_minutes": _course_minutes(
            rows["course_float32"], rows["head_start_float32"]
        ),
        "head_start_images_per_s": rows["head_start"]["images_per_s"],
        "head_start_float32_images_per_s": rows["head_start_float32"]["images_per_s"],
        "reproducible_vs_course": rows["course_reproducible"]["images_per_s"]
        / rows["course"]["images_per_s"],
        "pipeline_vs_training": rows["pipeline"]["images_per_s"] / rows["course"]["images_per_s"],
        "translate_slices_per_s": rows["translate"]["images_per_s"],
        "volume_slices_per_s": rows["volume"]["images_per_s"],
        "volume_precision": rows["volume"]["precision"],
        "volume_float32_slices_per_s": rows["volume_float32"]["images_per_s"],
        "machine": f"{os.cpu_count()} CPUs",
        "quick": quick,
        "items": rows,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown_table(results))
    return results


def _course_minutes(step: dict[str, Any], head_start: dict[str, Any]) -> float:
    """Minutes the `course` profile's training takes at these speeds: its head start (both
    generators) and its adversarial steps, nothing else (no data, exports or evaluation)."""
    from mri_helpers import profiles

    p = profiles.load_profile("course")
    seconds = head_start["setup_seconds"]
    seconds += 2 * p["WARM_START_STEPS"] * head_start["seconds_per_step"]
    seconds += p["EPOCHS"] * p["STEPS_PER_EPOCH"] * step["seconds_per_step"]
    return seconds / 60


def markdown_table(results: dict[str, Any]) -> str:
    """The results as a Markdown table plus the headline ratios."""
    lines = [
        "| item | s/step | images/s | GFLOP/step | GFLOP/s | of ceiling | peak memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for item, row in results["items"].items():
        name = (
            f"{item} ({row['precision']})"
            if row.get("precision", "float32") != "float32"
            else item
        )
        flops = row.get("flops_per_step")
        lines.append(
            f"| {name} | {row['seconds_per_step']:.4f} | {row['images_per_s']:.1f} | "
            f"{flops / 1e9:.1f} | {row['gflops']:.0f} | {row['fraction_of_ceiling']:.0%} | "
            if flops
            else f"| {name} | {row['seconds_per_step']:.4f} | {row['images_per_s']:.1f} | "
            "- | - | - | "
        )
        lines[-1] += f"{row['peak_memory_mib']:.0f} MiB |"
    lines += [
        "",
        f"- ceiling (conv2d): {results['ceiling_gflops']:.0f} GFLOP/s",
        f"- project ({results['project_precision']}) vs tutorial reference (float32), "
        f"images/s: {results['speedup_vs_reference']:.2f}x; in float32 too: "
        f"{results['speedup_vs_reference_float32']:.2f}x",
        f"- project step at the tutorial configuration: {results['fraction_of_ceiling']:.0%} "
        f"of the float32 conv2d ceiling ({results['fraction_of_ceiling_float32']:.0%} in float32)",
        f"- course step in float32 vs {results['course_precision']}, images/s: "
        f"{results['course_float32_vs_course']:.2f}x; of the ceiling: "
        f"{results['course_fraction_of_ceiling']:.0%} ({results['course_precision']}), "
        f"{results['course_float32_fraction_of_ceiling']:.0%} (float32)",
        f"- course training (head start + steps) at these speeds: "
        f"{results['course_training_minutes']:.1f} min ({results['course_precision']}), "
        f"{results['course_float32_training_minutes']:.1f} min (float32)",
        "- course step with `REPRODUCIBLE` (ops one at a time) vs without, images/s: "
        f"{results['reproducible_vs_course']:.2f}x",
        f"- input pipeline vs course training consumption: {results['pipeline_vs_training']:.0f}x",
        f"- translate: {results['translate_slices_per_s']:.0f} slices/s",
        f"- volume translation: {results['volume_slices_per_s']:.0f} axial slices/s "
        f"({results['volume_precision']}), {results['volume_float32_slices_per_s']:.0f} "
        "(float32)",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mri_course.benchmark")
    parser.add_argument("--item", choices=ITEMS, required=True)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    row = measure(args.item, args.steps)
    row["peak_memory_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
