"""Checkpoints a killed run resumes from: Keras's BackupAndRestore, written whole or not at
all, and the check that a checkpoint was made with this run's settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py

from mri_helpers import fileio
from mri_helpers._tf import keras, tf
from mri_helpers.errors import CourseError
from mri_helpers.training import across_workers

from .cluster import cluster_workers

CONFIGURATION_FILE = "configuration.json"  # in RUN_DIR/backup: what made the checkpoint
FINISHED_FILE = "training.json"  # in RUN_DIR: the settings and epochs of a finished training


def resume_or_start(
    run_dir: str | os.PathLike, configuration: dict[str, Any], restart: bool = False
) -> bool:
    """Whether training in `run_dir` resumes an interrupted run from its checkpoint
    (BackupAndRestore's, in `run_dir/backup`).

    A checkpoint records the `configuration` that made it. A run with the same configuration
    resumes; one with another is refused before any training, naming each change, unless
    `restart`: then the old checkpoint is deleted. A fresh start also removes the history,
    quality log, samples, TensorBoard logs and record of a finished training that a finished
    run left, so the new run's files are its own (its exports replace the old ones as they are
    written); only the damaged checkpoints BackupAndRestore set aside stay, unless `restart`.
    """
    run_dir = Path(run_dir)
    backup = run_dir / "backup"
    configuration = json.loads(json.dumps(configuration, default=str))  # as it is stored
    has_checkpoint = any((backup / name).exists() for name in CHECKPOINT_FILES)
    if has_checkpoint and not restart:
        try:
            recorded = json.loads((backup / CONFIGURATION_FILE).read_text())
        except (OSError, ValueError):
            recorded = None
        changes = configuration_changes(recorded, configuration)
        if not changes:
            return True
        raise CourseError(
            f"{backup} holds the checkpoint of an interrupted run with other settings: "
            f"{'; '.join(changes)}. Resuming it with these settings would mix two runs. Either "
            "choose a new RUN_DIR, or start afresh here with RESTART = True (which deletes that "
            "checkpoint)."
        )
    _clear_backup(backup, keep_damaged=not restart)
    for folder in (run_dir / "samples", run_dir / "tensorboard"):
        shutil.rmtree(folder, ignore_errors=True)
    (run_dir / "history.csv").unlink(missing_ok=True)
    (run_dir / "quality.csv").unlink(missing_ok=True)
    (run_dir / FINISHED_FILE).unlink(missing_ok=True)
    backup.mkdir(parents=True, exist_ok=True)
    fileio.write_text(
        backup / CONFIGURATION_FILE, json.dumps(configuration, indent=2, sort_keys=True)
    )
    return False


def finished_epochs(run_dir: str | os.PathLike, configuration: dict[str, Any]) -> int | None:
    """The epochs of the finished training in `run_dir` made with `configuration`, or None when
    there is none: no record, other settings, or exports that are not that training's last."""
    run_dir = Path(run_dir)
    try:
        record = json.loads((run_dir / FINISHED_FILE).read_text())
        exported = [
            json.loads((run_dir / "models" / direction / "model.json").read_text())["epoch"]
            for direction in ("t1-to-t2", "t2-to-t1")
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    configuration = json.loads(json.dumps(configuration, default=str))  # as it is stored
    if not isinstance(record, dict) or record.get("configuration") != configuration:
        return None
    epochs = record.get("epochs")
    return epochs if isinstance(epochs, int) and exported == [epochs, epochs] else None


class TrainingFinished(keras.callbacks.Callback):
    """Record, when training ends, its settings and epochs in `run_dir`/training.json, so that
    running lesson 04 again (or `mri-course run --resume` after a later cell failed) uses the
    finished model instead of training again. Place it after the final export."""

    def __init__(self, run_dir: str | os.PathLike, configuration: dict[str, Any]):
        super().__init__()
        self.path = Path(run_dir) / FINISHED_FILE
        self.configuration = json.loads(json.dumps(configuration, default=str))
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs = epoch + 1

    def on_train_end(self, logs=None):
        if self.epochs:  # a fit that trained no epoch has nothing to record
            record = {"epochs": self.epochs, "configuration": self.configuration}
            fileio.write_text(self.path, json.dumps(record, indent=2, sort_keys=True))


def _clear_backup(backup: Path, keep_damaged: bool) -> None:
    """Remove `backup`, or all in it but the damaged checkpoints BackupAndRestore set aside."""
    kept = list(backup.glob(f"*{DAMAGED}*")) if keep_damaged and backup.is_dir() else []
    if not kept:
        shutil.rmtree(backup, ignore_errors=True)
        return
    for path in backup.iterdir():
        if path in kept:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


CHECKPOINT_FILES = ("latest.weights.h5", "latest.weights.h5.bkp")  # BackupAndRestore's


DAMAGED = ".damaged-"  # a checkpoint that could not be restored: NAME.damaged-<time>, kept


def configuration_changes(recorded: Any, current: dict[str, Any]) -> list[str]:
    """Each difference between a recorded configuration and the current one, as
    "NAME old -> new"; a missing or unreadable record is one difference."""
    if not isinstance(recorded, dict):
        return ["the checkpoint does not record its settings (unreadable or missing)"]
    names = sorted(set(recorded) | set(current))
    missing = "(not set)"
    return [
        f"{name} {recorded.get(name, missing)!r} -> {current.get(name, missing)!r}"
        for name in names
        if recorded.get(name, missing) != current.get(name, missing)
    ]


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore, with checkpoints written whole or not at all, a damaged one
    set aside for the one before it, and in a run across machines a first check that every
    worker resumes at the same epoch (a clear error otherwise, before any step).

    Every file is written under a temporary name in its folder and renamed into place, and
    the previous checkpoint (`double_checkpoint`) is kept by a rename, so a kill leaves whole
    files only. The weights file holds its own epoch (an HDF5 attribute, set before it is
    renamed into place) and restoring trusts it over the JSON beside it: weights and epoch
    agree wherever a kill falls.

    Give each process its own folder (`writing_folder(RUN_DIR, strategy)/backup`): the
    callback writes wherever it is given, on every worker.
    """

    def __init__(self, backup_dir: str | os.PathLike, strategy: tf.distribute.Strategy, **kw):
        super().__init__(os.fspath(backup_dir), **kw)
        self.strategy = strategy

    def on_train_begin(self, logs=None):
        if across_workers(self.strategy):  # before restoring, which may be a collective
            epochs = workers_values(self.strategy, self._checkpoint_epoch())
            if len(set(epochs)) > 1:
                raise CourseError(
                    "the workers would start at different epochs "
                    f"({', '.join(map(str, epochs))}, chief first): they do not see the same "
                    "checkpoint. Give every machine the same run folder on a shared file "
                    "system; start every worker of a fresh run without --resume, and every "
                    "worker of an interrupted one with --resume."
                )
        with self.strategy.scope():  # restoring may build the optimizers' variables
            self._restore()

    def _save_model(self):
        """The checkpoint: its weights with their epoch, then the JSON of that epoch, each
        renamed into place whole; the previous weights and JSON kept by renames first."""
        os.makedirs(self.backup_dir, exist_ok=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        with fileio.replacing(self._weights_path) as partial:
            self.model.save_weights(partial, overwrite=True)
            with h5py.File(partial, "a") as written:
                written.attrs.update(metadata)
            with partial.open("rb+") as written:  # on disk before the previous one moves
                os.fsync(written.fileno())
            if self.double_checkpoint and os.path.isfile(self._weights_path):
                os.replace(self._weights_path, self._prev_weights_path)
                if os.path.isfile(self._training_metadata_path):
                    os.replace(self._training_metadata_path, self._prev_training_metadata_path)
        fileio.write_json(self._training_metadata_path, metadata)

    def _restore(self) -> None:
        """Load the latest checkpoint, or the previous one when the latest is missing or
        damaged; a damaged one is named and set aside (never deleted); without a sound one,
        training starts afresh."""
        if not self.model.built:
            raise ValueError(
                "To use the BackupAndRestore callback, your model must be built before you "
                f"call `fit()`. Model {self.model} is unbuilt. You can build it beforehand by "
                "calling it on a batch of data."
            )
        for leftover in Path(self.backup_dir).glob(".*.partial*"):  # of a killed write
            leftover.unlink(missing_ok=True)
        latest = self._weights_path
        sources = [p for p in (latest, self._prev_weights_path) if os.path.isfile(p)]
        if not sources:
            return  # a fresh run
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:  # its variables exist to be loaded
            optimizer.build(self.model.trainable_variables)
        snapshot = None  # the model as it was, should a failed load leave it half loaded
        try:
            for source in sources:
                try:
                    epoch, batch = self._stored_state(source)
                except Exception as error:  # whatever the damage: set aside
                    self._set_aside(source, error)
                    continue
                if source != latest:  # the previous checkpoint becomes the latest
                    os.replace(source, latest)
                if snapshot is None:
                    snapshot = self._snapshot()
                try:
                    self.model.load_weights(latest)
                except Exception as error:  # a mismatch, or damage h5py let by
                    self._set_aside(latest, error, source)
                    continue
                self.model._initial_epoch = epoch
                self._record(epoch, batch)
                if source != latest:
                    print(
                        f"resuming from the previous checkpoint {source} (after epoch {epoch}).",
                        flush=True,
                    )
                return
            if snapshot is not None:
                self.model.load_weights(snapshot)
            print(
                f"no sound checkpoint left in {self.backup_dir}: training starts afresh.",
                flush=True,
            )
        finally:
            if snapshot is not None:
                os.unlink(snapshot)

    def _stored_state(self, path: str) -> tuple[int, int]:
        """(epoch, batch) of the weights file `path`, every array of which is read: an
        exception if it is damaged or incomplete."""
        with h5py.File(path, "r") as stored:
            stored.visititems(_read_dataset)
            if "epoch" in stored.attrs:
                return int(stored.attrs["epoch"]), int(stored.attrs.get("batch", 0))
        # Written before the weights held their epoch: the JSON beside them, as Keras reads.
        json_path = (
            self._training_metadata_path
            if path == self._weights_path
            else self._prev_training_metadata_path
        )
        try:
            recorded = json.loads(Path(json_path).read_text())
            return int(recorded["epoch"]), int(recorded.get("batch", 0))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return 0, 0

    def _checkpoint_epoch(self) -> int:
        """The epoch the checkpoint in this worker's folder resumes at; 0 without one."""
        for path in (self._weights_path, self._prev_weights_path):
            if os.path.isfile(path):
                with contextlib.suppress(Exception):  # damaged: restoring sets it aside
                    return self._stored_state(path)[0]
        return 0

    def _snapshot(self) -> str:
        """The model's weights (and optimizers'), saved to a temporary file."""
        handle, path = tempfile.mkstemp(
            prefix=".restore-snapshot.", suffix=".partial.weights.h5", dir=self.backup_dir
        )
        os.close(handle)
        self.model.save_weights(path, overwrite=True)
        return path

    def _set_aside(self, path: str, error: Exception, source: str | None = None) -> None:
        """Rename the damaged checkpoint `path` (first written as `source`) to
        SOURCE.damaged-<time>, and say so in one line."""
        source = source or path
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside, count = Path(f"{source}{DAMAGED}{stamp}"), 1
        while aside.exists():
            count += 1
            aside = Path(f"{source}{DAMAGED}{stamp}-{count}")
        os.replace(path, aside)
        reason = (str(error).strip().splitlines() or [""])[0][:160]
        print(
            f"checkpoint {source} is damaged or incomplete "
            f"({type(error).__name__}: {reason}); set aside as {aside.name}.",
            flush=True,
        )

    def _record(self, epoch: int, batch: int) -> None:
        """The training metadata JSON, made to agree with the restored weights."""
        metadata = {"epoch": epoch, "batch": batch}
        try:
            if json.loads(Path(self._training_metadata_path).read_text()) == metadata:
                return
        except (OSError, ValueError):
            pass
        fileio.write_json(self._training_metadata_path, metadata)

    def on_train_end(self, logs=None):
        """A finished run's checkpoint is deleted (`delete_checkpoint`), not the damaged
        ones set aside."""
        if self.delete_checkpoint:
            _clear_backup(Path(self.backup_dir), keep_damaged=True)


def _read_dataset(name: str, item: Any) -> None:
    """Read an HDF5 dataset whole (h5py's `visititems`; None: go on)."""
    if isinstance(item, h5py.Dataset):
        item[()]


def workers_values(strategy: tf.distribute.Strategy, value: int) -> list[int]:
    """`value` of every worker (each replica's), in worker order; a collective, so every
    worker must call it at the same point."""
    per_replica = strategy.run(lambda: tf.constant([value], tf.int64))
    gathered = strategy.gather(per_replica, axis=0).numpy().tolist()
    replicas_per_worker = strategy.num_replicas_in_sync // len(cluster_workers())
    return gathered[::replicas_per_worker]
