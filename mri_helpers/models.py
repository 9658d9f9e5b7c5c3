"""The CycleGAN's networks: the U-Net generator and the PatchGAN discriminator.

Generated from the lessons' `# @save` cells by `mri-course export-lessons`: edit the
lesson, then run it (never this file).
"""

from __future__ import annotations

from dataclasses import dataclass

from mri_helpers._tf import keras
from mri_helpers.errors import ModelConfigError

# Defined in 03_model_building, 'The generator: a modified U-Net'.
INIT_STDDEV = 0.02  # weights ~ N(0, 0.02), as in pix2pix and the CycleGAN paper


def initializer() -> keras.initializers.Initializer:
    """The networks' starting weights: small and random, N(0, 0.02)."""
    return keras.initializers.RandomNormal(0.0, INIT_STDDEV)


def instance_norm(name: str | None = None) -> keras.layers.Layer:
    """Instance normalisation: GroupNormalization with one group per channel."""
    return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)


def down_block(filters: int, normalize: bool = True, name: str = "down") -> keras.Sequential:
    """Conv 4x4 stride 2 -> instance norm -> LeakyReLU(0.2): half the size, more channels."""
    conv = keras.layers.Conv2D(
        filters, 4, strides=2, padding="same", kernel_initializer=initializer(), use_bias=False
    )
    norm = [instance_norm()] if normalize else []
    return keras.Sequential([conv, *norm, keras.layers.LeakyReLU(0.2)], name=name)


def up_block(filters: int, dropout: float = 0.0, name: str = "up") -> keras.Sequential:
    """Transposed conv 4x4 stride 2 -> instance norm -> [dropout] -> ReLU: double the size."""
    conv = keras.layers.Conv2DTranspose(
        filters, 4, strides=2, padding="same", kernel_initializer=initializer(), use_bias=False
    )
    drop = [keras.layers.Dropout(dropout)] if dropout else []
    return keras.Sequential([conv, instance_norm(), *drop, keras.layers.ReLU()], name=name)


# Defined in 03_model_building, 'The generator: a modified U-Net'.
@dataclass(frozen=True)
class GeneratorConfig:
    """U-Net widths: `filters[i]` channels after the i-th down-block; depth = len(filters)."""

    filters: tuple[int, ...]
    dropout_blocks: int = 3  # the first up-blocks use dropout (pix2pix's noise source)
    dropout_rate: float = 0.5
    full_resolution: int = 0  # channels of the full-size stem and skip; 0: none (pix2pix)

    @property
    def depth(self) -> int:
        return len(self.filters)


GENERATORS = {
    # For CI and quick checks only: trains in seconds, learns little.
    "tiny": GeneratorConfig((16, 32, 64, 64, 64, 64)),
    # The TensorFlow CycleGAN tutorial's U-Net: 8 levels, 54,408,833 parameters at 1 channel.
    "tutorial": GeneratorConfig((64, 128, 256, 512, 512, 512, 512, 512)),
    # Sized for a 2-core CPU at 224x224, the slices' own resolution: five levels, few
    # channels where the images are large (16 at 112x112), 128 at most, and a 16-channel
    # full-size skip, which measurably keeps fine detail (docs/results.md).
    "compact": GeneratorConfig((16, 32, 64, 128, 128), full_resolution=16),
}


def named_config(value, table: dict, what: str):
    """`table[value]` for a configuration's name; a configuration itself as it is."""
    if not isinstance(value, str):
        return value
    if value not in table:
        raise ModelConfigError(f"unknown {what} configuration {value!r}; use one of {list(table)}")
    return table[value]


def generator_config(name_or_config: str | GeneratorConfig) -> GeneratorConfig:
    """A named generator configuration ("tutorial", "compact") or the config itself."""
    return named_config(name_or_config, GENERATORS, "generator")


