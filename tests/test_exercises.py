"""`mh.check`: every exercise's reference answer passes, a realistic wrong one fails and says
what is wrong, and a wrong call (unknown id, wrong type of answer) says how to call it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from skimage.transform import resize

import mri_helpers as mh
from mri_helpers import exercises, processing


def slice_number(slice_id: str) -> int:
    return int(re.findall(r"\d+", slice_id)[-1])


def guess_contrast(image: np.ndarray) -> str:
    classes = processing.tissue_classes(image, processing.brain_region(image))
    return "t1" if np.sum(classes == 3) > np.sum(classes == 1) else "t2"


def stretch_to_square(image: np.ndarray, size: int) -> np.ndarray:
    return resize(processing.to_unit_range(image), (size, size), anti_aliasing=True)


def aspect_ratio(mask: np.ndarray) -> float:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (cols[-1] - cols[0] + 1) / (rows[-1] - rows[0] + 1)


def check_split(dataset: mh.MRIDataset, split: processing.Split) -> None:
    for modality in mh.MODALITIES:
        train, test = set(split.train[modality]), set(split.test[modality])
        assert test and not train & test
    if dataset.is_phantom:
        assert split.test["t1"] == split.test["t2"]
        assert not set(split.train["t1"]) & set(split.train["t2"])
        used = set(split.test["t1"]) | set(split.train["t1"]) | set(split.train["t2"])
        assert used == set(dataset.ids("t1"))
    else:
        for modality in mh.MODALITIES:
            used = set(split.train[modality]) | set(split.test[modality])
            assert used == set(dataset.ids(modality))


def accepted_sizes(config: str, low: int, high: int) -> list[int]:
    step = 2 ** mh.models.generator_config(config).depth
    return [size for size in range(low, high + 1) if size % step == 0]


def grid_side(config: str, image_size: int) -> int:
    return image_size // 2 ** (len(mh.models.discriminator_config(config).filters) - 1) - 2


def receptive_field_by_hand(config: str) -> int:
    strided = len(mh.models.discriminator_config(config).filters) - 1
    return 1 + 3 * (2**strided - 1) + 3 * 2**strided * 2


def score_inversion_baseline(phantom, split, truth: str = "clean") -> dict:
    from mri_helpers import baselines, evaluation

    inputs = processing.select(phantom, "t1", split.test["t1"])
    truths = processing.select(phantom, "t2", split.test["t1"])
    inverted = [baselines.inversion_baseline(s.image, s.head_mask) for s in inputs]
    clean = [getattr(t, truth) for t in truths]
    return {
        "whole": evaluation.mean_metrics(inverted, clean),
        "head": evaluation.mean_metrics(inverted, clean, [t.head_mask for t in truths]),
    }


def average_over_copies(generator, images, mirror_back: bool = True) -> np.ndarray:
    from mri_helpers import test_time

    outputs = []
    for dy, dx, mirrored in test_time.COPIES:
        copy = np.roll(images, (dy, dx), axis=(1, 2))
        copy = copy[:, :, ::-1] if mirrored else copy
        out = np.asarray(generator(copy, training=False))
        out = out[:, :, ::-1] if mirrored and mirror_back else out
        outputs.append(np.roll(out, (-dy, -dx), axis=(1, 2)))
    return np.mean(outputs, axis=0)


def measured_01_1() -> float:
    """The measurement of exercise 01-1, as a learner's cell computes it."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    dataset = exercises._course_or_phantom()
    slices = dataset.t1 + dataset.t2
    quarter = np.mean([processing.head_mask(s.image).mean() for s in slices])
    full = np.mean(
        [ndimage.binary_fill_holes(s.image > threshold_otsu(s.image)).mean() for s in slices]
    )
    return 100 * (quarter - full)


def inversion_errors() -> dict[str, float]:
    brain, rest = [], []
    phantom = mh.load_dataset("phantom", num_slices=8)
    for t1, t2 in zip(phantom.t1, phantom.t2, strict=True):
        error = np.abs((255.0 - t1.clean) - t2.clean)
        inside = processing.brain_region(t1.image)
        brain.append(error[inside].mean())
        rest.append(error[t1.head_mask & ~inside].mean())
    return {"brain": float(np.mean(brain)), "rest": float(np.mean(rest))}


LOSSES_03_4 = {
    "lsgan_at_2": 1.0,
    "bce_at_0": float(np.log(2)),
    "bce_at_2": float(np.log1p(np.exp(-2))),
    "d_undecided": 0.25,
}

