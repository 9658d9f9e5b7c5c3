"""A run across machines, for real: two worker processes over the loopback address
(MultiWorkerMirroredStrategy) train like one process, are interrupted and resume from the
chief's shared checkpoint; `mri-course run` as a worker that is not the chief."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mri_helpers as mh

pytestmark = pytest.mark.slow  # batch runs and other processes: not in `make check`

SCRIPT = str(Path(__file__).with_name("multi_worker_step.py"))
BASE_ENV = {
    k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "TF_NUM_INTEROP_THREADS")
}


def free_ports(count: int) -> list[int]:
    """Ports on the loopback address nothing listens on (the OS picks them)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def two_workers(*arguments: list[str]) -> list[tuple[int, str, str]]:
    """Run worker 0 (the chief) and worker 1 with their arguments, bounded in time; each one's
    (exit code, stdout, stderr)."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [
        subprocess.Popen(
            [sys.executable, SCRIPT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **BASE_ENV,
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                ),
            },
        )
        for index, args in enumerate(arguments)
    ]
    try:
        outputs = [worker.communicate(timeout=240) for worker in workers]
    finally:
        for worker in workers:  # bounded: a hung worker is killed, never left behind
            worker.kill()
            worker.wait()
    return [(w.returncode, out, err) for w, (out, err) in zip(workers, outputs, strict=True)]


def writing_folder_of(stdout: str) -> Path:
    return Path(
        next(line for line in stdout.splitlines() if line.startswith("writing into "))[13:]
    )


def test_killed_workers_resume_from_the_chiefs_shared_checkpoint(tmp_path) -> None:
    """Both workers stop after epoch 1 of 3 (as after a kill); restarted, both resume at epoch
    2 from the chief's checkpoint in the shared run folder and end with the same weights,
    those of one process trained without interruption on the same global batch. The other
    worker never writes into the shared folder; one that cannot see the checkpoint is refused
    before any step."""
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    reference = subprocess.Popen(  # alongside the interrupted run
        [sys.executable, SCRIPT, str(tmp_path / "alone.npz"), str(alone), "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=BASE_ENV,
    )  # fmt: skip
    try:
        run = [str(shared), "3"]
        first = two_workers(
            [str(tmp_path / "x.npz"), *run, "1"], [str(tmp_path / "y.npz"), *run, "1"]
        )
        out, err = reference.communicate(timeout=240)
    finally:
        reference.kill()
        reference.wait()
    assert reference.returncode == 0 and "resumed False at epoch 0" in out, err[-3000:]
    for code, out, err in first:
        assert code == 3 and "interrupted after epoch 1" in out, err[-3000:]
    assert writing_folder_of(first[0][1]) == shared
    assert not writing_folder_of(first[1][1]).exists()  # removed when the worker exited
    metadata = json.loads((shared / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == 1
    assert len((shared / "history.csv").read_text().splitlines()) == 2  # header, epoch 1
    assert sorted(p.name for p in shared.iterdir()) == ["backup", "history.csv"]

    # A worker that does not see the shared folder would start afresh: both are refused.
    blind = two_workers(
        [str(tmp_path / "x.npz"), *run],
        [str(tmp_path / "y.npz"), str(tmp_path / "elsewhere"), "3"],
    )
    for code, _, err in blind:
        assert code != 0 and "would start at different epochs (1, 0" in err, err[-3000:]
    assert json.loads((shared / "backup" / "training_metadata.json").read_text())["epoch"] == 1

    chief_npz, other_npz = tmp_path / "chief.npz", tmp_path / "other.npz"
    second = two_workers([str(chief_npz), *run], [str(other_npz), *run])
    for code, out, err in second:
        assert code == 0 and "resumed True at epoch 1" in out, err[-3000:]
    assert not writing_folder_of(second[1][1]).exists()
    history = (shared / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1", "2"]  # each epoch once
    assert not (shared / "backup").exists()  # a finished run's checkpoint is deleted

    load = lambda path: list(np.load(path).values())  # noqa: E731
    single, chief, other = load(tmp_path / "alone.npz"), load(chief_npz), load(other_npz)
    assert max(float(np.abs(a - b).max()) for a, b in zip(chief, other, strict=True)) == 0.0
    assert max(float(np.abs(a - b).max()) for a, b in zip(single, chief, strict=True)) < 1e-5
    assert max(float(np.abs(a - b).max()) for a, b in zip(single, untrained(), strict=True)) > 1e-4


def untrained() -> list[np.ndarray]:
    """The weights multi_worker_step.py starts from (same seed, same networks)."""
    from mri_helpers import models

    G = models.GeneratorConfig((8, 16, 32), dropout_blocks=0)
    D = models.DiscriminatorConfig((8, 16, 32))
    mh.set_seed(0)
    networks = [
        models.unet_generator(G, 32),
        models.unet_generator(G, 32),
        models.patchgan_discriminator(D, 32),
        models.patchgan_discriminator(D, 32),
    ]
    return [w for network in networks for w in network.get_weights()]


# --- `mri-course run` on a worker of a run across machines ---------------------------------
def worker_config(index: int) -> str:
    cluster = {"worker": ["host1:12345", "host2:12345"]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder`: its content and modification time."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_another_worker_reads_the_chiefs_run_and_writes_only_a_temporary_folder(
    tmp_path, monkeypatch
) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from mri_course import runner

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    notebook = new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.metadata["language_info"] = {"name": "python"}
    parameters = new_code_cell("SEED = 1\nRUN_DIR = '.'")
    parameters.metadata["tags"] = ["parameters"]
    seen = tmp_path / "seen.json"  # what the notebook found in its RUN_DIR
    notebook.cells = [
        parameters,
        new_code_cell(
            "import json, os, pathlib\n"
            "run = pathlib.Path(RUN_DIR)\n"
            "backup = sorted(p.name for p in (run / 'backup').glob('*'))\n"
            "pathlib.Path(os.environ['SEEN']).write_text(json.dumps({'run_dir': RUN_DIR, "
            "'seed': SEED, 'backup': backup}))\n"
            "(run / 'lesson.json').write_text('{}')"
        ),
    ]
    nbformat.write(notebook, notebooks / "01_only.ipynb")
    monkeypatch.setenv("SEEN", str(seen))
    shared = tmp_path / "shared"
    monkeypatch.setenv("TF_CONFIG", worker_config(0))  # the chief writes the run as always
    runner.run_course("smoke", "phantom", shared, seed=7, notebooks_dir=notebooks)
    assert json.loads(seen.read_text())["run_dir"] == str(shared)
    (shared / "run.json").unlink()  # interrupted in training, after its first checkpoint
    (shared / "backup").mkdir()
    (shared / "backup" / "latest.weights.h5").write_bytes(b"weights")
    (shared / "backup" / "training_metadata.json").write_text('{"epoch": 1}')
    before = tree(shared)

    monkeypatch.setenv("TF_CONFIG", worker_config(1))
    runner.run_course("smoke", "phantom", shared, seed=7, notebooks_dir=notebooks)
    fresh = json.loads(seen.read_text())
    assert fresh["run_dir"] != str(shared) and fresh["backup"] == []  # a fresh run: no copy
    runner.resume_course(shared, notebooks_dir=notebooks)
    resumed = json.loads(seen.read_text())
    assert resumed["seed"] == 7  # the chief's run's parameters
    assert resumed["backup"] == ["latest.weights.h5", "training_metadata.json"]
    assert tree(shared) == before  # nothing written, not even the lock
    for run in (fresh, resumed):
        assert not Path(run["run_dir"]).exists()
    with pytest.raises(mh.CourseError, match="shared file system"):
        runner.resume_course(tmp_path / "elsewhere", notebooks_dir=notebooks)


@pytest.mark.parametrize(
    ("config", "arguments", "message"),
    [
        ("{cluster: oops", ["--out", "RUN"], "TF_CONFIG is not valid"),
        (worker_config(0).replace('"index": 0', '"index": 2'), ["--out", "RUN"], "not valid"),
        (worker_config(1), [], "needs --out"),
        (worker_config(1), ["--out", "RUN", "--seeds", "1,2"], "takes one seed"),
    ],
)
def test_a_worker_with_a_bad_cluster_or_options_is_refused(
    tmp_path, monkeypatch, capsys, config: str, arguments: list[str], message: str
) -> None:
    from mri_course.cli import main

    monkeypatch.setenv("TF_CONFIG", config)
    arguments = [str(tmp_path / a) if a == "RUN" else a for a in arguments]
    assert main(["run", "--profile", "smoke", "--data", "phantom", *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "RUN").exists()


def test_a_strategy_across_machines_made_too_late_is_a_clear_error() -> None:
    """MultiWorkerMirroredStrategy must come before TensorFlow runs anything (lesson 04 makes
    it first); made later, the error says so instead of TensorFlow's."""
    program = (
        "from mri_course import distribution\n"
        "from mri_helpers._tf import tf\n"
        "from mri_helpers.errors import CourseError\n"
        "tf.constant(1.0) + 1\n"
        "try:\n"
        "    distribution.distribution_strategy()\n"
        "except CourseError as error:\n"
        "    print(error)\n"
    )
    port = free_ports(2)
    config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in port]}}
    config["task"] = {"type": "worker", "index": 0}
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
        env={**BASE_ENV, "TF_CONFIG": json.dumps(config)},
    )  # fmt: skip
    assert "must create its strategy before TensorFlow runs anything" in done.stdout, done.stderr


