"""Course-data evaluation: what the cycle is compared with, on the real held-out slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import mri_helpers as mh
from mri_helpers import evaluation, export, processing
from mri_helpers._tf import keras
from mri_helpers.baselines import quantile_baseline

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
    cycled = evaluation.round_trips(negation(), negation(), slices, SIZE, cleaning)
    # Two exact inverses give back the cleaned input, to within 8-bit rounding.
    for s, image in zip(slices, cycled, strict=True):
        given = processing.clean_slice(s.image, cleaning)
        assert image.shape == s.image.shape and image.dtype == np.uint8
        assert np.abs(image.astype(int) - given).max() <= 1
    # One way is a real translation: an inversion of the head.
    there = export.translate(negation(), slices[:1], SIZE, cleaning)[0]
    head = processing.head_mask(slices[0].image)
    assert np.corrcoef(there[head], slices[0].image[head])[0, 1] < -0.9


@pytest.mark.slow  # long: not in `make check`
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


def test_every_course_t1_slice_has_a_hidden_t2_partner(course) -> None:
    """The course zip's sets are cut from one head: each T1 slice's partner is the T2 slice
    numbered 60 (up to #40) or 70 (from #41) higher, found by mutual information alone."""
    dataset, _ = course
    partners = mh.find_partners(dataset)
    assert len(partners) == len(dataset.t1) == 43
    for t1_id, t2_id in partners.items():
        offset = 60 if mh.plotting._number(t1_id) <= 40 else 70
        assert mh.plotting._number(t2_id) == mh.plotting._number(t1_id) + offset, t1_id


def test_partners_are_found_only_where_the_anatomy_lines_up() -> None:
    phantom = mh.load_dataset("phantom", num_slices=6)
    assert mh.find_partners(phantom) == {i: i for i in phantom.ids("t1")}  # paired by design
    rng = np.random.default_rng(0)
    noise = [mh.Slice(f"n{i}", "t2", rng.integers(0, 256, (217, 181), np.uint8)) for i in range(4)]
    unrelated = mh.MRIDataset(t1=phantom.t1, t2=noise, source="crafted", kind="course")
    assert mh.find_partners(unrelated) == {}
    shuffled = mh.MRIDataset(t1=phantom.t1[:3], t2=phantom.t2[3:], source="x", kind="course")
    assert mh.find_partners(shuffled) == {}  # other levels: no partner is clearly best


@pytest.mark.slow  # long: not in `make check`
def test_the_course_report_scores_translations_against_partners(course) -> None:
    dataset, split = course
    report = evaluation.course_report(negation(), negation(), dataset, split, SIZE, None)
    for direction in ("t1_to_t2", "t2_to_t1"):
        for suffix in ("", "_quantile_baseline", "_inversion_baseline"):
            assert -1 <= report[f"partner_ssim_{direction}{suffix}"] <= 1
            assert -1 <= report[f"partner_ssim_{direction}{suffix}_head"] <= 1
    # The quantile baseline is a monotone inversion: against the true partner it scores far
    # above the negated input's grey levels (255 - x everywhere, background included).
    assert report["partner_ssim_t1_to_t2_quantile_baseline"] > report["partner_ssim_t1_to_t2"]
    assert "partner_ssim_t1_to_t2" not in evaluation.course_report(
        negation(), negation(), dataset, split, SIZE, None, partners={}
    )


@pytest.mark.slow  # long: not in `make check`
def test_every_evaluation_reports_the_brain_on_its_own(course) -> None:
    """The brain region is scored apart from the head's thin layers and the background: on
    the phantom against the phantom's brain mask, on the course data inside the partner's."""
    phantom = mh.load_dataset("phantom", num_slices=10)
    split = processing.holdout_split(phantom, 0.2, seed=0)
    assert phantom.t2[0].brain_mask.sum() < phantom.t2[0].head_mask.sum()
    report = evaluation.phantom_report({"t1-to-t2": negation()}, phantom, split, SIZE)
    rows = report["t1-to-t2"]
    assert set(rows) == {"model", "inversion", "quantile"}
    for row in rows.values():
        assert set(row) == {"whole", "head", "brain"} and -1 <= row["brain"]["ssim"] <= 1
    # Inverting grey levels gets the brain's tissues nearly right and the scalp's fat wrong,
    # so the inversion baseline scores higher in the brain than over the whole head.
    assert rows["inversion"]["brain"]["ssim"] > rows["inversion"]["head"]["ssim"]
    table = evaluation.format_phantom_report(report)
    assert "brain" in table.splitlines()[0] and len(table.splitlines()) == 4
    dataset, course_split = course
    course_rows = evaluation.course_report(negation(), negation(), dataset, course_split, SIZE)
    assert -1 <= course_rows["partner_ssim_t1_to_t2_brain"] <= 1
    assert "partner_ssim_t2_to_t1_quantile_baseline_brain" in course_rows


def test_batched_slice_scores_are_each_slices_own_averaged(course) -> None:
    """`mean_metrics` scores slices together (one SSIM batch per shape): the same figures as
    scoring each course slice alone, masks and slices of another shape included, and a mask
    with no pixel away from the border leaves its slice out."""
    dataset, _ = course
    truths = [s.image.astype(np.float32) for s in dataset.t2[:5]]
    rng = np.random.default_rng(0)
    predictions = [np.clip(t + rng.normal(0, 15, t.shape), 0, 255) for t in truths]
    predictions[4], truths[4] = predictions[4][:120, :150], truths[4][:120, :150]  # a crop
    masks = [processing.head_mask(t.astype(np.uint8)) for t in truths]
    masks[2] = np.zeros_like(masks[2])
    masks[2][:3] = True  # only the border: nothing SSIM can score
    for given in (None, masks):
        alone = [
            evaluation.image_metrics(p, t, None if given is None else given[i])
            for i, (p, t) in enumerate(zip(predictions, truths, strict=True))
            if given is None or i != 2
        ]
        together = evaluation.mean_metrics(predictions, truths, given)
        for key in ("ssim", "psnr", "mae"):
            expected = np.mean([row[key] for row in alone])
            np.testing.assert_allclose(together[key], expected, rtol=1e-5)
    nothing = [np.zeros_like(masks[2])] * 5
    assert evaluation.mean_metrics(predictions, truths, nothing)["ssim"] is None


def test_reversed_histogram_matching_reads_sorted_targets_as_np_quantile_does() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (60, 70)).astype(np.uint8)
    mask = rng.random(image.shape) > 0.4
    for size in (1, 2, 7, 50_000):
        target = rng.gamma(2.0, 30.0, size)
        values = image[mask].astype(np.float64)
        ranks = stats.rankdata(values) / (len(values) + 1)
        expected = np.zeros(image.shape)
        expected[mask] = np.quantile(target, 1.0 - ranks)
        expected = np.clip(np.round(expected), 0, 255).astype(np.uint8)
        for given in (target, np.sort(target)):
            np.testing.assert_array_equal(quantile_baseline(image, mask, given), expected)
