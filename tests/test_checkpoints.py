"""Checkpoints whole or not at all: `checkpoints.BackupAndRestore` after kills and damage.

A kill at any moment of a checkpoint's write leaves whole files only, from which training
resumes at the epoch its weights hold; a damaged checkpoint (as Keras's own callback left one
when killed mid-write) is named, set aside and replaced by the one before it, or training
starts afresh. Real files throughout; one test kills real processes with SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

import mri_helpers as mh
from mri_course import checkpoints
from mri_helpers import fileio, models, training
from mri_helpers._tf import keras, tf

REPO = Path(__file__).resolve().parent.parent
LATEST, PREVIOUS = "latest.weights.h5", "latest.weights.h5.bkp"
METADATA = "training_metadata.json"
X = np.linspace(-1.0, 1.0, 24, dtype=np.float32).reshape(8, 3)
Y = X.sum(axis=1, keepdims=True) * 0.5
SMALL_D = models.DiscriminatorConfig((8, 16, 32))


def tiny_model(seed: int = 0) -> keras.Model:
    mh.set_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    return model


def backup_callback(backup: Path) -> checkpoints.BackupAndRestore:
    return checkpoints.BackupAndRestore(
        backup, tf.distribute.get_strategy(), double_checkpoint=True, delete_checkpoint=False
    )


def state(model: keras.Model) -> list[np.ndarray]:
    """All a checkpoint restores of the tiny model: its weights and its optimizer's."""
    return [np.array(v) for v in [*model.weights, *model.optimizer.variables]]


def restore(backup: Path, capsys) -> tuple[keras.Model, int, list[np.ndarray], str]:
    """A fresh model (other initial weights) and callback restore from `backup`: the model,
    the epoch training would start at, the model's weights before, and what was printed."""
    capsys.readouterr()
    model = tiny_model(seed=7)
    before = [np.array(w) for w in model.weights]
    callback = backup_callback(backup)
    callback.set_model(model)
    callback.on_train_begin()
    return model, model._initial_epoch or 0, before, capsys.readouterr().out


def assert_state(model: keras.Model, expected: list[np.ndarray], what: str) -> None:
    got = state(model)
    assert len(got) == len(expected), what
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=what)


def assert_fresh(model: keras.Model, before: list[np.ndarray], what: str) -> None:
    for a, b in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(np.array(a), b, err_msg=what)
    assert int(model.optimizer.iterations.numpy()) == 0, what


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class Capture(keras.callbacks.Callback):
    """Listed after BackupAndRestore: each epoch's checkpoint folder and model state."""

    def __init__(self, backup: Path, out: Path):
        super().__init__()
        self.backup, self.out, self.states = backup, out, {}

    def on_epoch_end(self, epoch, logs=None):
        self.states[epoch + 1] = state(self.model)
        shutil.copytree(self.backup, self.out / f"after{epoch + 1}")


