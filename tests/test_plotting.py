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
