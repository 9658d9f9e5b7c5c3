"""What lesson 04 calls around `fit()` without teaching it: the distribution strategy and the
folder this process writes, the precision, resuming a checkpoint, and the callbacks that give a
run its checkpoints, time budget, TensorBoard logs, samples, exports and progress line.

The lesson writes the step and its losses; this module is the plumbing of a long or large run
("Running at scale" at the end of lesson 04 lists what each part does), and the decision
whether to train at all: a finished training of the same settings, or the published model when
there is no run, is studied as it is (`plan_training`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mri_helpers import calibration, evaluation, export, test_time
from mri_helpers._tf import keras, tf
from mri_helpers.lessons import EarlierLessons

from . import callbacks as run_callbacks
from . import checkpoints, distribution, precision
from .checkpoints import resume_or_start  # noqa: F401 (lesson 04 calls it from here)
from .domain_shift import training_grey_levels
from .scans import head_levels


@dataclass(frozen=True)
class TrainingRun:
    """One process's part of a training run."""

    strategy: tf.distribute.Strategy  # several GPUs or machines: one copy of the networks each
    folder: str  # where this process writes: RUN_DIR, or on a worker other than the chief a
    # temporary folder (TensorFlow's rule: one process writes a run)
    mixed_precision: bool  # whether the networks compute in 16 bits


def start(run_dir: str | os.PathLike, mixed_precision: str = "auto") -> TrainingRun:
    """The strategy, the writing folder and the precision policy; call it first, before
    TensorFlow runs anything (a run across machines needs it so) and before building models."""
    strategy = distribution.distribution_strategy()
    folder = distribution.writing_folder(run_dir, strategy)
    return TrainingRun(strategy, folder, precision.use_mixed_precision(mixed_precision))


def export_record(earlier: EarlierLessons, training_seed: int) -> dict[str, Any]:
    """What each export's model.json records of the run that made it."""
    return {
        "generator": earlier.networks["GENERATOR"],
        "trained_on": earlier.dataset.kind,
        "num_phantom_slices": earlier.manifests["01_data"]["num_phantom_slices"],
        "holdout_fraction": earlier.manifests["02_processing"]["holdout_fraction"],
        "seed": earlier.seed,  # lesson 02's: the held-out split was made with it
        "training_seed": training_seed,
        "held_out": earlier.split.test,  # the slices `mri-course evaluate` scores
        # the grey level of a head in the training slices: whole scans are scaled onto it
        "head_levels": head_levels(earlier.slices("t1", "train") + earlier.slices("t2", "train")),
        # their grey-level distributions: `translate` warns of inputs unlike them
        "grey_levels": training_grey_levels(
            earlier.slices("t1", "train") + earlier.slices("t2", "train")
        ),
        "cleaning": vars(earlier.cleaning),
    }


@dataclass(frozen=True)
class TrainingPlan:
    """What lesson 04 does about training, and where the model it studies is."""

    action: str  # "train" afresh, "resume" an interrupted training, or "use" a finished model
    models: str  # the models folder the evaluation, export and whole-scan sections use
    epochs: int | None  # the epochs of the model used ("use"), else None
    message: str  # one line for the learner
    trained_in: str | None  # the run folder with its history and samples (None: published)

    @property
    def trains(self) -> bool:
        return self.action != "use"