class Moments:
    """Copies of the backup folder at every step of every checkpoint write, as a kill there
    would leave it: before each dataset of the weights file is written, when the weights
    file is written, before each rename, and when the checkpoint is done."""

    def __init__(self, backup: Path, out: Path):
        self.backup, self.out = backup, out
        self.taken: list[tuple[str, Path, int]] = []  # (moment, copy, epoch to resume at)
        self.saves, self.saving, self.weights_in_place = 0, False, False

    def take(self, what: str) -> None:
        if not self.saving:
            return
        copy = self.out / f"moment{len(self.taken):03d}"
        shutil.copytree(self.backup, copy)
        epoch = self.saves if self.weights_in_place else self.saves - 1
        self.taken.append((f"checkpoint {self.saves}, {what}", copy, epoch))

    @classmethod
    def during(cls, backup: Path, out: Path, train) -> Moments:
        from keras.src.saving import saving_lib

        moments = cls(backup, out)
        setitem, replace = saving_lib.H5IOStore.__setitem__, os.replace
        save_model = checkpoints.BackupAndRestore._save_model
        save_weights = keras.Model.save_weights

        def counted_save(callback):
            moments.saves += 1
            moments.saving, moments.weights_in_place = True, False
            save_model(callback)
            moments.take("done")
            moments.saving = False

        def watched_setitem(store, key, value):
            moments.take(f"before writing {key!r}")
            setitem(store, key, value)

        def watched_save_weights(model, *args, **kwargs):
            save_weights(model, *args, **kwargs)
            moments.take("weights file written, no epoch yet")

        def watched_replace(source, target):
            moments.take(f"before renaming {Path(source).name} to {Path(target).name}")
            replace(source, target)
            if os.fspath(target).endswith(LATEST):
                moments.weights_in_place = True

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(checkpoints.BackupAndRestore, "_save_model", counted_save)
            patch.setattr(saving_lib.H5IOStore, "__setitem__", watched_setitem)
            patch.setattr(keras.Model, "save_weights", watched_save_weights)
            patch.setattr(os, "replace", watched_replace)
            train()
        return moments


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Iterator[dict]:
    """Two epochs of the tiny model with the callback: each epoch's checkpoint folder and
    state, and the folder at every moment of both checkpoint writes."""
    out = tmp_path_factory.mktemp("trained")
    backup = out / "backup"
    model = tiny_model()
    capture = Capture(backup, out)
    moments = Moments.during(
        backup,
        out,
        lambda: model.fit(
            X, Y, epochs=2, batch_size=4, verbose=0, callbacks=[backup_callback(backup), capture]
        ),
    )
    yield {"out": out, "states": capture.states, "moments": moments.taken}


def test_a_checkpoint_holds_its_epoch_and_the_previous_one_is_kept(trained) -> None:
    after1, after2 = trained["out"] / "after1", trained["out"] / "after2"
    assert names(after1) == [LATEST, METADATA]
    assert names(after2) == [LATEST, PREVIOUS, METADATA, f"{METADATA}.bkp"]
    for folder, latest, previous in ((after1, 1, None), (after2, 2, 1)):
        with h5py.File(folder / LATEST) as weights:
            assert int(weights.attrs["epoch"]) == latest
        assert fileio.read_json(folder / METADATA)["epoch"] == latest
        if previous:
            with h5py.File(folder / PREVIOUS) as weights:
                assert int(weights.attrs["epoch"]) == previous
            assert fileio.read_json(folder / f"{METADATA}.bkp")["epoch"] == previous
    assert trained["states"][1][0].tolist() != trained["states"][2][0].tolist()


def test_a_kill_at_any_moment_of_a_write_resumes_from_whole_files(
    trained, tmp_path, capsys
) -> None:
    """The folder as a kill leaves it at every step of both writes: the newest checkpoint
    whose weights are in place is restored, weights and optimizer, at its own epoch."""
    moments = trained["moments"]
    written = [m for m, _, _ in moments if "before writing" in m]
    renames = [m for m, _, _ in moments if "before renaming" in m]
    assert len(written) >= 16 and len(renames) == 2 + 4  # first checkpoint, then rotation
    assert {epoch for _, _, epoch in moments} == {0, 1, 2}
    # Killed between renames, the latest weights moved and the new ones not yet in place.
    between = [m for m, f, _ in moments if not (f / LATEST).exists() and (f / PREVIOUS).exists()]
    assert len(between) == 2, between
    for number, (moment, taken, epoch) in enumerate(moments):
        folder = shutil.copytree(taken, tmp_path / f"m{number}")  # the fixture's kept as taken
        assert backup_callback(folder)._checkpoint_epoch() == epoch, moment  # workers agree
        model, resumed, before, printed = restore(folder, capsys)
        assert resumed == epoch, moment
        if epoch:
            assert_state(model, trained["states"][epoch], moment)
            assert fileio.read_json(folder / METADATA)["epoch"] == epoch, moment
        else:
            assert_fresh(model, before, moment)
        assert "damaged" not in printed, moment  # whole files only
        assert not [p for p in folder.iterdir() if ".partial" in p.name], moment  # removed


