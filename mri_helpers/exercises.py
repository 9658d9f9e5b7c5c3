"""Checks for the lessons' exercises: `mh.check("02-3", stretch_to_square)`.

Each lesson's "## Exercises" cell holds the exercises' text and ends each checkable one with
the call to make. A function answer is called on real inputs (course or phantom slices, small
crafted arrays) and compared with the package's own computation; a value answer (a number, a
prediction) is compared with what the checker measures, within a stated tolerance. Every case
prints a ✓ or ✗ line with what was expected and what came back, then one summary line names
what is wrong and gives a hint. A check never raises: a wrong call says how to call it.
"""

from __future__ import annotations

import functools
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

CHOICES_OF_02_2 = ("pad", "stretch")


@dataclass
class Case:
    """One comparison: what was checked, what was expected, what came back."""

    what: str
    ok: bool
    expected: object
    got: object
    hint: str = ""


@dataclass(frozen=True)
class Exercise:
    """A checkable exercise: its title, the answers it takes (name -> what it must be: a
    "function", a "number", a "numbers" dict or a tuple of choices) and its checker."""

    title: str
    answers: dict[str, object]
    run: Callable[..., list[Case]]
    usage: str = field(default="")


EXERCISES: dict[str, Exercise] = {}


def _exercise(exercise_id: str, title: str, usage: str, **answers: object):
    def register(run: Callable[..., list[Case]]) -> Callable[..., list[Case]]:
        EXERCISES[exercise_id] = Exercise(title, answers, run, usage)
        return run

    return register


def check_exercise(exercise: str, answer: object = None, **answers: object) -> bool:
    """Check a learner's answer to `exercise` ("01-3"); print what is right and wrong and
    return True if all is right. `answer` is the exercise's first answer, `answers` the
    others by name (the lesson's "Check:" line shows the call)."""
    entry = EXERCISES.get(str(exercise))
    if entry is None:
        print(f"✗ There is no checked exercise {exercise!r}. Checked exercises: {_listing()}")
        return False
    given = dict(answers)
    if answer is not None:
        given.setdefault(next(iter(entry.answers)), answer)
    problem = _call_problem(entry, given)
    if problem:
        print(f"✗ {problem}\n  Call it as: {entry.usage}")
        return False
    print(f"Exercise {exercise}: {entry.title}")
    try:
        cases = entry.run(**given)
    except Exception as error:  # the learner's code failed: say where, never a traceback
        print(f"✗ your answer raised {type(error).__name__}: {error}")
        print("Summary: wrong. Run your function on one input by itself to see why it fails.")
        return False
    for case in cases:
        mark = "✓" if case.ok else "✗"
        detail = f"{case.got}" if case.ok else f"expected {case.expected}, got {case.got}"
        print(f"{mark} {case.what}: {detail}")
    wrong = [case for case in cases if not case.ok]
    if not wrong:
        print(f"Summary: all {len(cases)} right.")
        return True
    print(f"Summary: {len(wrong)} of {len(cases)} wrong, first {wrong[0].what}. {wrong[0].hint}")
    return False


def _listing() -> str:
    return ", ".join(f"{key} ({entry.title})" for key, entry in EXERCISES.items())


def _call_problem(entry: Exercise, given: dict[str, object]) -> str:
    """What is wrong with the call itself (an answer missing, unknown or of the wrong type)."""
    unknown = sorted(set(given) - set(entry.answers))
    if unknown:
        return f"this exercise takes no answer named {', '.join(unknown)}."
    for name, kind in entry.answers.items():
        if name not in given:
            return f"the answer {name} is missing."
        value = given[name]
        if kind == "function" and not callable(value):
            return f"{name} should be a function (pass it without calling it), not {_type(value)}."
        if kind == "number" and not _is_number(value):
            return f"{name} should be a number, not {_type(value)}."
        if kind == "numbers" and not (
            isinstance(value, dict) and all(_is_number(v) for v in value.values())
        ):
            return f"{name} should be a dict of numbers, not {_type(value)}."
        if isinstance(kind, tuple) and value not in kind:
            return f"{name} should be one of {', '.join(map(repr, kind))}, not {value!r}."
    return ""


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _type(value: object) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _try(function: Callable, *args: object) -> object:
    """What `function(*args)` returns, or what it raised (as text, so that a case shows it)."""
    try:
        return function(*args)
    except Exception as error:  # the learner's function failed on this case only
        return f"raised {type(error).__name__}: {error}"