# exercise id -> (right answer, wrong answer, words the message about the wrong one names)
ANSWERS = {
    "01-1": (lambda: (measured_01_1(),), lambda: (30.0,), "head's share"),
    "01-3": (
        lambda: (slice_number,),
        lambda: (lambda slice_id: int(slice_id[-6:-4]),),
        "'Image #124.png'",
    ),
    "01-4": (lambda: (guess_contrast,), lambda: (lambda image: "t1",), "T2 slices recognised"),
    "01-5": (
        lambda: (inversion_errors(),),
        lambda: ({"brain": inversion_errors()["rest"], "rest": inversion_errors()["brain"]},),
        "brain (grey levels)",
    ),
    "02-2": (
        lambda: ((), {"loses_more": "pad", "lossless_from": 217}),
        lambda: ((), {"loses_more": "stretch", "lossless_from": 217}),
        "which round trip loses more",
    ),
    "02-3": (
        lambda: ((stretch_to_square,), {"aspect_ratio": aspect_ratio}),
        lambda: (
            (lambda image, size: resize(image, (size, size)),),
            {"aspect_ratio": lambda mask: 1 / aspect_ratio(mask)},
        ),
        "stretch_to_square(slice, 64)",
    ),
    "02-5": (
        lambda: (check_split,),
        lambda: (lambda dataset, split: None,),
        "a held-out T1 slice also in training",
    ),
    "03-1": (
        lambda: (accepted_sizes,),
        lambda: (lambda config, low, high: list(range(low, high, 2**5)),),
        "accepted_sizes('tiny', 100, 300)",
    ),
    "03-3": (
        lambda: ((grid_side,), {"receptive_field_by_hand": receptive_field_by_hand}),
        lambda: (
            (lambda config, size: grid_side(config, size) + 2,),
            {"receptive_field_by_hand": receptive_field_by_hand},
        ),
        "grid_side('tiny', 64)",
    ),
    "03-4": (
        lambda: ((), LOSSES_03_4),
        lambda: ((), {**LOSSES_03_4, "bce_at_2": float(np.log1p(np.exp(2)))}),
        "bce_at_2",
    ),
    "04-3": (
        lambda: (score_inversion_baseline,),
        lambda: (lambda phantom, split: score_inversion_baseline(phantom, split, "image"),),
        "whole ssim",
    ),
    "04-5": (
        lambda: (average_over_copies,),
        lambda: (lambda g, x: average_over_copies(g, x, mirror_back=False),),
        "largest difference",
    ),
}


def call(exercise: str, answer) -> bool:
    given = answer()
    args, kwargs = given if len(given) == 2 and isinstance(given[1], dict) else (given, {})
    return mh.check(exercise, *args, **kwargs)


def test_every_checked_exercise_has_answers_here() -> None:
    assert sorted(ANSWERS) == sorted(exercises.EXERCISES)


@pytest.mark.parametrize("exercise", sorted(ANSWERS))
def test_the_reference_answer_passes_and_a_wrong_one_fails(exercise: str, capsys) -> None:
    right, wrong, named = ANSWERS[exercise]
    assert call(exercise, right), capsys.readouterr().out
    assert "Summary: all" in capsys.readouterr().out
    assert not call(exercise, wrong)
    out = capsys.readouterr().out
    assert any(line.startswith("✗") and named in line for line in out.splitlines()), out
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("Summary:") and "wrong, first" in summary, summary


def test_an_unknown_exercise_lists_the_checked_ones(capsys) -> None:
    assert mh.check("09-9", 1) is False
    out = capsys.readouterr().out
    assert "no checked exercise '09-9'" in out and "01-3" in out and "04-5" in out


@pytest.mark.parametrize(
    ("exercise", "answers", "message"),
    [
        ("01-3", ("Image #10.png",), "slice_number should be a function"),
        ("01-3", ((lambda i: 0,), {"extra": 1}), "no answer named extra"),
        ("01-1", ("a bit",), "predicted_drop should be a number"),
        ("01-5", ([50, 90],), "should be a dict of numbers"),
        ("02-2", ((), {"loses_more": "resize", "lossless_from": 217}), "one of 'pad', 'stretch'"),
        ("02-3", ((stretch_to_square,), {}), "aspect_ratio is missing"),
    ],
)
def test_a_wrong_kind_of_answer_says_what_is_expected(exercise, answers, message, capsys):
    args, kwargs = answers if len(answers) == 2 and isinstance(answers[1], dict) else (answers, {})
    assert mh.check(exercise, *args, **kwargs) is False
    out = capsys.readouterr().out
    assert message in out and "Call it as: mh.check(" in out, out


def test_an_answer_that_raises_is_reported_not_raised(capsys) -> None:
    assert mh.check("01-4", lambda image: image.nope) is False
    out = capsys.readouterr().out
    assert "your answer raised AttributeError" in out and "Summary: wrong" in out


def test_each_check_line_of_the_lessons_names_its_own_exercise() -> None:
    """The lessons' "Check:" lines and the checker's exercises are the same set, and each
    line sits under the exercise it names (lesson number, item number)."""
    import nbformat

    from conftest import REPO

    named = []
    for lesson in sorted((REPO / "notebooks").glob("0*.ipynb")):
        text = nbformat.read(lesson, as_version=4).cells[-1].source
        for item in re.split(r"^(?=\d+\. )", text, flags=re.MULTILINE)[1:]:
            for exercise in re.findall(r'mh\.check\("(\d\d-\d)"', item):
                assert exercise == f"{lesson.name[:2]}-{item[0]}", (lesson.name, exercise)
                named.append(exercise)
    assert sorted(named) == sorted(exercises.EXERCISES)