def test_resume_or_start_sees_the_checkpoint_a_kill_left(trained, tmp_path) -> None:
    """Wherever the kill fell, a run folder with whole weights resumes; one without starts
    afresh, its leftovers gone and its settings written whole."""
    settings = {"EPOCHS": 2, "data": "a.zip"}
    for number, (moment, taken, epoch) in enumerate(trained["moments"]):
        run = tmp_path / f"run{number}"
        shutil.copytree(taken, run / "backup")
        fileio.write_json(run / "backup" / "configuration.json", settings)
        assert checkpoints.resume_or_start(run, settings) is (epoch > 0), moment
        if not epoch:
            assert names(run / "backup") == ["configuration.json"], moment
            assert fileio.read_json(run / "backup" / "configuration.json") == settings


def damage(folder: Path, name: str, length: int | float) -> int:
    """Truncate `folder/name` as a kill in mid-write leaves it: to `length` bytes (a
    fraction of its size when a float, counted from its end when negative)."""
    path = folder / name
    size = path.stat().st_size
    keep = int(size * length) if isinstance(length, float) else length % size
    os.truncate(path, keep)
    return keep


LENGTHS = [0, 7, 96, 512, 0.25, 0.5, 0.75, 0.95, -64, -1]


@pytest.mark.parametrize("length", LENGTHS)
def test_a_truncated_checkpoint_is_set_aside_for_the_previous(
    trained, tmp_path, capsys, length
) -> None:
    backup = shutil.copytree(trained["out"] / "after2", tmp_path / "backup")
    keep = damage(backup, LATEST, length)
    truncated = (backup / LATEST).read_bytes()
    assert backup_callback(backup)._checkpoint_epoch() == 1
    model, epoch, _, printed = restore(backup, capsys)
    assert epoch == 1
    assert_state(model, trained["states"][1], f"truncated to {keep} bytes")
    lines = printed.splitlines()
    assert len(lines) == 2, printed
    assert LATEST in lines[0] and "damaged" in lines[0] and "set aside as" in lines[0]
    assert "resuming from the previous checkpoint" in lines[1] and "epoch 1" in lines[1]
    aside = [p for p in backup.iterdir() if ".damaged-" in p.name]
    assert [p.name.split(".damaged-")[0] for p in aside] == [LATEST]
    assert aside[0].name in lines[0] and aside[0].read_bytes() == truncated  # kept as it was
    assert names(backup) == sorted([LATEST, METADATA, f"{METADATA}.bkp", aside[0].name])
    assert fileio.read_json(backup / METADATA)["epoch"] == 1  # agrees with the weights


