"""Test-time augmentation (explained in 04_training, "Averaging over copies").

A U-Net's stride-2 downsampling makes its output depend on where the pixel grid falls: the
same head moved by one pixel is translated slightly differently, and so is its mirror image
(training mirrors slices, so both are equally valid inputs). The exported generator therefore
translates four copies of each slice (as it is and moved one pixel down and right, each also
mirrored left-right), undoes each copy's move and mirror, and averages: the grid's
leftovers, which differ from copy to copy, average out; the anatomy, which does not, stays.
(nnU-Net, a strong baseline of medical image segmentation, mirrors at test time by default.)

Both steps are weightless layers around the network, so the `.keras` file (loaded in safe
mode) and the SavedModel carry them, and `mri-course translate` applies them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._tf import keras, tf

# (rows down, columns right, mirrored). One diagonal pixel puts the first stride-2
# downsampling at its other phase; all four of its phases with both mirrorings (eight copies)
# scored within 0.001 SSIM of these four on held-out slices, at twice the cost. Shifts use
# tf.roll: the row and column rolled round are background.
COPIES = ((0, 0, False), (1, 1, False), (0, 0, True), (1, 1, True))


def _transform(images: tf.Tensor, dy: int, dx: int, mirrored: bool) -> tf.Tensor:
    images = tf.roll(images, shift=[dy, dx], axis=[1, 2])
    return tf.reverse(images, axis=[2]) if mirrored else images


def _untransform(images: tf.Tensor, dy: int, dx: int, mirrored: bool) -> tf.Tensor:
    images = tf.reverse(images, axis=[2]) if mirrored else images
    return tf.roll(images, shift=[-dy, -dx], axis=[1, 2])


class _CopyLayer(keras.layers.Layer):
    """Holds its `copies` (in its config, so an export keeps the copies it was made with).
    Always float32 (any `dtype` given is ignored): it only moves and averages pixels."""

    def __init__(self, copies: Sequence[Sequence] = COPIES, **kwargs):
        super().__init__(**{**kwargs, "dtype": "float32"})
        self.copies = tuple((int(dy), int(dx), bool(mirrored)) for dy, dx, mirrored in copies)
        if not self.copies:
            raise ValueError("test-time augmentation needs at least one copy")

    def get_config(self) -> dict:
        return {**super().get_config(), "copies": [list(copy) for copy in self.copies]}


# Keras's augmentation layers (RandomFlip, RandomTranslation) draw one random transform and
# are off at inference; here every copy is wanted, deterministically, and undone afterwards.
@keras.saving.register_keras_serializable(package="mri_helpers")
class ShiftedMirroredCopies(_CopyLayer):
    """(B, H, W, C) -> (len(copies) * B, H, W, C): the copies of every image, copy-major."""

    def call(self, images: tf.Tensor) -> tf.Tensor:
        return tf.concat([_transform(images, *copy) for copy in self.copies], axis=0)


@keras.saving.register_keras_serializable(package="mri_helpers")
class AverageOfCopies(_CopyLayer):
    """The inverse of ShiftedMirroredCopies, averaged: (len(copies) * B, ...) -> (B, ...)."""

    def call(self, outputs: tf.Tensor) -> tf.Tensor:
        parts = tf.split(outputs, len(self.copies), axis=0)
        restored = [_untransform(p, *copy) for p, copy in zip(parts, self.copies, strict=True)]
        return tf.add_n(restored) / float(len(self.copies))


def averaged_over_copies(network: keras.Model, copies: Sequence[Sequence] = COPIES) -> keras.Model:
    """`network` applied to the `copies` of its input and averaged, as one model to export;
    a copy is (rows down, columns right, mirrored)."""
    inputs = keras.Input(network.input_shape[1:], name="image")
    outputs = AverageOfCopies(copies)(network(ShiftedMirroredCopies(copies)(inputs)))
    return keras.Model(inputs, outputs, name=f"{network.name}_averaged")


def is_averaged(model: keras.Model) -> bool:
    """Whether `model` was built by `averaged_over_copies`."""
    return any(isinstance(layer, AverageOfCopies) for layer in model.layers)


def without_copies(model: keras.Model) -> keras.Model:
    """The network inside an `averaged_over_copies` model (any other model: unchanged)."""
    return wrapped_network(model) if is_averaged(model) else model


def wrapped_network(wrapper: keras.Model) -> keras.Model:
    """The network nested in a wrapper model (an export's averaging or calibration around a
    generator): its first layer that is itself a model."""
    return next(layer for layer in wrapper.layers if isinstance(layer, keras.Model))
