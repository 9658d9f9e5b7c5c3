"""Course-data evaluation: what the cycle is compared with, on the real held-out slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mri_helpers as mh
from mri_helpers import evaluation, export, processing
from mri_helpers._tf import keras

SIZE = 224


def negation() -> keras.Model:
    """A 'generator' that inverts intensities: its own exact inverse."""
    inputs = keras.Input((SIZE, SIZE, 1))
    return keras.Model(inputs, keras.layers.Rescaling(-1.0)(inputs))


@pytest.fixture(scope="module")
def course(course_zip: Path):
    dataset = mh.load_dataset(course_zip)
    return dataset, processing.holdout_split(dataset, 0.1, seed=42)


def test_cycle_chains_generators_as_training_does(course) -> None:
    dataset, split = course
    slices = processing.select(dataset, "t2", split.test["t2"])
    cleaning = processing.Cleaning()
    cycled = evaluation.cycle(negation(), negation(), slices, SIZE, cleaning)
    # Two exact inverses give back the cleaned input, to within 8-bit rounding.
    for s, image in zip(slices, cycled, strict=True):
        given = processing.clean_slice(s.image, cleaning)
        assert image.shape == s.image.shape and image.dtype == np.uint8
        assert np.abs(image.astype(int) - given).max() <= 1
    # One way is a real translation: an inversion of the head.
    there = export.translate(negation(), slices[:1], SIZE, cleaning)[0]
    head = processing.head_mask(slices[0].image)
    assert np.corrcoef(there[head], slices[0].image[head])[0, 1] < -0.9


def test_course_report_scores_the_cycle_against_input_and_stored_slice(course) -> None:
    dataset, split = course
    report = evaluation.course_report(
        negation(), negation(), dataset, split, SIZE, processing.Cleaning()
    )
    # Against what the networks were given, a perfect cycle scores 1; against the stored
    # slice it is held back by the noise the cleaning removed, more in the noisier T2.
    assert report["cycle_ssim_t1_input"] > 0.99 and report["cycle_ssim_t2_input"] > 0.99
    assert 0.9 < report["cycle_ssim_t2"] < report["cycle_ssim_t1"] < 1.0
    # Inverting T1 is the start of a T2: intensities fall where T1's rise.
    assert report["rank_correlation_t1_vs_generated_t2"] < -0.9
    assert report["histogram_distance_ratio"] > 0


def test_scoring_many_networks_warns_about_nothing(course, caplog, monkeypatch) -> None:
    """Six networks, each run on a full and a short batch: TensorFlow calls that too much
    retracing (it counts all Keras predict functions together); evaluation keeps it quiet."""
    from tensorflow.python.eager.polymorphic_function import polymorphic_function as tf_function

    dataset, split = course
    slices = processing.select(dataset, "t1", split.test["t1"])[:3]

    def six_networks() -> str:
        # TensorFlow warns at most twice per counter: start each time from a fresh one.
        fresh = tf_function._FrequentTracingDetectorManager()
        monkeypatch.setattr(tf_function, "_frequent_tracing_detector_manager", fresh)
        caplog.clear()
        for _ in range(6):
            export.translate(negation(), slices, SIZE, None, batch_size=2)
        return caplog.text

    assert "retracing" not in six_networks()
    monkeypatch.setattr(export, "_not_about_retracing", lambda record: True)
    assert "triggered tf.function retracing" in six_networks()  # what the filter drops