@pytest.mark.parametrize("length", LENGTHS)
def test_a_truncated_first_checkpoint_means_a_fresh_start(
    trained, tmp_path, capsys, length
) -> None:
    backup = shutil.copytree(trained["out"] / "after1", tmp_path / "backup")
    keep = damage(backup, LATEST, length)
    assert backup_callback(backup)._checkpoint_epoch() == 0
    model, epoch, before, printed = restore(backup, capsys)
    assert epoch == 0
    assert_fresh(model, before, f"truncated to {keep} bytes")
    lines = printed.splitlines()
    assert len(lines) == 2 and LATEST in lines[0] and "set aside as" in lines[0], printed
    assert "training starts afresh" in lines[1]
    aside = [p for p in backup.iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1 and aside[0].stat().st_size == keep
    assert not (backup / LATEST).exists()
    assert checkpoints.resume_or_start(backup.parent, {}) is False  # no checkpoint left ...
    assert aside[0].is_file()  # ... and the damaged one is still kept


def test_a_weights_file_killed_mid_write_in_place_is_set_aside(trained, tmp_path, capsys) -> None:
    """Keras's own callback wrote the weights in place: every half-written state of the file
    (taken from the moments of the write) stands for the latest; the previous one is used."""
    partials = []
    for moment, folder, _ in trained["moments"]:
        if moment.startswith("checkpoint 2, before writing"):
            partials += [p for p in folder.glob(f".{LATEST}.*.partial.weights.h5")]
    assert len(partials) >= 8
    for number, partial in enumerate(partials):
        backup = shutil.copytree(trained["out"] / "after2", tmp_path / f"b{number}")
        shutil.copyfile(partial, backup / LATEST)
        model, epoch, _, printed = restore(backup, capsys)
        assert epoch == 1 and "set aside" in printed.splitlines()[0], (partial, printed)
        assert_state(model, trained["states"][1], str(partial))


def test_both_checkpoints_damaged_means_a_fresh_start(trained, tmp_path, capsys) -> None:
    backup = shutil.copytree(trained["out"] / "after2", tmp_path / "backup")
    damage(backup, LATEST, 0.5)
    damage(backup, PREVIOUS, 100)
    assert backup_callback(backup)._checkpoint_epoch() == 0
    model, epoch, before, printed = restore(backup, capsys)
    lines = printed.splitlines()
    assert epoch == 0 and len(lines) == 3, printed
    assert LATEST in lines[0] and PREVIOUS in lines[1] and "afresh" in lines[2]
    assert_fresh(model, before, "both damaged")
    assert len([p for p in backup.iterdir() if ".damaged-" in p.name]) == 2


def test_a_checkpoint_that_loads_halfway_leaves_the_model_as_it_was(
    trained, tmp_path, capsys
) -> None:
    """Weights of another model: the first layer loads, the second does not. Set aside, and
    the model gets back all it had, not half of the bad checkpoint."""
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    other.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    other.fit(X, np.zeros((8, 2), np.float32), epochs=1, verbose=0)
    for start, expected in (("after1", 0), ("after2", 1)):
        backup = shutil.copytree(trained["out"] / start, tmp_path / start)
        other.save_weights(backup / LATEST)
        model, epoch, before, printed = restore(backup, capsys)
        assert epoch == expected and "ValueError" in printed.splitlines()[0], printed
        if expected:
            assert_state(model, trained["states"][1], start)
        else:
            assert_fresh(model, before, start)


def test_a_checkpoint_of_keras_own_callback_still_resumes(tmp_path, capsys) -> None:
    """Written before the weights held their epoch: the JSON beside them gives it."""
    model, backup = tiny_model(), tmp_path / "backup"
    keras_own = keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=False)
    model.fit(X, Y, epochs=2, batch_size=4, verbose=0, callbacks=[keras_own])
    resumed, epoch, _, printed = restore(backup, capsys)
    assert epoch == 2 and not printed
    assert_state(resumed, state(model), "Keras's own checkpoint")


def test_training_goes_on_from_the_restored_epoch_to_the_end(trained, tmp_path, capsys) -> None:
    backup = shutil.copytree(trained["out"] / "after2", tmp_path / "backup")
    damage(backup, LATEST, 0.5)
    model = tiny_model(seed=7)
    history = model.fit(
        X, Y, epochs=4, batch_size=4, verbose=0, callbacks=[backup_callback(backup)]
    )
    assert history.epoch == [1, 2, 3]
    assert int(model.optimizer.iterations.numpy()) == 4 * 2
    with h5py.File(backup / LATEST) as weights, h5py.File(backup / PREVIOUS) as previous:
        assert (int(weights.attrs["epoch"]), int(previous.attrs["epoch"])) == (4, 3)
    done = backup_callback(backup)  # delete_checkpoint: the checkpoint goes, not what was
    done.delete_checkpoint = True  # set aside
    done.on_train_end()
    assert [p.name.split(".damaged-")[0] for p in backup.iterdir()] == [LATEST]


