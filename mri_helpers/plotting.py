"""The figures the notebooks show; plotting code lives here so lesson cells stay short."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from ._tf import tf
from .data import MODALITIES, MRIDataset, Slice, natural_key
from .processing import (
    Geometry,
    brain_region,
    head_mask,
    tissue_classes,
    to_model_geometry,
    to_unit_range,
)

CONTRAST_NAMES = {"t1": "T1-weighted", "t2": "T2-weighted"}
TISSUES = ("CSF", "grey matter", "white matter")


def show_slices(
    slices: Sequence[Slice], ncols: int = 6, title: str | None = None, size: float = 1.6
) -> plt.Figure:
    """A grid of slices with their ids, gray scale fixed to the stored range."""
    nrows = max(1, -(-len(slices) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.2))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, s in zip(np.atleast_1d(axes).ravel(), slices, strict=False):
        vmax = 255 if s.image.dtype == np.uint8 else int(s.image.max()) or 1
        ax.imshow(s.image, cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(s.id.removesuffix(".png"), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_dataset(dataset: MRIDataset, per_modality: int = 6) -> plt.Figure:
    """Evenly spaced slices of each contrast, one row each."""
    picks = []
    for modality in MODALITIES:
        slices = dataset[modality]
        index = np.linspace(0, len(slices) - 1, per_modality).round().astype(int)
        picks += [slices[i] for i in index]
    return show_slices(picks, ncols=per_modality, title="Top: T1-weighted   Bottom: T2-weighted")


def plot_slice_numbers(dataset: MRIDataset) -> plt.Figure:
    """Which slice numbers each contrast holds: two sets that never meet (unpaired data)."""
    fig, ax = plt.subplots(figsize=(9, 1.8))
    for row, modality in enumerate(MODALITIES):
        numbers = [_number(s.id) for s in dataset[modality]]
        ax.scatter(numbers, [row] * len(numbers), marker="|", s=200, label=modality.upper())
    ax.set_yticks([0, 1], [CONTRAST_NAMES[m] for m in MODALITIES])
    ax.set_ylim(-0.7, 1.7)
    ax.set_xlabel("slice number in the file name")
    ax.set_title("Which slices are present")
    fig.tight_layout()
    return fig


def _number(slice_id: str) -> int:
    digits = [part for part in natural_key(slice_id) if isinstance(part, int)]
    return digits[-1] if digits else -1


def plot_histograms(dataset: MRIDataset) -> plt.Figure:
    """Intensity histograms per contrast, split into background and head (log counts)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
    for ax, modality in zip(axes, MODALITIES, strict=True):
        inside, outside = [], []
        for s in dataset[modality]:
            mask = head_mask(s.image)
            inside.append(s.image[mask].ravel())
            outside.append(s.image[~mask].ravel())
        bins = np.arange(0, 257, 4)
        ax.hist(np.concatenate(outside), bins=bins, alpha=0.6, label="background")
        ax.hist(np.concatenate(inside), bins=bins, alpha=0.6, label="head")
        ax.set_yscale("log")
        ax.set_title(CONTRAST_NAMES[modality])
        ax.set_xlabel("pixel value")
    axes[0].set_ylabel("pixels (log scale)")
    axes[0].legend()
    fig.tight_layout()
    return fig


def tissue_means(slices: Sequence[Slice]) -> np.ndarray:
    """Mean intensity of the three multi-Otsu classes inside the brain region, per slice."""
    means = []
    for s in slices:
        region = brain_region(s.image)
        classes = tissue_classes(s.image, region)
        means.append([s.image[classes == k].mean() for k in (1, 2, 3)])
    return np.array(means)


