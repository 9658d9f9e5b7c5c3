"""Test-time augmentation: the copies, their exact inverse, export and reload, real slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mri_helpers as mh
from mri_helpers import export, models, processing, test_time
from mri_helpers._tf import keras

SIZE = 64


@pytest.fixture(scope="module")
def course_t2(course_zip: Path) -> np.ndarray:
    dataset = mh.load_dataset(course_zip)
    return processing.prepare(dataset.t2[:3], SIZE, processing.Cleaning())


def unet() -> keras.Model:
    mh.set_seed(3)
    return models.unet_generator(models.GeneratorConfig((8, 16, 32)), SIZE, name="unet")


def by_hand(network: keras.Model, images: np.ndarray, copies=test_time.COPIES) -> np.ndarray:
    """The same average written with NumPy: move and mirror, translate, undo, average."""
    outputs = []
    for dy, dx, mirrored in copies:
        copy = np.roll(images, (dy, dx), axis=(1, 2))
        copy = copy[:, :, ::-1] if mirrored else copy
        out = np.asarray(network(np.ascontiguousarray(copy), training=False))
        out = out[:, :, ::-1] if mirrored else out
        outputs.append(np.roll(out, (-dy, -dx), axis=(1, 2)))
    return np.mean(outputs, axis=0)


def test_every_copy_is_undone_exactly(course_t2: np.ndarray) -> None:
    inputs = keras.Input((SIZE, SIZE, 1))
    identity = keras.Model(inputs, keras.layers.Identity()(inputs))
    copies = test_time.ShiftedMirroredCopies()(course_t2).numpy()
    assert copies.shape == (len(test_time.COPIES) * 3, SIZE, SIZE, 1)
    assert len({copy.tobytes() for copy in copies[::3]}) == len(test_time.COPIES)  # all differ
    averaged = test_time.averaged_over_copies(identity)(course_t2).numpy()
    np.testing.assert_allclose(averaged, course_t2, atol=1e-6)


def test_average_matches_the_copies_done_by_hand(course_t2: np.ndarray) -> None:
    network = unet()
    averaged = test_time.averaged_over_copies(network)(course_t2).numpy()
    np.testing.assert_allclose(averaged, by_hand(network, course_t2), atol=1e-5)
    plain = network(course_t2, training=False).numpy()
    # A U-Net is not shift- or mirror-equivariant: the copies disagree, the average differs.
    assert np.abs(averaged - plain).mean() > 1e-4


def test_a_pixelwise_network_is_unchanged_by_the_average(course_t2: np.ndarray) -> None:
    inputs = keras.Input((SIZE, SIZE, 1))
    pixelwise = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="tanh")(inputs))
    averaged = test_time.averaged_over_copies(pixelwise)(course_t2).numpy()
    np.testing.assert_allclose(averaged, pixelwise(course_t2).numpy(), atol=1e-6)


def test_export_reloads_safely_with_the_copies_and_the_saved_model(
    course_t2: np.ndarray, tmp_path: Path
) -> None:
    network = unet()
    model = test_time.averaged_over_copies(network)
    assert test_time.is_averaged(model) and not test_time.is_averaged(network)
    assert test_time.without_copies(model) is network
    assert test_time.without_copies(network) is network
    folder = export.export_generator(model, tmp_path, "t2-to-t1", SIZE, {"seed": 0})
    loaded, config = export.load_generator(folder)  # safe mode
    assert test_time.is_averaged(loaded) and config["image_size"] == SIZE
    expected = model(course_t2).numpy()
    np.testing.assert_allclose(loaded(course_t2).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(
        test_time.without_copies(loaded)(course_t2).numpy(), network(course_t2).numpy(), atol=1e-5
    )
    served = keras.layers.TFSMLayer(str(folder / "saved_model"), call_endpoint="serve")
    np.testing.assert_allclose(np.asarray(served(course_t2)), expected, atol=1e-5)


def test_copies_stay_float32_under_mixed_precision(course_t2: np.ndarray) -> None:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        network = unet()
        model = test_time.averaged_over_copies(network)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    copies = model.get_layer(index=1)
    assert isinstance(copies, test_time.ShiftedMirroredCopies)
    assert copies.compute_dtype == "float32" and model.output.dtype == "float32"
    # The copies reach the network unrounded: the average equals the hand-made one.
    np.testing.assert_allclose(model(course_t2).numpy(), by_hand(network, course_t2), atol=1e-5)


def test_an_export_keeps_its_own_copies(course_t2: np.ndarray, tmp_path: Path) -> None:
    network = unet()
    mirrored_only = ((0, 0, False), (0, 0, True))
    model = test_time.averaged_over_copies(network, mirrored_only)
    folder = export.export_generator(model, tmp_path, "t2-to-t1", SIZE, {}, saved_model=False)
    loaded, _ = export.load_generator(folder)
    assert loaded.layers[-1].copies == mirrored_only
    np.testing.assert_allclose(
        loaded(course_t2).numpy(), by_hand(network, course_t2, mirrored_only), atol=1e-5
    )
    with pytest.raises(ValueError, match="at least one copy"):
        test_time.averaged_over_copies(network, ())