def test_the_cyclegan_resumes_from_the_previous_checkpoint(tmp_path, capsys) -> None:
    """The course's model: four optimizers, image pools; latest truncated, previous used."""

    def build() -> training.CycleGAN:
        mh.set_seed(3)
        g, d = models.GeneratorConfig((8, 16, 32), dropout_blocks=0), SMALL_D
        config = training.TrainingConfig(epochs=2, steps_per_epoch=1, pool_size=2)
        networks = [models.unet_generator(g, 32) for _ in "gf"]
        networks += [models.patchgan_discriminator(d, 32) for _ in "dd"]
        model = training.CycleGAN(*networks, config, seed=3)
        model.compile_for_training(jit_compile=False)
        return model

    def everything(model) -> list[np.ndarray]:
        optimizers = model.network_optimizers.values()
        return [np.array(v) for v in model.weights] + [
            np.array(v) for o in optimizers for v in o.variables
        ]

    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    data = tf.data.Dataset.from_tensors((images, images[::-1])).repeat()
    backup = tmp_path / "backup"
    model, seen = build(), {}

    class Seen(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch + 1] = everything(self.model)

    callbacks = [backup_callback(backup), Seen()]
    model.fit(data, epochs=2, steps_per_epoch=1, verbose=0, callbacks=callbacks)
    damage(backup, LATEST, 0.6)
    again = build()
    callback = backup_callback(backup)
    callback.set_model(again)
    capsys.readouterr()
    callback.on_train_begin()
    assert again._initial_epoch == 1 and "set aside" in capsys.readouterr().out
    restored = everything(again)
    assert len(restored) == len(seen[1]) and int(again.pool_t1.count.numpy()) == 2
    for a, b in zip(restored, seen[1], strict=True):
        np.testing.assert_array_equal(a, b)


# --- real kills ----------------------------------------------------------------------------
CHILD = r"""
import os, sys, time
from pathlib import Path

folder, pause = Path(sys.argv[1]), sys.argv[2]  # pause: SAVE:KIND:N, or SAVE:asap
import numpy as np
import mri_helpers as mh
from keras.src.saving import saving_lib
from mri_course import checkpoints
from mri_helpers._tf import keras, tf

mh.set_seed(0)
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
x = np.linspace(-1.0, 1.0, 24, dtype=np.float32).reshape(8, 3)
saving, saves, counts = 0, 0, {}


def moment(kind):  # a slow disk, and the moment asked for: there the process waits
    if not saving:
        return
    counts[kind] = counts.get(kind, 0) + 1
    if pause == f"{saving}:{kind}:{counts[kind]}":
        (folder / "paused").write_text(pause)
        time.sleep(600)
    time.sleep(0.04)


setitem, replace = saving_lib.H5IOStore.__setitem__, os.replace
save_model = checkpoints.BackupAndRestore._save_model


def slow_setitem(store, key, value):
    moment("write")
    setitem(store, key, value)


def slow_replace(source, target):
    moment("rename")
    replace(source, target)


def counted_save(callback):
    global saving, saves
    saves += 1
    (folder / "saving").write_text(str(saves))
    saving = saves
    counts.clear()
    save_model(callback)
    saving = 0


class Reference(keras.callbacks.Callback):  # before the checkpoint: each epoch's state
    def on_epoch_end(self, epoch, logs=None):
        values = [np.array(v) for v in [*self.model.weights, *self.model.optimizer.variables]]
        np.savez(folder / f"epoch{epoch + 1}.npz", *values)


saving_lib.H5IOStore.__setitem__ = slow_setitem
os.replace = slow_replace
checkpoints.BackupAndRestore._save_model = counted_save
backup = checkpoints.BackupAndRestore(
    folder / "backup", tf.distribute.get_strategy(), double_checkpoint=True,
    delete_checkpoint=False,
)
model.fit(x, x.sum(axis=1, keepdims=True) * 0.5, epochs=40, batch_size=4, verbose=0,
          callbacks=[Reference(), backup])
"""

KILLS = {  # moment: (the epochs it may resume at, the whole files then in backup/)
    "1:asap": ((0,), []),  # the first checkpoint, as soon as its temporary file appears
    "2:asap": ((1, 2), None),
    "2:write:5": ((1,), [LATEST, METADATA]),  # the second checkpoint, mid-write
    # between moving the previous weights and their JSON: no latest
    "2:rename:2": ((1,), [PREVIOUS, METADATA]),
    "2:rename:3": ((1,), [PREVIOUS, f"{METADATA}.bkp"]),  # the new weights not yet in place
    "2:rename:4": ((2,), [LATEST, PREVIOUS, f"{METADATA}.bkp"]),  # their JSON not yet
}