def plot_tissue_contrast(dataset: MRIDataset, index: int | None = None) -> plt.Figure:
    """One slice per contrast with its three intensity classes, and each class's mean value.

    In T1 the order from dark to bright is CSF, grey, white matter; in T2 it is reversed.
    """
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.4))
    for row, modality in enumerate(MODALITIES):
        slices = dataset[modality]
        s = slices[len(slices) // 2 if index is None else index]
        region = brain_region(s.image)
        classes = tissue_classes(s.image, region)
        means = [s.image[classes == k].mean() for k in (1, 2, 3)]
        names = TISSUES if modality == "t1" else TISSUES[::-1]  # dark -> bright
        axes[row, 0].imshow(s.image, cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_title(f"{modality.upper()} {s.id.removesuffix('.png')}")
        axes[row, 1].imshow(np.ma.masked_equal(classes, 0), cmap="viridis", vmin=1, vmax=3)
        axes[row, 1].set_title("3 intensity classes (brain)")
        axes[row, 2].bar(names, means, color=plt.cm.viridis([0.0, 0.5, 1.0]))
        axes[row, 2].set_ylim(0, 255)
        axes[row, 2].set_title("mean value, dark to bright")
        for ax in axes[row, :2]:
            ax.axis("off")
    fig.tight_layout()
    return fig


def show_phantom(dataset: MRIDataset, index: int | None = None) -> plt.Figure:
    """A phantom slice in both contrasts: clean truth, observed (bias + noise), and the ratio."""
    if not dataset.is_phantom:
        raise ValueError("show_phantom needs the phantom dataset: mh.load_dataset('phantom')")
    i = len(dataset.t1) // 2 if index is None else index
    fig, axes = plt.subplots(2, 3, figsize=(9, 7))
    for row, modality in enumerate(MODALITIES):
        s = dataset[modality][i]
        bright_enough = s.head_mask & (s.clean > 0.1 * s.clean.max())  # ratio of ~0 is noise
        ratio = np.where(bright_enough, s.image / np.maximum(s.clean, 1.0), np.nan)
        panels = [
            (s.clean, f"{modality.upper()} truth (clean)", "gray", (0, 255)),
            (s.image, f"{modality.upper()} observed", "gray", (0, 255)),
            (ratio, "observed / truth (bias and noise)", "coolwarm", (0.7, 1.3)),
        ]
        for ax, (image, title, cmap, (low, high)) in zip(axes[row], panels, strict=True):
            shown = ax.imshow(image, cmap=cmap, vmin=low, vmax=high)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.colorbar(shown, ax=axes[row, 2], fraction=0.046)
    fig.suptitle(f"Phantom slice {dataset.t1[i].id}: the same anatomy in both contrasts")
    fig.tight_layout()
    return fig


# --- 02_image_processing -------------------------------------------------------------------
def show_processing_steps(s: Slice, size: int) -> plt.Figure:
    """One slice through the steps: stored, stretched (what not to do), padded, resized, scaled."""
    image = s.image.astype(np.float32)
    geometry = Geometry(*image.shape)
    top, bottom, left, right = geometry.pads
    stretched = tf.image.resize(image[..., None], (size, size)).numpy()[..., 0]
    padded = np.pad(image, ((top, bottom), (left, right)))
    scaled = to_model_geometry(to_unit_range(s.image), size)
    panels = [
        (image, f"stored {image.shape[1]}x{image.shape[0]}", (0, 255)),
        (stretched, f"stretched to {size}x{size} (distorted)", (0, 255)),
        (padded, f"padded to {geometry.side}x{geometry.side}", (0, 255)),
        (scaled, _network_input_title(geometry.side, size), (-1, 1)),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.8))
    for ax, (panel, title, (low, high)) in zip(axes, panels, strict=True):
        shown = ax.imshow(panel, cmap="gray", vmin=low, vmax=high)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=axes[-1], fraction=0.046)
    fig.tight_layout()
    return fig


def _network_input_title(side: int, size: int) -> str:
    """What `to_model_geometry` did to reach the network's size: padded on, or resized."""
    how = "padded on" if size >= side else "resized"
    return f"{how} to {size}x{size}, scaled to [-1, 1]"


