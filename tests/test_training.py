"""The CycleGAN training step, its pool and schedule, callbacks and reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mri_helpers as mh
from mri_course import callbacks, checkpoints, cluster, distribution, precision
from mri_helpers import (
    evaluation,
    head_start,
    losses,
    models,
    processing,
    training,
)
from mri_helpers._tf import keras

SIZE = 32
SMALL_G = models.GeneratorConfig((8, 16, 32), dropout_blocks=0)
SMALL_D = models.DiscriminatorConfig((8, 16, 32))


def build(
    seed: int = 0, pool_size: int = 0, epochs: int = 2, steps: int = 2, g=SMALL_G, average=0.0
):
    mh.set_seed(seed)
    config = training.TrainingConfig(
        epochs=epochs, steps_per_epoch=steps, pool_size=pool_size, generator_average=average
    )
    model = training.CycleGAN(
        models.unet_generator(g, SIZE),
        models.unet_generator(g, SIZE),
        models.patchgan_discriminator(SMALL_D, SIZE),
        models.patchgan_discriminator(SMALL_D, SIZE),
        config,
        seed=seed,
    )
    model.compile_for_training(jit_compile=False)
    return model


def images(seed: int, n: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, SIZE, SIZE, 1)).astype(np.float32)


def test_schedule_is_constant_then_linear_to_zero() -> None:
    schedule = training.ConstantThenLinearDecay(2e-4, decay_start=100, total_steps=200)
    values = [float(schedule(step)) for step in (0, 50, 100, 150, 200, 250)]
    assert values == pytest.approx([2e-4, 2e-4, 2e-4, 1e-4, 0.0, 0.0])
    again = training.ConstantThenLinearDecay.from_config(schedule.get_config())
    assert float(again(150)) == pytest.approx(1e-4)
    config = training.TrainingConfig(epochs=10, steps_per_epoch=7)
    assert (config.decay_start_step, config.total_steps) == (35, 70)


def test_training_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="epochs=0 must be at least 1"):
        training.TrainingConfig(epochs=0, steps_per_epoch=3)
    with pytest.raises(ValueError, match="use one of"):
        training.TrainingConfig(epochs=1, steps_per_epoch=1, adversarial="wgan")


def test_pool_fills_then_mixes_history_and_new_images() -> None:
    pool = training.ImagePool(4, (2, 2, 1), seed=3)
    batches = [np.full((2, 2, 2, 1), float(i), np.float32) for i in range(1, 9)]
    first = pool(batches[0]).numpy()
    np.testing.assert_array_equal(first, batches[0])  # filling: new images pass through
    pool(batches[1])
    assert int(pool.count.numpy()) == 4
    returned = np.concatenate([pool(b).numpy() for b in batches[2:]])
    values = set(returned[:, 0, 0, 0].tolist())
    assert values <= set(range(1, 9))
    new_values = {float(i) for i in range(3, 9)}
    assert values & new_values and values - new_values  # both fresh and remembered images
    np.testing.assert_array_equal(training.ImagePool(0, (2, 2, 1))(batches[0]), batches[0])


def test_train_step_lowers_cycle_loss_and_updates_every_network() -> None:
    model = build(epochs=1, steps=1)
    before = [n.get_weights()[0].copy() for n in model._all_networks()]
    x, y = images(1), images(2)
    first = {k: float(v) for k, v in model.train_step((x, y)).items()}
    for _ in range(15):
        last = {k: float(v) for k, v in model.train_step((x, y)).items()}
    assert all(np.isfinite(v) for v in first.values())
    assert set(first) == set(training.LOSS_NAMES)
    after = [n.get_weights()[0] for n in model._all_networks()]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    model.trackers["cycle"].reset_state()
    assert float(model.compute_losses(x, y, training=False)["cycle"]) < first["cycle"]
    assert int(model.network_optimizers["d_t1"].iterations.numpy()) == 16
    assert last["cycle"] != first["cycle"]


def test_batched_calls_give_the_tutorials_losses() -> None:
    """The speed-up (one call per network on several images) keeps the mathematics; here
    with a full-size skip in the generators."""
    g = models.GeneratorConfig((8, 16, 32), dropout_blocks=0, full_resolution=4)
    model = build(pool_size=0, g=g)
    x, y = images(3, 2), images(4, 2)
    ours = {k: float(v) for k, v in model.compute_losses(x, y, training=False).items()}
    g, f = model.generator_g, model.generator_f
    d_t2, d_t1 = model.discriminator_t2, model.discriminator_t1
    fake_y, fake_x = g(x), f(y)
    cycle = losses.cycle_loss(x, f(fake_y)) + losses.cycle_loss(y, g(fake_x))
    reference = {
        "g_t1_to_t2": losses.generator_adversarial_loss(d_t2(fake_y))
        + cycle
        + losses.identity_loss(y, g(y)),
        "f_t2_to_t1": losses.generator_adversarial_loss(d_t1(fake_x))
        + cycle
        + losses.identity_loss(x, f(x)),
        "d_t2": losses.discriminator_loss(d_t2(y), d_t2(fake_y)),
        "d_t1": losses.discriminator_loss(d_t1(x), d_t1(fake_x)),
        "cycle": cycle,
    }
    for name, value in reference.items():
        assert ours[name] == pytest.approx(float(value), rel=1e-5), name


def in_fresh_interpreter(script: str) -> str:
    """Run a script of tests/ in its own Python (TensorFlow settings that must come before it
    starts); return what it printed. TF_NUM_INTEROP_THREADS is not passed on: the script's
    own settings decide."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "TF_NUM_INTEROP_THREADS"}
    path = Path(__file__).with_name(script)
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow  # other processes, or long: not in `make check`
def test_same_seed_same_run_other_seed_other_run() -> None:
    """Course-shaped networks, fitted three times in a fresh interpreter: with `REPRODUCIBLE`
    the same seed gives bit-identical weights and images, another seed another run."""
    import json

    measured = json.loads(in_fresh_interpreter("reproducible_fit.py").strip().splitlines()[-1])
    assert measured["inter_op_threads"] == 1  # ops ran one at a time
    assert measured["same_seed_weights"] == 0.0 and measured["same_seed_images"] == 0.0
    # A logged loss is a mean of means, which the CPU may sum in another order when other
    # work shares its threads: its last bit can differ (seen once in 14 runs); the weights,
    # which are all a run carries forward, cannot (above).
    assert measured["same_seed_losses"] <= 1e-6
    assert measured["other_seed_weights"] > 1e-2 and measured["other_seed_losses"] > 1e-2


