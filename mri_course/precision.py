"""Mixed precision: the Keras policy that computes in 16 bits where it pays (float16 on a
GPU, bfloat16 on a CPU that computes it natively), float32 elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from mri_helpers._tf import keras, tf


def use_mixed_precision(setting: str = "auto") -> bool:
    """Set Keras's precision policy (`precision_policy`); say whether it is a mixed one.

    Call before building the models.
    """
    policy = precision_policy(setting)
    keras.mixed_precision.set_global_policy(policy)
    return policy != "float32"


def precision_policy(
    setting: str = "auto", gpu: bool | None = None, native_bf16: bool | None = None
) -> str:
    """The Keras policy for `setting` "auto", "on" or "off" on this machine.

    Mixed precision computes in 16 bits and keeps the weights in float32. On a GPU that is
    float16 (roughly twice the throughput). On a CPU it is bfloat16, which pays only where the
    processor computes it natively (AVX512_BF16 or AMX): there the tutorial's step measured
    1.6x faster (docs/performance.md); elsewhere it is emulated and slower, so "auto" keeps
    float32.
    """
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"mixed precision {setting!r}: use 'auto', 'on' or 'off'.")
    gpu = bool(tf.config.list_logical_devices("GPU")) if gpu is None else gpu
    native_bf16 = cpu_computes_bfloat16() if native_bf16 is None else native_bf16
    if setting == "off" or (setting == "auto" and not gpu and not native_bf16):
        return "float32"
    return "mixed_float16" if gpu else "mixed_bfloat16"


def cpu_computes_bfloat16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether the processor has bfloat16 instructions (Linux `cpuinfo` flags)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False  # not Linux, or unreadable: do not guess
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})
