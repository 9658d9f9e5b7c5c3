"""The generator and discriminator: sizes, parameter counts, saving and reloading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mri_helpers as mh
from mri_helpers import export, models
from mri_helpers._tf import keras


def test_tutorial_configuration_has_the_tutorials_parameter_counts() -> None:
    generator = models.unet_generator("tutorial", 256)
    discriminator = models.patchgan_discriminator("tutorial", 256)
    assert generator.count_params() == 54_408_833
    assert discriminator.count_params() == 2_763_521
    assert generator.output_shape == (None, 256, 256, 1)
    assert discriminator.output_shape == (None, 30, 30, 1)
    assert models.receptive_field("tutorial") == 70


@pytest.mark.parametrize("name", list(models.GENERATORS))
def test_generators_keep_shape_and_range(name: str) -> None:
    config = models.generator_config(name)
    size = 2**config.depth
    generator = models.unet_generator(name, size)
    images = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 1)).astype(np.float32)
    out = generator(images, training=False).numpy()
    assert out.shape == images.shape and np.abs(out).max() <= 1.0


def test_full_resolution_skip_joins_full_size_features_to_the_decoder() -> None:
    compact = models.unet_generator("compact", 224)
    stem, joined = compact.get_layer("stem"), compact.get_layer("skip_full")
    assert stem.output.shape == (None, 224, 224, 16)
    assert joined.output.shape == (None, 224, 224, 32)  # decoder's 16 + the stem's 16
    assert compact.get_layer("to_image").kernel.shape == (3, 3, 32, 1)
    # Without it (the tutorial's U-Net), the last stage is the transposed conv from half size.
    names = {layer.name for layer in models.unet_generator("tiny", 64).layers}
    assert "stem" not in names and "skip_full" not in names


def test_sizes_that_do_not_divide_are_refused_clearly() -> None:
    with pytest.raises(models.ModelConfigError, match=r"multiple of 2\*\*8 = 256 \(e.g. 256\)"):
        models.unet_generator("tutorial", 128)
    with pytest.raises(models.ModelConfigError, match=r"e.g. 128 or 256"):
        models.unet_generator(models.GeneratorConfig((8, 8, 8, 8, 8, 8, 8)), 200)
    with pytest.raises(models.ModelConfigError, match="unknown generator configuration 'big'"):
        models.unet_generator("big", 128)


@pytest.mark.parametrize("full_resolution", [0, 4])
def test_saved_generator_reloads_in_safe_mode_with_identical_outputs(
    tmp_path: Path, full_resolution: int
) -> None:
    config = models.GeneratorConfig((8, 16, 32), full_resolution=full_resolution)
    generator = models.unet_generator(config, 32)
    images = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    path = tmp_path / "generator.keras"
    generator.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        generator(images, training=False).numpy(), reloaded(images, training=False).numpy()
    )


def test_instance_norm_normalises_each_image_and_channel() -> None:
    x = np.random.default_rng(2).normal(5, 3, (2, 8, 8, 4)).astype(np.float32)
    y = models.instance_norm()(x).numpy()
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 1, atol=1e-2)


def test_receptive_field_grows_with_depth() -> None:
    assert models.receptive_field(models.DiscriminatorConfig((8, 8, 8))) == 34
    assert models.receptive_field(models.DiscriminatorConfig((8, 8, 8, 8, 8))) == 142


def test_load_model_refuses_code_and_non_models(tmp_path: Path) -> None:
    inputs = keras.Input((4,))
    crafted = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    crafted.save(tmp_path / "crafted.keras")
    with pytest.raises(mh.ModelFileError, match="refused: it carries executable code"):
        export.load_model(tmp_path / "crafted.keras")
    (tmp_path / "text.keras").write_text("not a model")
    with pytest.raises(mh.ModelFileError, match="not a Keras model file"):
        export.load_model(tmp_path / "text.keras")
    with pytest.raises(mh.ModelFileError, match="no model file at"):
        export.load_model(tmp_path / "missing.keras")