def test_set_seed_after_tensorflow_started_says_how_to_get_identical_runs(monkeypatch) -> None:
    from mri_helpers._tf import tf

    tf.constant(1.0) + 1.0  # TensorFlow has started: its thread pools are fixed
    monkeypatch.delenv("TF_NUM_INTEROP_THREADS", raising=False)
    if tf.config.threading.get_inter_op_parallelism_threads() == 1:
        pytest.skip("this process already runs ops one at a time")
    with pytest.warns(UserWarning, match="before any TensorFlow work .* TF_NUM_INTEROP_THREADS=1"):
        mh.set_seed(0, one_op_at_a_time=True)


class RawWeights(keras.callbacks.Callback):
    """Records generator G's first kernel after every step and at each epoch's start."""

    def __init__(self):
        super().__init__()
        self.after_step, self.epoch_start = [], []

    def kernel(self) -> np.ndarray:
        return self.model.generator_g.trainable_variables[0].numpy().copy()

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.epoch_start.append(self.kernel())

    def on_train_batch_end(self, batch, logs=None):
        self.after_step.append(self.kernel())


class SeenAtEpochEnd(keras.callbacks.Callback):
    """Records what the callbacks after AveragedGenerators see at each epoch's end."""

    def __init__(self):
        super().__init__()
        self.kernels = []

    def on_epoch_end(self, epoch, logs=None):
        self.kernels.append(self.model.generator_g.trainable_variables[0].numpy().copy())


