"""Training across GPUs and machines: the `tf.distribute` strategy for this process, the
workers that TF_CONFIG names, and where each process writes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mri_helpers._tf import tf
from mri_helpers.errors import CourseError

from .cluster import cluster_workers


def distribution_strategy() -> tf.distribute.Strategy:
    """The strategy this process trains under: MultiWorkerMirroredStrategy when the
    environment's TF_CONFIG names several workers (one process of a run across machines),
    MirroredStrategy over all GPUs when there are several, else the default strategy."""
    if len(cluster_workers()) > 1:
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:  # "Collective ops must be configured at program startup"
            if "startup" not in str(error):
                raise
            raise CourseError(
                "a run across machines (TF_CONFIG) must create its strategy before TensorFlow "
                "runs anything: call training_run.start() first (lesson 04 does, at the top of "
                "its first cell after the parameters), then restart the kernel or the process."
            ) from None
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: the only process, or in a multi-worker
    run the chief (the "chief" task, else worker 0), as TensorFlow's multi-worker guide has
    it; the other workers compute the same steps and write nothing that lasts."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (
        not has_chief and resolver.task_type == "worker" and resolver.task_id == 0
    )


def writing_folder(run_dir: str | os.PathLike, strategy: tf.distribute.Strategy) -> str:
    """Where this process writes the run's files: `run_dir` on the chief or a lone process.

    Any other worker of a run across machines gets a temporary folder, removed when the
    process exits, so it never writes into the chief's (shared) run folder. The folder starts
    with a copy of the chief's checkpoint (`run_dir/backup`, read only): there the worker
    decides to resume (`resume_or_start`) and backs up, as the chief does in `run_dir`.
    """
    if is_chief(strategy):
        return os.fspath(run_dir)
    import atexit
    import tempfile

    task = strategy.cluster_resolver.task_id
    folder = Path(tempfile.mkdtemp(prefix=f"mri-course-worker{task}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    shared = Path(run_dir) / "backup"
    if shared.is_dir():
        (folder / "backup").mkdir()
        for file in shared.iterdir():
            try:
                shutil.copy2(file, folder / "backup" / file.name)
            except FileNotFoundError:  # the chief removed it as it started afresh (RESTART)
                continue
    return os.fspath(folder)