def plan_training(
    run: TrainingRun, earlier: EarlierLessons, parameters: Mapping[str, Any]
) -> TrainingPlan:
    """Train, resume or use: a finished training of these settings in the run folder is used
    as it is, and so is the published model when the run folder holds no run of lessons 01-03;
    an interrupted training resumes; a checkpoint of other settings is refused. `RESTART`
    trains anew in every case."""
    restart = bool(parameters["RESTART"])
    models = os.path.join(run.folder, "models")
    if earlier.published is not None and not restart:
        record = export.read_export_config(earlier.published / "t1-to-t2" / "model.json")
        return TrainingPlan(
            "use", str(earlier.published), record.get("epoch"),
            f"no run of lessons 01-03 in {earlier.run_dir}: studying the published model "
            f"({record.get('epoch')} epochs on the {record.get('trained_on')} data) without "
            "training; run lessons 01-03 first, or set RESTART = True, to train your own",
            None,
        )  # fmt: skip
    configuration = earlier.configuration(parameters)
    finished = checkpoints.finished_epochs(run.folder, configuration)
    if finished is not None and not restart:
        return TrainingPlan(
            "use", models, finished,
            f"training skipped: {run.folder} holds a finished training of these settings "
            f"({finished} epochs); RESTART = True trains anew",
            run.folder,
        )  # fmt: skip
    if resume_or_start(run.folder, configuration, restart=restart):
        backup = os.path.join(run.folder, "backup")
        message = f"resuming from the checkpoint in {backup}"
        return TrainingPlan("resume", models, None, message, run.folder)
    return TrainingPlan("train", models, None, "training, after the head start", run.folder)


def exported_networks(models_dir: str | os.PathLike) -> tuple[keras.Model, keras.Model]:
    """The two generators' networks of an export (T1 -> T2, T2 -> T1), without the averaging
    over copies and the calibration the export wraps around them."""
    return tuple(
        test_time.without_copies(
            calibration.without_calibration(export.load_generator(models_dir, direction)[0])
        )
        for direction in ("t1-to-t2", "t2-to-t1")
    )


def callbacks(
    run: TrainingRun, parameters: Mapping[str, Any], earlier: EarlierLessons
) -> tuple[list[keras.callbacks.Callback], run_callbacks.TimeBudget | None]:
    """The callbacks of lesson 04's `fit()`, in order, and the time budget (None when off)."""
    p, folder = parameters, run.folder
    budget = (  # as many epochs as fit into TIME_BUDGET_MINUTES, the decay refitted to them
        run_callbacks.TimeBudget(
            p["TIME_BUDGET_MINUTES"], os.path.join(folder, "time_budget.json")
        )
        if p["TIME_BUDGET_MINUTES"]
        else None
    )
    phantom_quality = evaluation.QualityOverTime(  # held-out SSIM against the phantom's truth
        evaluation.phantom_scorer(
            earlier.dataset, earlier.split, earlier.image_size, earlier.cleaning
        ),
        os.path.join(folder, "quality.csv"),
        every=max(1, p["EPOCHS"] // 10),
    )
    train = (earlier.images("t1"), earlier.images("t2"))
    test = (earlier.images("t1", "test")[:4], earlier.images("t2", "test")[:4])
    chain = [
        run_callbacks.StopOnNonFinite(),  # the first NaN or Inf loss stops, naming it
        checkpoints.BackupAndRestore(  # a killed run resumes from its last finished epoch
            os.path.join(folder, "backup"), run.strategy, double_checkpoint=True
        ),
        *([budget] if budget else []),
        # the callbacks after this one see the generators' weight average
        *([run_callbacks.AveragedGenerators()] if p["GENERATOR_AVERAGE"] else []),
        *([phantom_quality] if earlier.dataset.is_phantom else []),
        keras.callbacks.TensorBoard(os.path.join(folder, "tensorboard"), update_freq="epoch"),
        run_callbacks.SampleImages(*test, os.path.join(folder, "samples")),
        run_callbacks.PeriodicExport(  # both generators every EXPORT_EVERY epochs and at the end
            os.path.join(folder, "models"),
            p["EXPORT_EVERY"],
            earlier.image_size,
            export_record(earlier, p["SEED"]),
            calibration_data=train if p["CALIBRATE"] else None,
            test_time_augmentation=p["TEST_TIME_AUGMENTATION"],
        ),
        keras.callbacks.CSVLogger(os.path.join(folder, "history.csv"), append=True),
        run_callbacks.ProgressLog(),  # one line per epoch: losses, time so far, time left
        # last, after the final export: running the lesson again uses it instead of training
        checkpoints.TrainingFinished(folder, earlier.configuration(p)),
    ]
    return chain, budget