def test_averaged_generators_are_shown_and_kept_while_training_goes_on_raw() -> None:
    momentum = 0.5
    model = build(epochs=2, steps=3, average=momentum)
    data = processing.training_pipeline(images(30, 4), images(31, 4), batch_size=2, seed=0)
    raw, seen = RawWeights(), SeenAtEpochEnd()
    model.fit(
        data, epochs=2, steps_per_epoch=3, verbose=0, shuffle=False,
        callbacks=[raw, callbacks.AveragedGenerators(), seen],
    )  # fmt: skip
    # The exponential moving average of the raw weights, starting at the first step's.
    expected = [raw.after_step[0]]
    for weights in raw.after_step[1:]:
        expected.append(momentum * expected[-1] + (1 - momentum) * weights)
    np.testing.assert_allclose(seen.kernels[0], expected[2], rtol=1e-5, atol=1e-7)
    assert not np.allclose(seen.kernels[0], raw.after_step[2])  # averaged, not raw
    # Epoch 2 trains on from the raw weights, and the model ends with the average.
    np.testing.assert_array_equal(raw.epoch_start[1], raw.after_step[2])
    final = model.generator_g.trainable_variables[0].numpy()
    np.testing.assert_allclose(final, expected[-1], rtol=1e-5, atol=1e-7)


class PoisonAfter(keras.callbacks.Callback):
    """Turns the inputs' weights to NaN after a number of batches, as a diverging run would."""

    def __init__(self, batches: int):
        super().__init__()
        self.batches, self.seen = batches, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.batches:
            layer = self.model.generator_g.layers[1]
            layer.set_weights([np.full_like(w, np.nan) for w in layer.get_weights()])


def test_nan_stops_training_names_the_loss_and_keeps_good_weights(capsys) -> None:
    model = build(epochs=3, steps=2)
    data = processing.training_pipeline(images(20, 4), images(21, 4), batch_size=2, seed=0)
    guard = callbacks.StopOnNonFinite()
    model.fit(
        data, epochs=3, steps_per_epoch=2, verbose=0, shuffle=False,
        callbacks=[PoisonAfter(3), guard],
    )  # fmt: skip
    assert "became nan at epoch 2, step 2" in guard.message
    assert "weights are those after epoch 1" in guard.message
    assert "g_t1_to_t2" in guard.message or "cycle" in guard.message
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert "training stopped" in capsys.readouterr().out


@pytest.mark.slow  # other processes, or long: not in `make check`
def test_two_replicas_train_like_one_device() -> None:
    """MirroredStrategy on two logical CPUs gives the weights of one device, same batch."""
    words = in_fresh_interpreter("distributed_step.py").split()
    difference = float(words[words.index("max_difference") + 1])
    moved = float(words[words.index("moved") + 1])
    assert moved > 1e-5  # the step changed the weights ...
    assert difference < 1e-5  # ... identically with two replicas


def test_warm_start_moves_generators_towards_the_classical_guess() -> None:
    phantom = mh.load_dataset("phantom", num_slices=12)
    split = processing.holdout_split(phantom, 0.2, seed=0)
    cleaning = processing.Cleaning()
    model = build(pool_size=0)
    guesses = head_start.baseline_targets(
        [processing.clean_slice(s.image, cleaning) for s in phantom.t1[:2]],
        [processing.clean_slice(s.image, cleaning) for s in phantom.t2[2:]],
    )
    assert guesses[0].shape == (217, 181) and guesses[0].dtype == np.uint8
    before = head_start.warm_start_generators(model, phantom, split, SIZE, cleaning, 1, 2)
    after = head_start.warm_start_generators(model, phantom, split, SIZE, cleaning, 60, 2)
    for direction in ("t1-to-t2", "t2-to-t1"):
        assert after[direction] < before[direction]
    assert np.isnan(head_start.warm_start(model.generator_g, guesses, guesses, 0, 2))