def plot_intensity_scaling(dataset: MRIDataset, size: int) -> plt.Figure:
    """Histograms of all head pixels before (0..255) and after scaling ([-1, 1]), per contrast."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    for modality in MODALITIES:
        stored = np.concatenate([s.image[head_mask(s.image)] for s in dataset[modality]])
        axes[0].hist(stored, bins=64, range=(0, 255), alpha=0.6, label=modality.upper())
        axes[1].hist(to_unit_range(stored), bins=64, range=(-1, 1), alpha=0.6)
    axes[0].set_title("head pixels as stored (uint8)")
    axes[1].set_title("the same pixels as the network sees them (float32)")
    axes[0].legend()
    for ax in axes:
        ax.set_yscale("log")
    fig.tight_layout()
    return fig


def show_images(images: np.ndarray, titles: Sequence[str] | None = None, ncols: int = 8):
    """A row-wise grid of (n, H, W[, 1]) images in [-1, 1]."""
    images = np.asarray(images)
    nrows = max(1, -(-len(images) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 1.6, nrows * 1.75))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for i, (ax, image) in enumerate(zip(np.atleast_1d(axes).ravel(), images, strict=False)):
        ax.imshow(np.squeeze(image), cmap="gray", vmin=-1, vmax=1)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


# --- 03_model_building ---------------------------------------------------------------------
def show_receptive_field(image: np.ndarray, field: int, logits: np.ndarray) -> plt.Figure:
    """A model-size input with one PatchGAN patch outlined, and the discriminator's output grid."""
    image = np.squeeze(image)
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 4))
    axes[0].imshow(image, cmap="gray", vmin=-1, vmax=1)
    corner = (image.shape[0] - field) / 2
    axes[0].add_patch(
        plt.Rectangle((corner, corner), field, field, fill=False, edgecolor="tab:red", lw=2)
    )
    axes[0].set_title(f"input {image.shape[0]}x{image.shape[1]}; one patch: {field}x{field}")
    grid = np.squeeze(logits)
    shown = axes[1].imshow(grid, cmap="coolwarm")
    axes[1].set_title(f"discriminator output: {grid.shape[0]}x{grid.shape[1]} logits")
    fig.colorbar(shown, ax=axes[1], fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


# --- 04_training -----------------------------------------------------------------------------
def plot_schedule(schedule, total_steps: int) -> plt.Figure:
    """The learning rate over the run's steps."""
    steps = np.arange(total_steps + 1)
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.plot(steps, [float(schedule(s)) for s in steps])
    ax.set_xlabel("training step")
    ax.set_ylabel("learning rate")
    ax.set_title("constant, then linear decay to 0")
    fig.tight_layout()
    return fig


def plot_losses(history_csv) -> plt.Figure:
    """The six losses per epoch, from the run's history.csv (resumed runs included)."""
    import csv

    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    groups = [
        (("g_t1_to_t2", "f_t2_to_t1"), "generators (total)"),
        (("d_t2", "d_t1"), "discriminators"),
        (("cycle", "identity"), "cycle and identity"),
    ]
    for ax, (names, title) in zip(axes, groups, strict=True):
        for name in names:
            ax.plot(epochs, [float(r[name]) for r in rows], marker=".", label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def show_sample_epochs(samples_dir, epochs: Sequence[int]) -> plt.Figure:
    """Saved sample grids (rows: T1, G(T1), T2, F(T2)) at chosen epochs, side by side."""
    from pathlib import Path

    from PIL import Image

    paths = [Path(samples_dir) / f"epoch_{e:03d}.png" for e in epochs]
    fig, axes = plt.subplots(1, len(paths), figsize=(4.2 * len(paths), 4.6))
    for ax, path, epoch in zip(np.atleast_1d(axes), paths, epochs, strict=True):
        ax.imshow(np.asarray(Image.open(path)), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"after epoch {epoch}")
        ax.axis("off")
    fig.suptitle("rows: held-out T1, G(T1) = T2 from T1, held-out T2, F(T2) = T1 from T2")
    fig.tight_layout()
    return fig


def show_comparison(images: Sequence[np.ndarray], titles: Sequence[str]) -> plt.Figure:
    """Slices at their own geometry (0..255) side by side."""
    fig, axes = plt.subplots(1, len(images), figsize=(2.6 * len(images), 3.4))
    for ax, image, title in zip(np.atleast_1d(axes), images, titles, strict=True):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def show_cleaning(s: Slice, cleaning) -> plt.Figure:
    """A slice before and after cleaning, and what was removed."""
    from .processing import clean_slice, noise_sigma

    cleaned = clean_slice(s.image, cleaning)
    removed = s.image.astype(np.float32) - cleaned
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.9))
    panels = [
        (s.image, f"stored (noise sigma ~ {noise_sigma(s.image):.1f})", "gray", (0, 255)),
        (cleaned, "cleaned", "gray", (0, 255)),
        (removed, "removed (stored - cleaned)", "coolwarm", (-20, 20)),
    ]
    for ax, (image, title, cmap, (low, high)) in zip(axes, panels, strict=True):
        shown = ax.imshow(image, cmap=cmap, vmin=low, vmax=high)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.colorbar(shown, ax=axes[-1], fraction=0.046)
    fig.tight_layout()
    return fig


