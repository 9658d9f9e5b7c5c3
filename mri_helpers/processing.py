"""Image processing: the slices as a tf.data.Dataset and the head mask (lesson 01);
cleaning, geometry, intensities, augmentation, the held-out split and the tf.data
pipeline (lesson 02).

Generated from the lessons' `# @save` cells by `mri-course export-lessons`: edit the
lesson, then run it (never this file).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu, threshold_otsu
from skimage.restoration import denoise_nl_means

from mri_helpers._tf import tf
from mri_helpers.data import MODALITIES, MRIDataset, Slice, natural_key
from mri_helpers.errors import DataError

# Defined in 01_data_understanding, 'Background and tissue'.
# A head's median grey level lies at least this many noise standard deviations above the
# darkest background: tissue in MRI has a signal-to-noise ratio of 10 and more, while the
# brighter half of pure Rayleigh noise (what a threshold finds in a slice of noise) lies
# about 1.6 of them above its darkest pixels.
HEAD_OVER_NOISE = 5.0


def head_mask(image: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """True inside the head: a low threshold, small gaps closed, specks dropped, holes filled.

    `floor`: a grey level the threshold never goes below (raised above the noise when what a
    quarter of Otsu's threshold finds is no brighter than noise).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.max() <= image.min():
        return np.zeros(image.shape, dtype=bool)
    threshold = max(0.25 * float(threshold_otsu(image)), floor)  # 1. a quarter of Otsu's
    foreground = ndimage.binary_closing(image > threshold, iterations=2)  # 2. gaps closed
    labels, count = ndimage.label(foreground)
    if count == 0:  # nothing above the threshold (a floor above every pixel)
        return np.zeros(image.shape, dtype=bool)
    sizes = ndimage.sum(foreground, labels, range(1, count + 1))
    keep = np.isin(labels, 1 + np.flatnonzero(sizes >= max(0.01 * image.size, sizes.max() / 4)))
    if keep.any():
        signal = np.median(image[keep]) - np.percentile(image, 1)
        if signal < HEAD_OVER_NOISE * noise_level(image):  # noise, or a head drowned in it
            noise_free = above_noise(image)
            if floor >= noise_free:
                return np.zeros(image.shape, dtype=bool)
            return head_mask(image, floor=noise_free)
    return ndimage.binary_fill_holes(keep)  # 3. holes filled


def above_noise(image: np.ndarray) -> float:
    """A grey level that an image's background noise stays under: HEAD_OVER_NOISE noise
    levels above its darkest pixels (for Rayleigh noise, 0.3 % of the air lies above it)."""
    return float(np.percentile(image, 1)) + HEAD_OVER_NOISE * noise_level(image)


def noise_level(image: np.ndarray) -> float:
    """The standard deviation of an image's noise, from the differences of neighbouring
    pixels (their median absolute value, which edges barely move); 0 for noise-free images."""
    differences = np.abs(np.diff(np.asarray(image, np.float32), axis=1))
    return float(np.median(differences) / (0.6745 * np.sqrt(2.0)))


# Defined in 01_data_understanding, 'Tissue contrast: T1 against T2'.
def tissue_classes(image: np.ndarray, mask: np.ndarray, classes: int = 3) -> np.ndarray:
    """Label pixels inside `mask` by intensity class 1..classes (multi-Otsu), 0 outside: in
    the brain, CSF, grey and white matter, in an order that the contrast decides."""
    values = np.asarray(image, dtype=np.float32)
    thresholds = threshold_multiotsu(values[mask], classes=classes)
    return np.where(mask, 1 + np.digitize(values, thresholds), 0).astype(np.uint8)


def brain_region(image: np.ndarray, shrink: float = 0.25) -> np.ndarray:
    """The central part of the head mask (eroded by `shrink` of its radius): brain, no scalp."""
    mask = head_mask(image)
    if not mask.any():
        return mask
    radius = np.sqrt(mask.sum() / np.pi)
    return ndimage.binary_erosion(mask, iterations=max(1, int(shrink * radius)))


# Defined in 01_data_understanding, 'The slices as a `tf.data.Dataset`'.
def slices_dataset(dataset: MRIDataset, modality: str) -> tf.data.Dataset:
    """One contrast's slices as a `tf.data.Dataset` of (id, image) elements, in id order;
    images keep their stored size and type (uint16 for all if any slice is 16-bit)."""
    slices = dataset[modality]
    dtype = np.uint16 if any(s.image.dtype == np.uint16 for s in slices) else np.uint8
    return tf.data.Dataset.from_generator(
        lambda: ((s.id, s.image.astype(dtype)) for s in slices),
        output_signature=(
            tf.TensorSpec((), tf.string),
            tf.TensorSpec((None, None), tf.as_dtype(dtype)),
        ),
    )


# Defined in 02_image_processing, 'Cleaning: background and noise'.
@dataclass(frozen=True)
class Cleaning:
    """Clean-up applied to every slice before the network sees it, and recorded with models.

    - denoise: non-local means with the noise level measured in the slice's own background;
    - mask_background: everything outside the head set to 0 (and generated images likewise).
    The network then learns contrast, not scanner noise: a generator trained against noisy
    targets is pushed by its discriminator to paint noise, which no truth contains.
    """

    denoise: bool = True
    mask_background: bool = True


def noise_sigma(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The noise level from the background, well away from the head.

    Magnitude MR images have Rician noise; where there is no signal it is Rayleigh
    distributed, whose mean is sigma * sqrt(pi / 2). Zero for noise-free images.
    """
    mask = head_mask(image) if mask is None else mask
    far = ~ndimage.binary_dilation(mask, iterations=5)
    if not far.any():
        return 0.0
    return float(np.asarray(image, np.float64)[far].mean() / np.sqrt(np.pi / 2))


NLM_REACH = 6 + 5 // 2  # clean_slice's non-local means: search distance + half a patch


def _box(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The bounding box of `mask`'s True pixels, `margin` pixels wider (inside the image)."""
    box = []
    for axis in (1, 0):
        found = np.flatnonzero(mask.any(axis=axis))
        box.append(slice(max(0, found[0] - margin), found[-1] + 1 + margin))
    return tuple(box)


def clean_slice(
    image: np.ndarray, cleaning: Cleaning = Cleaning(), mask: np.ndarray | None = None
) -> np.ndarray:
    """Denoise and/or zero the background of one stored slice; same shape and dtype.
    `mask`: the slice's `head_mask`, when the caller has it already."""
    if not (cleaning.denoise or cleaning.mask_background):
        return image
    mask = head_mask(image) if mask is None else mask
    result = np.array(image, np.float32)  # a copy: the box is denoised in place
    sigma = noise_sigma(image, mask) if cleaning.denoise else 0.0
    masked_away = cleaning.mask_background and not mask.any()  # all 0 whatever the noise
    if sigma > 0.5 and not masked_away:  # below half a grey level nothing is worth removing
        # skimage's non-local means: each pixel becomes a weighted mean of pixels whose 5x5
        # neighbourhoods look alike, within 13x13; h = 0.8 sigma is its documented default.
        # A pixel's result depends on pixels up to 6 + 2 away, so with the background masked
        # only the head's box and that margin need denoising (the same values up to rounding).
        box = _box(mask, NLM_REACH) if cleaning.mask_background else np.s_[:, :]
        result[box] = denoise_nl_means(
            result[box], h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6,
            fast_mode=True,
        )  # fmt: skip
    if cleaning.mask_background:
        result = np.where(mask, result, 0.0)
    top = np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else None
    result = np.clip(np.round(result), 0, top) if top else result
    return result.astype(image.dtype)


# Defined in 02_image_processing, 'Padding to a square'.
@dataclass(frozen=True)
class Geometry:
    """The size of a stored slice, and how it is padded to a square for the network."""

    height: int
    width: int

    @property
    def side(self) -> int:
        return max(self.height, self.width)

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) to the square of `side`."""
        return self.pads_to(self.side)

    def pads_to(self, side: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) to a `side` x `side` square: symmetric, the odd pixel
        at the bottom/right."""
        rows, cols = side - self.height, side - self.width
        return rows // 2, rows - rows // 2, cols // 2, cols - cols // 2


def background_value(image: np.ndarray) -> float:
    """The value of the background: the median of the slice's outermost rows and columns."""
    image = np.asarray(image)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return float(np.median(border))


def to_model_geometry(image: np.ndarray, size: int) -> np.ndarray:
    """Pad a (H, W) slice symmetrically to a square with its background value, then resize
    if the network is smaller than the square (never otherwise: nothing is resampled)."""
    image = np.asarray(image, dtype=np.float32)
    geometry = Geometry(*image.shape)
    side = max(geometry.side, size)
    top, bottom, left, right = geometry.pads_to(side)
    square = np.pad(image, ((top, bottom), (left, right)), constant_values=background_value(image))
    if side == size:
        return square
    return tf.image.resize(square[..., None], (size, size), antialias=True).numpy()[..., 0]


def to_original_geometry(image: np.ndarray | tf.Tensor, geometry: Geometry) -> np.ndarray:
    """The exact inverse of `to_model_geometry`: resize to the padded square (if it was
    resized), then crop."""
    image = np.asarray(image, dtype=np.float32)
    size = image.shape[0]
    side = max(geometry.side, size)
    if side != size:
        image = tf.image.resize(image[..., None], (side, side), antialias=True).numpy()[..., 0]
    top, _, left, _ = geometry.pads_to(side)
    return image[top : top + geometry.height, left : left + geometry.width]


# Defined in 02_image_processing, 'Scaling intensities'.
def to_unit_range(image: np.ndarray) -> np.ndarray:
    """Stored pixels to float32 in [-1, 1], the range of the generator's tanh output.

    8-bit: the fixed map 0..255 -> -1..1. 16-bit: scaled by the slice's own maximum (0 stays
    the background), since 16-bit files often hold 10- or 12-bit data; nothing is clipped.
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        top = 255.0
    elif image.dtype == np.uint16:
        top = float(max(int(image.max()), 1))
    else:
        raise TypeError(f"expected a uint8 or uint16 slice, got {image.dtype}")
    return (image.astype(np.float32) / top) * 2.0 - 1.0


def from_unit_range(image: np.ndarray | tf.Tensor) -> np.ndarray:
    """Network output in [-1, 1] back to 8-bit pixels (rounded, clipped to 0..255)."""
    image = np.asarray(image, dtype=np.float32)
    return np.clip(np.round((image + 1.0) * 127.5), 0, 255).astype(np.uint8)


def prepare(slices: Sequence[Slice], size: int, cleaning: Cleaning | None = None) -> np.ndarray:
    """Slices to a (n, size, size, 1) float32 array in [-1, 1]: cleaned, scaled and padded
    once, so training never repeats this work."""
    images = [s.image if cleaning is None else clean_slice(s.image, cleaning) for s in slices]
    return prepare_images(images, size)


def prepare_images(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Stored-type 2-D images to a (n, size, size, 1) float32 array in [-1, 1]."""
    return np.stack([to_model_geometry(to_unit_range(i), size) for i in images])[..., None]


# Defined in 02_image_processing, 'Augmentation'.
@dataclass(frozen=True)
class Augmentation:
    """Random changes of position only, never of tissue contrast.

    - jitter: enlarge by up to this factor, then crop a random window back to the size
      (the head's position and size in the frame vary from scan to scan);
    - mirror: left-right flips (the two hemispheres look alike; no anatomy is invented);
    - max_rotation: small in-plane rotations in degrees (heads are never perfectly straight).
    No brightness, contrast or gamma changes: intensities *are* the signal being translated.
    """

    jitter: float = 1.12
    mirror: bool = True
    max_rotation: float = 5.0


def augment(image: tf.Tensor, seed: tf.Tensor, config: Augmentation = Augmentation()) -> tf.Tensor:
    """Augment one (S, S, 1) image in [-1, 1]; the same `seed` (shape [2]) gives the same image."""
    size = image.shape[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
    if config.max_rotation > 0:
        angle = tf.random.stateless_uniform(
            [], seeds[0], -config.max_rotation, config.max_rotation
        ) * (np.pi / 180.0)
        image = _rotate(image, angle)
    if config.jitter > 1.0:
        bigger = int(round(size * config.jitter))
        image = tf.image.resize(image, (bigger, bigger))
        image = tf.image.stateless_random_crop(image, (size, size, 1), seeds[1])
    if config.mirror:
        image = tf.image.stateless_random_flip_left_right(image, seeds[2])
    return image


def _rotate(image: tf.Tensor, angle: tf.Tensor) -> tf.Tensor:
    """Rotate about the centre, filling with the background (-1); bilinear."""
    size = tf.cast(tf.shape(image)[0], tf.float32)
    cos, sin = tf.cos(angle), tf.sin(angle)
    centre = (size - 1.0) / 2.0
    # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2).
    transform = [
        cos, -sin, centre - cos * centre + sin * centre,
        sin, cos, centre - sin * centre - cos * centre,
        0.0, 0.0,
    ]  # fmt: skip
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=tf.reshape(tf.stack(transform), (1, 8)),
        output_shape=tf.shape(image)[:2],
        fill_value=-1.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]


# Defined in 02_image_processing, 'A held-out split'.
@dataclass(frozen=True)
class Split:
    """Slice ids for training and for held-out evaluation, per contrast."""

    train: dict[str, list[str]]
    test: dict[str, list[str]]


def holdout_split(dataset: MRIDataset, fraction: float = 0.1, seed: int = 0) -> Split:
    """Hold out `fraction` of each contrast's slices (at least one), chosen by `seed`.

    For the phantom the held-out ids are the same in both contrasts (so each has its truth),
    and the remaining slices are dealt alternately to T1 and T2 training: like the course
    data, no slice is seen in both contrasts during training.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction} must be between 0 and 1 (e.g. 0.1).")
    rng = np.random.default_rng(seed)

    def pick(ids: list[str]) -> list[str]:
        count = max(1, round(fraction * len(ids)))
        if count >= len(ids):
            raise DataError(
                f"{len(ids)} slices of one contrast are too few to hold {count} out and still "
                "train; a held-out split needs at least 2 slices per contrast (the course data "
                "has over 40)."
            )
        return sorted(rng.choice(ids, size=count, replace=False).tolist(), key=natural_key)

    if dataset.is_phantom:
        test_ids = pick(dataset.ids("t1"))
        rest = [i for i in dataset.ids("t1") if i not in test_ids]
        train = {"t1": rest[0::2], "t2": rest[1::2]}
        return Split(train=train, test={m: list(test_ids) for m in MODALITIES})
    test = {m: pick(dataset.ids(m)) for m in MODALITIES}
    train = {m: [i for i in dataset.ids(m) if i not in test[m]] for m in MODALITIES}
    return Split(train=train, test=test)


def select(dataset: MRIDataset, modality: str, ids: Sequence[str]) -> list[Slice]:
    """The slices of one contrast with the given ids, in that order."""
    by_id = {s.id: s for s in dataset[modality]}
    return [by_id[i] for i in ids]


# Defined in 02_image_processing, 'A fast input pipeline'.
def image_stream(
    images: np.ndarray,
    batch_size: int,
    seed: int,
    augmentation: Augmentation | None = Augmentation(),
) -> tf.data.Dataset:
    """An endless, shuffled, augmented, batched stream of one contrast's prepared images."""
    data = tf.data.Dataset.from_tensor_slices(images.astype(np.float32))  # 1. one per image
    data = data.cache()  # 2. kept in memory after the first pass
    data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)  # 3. new order
    data = data.repeat()  # 3. ... on every pass, endlessly
    if augmentation is not None:  # 4. each image moved by its own seed: (seed, counter)
        counter = tf.data.Dataset.counter()
        data = tf.data.Dataset.zip((data, counter)).map(
            lambda image, i: augment(image, tf.stack([tf.cast(seed, tf.int64), i]), augmentation),
            num_parallel_calls=tf.data.AUTOTUNE,  # on all cores ...
            deterministic=True,  # ... yet in order
        )
    return data.batch(batch_size, drop_remainder=True)  # 5. equal batches


def training_pipeline(
    t1_images: np.ndarray,
    t2_images: np.ndarray,
    batch_size: int = 1,
    seed: int = 0,
    augmentation: Augmentation | None = Augmentation(),
) -> tf.data.Dataset:
    """The two unpaired streams zipped: each element is (T1 batch, T2 batch), never a pair."""
    t1 = image_stream(t1_images, batch_size, seed, augmentation)
    t2 = image_stream(t2_images, batch_size, seed + 1, augmentation)
    return tf.data.Dataset.zip((t1, t2)).prefetch(tf.data.AUTOTUNE)  # 6. unpaired, ahead


def steps_per_epoch(t1_count: int, t2_count: int, batch_size: int) -> int:
    """One epoch shows every slice of the larger set once."""
    return max(1, max(t1_count, t2_count) // batch_size)