def test_warm_start_trains_under_float16() -> None:
    """float16 (the GPU policy) needs loss scaling, or small gradients vanish; the warm start
    gets it like the CycleGAN's own step; here it must still train (float16 works on CPU)."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        generator = models.unet_generator(SMALL_G, SIZE)
        assert generator.layers[1].compute_dtype == "float16"
        sources, targets = images(50, 4), -images(50, 4)
        first = head_start.warm_start(generator, sources, targets, 1, 2, seed=0)
        last = head_start.warm_start(generator, sources, targets, 40, 2, seed=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(last) and last < first


def test_only_float16_gets_loss_scaling() -> None:
    try:
        for policy, scaled in (
            ("mixed_float16", True),
            ("mixed_bfloat16", False),
            ("float32", False),
        ):
            keras.mixed_precision.set_global_policy(policy)
            optimizer = training.loss_scaled(keras.optimizers.Adam())
            assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == scaled, policy
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_cycle_noise_only_applies_while_training() -> None:
    model = build(pool_size=0)
    x, y = images(30, 2), images(31, 2)
    quiet = float(model.compute_losses(x, y, training=False)["cycle"])
    noisy = training.CycleGAN(
        model.generator_g,
        model.generator_f,
        model.discriminator_t2,
        model.discriminator_t1,
        training.TrainingConfig(epochs=1, steps_per_epoch=1, pool_size=0, cycle_noise=0.5),
    )
    assert float(noisy.compute_losses(x, y, training=False)["cycle"]) == pytest.approx(quiet)
    assert float(noisy.compute_losses(x, y, training=True)["cycle"]) != pytest.approx(quiet)


def test_precision_policy_per_machine(tmp_path) -> None:
    policy = precision.precision_policy
    assert policy("auto", gpu=True, native_bf16=False) == "mixed_float16"
    assert policy("auto", gpu=False, native_bf16=True) == "mixed_bfloat16"
    assert policy("auto", gpu=False, native_bf16=False) == "float32"  # emulated bf16 is slower
    assert policy("on", gpu=False, native_bf16=False) == "mixed_bfloat16"
    assert policy("off", gpu=True, native_bf16=True) == "float32"
    with pytest.raises(ValueError, match="use 'auto', 'on' or 'off'"):
        policy("fast")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    assert precision.cpu_computes_bfloat16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert not precision.cpu_computes_bfloat16(cpuinfo)
    assert not precision.cpu_computes_bfloat16(tmp_path / "missing")


@pytest.fixture
def bfloat16_policy():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_bfloat16_step_with_pool_stays_close_to_float32(bfloat16_policy) -> None:
    """Mixed bfloat16 computes in 16 bits, keeps float32 weights and outputs, and gives the
    float32 losses to bfloat16's precision (a few per cent)."""
    x, y = images(40, 2), images(41, 2)
    mixed = build(pool_size=4)
    assert mixed.generator_g.layers[1].compute_dtype == "bfloat16"
    assert mixed.generator_g.trainable_variables[0].dtype == "float32"
    keras.mixed_precision.set_global_policy("float32")
    plain = build(pool_size=4)  # same seed: same initial weights
    expected = {k: float(v) for k, v in plain.compute_losses(x, y, training=False).items()}
    got = {k: float(v) for k, v in mixed.compute_losses(x, y, training=False).items()}
    for name in ("g_t1_to_t2", "f_t2_to_t1", "d_t2", "d_t1", "cycle"):
        assert got[name] == pytest.approx(expected[name], rel=0.05), name
    logs = mixed.train_step((x, y))  # the pool takes bfloat16-policy fakes
    assert all(np.isfinite(float(v)) for v in logs.values())