def plot_quality_over_time(quality_csv, target: float | None = None) -> plt.Figure:
    """Held-out phantom SSIM against training minutes (time to quality)."""
    import csv

    with open(quality_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    minutes = [float(r["training_minutes"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for key, label in (("ssim_t1_to_t2", "T1 -> T2"), ("ssim_t2_to_t1", "T2 -> T1")):
        ax.plot(minutes, [float(r[key]) for r in rows], marker="o", label=label)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", label=f"target {target}")
    ax.set_xlabel("training minutes (wall clock)")
    ax.set_ylabel("held-out SSIM vs truth")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_calibration(
    tables: dict[str, Sequence[float]], intensities: dict[str, np.ndarray]
) -> plt.Figure:
    """Left: each generator's grey-level calibration (network output -> exported output).
    Right: grey-level histograms inside the head, e.g. real T2 against generated T2 before
    and after calibration."""
    fig, (curves, histograms) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, table in tables.items():
        levels = np.linspace(0, 255, len(table))
        curves.plot(levels, (np.asarray(table) + 1) * 127.5, label=name)
    curves.plot([0, 255], [0, 255], color="grey", linestyle=":", label="unchanged")
    curves.set(xlabel="network output grey level", ylabel="exported grey level")
    curves.set_title("calibration")
    curves.legend()
    bins = np.arange(0, 257, 4)
    for name, values in intensities.items():
        histograms.hist(values, bins=bins, density=True, histtype="step", label=name)
    histograms.set(xlabel="grey level inside the head", ylabel="density")
    histograms.set_title("held-out slices")
    histograms.legend()
    fig.tight_layout()
    return fig


def show_translations(columns: dict[str, Sequence[np.ndarray]], size: float = 2.2) -> plt.Figure:
    """Rows of slices, one row per held-out slice, one column per title (0..255)."""
    titles = list(columns)
    rows = len(next(iter(columns.values())))
    fig, axes = plt.subplots(
        rows, len(titles), figsize=(size * len(titles), size * 1.2 * rows), squeeze=False
    )
    for column, title in enumerate(titles):
        for row, image in enumerate(columns[title]):
            axes[row, column].imshow(image, cmap="gray", vmin=0, vmax=255)
            axes[row, column].axis("off")
        axes[0, column].set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def slice_viewer(columns: dict[str, Sequence[np.ndarray]], labels: Sequence[str] | None = None):
    """An interactive viewer (ipywidgets): a slider through the slices, each shown in every
    column side by side. For JupyterLab; on a repository page use `show_translations`.

    Each view is drawn to a PNG and shown in an `Image` widget: no `Output` widget captures
    cell output, which batch runs of the notebook (papermill, nbval) handle best.
    """
    import io

    import ipywidgets as widgets

    count = len(next(iter(columns.values())))
    labels = list(labels) if labels is not None else [str(i) for i in range(count)]

    def picture(index: int) -> bytes:
        figure = show_comparison([images[index] for images in columns.values()], list(columns))
        figure.suptitle(labels[index], fontsize=10)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        plt.close(figure)
        return buffer.getvalue()

    slider = widgets.IntSlider(0, 0, count - 1, description="slice", continuous_update=False)
    image = widgets.Image(value=picture(0), format="png")
    slider.observe(lambda change: setattr(image, "value", picture(change["new"])), names="value")
    return widgets.VBox([slider, image])


def show_volumes(
    images: dict[str, object], cut_coords: Sequence[float] = (0.0, -18.0, 20.0)
) -> plt.Figure:
    """NIfTI images (or their paths), one row each, in three orthogonal views through the
    scanner point `cut_coords` (x, y, z mm), drawn by nilearn on the course's 0..255 grey
    scale; a title with "uncertainty" gets a heat map and a colour bar instead."""
    from nilearn import plotting as brain_plots  # lazy: slow to import

    fig, axes = plt.subplots(len(images), 1, figsize=(9.0, 2.9 * len(images)), squeeze=False)
    for ax, (title, image) in zip(axes[:, 0], images.items(), strict=True):
        if "uncertainty" in title.lower():
            data = np.asarray(_nifti(image).dataobj, dtype=np.float32)
            top = float(np.percentile(data[data > 0], 99.5)) if (data > 0).any() else 1.0
            brain_plots.plot_img(
                image, cut_coords=cut_coords, axes=ax, title=title, cmap="inferno",
                colorbar=True, vmin=0.0, vmax=top, black_bg=True, draw_cross=False,
            )  # fmt: skip
        else:
            brain_plots.plot_anat(
                image, cut_coords=cut_coords, axes=ax, title=title, dim=0, vmin=0, vmax=255,
                draw_cross=False,
            )  # fmt: skip
    return fig


def _nifti(image):
    """A nibabel image from an image or a path."""
    import nibabel as nib

    return image if hasattr(image, "dataobj") else nib.load(image)


def view_volume(image, title: str = "", voxel_mm: float = 2.0, cut_coords=(0, -18, 20)):
    """nilearn's interactive three-view viewer (`view_img`) of a 0..255 image, resampled to
    `voxel_mm` first: the viewer embeds every voxel in the notebook, 8 MB at 1 mm."""
    from nilearn import image as brain_images
    from nilearn import plotting as brain_plots

    coarse = brain_images.resample_img(
        _nifti(image), target_affine=np.diag([voxel_mm] * 3), interpolation="linear",
        force_resample=True, copy_header=True,
    )  # fmt: skip
    return brain_plots.view_img(
        coarse, bg_img=False, cmap="gray", symmetric_cmap=False, vmin=0, vmax=255,
        cut_coords=cut_coords, title=title, colorbar=False,
    )  # fmt: skip


# --- diagrams of the networks (03_model_building) ------------------------------------------
def draw_unet(model) -> plt.Figure:
    """The U-Net drawn from a built generator: a box per stage (height: image side, label:
    side and channels), the encoder down the left, the decoder up the right, an arrow per
    skip connection (the full-size skip, where there is one, at the top)."""
    stages = _unet_stages(model)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    top = max(side for _, side, _ in stages["down"])
    for column, (_, side, channels) in enumerate(stages["down"]):
        _stage_box(ax, column, side / top, f"{side}²×{channels}", "tab:blue")
    depth = len(stages["down"])
    for i, (_, side, channels) in enumerate(stages["up"]):
        _stage_box(ax, depth + i, side / top, f"{side}²×{channels}", "tab:orange")
    for down_index, up_index in stages["skips"]:
        x0, x1 = down_index + 0.4, depth + up_index - 0.4
        height = stages["down"][down_index][1] / top
        ax.annotate(
            "", (x1, height / 2 + 0.02), (x0, height / 2 + 0.02),
            arrowprops={"arrowstyle": "->", "color": "tab:green", "lw": 1.2},
        )  # fmt: skip
    ax.set_xlim(-0.8, depth + len(stages["up"]) - 0.2)
    ax.set_ylim(-0.1, 1.15)
    ax.axis("off")
    ax.set_title(
        f"{model.name}: {model.count_params():,} parameters; blue: down-blocks, orange: "
        "up-blocks, green: skip connections",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def _unet_stages(model) -> dict[str, list]:
    """The generator's stages, read from its layers: (name, side, channels) going down and
    up, and the skips as (down stage, up stage) indexes."""
    down, up, skips = [], [], []
    by_tensor = {}
    for layer in model.layers[1:]:
        side, channels = layer.output.shape[1], layer.output.shape[-1]
        if layer.name == "stem" or layer.name.startswith("down"):
            by_tensor[id(layer.output)] = len(down)
            down.append((layer.name, side, channels))
        elif layer.name.startswith("skip"):
            source = by_tensor.get(id(layer.input[1]))
            up[-1] = (up[-1][0], side, channels)
            if source is not None:
                skips.append((source, len(up) - 1))
        elif layer.name.startswith("up") or layer.name == "to_image":
            up.append((layer.name, side, channels))
    return {"down": down, "up": up, "skips": skips}


def _stage_box(ax, x: float, height: float, label: str, color: str) -> None:
    ax.add_patch(plt.Rectangle((x - 0.35, 0.0), 0.7, max(height, 0.02), color=color, alpha=0.6))
    ax.text(x, max(height, 0.02) + 0.03, label, ha="center", fontsize=7, rotation=90)


def draw_cyclegan() -> plt.Figure:
    """The CycleGAN's two cycles: T1 -> G -> fake T2 -> F -> back to T1 (and the same from T2),
    each discriminator judging its contrast, with the losses on the arrows."""
    fig, ax = plt.subplots(figsize=(9, 3.8))
    boxes = {
        "real T1  x": (0.0, 1.0), "fake T2  G(x)": (3.0, 1.0), "cycled T1  F(G(x))": (6.0, 1.0),
        "real T2  y": (0.0, 0.0), "fake T1  F(y)": (3.0, 0.0), "cycled T2  G(F(y))": (6.0, 0.0),
        "D_T2: real T2?": (3.0, 1.8), "D_T1: real T1?": (3.0, -0.8),
    }  # fmt: skip
    for name, (x, y) in boxes.items():
        color = "tab:red" if name.startswith("D_") else "tab:blue"
        frame = {"boxstyle": "round", "fc": "white", "ec": color}
        ax.text(x, y, name, ha="center", va="center", fontsize=9, bbox=frame)
    arrows = [
        ("real T1  x", "fake T2  G(x)", "G"), ("fake T2  G(x)", "cycled T1  F(G(x))", "F"),
        ("real T2  y", "fake T1  F(y)", "F"), ("fake T1  F(y)", "cycled T2  G(F(y))", "G"),
        ("fake T2  G(x)", "D_T2: real T2?", "adversarial"),
        ("fake T1  F(y)", "D_T1: real T1?", "adversarial"),
    ]  # fmt: skip
    for start, end, label in arrows:
        (x0, y0), (x1, y1) = boxes[start], boxes[end]
        shrink = 15 if x0 == x1 else 48  # points: clear of the boxes' text
        style = {"arrowstyle": "->", "shrinkA": shrink, "shrinkB": shrink}
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=style)
        if x0 == x1:
            ax.text(x0 + 0.1, (y0 + y1) / 2, label, ha="left", va="center", fontsize=8)
        else:
            ax.text((x0 + x1) / 2, y0 + 0.1, label, ha="center", fontsize=9)
    for y, text in ((1.0, "cycle loss |F(G(x)) − x|"), (0.0, "cycle loss |G(F(y)) − y|")):
        style = {"arrowstyle": "<->", "color": "tab:green", "ls": "--"}
        ax.annotate("", (0.0, y - 0.2), (6.0, y - 0.2), arrowprops=style)
        ax.text(1.5, y - 0.33, text, ha="center", fontsize=8, color="tab:green")
    ax.set_xlim(-1.0, 7.0)
    ax.set_ylim(-1.1, 2.1)
    ax.axis("off")
    ax.set_title("Two generators, two cycles, two discriminators", fontsize=10)
    fig.tight_layout()
    return fig