# --- lesson 04 around fit() under several replicas ----------------------------------------
def test_head_start_and_callbacks_work_under_two_replicas(tmp_path) -> None:
    """Lesson 04 under MirroredStrategy on two logical CPUs (one process; the strategy's
    replicas behave as several GPUs'): the head start trains both replicas' generators to the
    same weights, those of one process on the same batches; the callbacks that translate
    held-out slices inside fit() (QualityOverTime, SampleImages, PeriodicExport, calibrated and
    with test-time copies) and `translate`, also inside the strategy's scope, give one image
    per slice, equal to the network's outside the strategy."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("distributed_step.py")), "lesson",
         str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=BASE_ENV,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    printed = dict(line.split() for line in done.stdout.splitlines() if line.count(" ") == 1)
    value = lambda key: float(printed[key])  # noqa: E731
    assert value("head_start_replica_difference") == 0.0
    assert value("head_start_difference") < 1e-5 < value("head_start_moved")
    assert value("head_start_loss_difference") < 1e-5
    held_out = int(printed["held_out"])
    for key in ("translated_in_scope", "translated", "exported_translated"):
        assert int(printed[key]) == held_out, key
    assert value("translate_difference") == 0
    rows = (tmp_path / "quality.csv").read_text().splitlines()
    assert len(rows) == 2 and all(-1 <= float(s) <= 1 for s in rows[1].split(",")[2:])
    from PIL import Image

    sample = Image.open(tmp_path / "samples" / "epoch_001.png")
    assert sample.size == (3 * 32, 4 * 32)  # three slices, four rows: T1, G(T1), T2, F(T2)
    for direction in ("t1-to-t2", "t2-to-t1"):
        config = json.loads((tmp_path / "models" / direction / "model.json").read_text())
        assert config["calibrated"] and config["epoch"] == 1