def test_quality_over_time_scores_held_out_phantom_slices_during_fit(tmp_path) -> None:
    dataset = mh.load_dataset("phantom", num_slices=8)
    split = processing.holdout_split(dataset, 0.25, seed=0)
    cleaning = processing.Cleaning()
    train = [
        processing.prepare(processing.select(dataset, m, split.train[m]), SIZE, cleaning)
        for m in ("t1", "t2")
    ]
    model = build(epochs=3, steps=2)
    scorer = evaluation.phantom_scorer(dataset, split, SIZE, cleaning)
    quality = evaluation.QualityOverTime(scorer, tmp_path / "quality.csv", every=2)
    pipeline = processing.training_pipeline(*train, batch_size=2, seed=0)
    model.fit(pipeline, epochs=3, steps_per_epoch=2, callbacks=[quality], verbose=0)
    lines = (tmp_path / "quality.csv").read_text().splitlines()
    assert lines[0] == "epoch,training_minutes,ssim_t1_to_t2,ssim_t2_to_t1"
    rows = [line.split(",") for line in lines[1:]]
    assert [row[0] for row in rows] == ["2", "3"]  # every 2 epochs, and the last
    assert float(rows[0][1]) <= float(rows[1][1])
    final = scorer(model)  # the last row scored the finished model
    assert float(rows[1][2]) == pytest.approx(final["t1-to-t2"], abs=1e-4)
    assert float(rows[1][3]) == pytest.approx(final["t2-to-t1"], abs=1e-4)
    assert all(0 < float(value) < 1 for row in rows for value in row[2:])


def test_a_checkpoint_resumes_only_with_the_settings_that_made_it(tmp_path) -> None:
    """Same settings: resume. Other settings: refused before any training, each change named,
    the checkpoint kept. RESTART: the old checkpoint goes and training starts afresh."""
    settings = {"EPOCHS": 25, "LEARNING_RATE": 1e-3, "IMAGE_SIZE": 224, "data": "a.zip"}
    assert checkpoints.resume_or_start(tmp_path, settings) is False  # nothing to resume
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    x = np.ones((4, 2), np.float32)
    model.fit(x, x[:, :1], epochs=2, verbose=0, callbacks=[backup])  # a real checkpoint
    checkpoint = sorted(p.name for p in (tmp_path / "backup").iterdir())
    assert checkpoints.resume_or_start(tmp_path, dict(settings)) is True
    changed = {**settings, "EPOCHS": 30, "LEARNING_RATE": 2e-4}
    with pytest.raises(mh.CourseError) as refused:
        checkpoints.resume_or_start(tmp_path, changed)
    message = str(refused.value)
    assert "EPOCHS 25 -> 30" in message and "LEARNING_RATE 0.001 -> 0.0002" in message
    assert "IMAGE_SIZE" not in message and "RESTART = True" in message and "new RUN_DIR" in message
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == checkpoint  # kept
    (tmp_path / "history.csv").write_text("epoch\n0\n")
    assert checkpoints.resume_or_start(tmp_path, changed, restart=True) is False
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["configuration.json"]
    assert not (tmp_path / "history.csv").exists()
    assert checkpoints.resume_or_start(tmp_path, changed) is False  # no checkpoint yet


def test_a_checkpoint_without_its_settings_is_not_resumed_blindly(tmp_path) -> None:
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "latest.weights.h5").write_bytes(b"weights of unknown origin")
    with pytest.raises(mh.CourseError, match="does not record its settings"):
        checkpoints.resume_or_start(tmp_path, {"EPOCHS": 2})


@pytest.mark.parametrize(
    ("described", "workers"),
    [
        (None, []),
        ({"worker": ["a:1", "b:2"]}, ["a:1", "b:2"]),
        ({"chief": ["c:1"], "worker": ["a:1"]}, ["c:1", "a:1"]),
    ],
)
def test_tf_config_names_the_workers(monkeypatch, described, workers: list[str]) -> None:
    import json

    task = {"type": "worker", "index": 0}
    config = json.dumps({"cluster": described, "task": task}) if described else ""
    monkeypatch.setenv("TF_CONFIG", config)
    assert cluster.cluster_workers() == workers


def test_a_broken_tf_config_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("TF_CONFIG", "{cluster: oops")
    with pytest.raises(mh.CourseError, match="TF_CONFIG is not valid"):
        distribution.distribution_strategy()


