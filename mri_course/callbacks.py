"""Callbacks around `CycleGAN.fit()`: a line of progress per epoch, a stop at the first
non-finite loss, the generators' weight average, sample images, a time budget, and the
generators exported every few epochs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mri_helpers import fileio
from mri_helpers._tf import keras
from mri_helpers.calibration import calibrated, fit_calibration
from mri_helpers.errors import CourseError
from mri_helpers.export import export_generator, float32_copy
from mri_helpers.test_time import averaged_over_copies
from mri_helpers.training import LOSS_NAMES

from .cluster import cluster_workers


# --- callbacks (04_training, "Watching training") ------------------------------------------
class ProgressLog(keras.callbacks.Callback):
    """One line per epoch: the losses, the time so far and an estimate of the time left.

    Keras's own progress bar redraws itself many times a second, which floods notebooks, CI
    logs and the batch runner's output; one line an epoch reads well in all three.
    """

    def __init__(self, every: int = 1):
        super().__init__()
        self.every = max(1, every)

    def on_train_begin(self, logs=None):
        self._start, self._first_epoch = time.perf_counter(), None

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch is None:  # a resumed run starts at its checkpoint's epoch
            self._first_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        total = self.params.get("epochs") or epoch + 1
        if (epoch + 1) % self.every and epoch + 1 != total:
            return
        logs = logs or {}
        losses_text = "  ".join(f"{k} {logs[k]:.3f}" for k in LOSS_NAMES if k in logs)
        elapsed = time.perf_counter() - self._start
        left = elapsed / (epoch + 1 - self._first_epoch) * (total - epoch - 1)
        print(
            f"epoch {epoch + 1}/{total}  {losses_text}  | {duration(elapsed)} so far, "
            f"about {duration(left)} left",
            flush=True,
        )


def duration(seconds: float) -> str:
    """`seconds` as a short text: "42 s", "3.5 min", "1.2 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop at the first NaN or Inf loss, say which loss at which step, keep good weights.

    Keras's TerminateOnNaN watches only a loss called "loss" and keeps the broken weights; a
    CycleGAN has six losses, and a NaN step has already written NaN into the weights. So the
    weights are copied at the end of every epoch and put back when training stops. The first
    copy is taken when the first epoch begins, after every callback's `on_train_begin` (a
    resumed run's checkpoint is restored there).
    """

    def on_train_begin(self, logs=None):
        self.good_weights, self.message = None, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.good_weights is None:
            self.good_weights, self.good_epoch = self.model.get_weights(), epoch

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if name in LOSS_NAMES and not np.isfinite(float(value)):
                self.message = (
                    f"training stopped: loss {name!r} became {float(value)} at epoch "
                    f"{self.epoch + 1}, step {batch + 1}. The weights are those after epoch "
                    f"{self.good_epoch}. Lower the learning rate or check the input data."
                )
                print(self.message, flush=True)
                self.model.set_weights(self.good_weights)
                self.model.stop_training = True
                return

    def on_epoch_end(self, epoch, logs=None):
        if self.message is None:
            self.good_weights = self.model.get_weights()
            self.good_epoch = epoch + 1


class AveragedGenerators(keras.callbacks.Callback):
    """Hand the callbacks after it the generators' weight average, and keep it at the end.

    A GAN's weights never settle: each step moves them against a discriminator that moves
    too, so the images of any one step carry that step's jitter. The exponential moving
    average of the weights (Adam's `use_ema`; Yazici et al. 2019, as in StyleGAN and BigGAN)
    is steadier, for long runs. In a short run it lags: on the phantom, 1,500 steps with a
    momentum of 0.999 scored below the raw weights, so the `course` profile leaves it off.
    Training itself always continues from the raw weights.
    """

    def __init__(self):
        super().__init__()
        self.raw_weights = None  # the generators' own weights while the average is shown

    def on_epoch_begin(self, epoch, logs=None):
        if self.raw_weights is not None:
            for generator, weights in zip(self._generators(), self.raw_weights, strict=True):
                generator.set_weights(weights)
        self.raw_weights = None

    def on_epoch_end(self, epoch, logs=None):
        self.raw_weights = [generator.get_weights() for generator in self._generators()]
        for name, generator in zip(("g", "f"), self._generators(), strict=True):
            self.model.network_optimizers[name].finalize_variable_values(
                generator.trainable_variables
            )

    def on_train_end(self, logs=None):
        self.raw_weights = None  # the trained generators are the averaged ones

    def _generators(self) -> list[keras.Model]:
        return [self.model.generator_g, self.model.generator_f]


class SampleImages(keras.callbacks.Callback):
    """After every epoch, translate fixed held-out slices both ways and save a PNG; at the end,
    join them into an animated GIF of training."""

    def __init__(self, t1: np.ndarray, t2: np.ndarray, folder: str | os.PathLike):
        super().__init__()
        self.t1, self.t2 = t1, t2
        self.folder = Path(folder)
        self.frames: list[Path] = []

    def on_epoch_end(self, epoch, logs=None):
        fake_t2 = self.model.generator_g(self.t1, training=False).numpy()
        fake_t1 = self.model.generator_f(self.t2, training=False).numpy()
        rows = [np.concatenate(list(images[..., 0]), axis=1) for images in (
            self.t1, fake_t2, self.t2, fake_t1
        )]  # fmt: skip
        grid = np.clip(np.round((np.concatenate(rows) + 1.0) * 127.5), 0, 255).astype(np.uint8)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"epoch_{epoch + 1:03d}.png"
        Image.fromarray(grid).save(path)
        self.frames.append(path)

    def on_train_end(self, logs=None):
        if self.frames:
            frames = [Image.open(p) for p in sorted(self.folder.glob("epoch_*.png"))]
            frames[0].save(
                self.folder / "training.gif", save_all=True, append_images=frames[1:],
                duration=400, loop=0,
            )  # fmt: skip


# --- time budget (04_training, TIME_BUDGET_MINUTES) ----------------------------------------
class TimeBudget(keras.callbacks.Callback):
    """Fit the run's epochs and learning-rate decay to `minutes` of training.

    After the first epochs (the first one also traces the step, so the second is timed), the
    remaining time is divided by the measured seconds per epoch: if fewer epochs than asked
    fit, the run is shortened to them and the schedule refitted so that the learning rate still
    decays to zero at the new end, from the same share of the run as before. It only ever
    shortens a run. The decision is written to `record` (JSON), so a resumed run keeps it.
    """

    def __init__(
        self, minutes: float, record: str | os.PathLike, reserve: float = 0.05, clock=None
    ):
        super().__init__()
        self.clock = clock or time.perf_counter  # seconds; tests pass their own
        if not minutes > 0:
            raise ValueError(f"minutes={minutes!r} must be > 0 (leave the budget off instead).")
        self.minutes, self.record, self.reserve = float(minutes), Path(record), reserve
        self.epochs: int | None = None  # the fitted number of epochs, once decided

    def on_train_begin(self, logs=None):
        if len(cluster_workers()) > 1:
            raise CourseError(
                "TIME_BUDGET_MINUTES times one machine; workers of a multi-machine run would "
                "each decide their own schedule. Set TIME_BUDGET_MINUTES=0 and choose EPOCHS."
            )
        self._start, self._epoch_start, self._first_epoch = self.clock(), None, None
        self._epoch_seconds: list[float] = []
        self.asked = self.params["epochs"]

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch is None:
            self._first_epoch = epoch
            if epoch > 0 and self.record.is_file():  # resumed: keep the earlier decision
                self._apply(int(json.loads(self.record.read_text())["epochs"]))
        self._epoch_start = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        self._epoch_seconds.append(self.clock() - self._epoch_start)
        if self.epochs is None and (len(self._epoch_seconds) >= 2 or epoch == 1):
            timed = self._epoch_seconds[1:] or self._epoch_seconds
            per_epoch = sum(timed) / len(timed)
            left = self.minutes * 60 * (1 - self.reserve) - (self.clock() - self._start)
            fitted = min(self.asked, epoch + 1 + max(0, int(left // per_epoch)))
            self._apply(max(fitted, epoch + 1))
            self.record.parent.mkdir(parents=True, exist_ok=True)
            fileio.write_json(
                self.record,
                {
                    "minutes": self.minutes,
                    "epochs": self.epochs,
                    "asked": self.asked,
                    "seconds_per_epoch": round(per_epoch, 2),
                },
            )
            print(
                f"time budget {self.minutes:g} min: {per_epoch:.1f} s per epoch, so "
                f"{self.epochs} of {self.asked} epochs",
                flush=True,
            )
        if self.epochs is not None and epoch + 1 >= self.epochs:
            self.model.stop_training = True

    def _apply(self, epochs: int) -> None:
        asked = self.asked
        self.epochs = min(epochs, asked)
        schedule = self.model.schedule
        steps = self.params["steps"] or schedule.total_steps // asked
        share = schedule.decay_start / max(1, schedule.total_steps)
        schedule.refit(round(share * self.epochs) * steps, self.epochs * steps)
        self.params["epochs"] = self.epochs  # the progress line's "epoch n/N" and time left


class PeriodicExport(keras.callbacks.Callback):
    """Export both generators every `every` epochs and at the end, also when training stops
    early (atomically).

    With `test_time_augmentation`, each export averages its network over shifted and mirrored
    copies of the input (`mri_helpers.test_time`). With `calibration_data` (prepared training
    T1 and T2 images), it then gets an output intensity calibration fitted on them
    (`mri_helpers.calibration`).
    """

    def __init__(
        self,
        models_dir: str | os.PathLike,
        every: int,
        image_size: int,
        extra: dict,
        calibration_data: tuple[np.ndarray, np.ndarray] | None = None,
        test_time_augmentation: bool = False,
    ):
        super().__init__()
        self.models_dir, self.every = Path(models_dir), max(1, every)
        self.test_time_augmentation = test_time_augmentation
        self.image_size, self.extra = image_size, extra
        if calibration_data is not None and min(len(images) for images in calibration_data) == 0:
            raise ValueError("calibration_data needs training images of both contrasts")
        self.calibration_data = calibration_data

    def on_train_begin(self, logs=None):
        self.finished_epoch = self.exported_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        self.finished_epoch = epoch + 1
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.params.get("epochs"):
            self.export(epoch + 1)

    def on_train_end(self, logs=None):
        # Training stopped early (a NaN loss): export the weights it ended with.
        if self.finished_epoch is not None and self.finished_epoch != self.exported_epoch:
            self.export(self.finished_epoch)

    def export(self, epoch: int) -> None:
        self.exported_epoch = epoch
        is_calibrated = self.calibration_data is not None
        extra = {
            **self.extra,
            "epoch": epoch,
            "calibrated": is_calibrated,
            "test_time_augmentation": self.test_time_augmentation,
        }
        t1, t2 = self.calibration_data if is_calibrated else (None, None)
        for direction, generator, sources, targets in (
            ("t1-to-t2", self.model.generator_g, t1, t2),
            ("t2-to-t1", self.model.generator_f, t2, t1),
        ):
            if self.test_time_augmentation or is_calibrated:
                generator = float32_copy(generator)  # wrapped and fitted as exports compute
            if self.test_time_augmentation:
                generator = averaged_over_copies(generator)
            if is_calibrated:
                generator = calibrated(generator, fit_calibration(generator, sources, targets))
            export_generator(generator, self.models_dir, direction, self.image_size, extra)