def check_image_size(image_size: int, depth: int) -> None:
    """The U-Net halves the image `depth` times, so the size must divide by 2**depth."""
    step = 2**depth
    if image_size < step or image_size % step:
        nearby = sorted({max(step, image_size // step * step), (image_size // step + 1) * step})
        raise ModelConfigError(
            f"image size {image_size} does not work with a {depth}-level network: it must be a "
            f"multiple of 2**{depth} = {step} (e.g. {' or '.join(map(str, nearby))}), or use "
            "fewer levels."
        )


def unet_generator(
    config: str | GeneratorConfig = "compact",
    image_size: int = 128,
    channels: int = 1,
    name: str = "generator",
) -> keras.Model:
    """The U-Net generator: (size, size, channels) in [-1, 1] -> the same shape in [-1, 1]."""
    config = generator_config(config)
    check_image_size(image_size, config.depth)
    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = stem = inputs
    if config.full_resolution:  # the full-size stem, whose features skip to the last stage
        conv = keras.layers.Conv2D(
            config.full_resolution, 3, padding="same", kernel_initializer=initializer()
        )
        x = stem = keras.Sequential([conv, keras.layers.LeakyReLU(0.2)], name="stem")(inputs)
    skips = []
    for i, filters in enumerate(config.filters):  # down: half the size each time
        x = down_block(filters, normalize=i > 0, name=f"down{i + 1}")(x)
        skips.append(x)
    for i, (filters, skip) in enumerate(zip(config.filters[-2::-1], skips[-2::-1], strict=True)):
        dropout = config.dropout_rate if i < config.dropout_blocks else 0.0
        x = up_block(filters, dropout, name=f"up{i + 1}")(x)  # up: double the size
        x = keras.layers.Concatenate(name=f"skip{i + 1}")([x, skip])  # the skip connection
    if config.full_resolution:  # one more up-block, joined with the stem at full size
        x = up_block(config.full_resolution, name=f"up{config.depth}")(x)
        x = keras.layers.Concatenate(name="skip_full")([x, stem])
        x = keras.layers.Conv2D(
            channels, 3, padding="same", kernel_initializer=initializer(), name="to_image"
        )(x)
    else:
        x = keras.layers.Conv2DTranspose(
            channels, 4, 2, padding="same", kernel_initializer=initializer(), name="to_image"
        )(x)
    outputs = keras.layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return keras.Model(inputs, outputs, name=name)


# Defined in 03_model_building, 'The discriminator: a PatchGAN'.
@dataclass(frozen=True)
class DiscriminatorConfig:
    """PatchGAN widths: stride-2 blocks for all but the last entry, then a stride-1 block."""

    filters: tuple[int, ...]


DISCRIMINATORS = {
    "tiny": DiscriminatorConfig((16, 32, 64, 64)),
    "tutorial": DiscriminatorConfig((64, 128, 256, 512)),  # 70x70 patches, 2,763,521 params
    "compact": DiscriminatorConfig((16, 32, 64, 128, 128)),  # 142x142 patches
}


def discriminator_config(name_or_config: str | DiscriminatorConfig) -> DiscriminatorConfig:
    """A named discriminator configuration ("tutorial", "compact") or the config itself."""
    return named_config(name_or_config, DISCRIMINATORS, "discriminator")


def patchgan_discriminator(
    config: str | DiscriminatorConfig = "compact",
    image_size: int = 128,
    channels: int = 1,
    name: str = "discriminator",
) -> keras.Model:
    """PatchGAN: an image -> a grid of logits, one per overlapping patch (real > 0 > fake)."""
    config = discriminator_config(config)
    *strided, last = config.filters
    check_image_size(image_size, len(strided))
    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = inputs
    for i, filters in enumerate(strided):  # half the size each time
        x = down_block(filters, normalize=i > 0, name=f"down{i + 1}")(x)
    x = keras.layers.ZeroPadding2D(name="pad1")(x)  # then two 4x4 convolutions at stride 1
    x = keras.layers.Conv2D(
        last, 4, kernel_initializer=initializer(), use_bias=False, name="conv"
    )(x)
    x = instance_norm(name="norm")(x)
    x = keras.layers.LeakyReLU(0.2, name="leaky")(x)
    x = keras.layers.ZeroPadding2D(name="pad2")(x)
    x = keras.layers.Conv2D(1, 4, kernel_initializer=initializer(), name="patch_logits")(x)
    outputs = keras.layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def receptive_field(config: str | DiscriminatorConfig = "compact") -> int:
    """How many input pixels across one PatchGAN output sees: 70 for the tutorial's layout."""
    config = discriminator_config(config)
    strides = [2] * (len(config.filters) - 1) + [1, 1]  # the strided blocks, conv, patch_logits
    field, jump = 1, 1
    for stride in strides:  # each 4x4 kernel widens the field by 3 steps of the layer's input
        field += (4 - 1) * jump
        jump *= stride
    return field
