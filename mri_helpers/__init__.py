"""Helpers for the unpaired T1 <-> T2 MRI CycleGAN course: `import mri_helpers as mh`.

The modules follow the course: data (01) -> processing (02) -> models and losses (03) ->
training, calibration and evaluation (04) -> plotting. TensorFlow-heavy modules load on first
use, so that `mri-course check-data` and the data lesson start quickly.
"""

from __future__ import annotations

import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quiet TensorFlow's C++ start-up logs

from .data import (  # noqa: E402
    AUTO,
    MODALITIES,
    PHANTOM,
    MRIDataset,
    Slice,
    describe,
    find_data,
    load_dataset,
    summarize,
)
from .errors import (  # noqa: E402
    CourseError,
    DataError,
    DataProblems,
    ModelConfigError,
    ModelFileError,
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
    "ParameterError",
    "MRIDataset",
    "Slice",
    "describe",
    "find_data",
    "load_dataset",
    "set_seed",
    "summarize",
]

_LAZY_MODULES = {
    "calibration",
    "evaluation",
    "export",
    "losses",
    "manifest",
    "models",
    "phantom",
    "plotting",
    "processing",
    "profiles",
    "runner",
    "tfds_dataset",
    "training",
}


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'mri_helpers' has no attribute {name!r}")


def set_seed(seed: int = 42) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic (reproducible runs)."""
    from ._tf import keras, tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