def test_a_nan_after_a_restored_checkpoint_keeps_the_restored_weights(tmp_path) -> None:
    """The good weights are taken when the first epoch begins, after a checkpoint was restored
    (BackupAndRestore restores in on_train_begin, listed after the guard in lesson 04)."""
    from mri_helpers._tf import tf

    class Broken(keras.Model):
        def train_step(self, data):
            return {"cycle": tf.constant(float("nan"))}

    model = Broken(inputs := keras.Input((2,)), keras.layers.Dense(1)(inputs))
    model.compile()
    restored = [np.full(w.shape, 0.5, np.float32) for w in model.get_weights()]

    class Restore(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.model.set_weights(restored)

    guard = callbacks.StopOnNonFinite()
    x = np.ones((4, 2), np.float32)
    model.fit(x, x[:, :1], epochs=2, verbose=0, callbacks=[guard, Restore()])
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), restored, strict=True))
    assert "after epoch 0" in guard.message


def test_training_stopped_early_still_exports_what_it_ended_with(tmp_path) -> None:
    model = build(epochs=4, steps=1)

    class StopAfterTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = epoch == 1

    periodic = callbacks.PeriodicExport(tmp_path, every=3, image_size=SIZE, extra={})
    data = tf_pairs()
    model.fit(data, epochs=4, steps_per_epoch=1, verbose=0, callbacks=[StopAfterTwo(), periodic])
    import json

    config = json.loads((tmp_path / "t1-to-t2" / "model.json").read_text())
    assert config["epoch"] == 2  # not exported at 3 (never reached), but at the stop


def tf_pairs():
    from mri_helpers._tf import tf

    return tf.data.Dataset.from_tensors((images(0, 2), images(1, 2))).repeat()


class _Clock:
    """A clock that moves `tick` seconds each time it is read."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@pytest.mark.slow  # long: not in `make check`
def test_time_budget_shortens_the_run_and_its_decay(tmp_path) -> None:
    epochs, steps = 8, 2
    model = build(epochs=epochs, steps=steps)
    data = tf_pairs()
    # On this clock an epoch takes 5 s; after two epochs, 25 s after the start, 17.75 s of the
    # 45 s budget (less a 5 % reserve) are left: three more epochs, five in all.
    budget = callbacks.TimeBudget(0.75, tmp_path / "time_budget.json", clock=_Clock(5.0))
    history = model.fit(data, epochs=epochs, steps_per_epoch=steps, callbacks=[budget], verbose=0)
    record = json.loads((tmp_path / "time_budget.json").read_text())
    assert (record["asked"], record["epochs"], record["seconds_per_epoch"]) == (epochs, 5, 5.0)
    assert len(history.history["g_t1_to_t2"]) == record["epochs"] == budget.epochs
    schedule = model.schedule
    assert schedule.total_steps == record["epochs"] * steps
    assert schedule.decay_start == 2 * steps  # half-way, as asked of the longer run
    assert float(schedule(schedule.total_steps)) == 0.0  # it still decays to zero

    # A resumed run (it starts at a later epoch) keeps the recorded decision.
    again = build(epochs=epochs, steps=steps)
    resumed = callbacks.TimeBudget(0.75, tmp_path / "time_budget.json", clock=_Clock(0.0))
    history = again.fit(
        data, epochs=epochs, steps_per_epoch=steps, initial_epoch=1, callbacks=[resumed], verbose=0
    )
    assert resumed.epochs == record["epochs"]
    assert len(history.history["g_t1_to_t2"]) == record["epochs"] - 1
    assert again.schedule.total_steps == record["epochs"] * steps


def test_time_budget_never_lengthens_a_run(tmp_path) -> None:
    model = build(epochs=3, steps=1)
    budget = callbacks.TimeBudget(600.0, tmp_path / "budget.json", clock=_Clock(1.0))
    history = model.fit(tf_pairs(), epochs=3, steps_per_epoch=1, callbacks=[budget], verbose=0)
    assert budget.epochs == 3 and len(history.history["g_t1_to_t2"]) == 3
    assert model.schedule.total_steps == 3 and model.schedule.decay_start == 1
    with pytest.raises(ValueError, match="must be > 0"):
        callbacks.TimeBudget(0, tmp_path / "budget.json")
