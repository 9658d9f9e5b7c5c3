"""The cluster a run across machines forms, as the environment's TF_CONFIG describes it
(read here only, without TensorFlow, so the batch runner can read it too)."""

from __future__ import annotations

import json
import os

from mri_helpers.errors import CourseError


def cluster_task() -> tuple[list[str], str, int] | None:
    """The workers TF_CONFIG names, and this process's task type and index; None without a
    TF_CONFIG of several workers."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        workers = [*cluster.get("chief", []), *cluster.get("worker", [])]
        kind, index = task["type"], task["index"]
        if not isinstance(index, int) or index < 0 or index >= len(cluster[kind]):
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CourseError(
            'TF_CONFIG is not valid: it must be JSON like {"cluster": {"worker": '
            '["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}, the '
            "task's index one of its type's."
        ) from None
    return (workers, kind, index) if len(workers) > 1 else None


def is_chief_task() -> bool:
    """Whether this process writes the run folder: no run across machines, or its chief (the
    "chief" task, else worker 0), as `distribution.is_chief` decides inside lesson 04."""
    task = cluster_task()
    if task is None:
        return True
    _, kind, index = task
    has_chief = "chief" in json.loads(os.environ["TF_CONFIG"])["cluster"]
    return kind == "chief" or (not has_chief and kind == "worker" and index == 0)


def cluster_workers() -> list[str]:
    """The addresses of the workers (and chief) of a run across machines; empty otherwise."""
    task = cluster_task()
    return task[0] if task else []
