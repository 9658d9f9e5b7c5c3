"""Helpers for the unpaired T1 <-> T2 MRI CycleGAN course: `import mri_helpers as mh`.

The modules follow the course: data (01) -> processing (02) -> models and losses (03) ->
training, baselines, test_time, calibration, export and evaluation (04); plotting draws the
figures of all four, and lessons carries what one lesson hands the next. TensorFlow-heavy
modules load on first use, so that `mri-course check-data` and the data lesson start quickly.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quiet TensorFlow's C++ start-up logs

from .data import MODALITIES, MRIDataset, Slice, find_partners, load_dataset  # noqa: E402
from .datafiles import AUTO, PHANTOM, describe, find_data, summarize  # noqa: E402
from .errors import (  # noqa: E402
    CourseError,
    DataError,
    DataProblems,
    ModelConfigError,
    ModelFileError,
    OutputPlaceError,
    ParameterError,
)

__version__ = "0.1.0"
__all__ = [
    "AUTO",
    "CourseError",
    "MODALITIES",
    "PHANTOM",
    "DataError",
    "DataProblems",
    "ModelConfigError",
    "ModelFileError",
    "OutputPlaceError",
    "ParameterError",
    "MRIDataset",
    "check",
    "Slice",
    "describe",
    "find_data",
    "find_partners",
    "load_dataset",
    "set_seed",
    "summarize",
]

_LAZY_MODULES = {
    "baselines",
    "calibration",
    "datafiles",
    "evaluation",
    "exercises",
    "export",
    "fileio",
    "head_start",
    "lessons",
    "losses",
    "manifest",
    "models",
    "phantom",
    "plotting",
    "processing",
    "profiles",
    "training",
}


def __getattr__(name: str):
    if name == "check":  # the exercises' checker, `mh.check("02-3", stretch_to_square)`
        return importlib.import_module(".exercises", __name__).check_exercise
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'mri_helpers' has no attribute {name!r}")


def set_seed(seed: int = 42, one_op_at_a_time: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow and turn on TensorFlow's op determinism.

    On a CPU that alone leaves runs with one seed a few last bits apart, which training
    grows (`_one_op_at_a_time`); `one_op_at_a_time=True` (`REPRODUCIBLE`) makes them
    bit-identical, at a price in speed. Call it first, before any TensorFlow work (as
    notebooks 03 and 04 do).
    """
    from ._tf import keras, tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    if one_op_at_a_time:
        _one_op_at_a_time(tf)


def _one_op_at_a_time(tf: ModuleType) -> None:
    """On a CPU, run TensorFlow's ops one after another, each on all cores.

    Op determinism is not enough there: ops that TensorFlow runs side by side share the
    intra-op threads, and two same-seed runs of the course's networks then part in the last
    bits within a few steps (docs/reproducibility.md). One op at a time they do not, but
    two cores then often wait on one op, so training is slower (`mri-course bench`:
    course_reproducible vs course). GPUs keep TensorFlow's scheduling (untested there; op
    determinism covers their kernels).
    """
    if tf.config.list_physical_devices("GPU"):
        return
    if os.environ.get("TF_NUM_INTEROP_THREADS") == "1":  # set before Python started
        return
    if tf.config.threading.get_inter_op_parallelism_threads() == 1:
        return
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow has started: its thread pools are fixed
        warnings.warn(
            "mh.set_seed() came after TensorFlow started, so its ops may run side by side and "
            "two runs with this seed can differ in the last bits. For identical runs, call "
            "mh.set_seed() before any TensorFlow work (restart the kernel), or start Python or "
            "Jupyter with the environment variable TF_NUM_INTEROP_THREADS=1.",
            stacklevel=3,
        )
