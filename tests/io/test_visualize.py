"""Colormaps, normalisation and layout of depth pictures."""

import cv2
import matplotlib
import numpy as np
import pytest

from dajax.visualize import DepthRange, colorize, depth_picture, normalize_depth, side_by_side


def test_inferno_matches_opencv_and_spectral_matches_matplotlib():
    ramp = np.linspace(0, 1, 256, dtype=np.float32)[None]
    levels = (ramp * 255).astype(np.uint8)
    np.testing.assert_array_equal(
        colorize(ramp, "inferno"), cv2.applyColorMap(levels, cv2.COLORMAP_INFERNO)[:, :, ::-1]
    )
    expect = (matplotlib.colormaps["Spectral_r"](levels)[..., :3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(colorize(ramp, "spectral_r"), expect)
    with pytest.raises(ValueError, match="unknown colormap"):
        colorize(ramp, "jet")


def test_normalisation_is_min_max_and_safe():
    d = np.array([[1.0, 3.0], [np.nan, np.inf]])
    np.testing.assert_array_equal(normalize_depth(d), [[0.0, 1.0], [0.0, 0.0]])
    assert not normalize_depth(np.full((3, 3), 7.0)).any()
    assert not normalize_depth(np.full((2, 2), np.nan)).any()


def test_side_by_side_has_a_white_gap():
    image = np.zeros((4, 5, 3), np.uint8)
    depth = np.full((4, 5, 3), 9, np.uint8)
    out = side_by_side(image, depth, gap=3)
    assert out.shape == (4, 13, 3)
    assert (out[:, 5:8] == 255).all() and (out[:, :5] == 0).all() and (out[:, 8:] == 9).all()


def test_a_clip_has_one_colour_scale_through_a_cut():
    """A value keeps exactly one colour in every frame, before and after a cut to a scene ten
    times farther; per-frame min-max would re-stretch each frame."""
    rng = np.random.RandomState(0)
    frames = [rng.uniform(0, 10, (16, 16)) for _ in range(5)]
    frames += [rng.uniform(0, 100, (16, 16)) for _ in range(5)]  # the cut
    for frame in frames:
        frame[0, 0] = 5.0
    value_range = DepthRange()
    for frame in frames:
        value_range.update(frame)
    colours = [normalize_depth(frame, value_range)[0, 0] for frame in frames]
    assert np.ptp(colours) == 0.0
    assert value_range.lo <= np.percentile(frames[0], 2) and value_range.hi >= np.percentile(
        frames[-1], 98
    )
    per_frame = [normalize_depth(frame)[0, 0] for frame in (frames[0], frames[-1])]
    assert abs(per_frame[0] - per_frame[1]) > 0.3


def test_near_is_one_colour_for_disparity_and_metres():
    metres = np.random.RandomState(0).uniform(0.5, 20.0, (8, 9))
    # The official metric run.py: min-max normalised metres through matplotlib's Spectral.
    official = matplotlib.colormaps["Spectral"](
        ((metres - metres.min()) / np.ptp(metres) * 255).astype(np.uint8)
    )
    np.testing.assert_allclose(
        depth_picture(metres, True, "spectral_r"),
        (official[..., :3] * 255).astype(np.uint8),
        atol=1,
    )
    for cmap in ("spectral_r", "inferno", "gray"):
        as_metres = depth_picture(metres, True, cmap)
        as_disparity = depth_picture(1 / metres, False, cmap)
        near = np.unravel_index(metres.argmin(), metres.shape)
        np.testing.assert_array_equal(as_metres[near], as_disparity[near])
    assert (depth_picture(metres, True, "gray")[near] == 255).all()  # near = white