def kill_during_checkpoints(root: Path) -> dict[str, tuple[str, Path]]:
    """Start one process per moment of KILLS, all at once, and SIGKILL each at its moment
    (its temporary file there, and the process waiting at its moment); their folders."""
    env = {
        **os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
        "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    running = {}
    for number, pause in enumerate(KILLS):
        folder = root / f"kill{number}"
        folder.mkdir()
        with (folder / "stderr.txt").open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(folder), pause],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        running[pause] = (process, folder)
    killed, deadline = {}, time.monotonic() + 120
    try:
        while running and time.monotonic() < deadline:
            for pause, (process, folder) in list(running.items()):
                save = pause.split(":")[0]
                partial = any((folder / "backup").glob(".*.partial*"))
                at = (folder / "paused").is_file() if "asap" not in pause else partial
                if at and partial and _read(folder / "saving") == save:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    killed[pause] = (_read(folder / "saving"), folder)
                    del running[pause]
                elif process.poll() is not None:
                    error = _read(folder / "stderr.txt")[-3000:]
                    raise AssertionError(f"{pause}: ended before its kill\n{error}")
            time.sleep(0.01)
    finally:
        for process, _ in running.values():
            process.kill()
            process.wait()
    assert not running, f"not killed in time: {sorted(running)}"
    return killed


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


@pytest.mark.slow  # other processes, or long: not in `make check`
def test_processes_killed_while_writing_checkpoints_resume(tmp_path, capsys) -> None:
    """SIGKILL at six moments of the first two checkpoints' writes (as soon as the temporary
    file appears, the writer slowed down; or where the process waits at a chosen step):
    every time, training resumes from whole files, at the epoch of the weights it restores,
    which are those of that epoch."""
    killed = kill_during_checkpoints(tmp_path)
    assert sorted(killed) == sorted(KILLS)
    for pause, (save, folder) in killed.items():
        epochs, files = KILLS[pause]
        assert save == pause.split(":")[0], pause
        backup = folder / "backup"
        assert len(list(backup.glob(".*.partial*"))) == 1, pause  # a write under way
        whole = sorted(p.name for p in backup.iterdir() if not p.name.startswith("."))
        assert files is None or whole == sorted(files), (pause, whole)
        model, epoch, before, printed = restore(backup, capsys)
        assert epoch in epochs, (pause, epoch)
        if epoch:
            with np.load(folder / f"epoch{epoch}.npz") as reference:
                assert_state(model, list(reference.values()), pause)
        else:
            assert_fresh(model, before, pause)
        assert "damaged" not in printed, (pause, printed)
        assert not list(backup.glob(".*.partial*")), pause


# --- fileio.replacing_all: the helper every "whole or not at all" write uses ----------------
def test_files_written_whole_get_a_plain_files_mode_in_order_or_none_at_all(tmp_path) -> None:
    """New files get what a plain write would give (0666 less the umask, not mkstemp's 0600),
    an existing file keeps its mode, all are renamed in the order given, and an error while
    writing leaves every target as it was and no temporary file behind."""
    first, second = tmp_path / "a.json", tmp_path / "b.nii.gz"
    second.write_text("old")
    second.chmod(0o640)
    order = []
    real_replace = os.replace

    def noted(source, target):
        order.append(Path(target).name)
        real_replace(source, target)

    mask = os.umask(0o022)
    try:
        with pytest.MonkeyPatch.context() as patched:
            patched.setattr(os, "replace", noted)
            with fileio.replacing_all([first, second]) as partials:
                for target, partial in partials.items():
                    assert partial.parent == tmp_path and partial.name.endswith(
                        "".join(target.suffixes)
                    )
                    partial.write_text(target.name)
    finally:
        os.umask(mask)
    assert order == ["a.json", "b.nii.gz"]
    assert (first.stat().st_mode & 0o777, second.stat().st_mode & 0o777) == (0o644, 0o640)
    with pytest.raises(RuntimeError), fileio.replacing_all([first, second]) as partials:
        partials[first].write_text("new")
        raise RuntimeError("the second write fails")
    assert (first.read_text(), second.read_text()) == ("a.json", "b.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.nii.gz"]
