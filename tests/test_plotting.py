"""The figures' helpers that hold logic: the interactive slice viewer."""

from __future__ import annotations

import numpy as np

import mri_helpers as mh


def test_the_slice_viewer_shows_the_slice_the_slider_picks() -> None:
    dark, bright = np.zeros((30, 20), np.uint8), np.full((30, 20), 200, np.uint8)
    viewer = mh.plotting.slice_viewer({"input": [dark, bright], "output": [bright, dark]}, "ab")
    slider, image = viewer.children
    assert (slider.min, slider.max) == (0, 1) and image.format == "png"
    first = bytes(image.value)
    assert first.startswith(b"\x89PNG")
    slider.value = 1
    second = bytes(image.value)
    assert second.startswith(b"\x89PNG") and second != first
    slider.value = 0
    assert bytes(image.value) == first  # the same slice draws the same picture


def test_volumes_are_shown_in_three_views_each_uncertainty_as_a_heat_map(tmp_path) -> None:
    import matplotlib.pyplot as plt
    import nibabel as nib

    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in (20, 24, 16)), indexing="ij")
    head = np.where(x**2 + y**2 + z**2 < 0.8, 200.0, 0.0).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-20.0, -24.0, -16.0]
    nib.save(nib.Nifti1Image(head, affine), tmp_path / "head.nii.gz")
    spread = nib.Nifti1Image(head / 20.0, affine)
    figure = mh.plotting.show_volumes(
        {"input": tmp_path / "head.nii.gz", "uncertainty": spread}, cut_coords=(0, 0, 0)
    )
    images = [a for a in figure.axes if a.get_images()]
    maps = {image.get_cmap().name for a in images for image in a.get_images()}
    assert len(images) >= 6 and {"gray", "inferno"} <= maps  # 3 views per row
    texts = {t.get_text() for a in figure.axes for t in a.texts}
    assert {"input", "uncertainty"} <= texts
    plt.close(figure)


def test_the_interactive_volume_viewer_embeds_a_coarser_copy() -> None:
    import nibabel as nib

    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in (120, 144, 96)), indexing="ij")
    head = np.where(
        x**2 + y**2 + z**2 < 0.8, 100.0 + 100.0 * np.sin(9 * x) * np.cos(7 * y), 0.0
    ).astype(np.float32)
    image = nib.Nifti1Image(head, np.diag([1.0, 1.0, 1.0, 1.0]))
    fine = mh.plotting.view_volume(image, "fine", voxel_mm=1.0, cut_coords=(60, 72, 48))
    coarse = mh.plotting.view_volume(image, "coarse", voxel_mm=4.0, cut_coords=(60, 72, 48))
    assert "coarse" in str(coarse.html)
    assert len(str(coarse.html)) < 0.6 * len(str(fine.html))  # 1 mm embeds 64x the voxels


def test_the_unet_is_drawn_from_its_layers_with_every_skip() -> None:
    """`draw_unet` reads the stages and skips from a built generator: the compact U-Net's five
    down-blocks under its full-size stem, each joined back at its own size."""
    from mri_helpers import models, plotting

    compact = plotting._unet_stages(models.unet_generator("compact", 64))
    assert [side for _, side, _ in compact["down"]] == [64, 32, 16, 8, 4, 2]
    assert compact["skips"] == [(4, 0), (3, 1), (2, 2), (1, 3), (0, 4)]  # stem -> full size
    for down, up in compact["skips"]:
        assert compact["down"][down][1] == compact["up"][up][1]
    plain = plotting._unet_stages(models.unet_generator("tiny", 64))
    assert len(plain["skips"]) == len(plain["down"]) - 1  # no skip from the bottleneck
    assert plotting.draw_unet(models.unet_generator("tiny", 64)).axes
    assert plotting.draw_cyclegan().axes
