"""The CycleGAN's networks (explained in 03_model_building).

Generator: the modified U-Net of pix2pix and the TensorFlow CycleGAN tutorial. Stride-2 4x4
convolutions halve the image `depth` times (no normalisation on the first), transposed
convolutions double it back, and skip connections hand every scale's detail straight to the
decoder; tanh keeps the output in [-1, 1]. Optionally (`full_resolution`, used by `compact`)
a 3x3 convolution at full size before the first down-block, whose features join the decoder's
last, full-size stage: the pix2pix U-Net has no skip at full size, so pixel-scale detail must
squeeze through the half-size features, and small networks blur it.

Discriminator: a PatchGAN, whose every output pixel judges one patch of the input (its
receptive field) as real or generated.

Instance normalisation is `keras.layers.GroupNormalization(groups=-1)`: one group per channel
is exactly instance norm, and it is a core Keras layer, so saved `.keras` models reload in
safe mode without custom objects.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._tf import keras
from .errors import ModelConfigError

INIT_STDDEV = 0.02  # weights ~ N(0, 0.02), as in pix2pix and the CycleGAN paper


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


@dataclass(frozen=True)
class DiscriminatorConfig:
    """PatchGAN widths: stride-2 blocks for all but the last entry, then a stride-1 block."""

    filters: tuple[int, ...]


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
DISCRIMINATORS = {
    "tiny": DiscriminatorConfig((16, 32, 64, 64)),
    "tutorial": DiscriminatorConfig((64, 128, 256, 512)),  # 70x70 patches, 2,763,521 params
    "compact": DiscriminatorConfig((16, 32, 64, 128, 128)),  # 142x142 patches
}


def generator_config(name_or_config: str | GeneratorConfig) -> GeneratorConfig:
    """A named generator configuration ("tutorial", "compact") or the config itself."""
    return _named(name_or_config, GENERATORS, "generator")


def discriminator_config(name_or_config: str | DiscriminatorConfig) -> DiscriminatorConfig:
    """A named discriminator configuration ("tutorial", "compact") or the config itself."""
    return _named(name_or_config, DISCRIMINATORS, "discriminator")


def _named(value, table: dict, what: str):
    if not isinstance(value, str):
        return value
    if value not in table:
        raise ModelConfigError(f"unknown {what} configuration {value!r}; use one of {list(table)}")
    return table[value]


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


def _init() -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(0.0, INIT_STDDEV)


def instance_norm(name: str | None = None) -> keras.layers.Layer:
    """Instance normalisation: GroupNormalization with one group per channel."""
    return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)


def down_block(filters: int, normalize: bool = True, name: str = "down") -> keras.Sequential:
    """Conv 4x4 stride 2 -> instance norm -> LeakyReLU(0.2): half the size, more channels."""
    layers = [
        keras.layers.Conv2D(
            filters, 4, strides=2, padding="same", kernel_initializer=_init(), use_bias=False
        )
    ]
    if normalize:
        layers.append(instance_norm())
    layers.append(keras.layers.LeakyReLU(0.2))
    return keras.Sequential(layers, name=name)


def up_block(filters: int, dropout: float = 0.0, name: str = "up") -> keras.Sequential:
    """Transposed conv 4x4 stride 2 -> instance norm -> [dropout] -> ReLU: double the size."""
    layers = [
        keras.layers.Conv2DTranspose(
            filters, 4, strides=2, padding="same", kernel_initializer=_init(), use_bias=False
        ),
        instance_norm(),
    ]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.ReLU())
    return keras.Sequential(layers, name=name)


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
    if config.full_resolution:
        stem = keras.Sequential(
            [
                keras.layers.Conv2D(
                    config.full_resolution, 3, padding="same", kernel_initializer=_init()
                ),
                keras.layers.LeakyReLU(0.2),
            ],
            name="stem",
        )(inputs)
        x = stem
    skips = []
    for i, filters in enumerate(config.filters):
        x = down_block(filters, normalize=i > 0, name=f"down{i + 1}")(x)
        skips.append(x)
    for i, (filters, skip) in enumerate(zip(config.filters[-2::-1], skips[-2::-1], strict=True)):
        dropout = config.dropout_rate if i < config.dropout_blocks else 0.0
        x = up_block(filters, dropout, name=f"up{i + 1}")(x)
        x = keras.layers.Concatenate(name=f"skip{i + 1}")([x, skip])
    if config.full_resolution:
        x = up_block(config.full_resolution, name=f"up{config.depth}")(x)
        x = keras.layers.Concatenate(name="skip_full")([x, stem])
        x = keras.layers.Conv2D(
            channels, 3, padding="same", kernel_initializer=_init(), name="to_image"
        )(x)
    else:
        x = keras.layers.Conv2DTranspose(
            channels, 4, strides=2, padding="same", kernel_initializer=_init(), name="to_image"
        )(x)
    outputs = keras.layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return keras.Model(inputs, outputs, name=name)


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
    for i, filters in enumerate(strided):
        x = down_block(filters, normalize=i > 0, name=f"down{i + 1}")(x)
    x = keras.layers.ZeroPadding2D(name="pad1")(x)
    x = keras.layers.Conv2D(last, 4, kernel_initializer=_init(), use_bias=False, name="conv")(x)
    x = instance_norm(name="norm")(x)
    x = keras.layers.LeakyReLU(0.2, name="leaky")(x)
    x = keras.layers.ZeroPadding2D(name="pad2")(x)
    x = keras.layers.Conv2D(1, 4, kernel_initializer=_init(), name="patch_logits")(x)
    outputs = keras.layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def receptive_field(config: str | DiscriminatorConfig = "compact") -> int:
    """How many input pixels across one PatchGAN output sees: 70 for the tutorial's layout."""
    config = discriminator_config(config)
    strides = [2] * (len(config.filters) - 1) + [1, 1]  # the strided blocks, conv, patch_logits
    field, jump = 1, 1
    for stride in strides:
        field += (4 - 1) * jump
        jump *= stride
    return field


def wrapped_network(wrapper: keras.Model) -> keras.Model:
    """The network nested in a wrapper model (an export's averaging or calibration around a
    generator): its first layer that is itself a model."""
    return next(layer for layer in wrapper.layers if isinstance(layer, keras.Model))
