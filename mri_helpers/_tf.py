"""TensorFlow and Keras, imported once with their C++ start-up notices kept out of notebooks.

TensorFlow 2.21 prints an informational oneDNN notice on stderr at import, before its log
level settings apply (TF_CPP_MIN_LOG_LEVEL no longer hides it). Learners would see it in red
under every first cell that imports TensorFlow, so the import runs with stderr muted at the
file-descriptor level. Python errors still raise as usual.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def _stderr_muted():
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (some embedded interpreters): nothing to mute
        yield
        return
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _stderr_muted():
    import keras
    import tensorflow as tf

__all__ = ["keras", "tf"]