def _close(what: str, expected: float, got: object, tolerance: float, hint: str) -> Case:
    ok = _is_number(got) and abs(float(got) - expected) <= tolerance  # type: ignore[arg-type]
    shown = f"{float(got):.4g}" if _is_number(got) else repr(got)  # type: ignore[arg-type]
    return Case(what, ok, f"{expected:.4g} ± {tolerance:.2g}", shown, hint)


# --- the data the checks run on ------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _course_or_phantom():
    """The course data if it is found (as the lessons load it), else 16 phantom slices."""
    from .data import load_dataset
    from .datafiles import find_data

    found = find_data()
    return load_dataset(found) if found else load_dataset("phantom", num_slices=16)


@functools.lru_cache(maxsize=2)
def _phantom(num_slices: int = 8):
    from .data import load_dataset

    return load_dataset("phantom", num_slices=num_slices)


def _example():
    """The lessons' example slice: the middle T1 slice of the data set."""
    dataset = _course_or_phantom()
    return dataset.t1[len(dataset.t1) // 2]


# --- lesson 01 -----------------------------------------------------------------------------
@_exercise(
    "01-1",
    "predict, then test: Otsu's threshold instead of a quarter of it",
    'mh.check("01-1", PREDICTED_DROP)  # in percentage points',
    predicted_drop="number",
)
def _check_01_1(predicted_drop: float) -> list[Case]:
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    from .processing import head_mask

    dataset = _course_or_phantom()
    slices = dataset.t1 + dataset.t2
    quarter = np.mean([head_mask(s.image).mean() for s in slices])
    full = np.mean(
        [ndimage.binary_fill_holes(s.image > threshold_otsu(s.image)).mean() for s in slices]
    )
    drop = 100 * (quarter - full)
    print(
        f"  measured on {len(slices)} {dataset.kind} slices: the head covers {quarter:.1%} "
        f"with a quarter of Otsu's threshold, {full:.1%} with Otsu's own"
    )
    hint = (
        "The head's edge is steep (bright skin and fat against dark air), so a higher threshold "
        "moves it by a pixel or two; the dark skull inside is filled as a hole either way."
    )
    return [_close("drop of the head's share (points)", drop, predicted_drop, 5.0, hint)]


@_exercise(
    "01-3",
    "the head through the stack: slice_number",
    'mh.check("01-3", slice_number)',
    slice_number="function",
)
def _check_01_3(slice_number: Callable[[str], int]) -> list[Case]:
    dataset = _course_or_phantom()
    ids = ["Image #10.png", "Image #9.png", "Image #124.png", "phantom_z+012"]
    ids += dataset.ids("t1")[:2] + dataset.ids("t2")[-2:]
    hint = "Take the last run of digits in the id (re.findall(r'\\d+', slice_id)[-1]), as int."
    return [
        Case(repr(i), got == expected, expected, repr(got), hint)
        for i in dict.fromkeys(ids)
        for expected, got in [(int(re.findall(r"\d+", i)[-1]), _try(slice_number, i))]
    ]


@_exercise(
    "01-4",
    "tell T1 from T2 by the pixels alone: guess_contrast",
    'mh.check("01-4", guess_contrast)',
    guess_contrast="function",
)
def _check_01_4(guess_contrast: Callable[[np.ndarray], str]) -> list[Case]:
    cases = []
    for data in {d.kind: d for d in (_course_or_phantom(), _phantom(8))}.values():
        for modality in ("t1", "t2"):
            slices = data[modality][::3]
            guesses = [guess_contrast(s.image) for s in slices]
            right = np.mean([guess == modality for guess in guesses])
            cases.append(
                Case(
                    f"{data.kind} {modality.upper()} slices recognised",
                    right >= 0.95,
                    "at least 95 %",
                    f"{right:.0%} of {len(slices)} (answers: {sorted(set(map(repr, guesses)))})",
                    'Return "t1" or "t2". Compare the pixel counts of the darkest and the '
                    "brightest class: white matter, the largest tissue, swaps ends.",
                )
            )
    return cases


@_exercise(
    "01-5",
    "why inverting the grey levels is not a translation",
    'mh.check("01-5", {"brain": ..., "rest": ...})',
    errors="numbers",
)
def _check_01_5(errors: dict) -> list[Case]:
    from .processing import brain_region

    brain, rest = [], []
    for t1, t2 in zip(_phantom(8).t1, _phantom(8).t2, strict=True):
        error = np.abs((255.0 - t1.clean) - t2.clean)
        inside = brain_region(t1.image)
        brain.append(error[inside].mean())
        rest.append(error[t1.head_mask & ~inside].mean())
    hint = (
        "Use the clean slices (s.clean) of 8 phantom slices, the brain from "
        "processing.brain_region(t1.image), and the rest of the head as s.head_mask & ~brain."
    )
    return [
        _close(
            f"{name} (grey levels)",
            float(np.mean(values)),
            errors.get(name),
            0.1 * np.mean(values),
            hint,
        )
        for name, values in (("brain", brain), ("rest", rest))
    ]


# --- lesson 02 -----------------------------------------------------------------------------
def round_trip_errors(image: np.ndarray, size: int) -> dict[str, float]:
    """Mean absolute round-trip error (grey levels) of a slice through a size x size network
    input, padded (the course) and stretched (resized straight to the square and back)."""
    from skimage.transform import resize

    from .processing import (
        Geometry,
        from_unit_range,
        to_model_geometry,
        to_original_geometry,
        to_unit_range,
    )

    unit = to_unit_range(image)
    padded = to_original_geometry(to_model_geometry(unit, size), Geometry(*image.shape))
    stretched = resize(resize(unit, (size, size), anti_aliasing=True), image.shape)
    return {
        name: float(np.abs(from_unit_range(back).astype(int) - image).mean())
        for name, back in (("pad", padded), ("stretch", stretched))
    }


@_exercise(
    "02-2",
    "predict, then test: padding against stretching",
    'mh.check("02-2", loses_more=PREDICTED_LOSES_MORE, lossless_from=PREDICTED_LOSSLESS_FROM)',
    loses_more=CHOICES_OF_02_2,
    lossless_from="number",
)
def _check_02_2(loses_more: str, lossless_from: float) -> list[Case]:
    example = _example()
    errors = round_trip_errors(example.image, 128)
    print(
        f"  measured on {example.id}, at 128 px: padded {errors['pad']:.2f}, stretched "
        f"{errors['stretch']:.2f} grey levels lost"
    )
    measured = max(errors, key=errors.get)
    smallest = max(example.shape)  # from the longer side on, padding only pads
    for side in (smallest - 1, smallest):
        print(f"  padded at {side} px: {round_trip_errors(example.image, side)['pad']:.2f}")
    return [
        Case(
            "which round trip loses more at 128 px",
            loses_more == measured,
            repr(measured),
            repr(loses_more),
            "Padding spends pixels of the square on background, so the head gets fewer pixels "
            "than when the slice is stretched to fill the square.",
        ),
        _close(
            "smallest lossless size when padding",
            smallest,
            lossless_from,
            0,
            "Nothing is resampled once the square is at least the slice's longer side.",
        ),
    ]


@_exercise(
    "02-3",
    "stretch instead of pad: stretch_to_square and aspect_ratio",
    'mh.check("02-3", stretch_to_square, aspect_ratio=aspect_ratio)',
    stretch_to_square="function",
    aspect_ratio="function",
)
def _check_02_3(stretch_to_square: Callable, aspect_ratio: Callable) -> list[Case]:
    from skimage.transform import resize

    from .processing import head_mask, to_unit_range

    example = _example()
    cases = []
    for size in (64, 128):
        expected = resize(to_unit_range(example.image), (size, size), anti_aliasing=True)
        got = np.asarray(stretch_to_square(example.image, size), np.float32).squeeze()
        ok = got.shape == expected.shape and float(np.abs(got - expected).mean()) < 0.02
        seen = f"shape {got.shape}, values {got.min():.2f}..{got.max():.2f}"
        cases.append(
            Case(
                f"stretch_to_square(slice, {size})",
                ok,
                f"shape {expected.shape}, values {expected.min():.2f}..{expected.max():.2f}",
                seen,
                "Scale with processing.to_unit_range first, then resize to (size, size).",
            )
        )
    box = np.zeros((40, 60), bool)
    box[5:15, 10:40] = True  # 30 wide, 10 high
    for what, mask in (("a 30x10 box", box), ("the head mask", head_mask(example.image))):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        expected_ratio = (cols[-1] - cols[0] + 1) / (rows[-1] - rows[0] + 1)
        hint = "Width / height of the box around the True pixels, both counted inclusively."
        cases.append(
            _close(f"aspect_ratio({what})", expected_ratio, aspect_ratio(mask), 1e-6, hint)
        )
    return cases


def _broken_splits(dataset, split) -> dict[str, object]:
    """Splits that break one promise of `holdout_split` each, by what they break."""
    from .processing import Split

    def changed(train=None, test=None) -> Split:
        return Split(train={**split.train, **(train or {})}, test={**split.test, **(test or {})})

    first_test = split.test["t1"][0]
    broken = {
        "a held-out T1 slice also in training": changed(
            train={"t1": [*split.train["t1"], first_test]}
        ),
        "a T1 slice used nowhere": changed(train={"t1": split.train["t1"][1:]}),
        "nothing held out in T2": changed(test={"t2": []}, train={"t2": dataset.ids("t2")}),
    }
    if dataset.is_phantom:
        broken["held-out ids that differ between the contrasts"] = changed(
            test={"t2": split.test["t2"][1:]}, train={"t2": [*split.train["t2"], first_test]}
        )
        broken["a training slice in both contrasts"] = changed(
            train={"t2": [*split.train["t2"], split.train["t1"][0]]}
        )
    return broken


@_exercise(
    "02-5",
    "check a held-out split: check_split",
    'mh.check("02-5", check_split)',
    check_split="function",
)
def _check_02_5(check_split: Callable) -> list[Case]:
    from .processing import holdout_split

    cases = []
    for dataset in {d.kind: d for d in (_course_or_phantom(), _phantom(8))}.values():
        split = holdout_split(dataset, 0.2, seed=0)
        cases.append(_raises(check_split, dataset, split, f"{dataset.kind}: a sound split", False))
        for what, broken in _broken_splits(dataset, split).items():
            cases.append(_raises(check_split, dataset, broken, f"{dataset.kind}: {what}", True))
    return cases


def _raises(function: Callable, dataset, split, what: str, should_fail: bool) -> Case:
    """Whether `function(dataset, split)` fails with an AssertionError, as it should."""
    try:
        function(dataset, split)
        outcome = "passed"
    except AssertionError:
        outcome = "AssertionError"
    expected = "AssertionError" if should_fail else "passed"
    hint = (
        "Your check lets this broken split through: assert that promise too."
        if should_fail
        else "Your check rejects a sound split: one of its asserts is too strict."
    )
    return Case(what, outcome == expected, expected, outcome, hint)


# --- lesson 03 -----------------------------------------------------------------------------
@_exercise(
    "03-1",
    "what the size of a network depends on: accepted_sizes",
    'mh.check("03-1", accepted_sizes)',
    accepted_sizes="function",
)
def _check_03_1(accepted_sizes: Callable) -> list[Case]:
    from .models import GENERATORS, ModelConfigError, check_image_size

    def accepted(depth: int, low: int, high: int) -> list[int]:
        sizes = []
        for size in range(low, high + 1):
            try:
                check_image_size(size, depth)
            except ModelConfigError:
                continue
            sizes.append(size)
        return sizes

    hint = "Keep a size when unet_generator builds at it: a multiple of 2**depth, both ends in."
    return [
        Case(f"accepted_sizes({name!r}, {low}, {high})", got == expected, expected, got, hint)
        for name, config in GENERATORS.items()
        for low, high in ((100, 300), (32, 128))
        for expected, got in [
            (accepted(config.depth, low, high), _try(accepted_sizes, name, low, high))
        ]
    ]


@_exercise(
    "03-3",
    "the PatchGAN's grid and receptive field, by hand",
    'mh.check("03-3", grid_side, receptive_field_by_hand=receptive_field_by_hand)',
    grid_side="function",
    receptive_field_by_hand="function",
)
def _check_03_3(grid_side: Callable, receptive_field_by_hand: Callable) -> list[Case]:
    from .models import DISCRIMINATORS, patchgan_discriminator, receptive_field

    cases = []
    for name in DISCRIMINATORS:
        expected = receptive_field(name)
        got = _try(receptive_field_by_hand, name)
        hint = "Walk back from one output: each 4x4 kernel adds 3 steps of its input's stride."
        cases.append(Case(f"receptive field of {name!r}", got == expected, expected, got, hint))
        for size in (64, 128):
            side = patchgan_discriminator(name, size).output_shape[1]
            got = _try(grid_side, name, size)
            hint = "Each stride-2 block halves the side; each padded 4x4 convolution takes 1."
            cases.append(Case(f"grid_side({name!r}, {size})", got == side, side, got, hint))
    return cases


@_exercise(
    "03-4",
    "least squares or cross-entropy: the values by hand",
    'mh.check("03-4", lsgan_at_2=..., bce_at_0=..., bce_at_2=..., d_undecided=...)',
    lsgan_at_2="number",
    bce_at_0="number",
    bce_at_2="number",
    d_undecided="number",
)
def _check_03_4(**values: float) -> list[Case]:
    from .losses import discriminator_loss, generator_adversarial_loss

    def generator_loss(logit: float, kind: str) -> float:
        return float(generator_adversarial_loss(np.array([logit], np.float32), kind))

    half = np.full(4, 0.5, np.float32)
    expected = {
        "lsgan_at_2": (generator_loss(2, "lsgan"), "LSGAN's generator loss is (logit - 1)²."),
        "bce_at_0": (generator_loss(0, "bce"), "BCE's generator loss is log(1 + exp(-logit))."),
        "bce_at_2": (generator_loss(2, "bce"), "BCE's generator loss is log(1 + exp(-logit))."),
        "d_undecided": (
            float(discriminator_loss(half, half)),
            "The discriminator's loss is half the sum of (real - 1)² and fake², averaged.",
        ),
    }
    return [
        _close(name, value, values[name], 1e-3, hint) for name, (value, hint) in expected.items()
    ]


# --- lesson 04 -----------------------------------------------------------------------------
@_exercise(
    "04-3",
    "score the inversion baseline yourself: score_inversion_baseline",
    'mh.check("04-3", score_inversion_baseline)',
    score_inversion_baseline="function",
)
def _check_04_3(score_inversion_baseline: Callable) -> list[Case]:
    from .baselines import inversion_baseline
    from .evaluation import mean_metrics
    from .processing import holdout_split, select

    phantom = _phantom(8)
    split = holdout_split(phantom, 0.25, seed=0)
    inputs = select(phantom, "t1", split.test["t1"])
    truths = select(phantom, "t2", split.test["t1"])
    inverted = [inversion_baseline(s.image, s.head_mask) for s in inputs]
    clean = [t.clean for t in truths]
    expected = {
        "whole": mean_metrics(inverted, clean),
        "head": mean_metrics(inverted, clean, [t.head_mask for t in truths]),
    }
    got = score_inversion_baseline(phantom, split)
    hint = (
        "Invert the held-out T1 slices inside s.head_mask and score them against the clean T2 "
        "of the same ids (t.clean), with the T2 head mask for the 'head' scores."
    )
    return [
        _close(f"{region} {metric}", value, _get(got, region, metric), 1e-4 * abs(value), hint)
        for region, metrics in expected.items()
        for metric, value in metrics.items()
    ]


def _get(scores: object, region: str, metric: str) -> object:
    try:
        return scores[region][metric]  # type: ignore[index]
    except (KeyError, TypeError, IndexError):
        return f"no scores[{region!r}][{metric!r}]"


@_exercise(
    "04-5",
    "averaging over copies, by hand: average_over_copies",
    'mh.check("04-5", average_over_copies)',
    average_over_copies="function",
)
def _check_04_5(average_over_copies: Callable) -> list[Case]:
    from .models import unet_generator
    from .processing import prepare
    from .test_time import averaged_over_copies

    generator = unet_generator("tiny", 64)
    images = prepare(_phantom(8).t1[:2], 64)
    expected = np.asarray(averaged_over_copies(generator)(images))
    single = np.asarray(generator(images, training=False))
    got = np.asarray(average_over_copies(generator, images), np.float32)
    print(
        f"  one copy alone is {np.abs(single - expected).mean():.4f} from the average "
        "(on [-1, 1]): what averaging removes"
    )
    shape_ok = got.shape == expected.shape
    difference = float(np.abs(got - expected).max()) if shape_ok else float("nan")
    return [
        Case("shape", shape_ok, expected.shape, got.shape, "Return one image per input image."),
        Case(
            "largest difference from test_time.averaged_over_copies",
            shape_ok and difference < 1e-4,
            "below 1e-4",
            f"{difference:.2g}",
            "Undo each copy in reverse order: mirror back first, then roll by (-dy, -dx).",
        ),
    ]
