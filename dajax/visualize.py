"""Depth maps as pictures: normalisation, colormaps, side-by-side layout, video-stable ranges.

The official V1 `run.py` colours min-max normalised disparity with OpenCV's INFERNO map and V2
with matplotlib's `Spectral_r`; both place the image and the depth side by side with a 50 px
white gap. Metric models predict metres (bigger = farther), the reverse of disparity, so
`depth_picture` colours their *nearness* (1 - normalised metres): near is the same colour for
both kinds (red in Spectral_r, as the official metric `run.py` draws metres with Spectral;
white in grey).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

CMAPS = ("inferno", "spectral_r", "gray")
GAP = 50


class DepthRange:
    """One value range for a whole sequence of depth maps (a video clip): the lowest `low` and
    the highest `high` percentile over every frame `update` saw, so a value has one colour
    throughout the clip, after a cut too (values beyond the range clip to the end colours).

    Args:
      low, high: percentiles of each frame's finite values.
    """

    def __init__(self, low: float = 2.0, high: float = 98.0):
        self.low, self.high = low, high
        self.lo: float | None = None
        self.hi: float | None = None

    def update(self, depth: np.ndarray) -> None:
        """Widens the range to one [H, W] map's percentiles (its finite values)."""
        finite = depth[np.isfinite(depth)]
        if finite.size == 0:
            return
        lo, hi = (float(v) for v in np.percentile(finite, [self.low, self.high]))
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)


def normalize_depth(depth: np.ndarray, value_range: DepthRange | None = None) -> np.ndarray:
    """Maps depth to [0, 1].

    Args:
      depth: [H, W] float, any units; NaN/Inf become 0.
      value_range: a `DepthRange` (video), or None for the map's own min-max.

    Returns:
      [H, W] float32 in [0, 1]; a constant map gives zeros.
    """
    d = np.where(np.isfinite(depth), depth, np.nan).astype(np.float64)
    if value_range is not None and value_range.lo is not None:
        lo, hi = value_range.lo, value_range.hi
    elif np.isnan(d).all():
        return np.zeros(depth.shape, np.float32)
    else:
        lo, hi = np.nanmin(d), np.nanmax(d)
    scaled = (d - lo) / (hi - lo) if hi > lo else np.zeros_like(d)
    return np.nan_to_num(np.clip(scaled, 0.0, 1.0), nan=0.0).astype(np.float32)


@functools.cache
def _lut(cmap: str) -> np.ndarray:
    """[256, 3] uint8 RGB lookup table."""
    levels = np.arange(256, dtype=np.uint8)
    if cmap == "inferno":
        return cv2.applyColorMap(levels[:, None], cv2.COLORMAP_INFERNO)[:, 0, ::-1].copy()
    if cmap == "spectral_r":
        import matplotlib

        rgba = matplotlib.colormaps["Spectral_r"](levels)
        return (rgba[:, :3] * 255).astype(np.uint8)
    if cmap == "gray":
        return np.repeat(levels[:, None], 3, axis=1)
    raise ValueError(f"unknown colormap {cmap!r}; expected one of {CMAPS}")


def colorize(depth01: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """[H, W] values in [0, 1] -> [H, W, 3] uint8 RGB through a 256-level colormap."""
    index = (np.clip(depth01, 0.0, 1.0) * 255.0).astype(np.uint8)
    return _lut(cmap)[index]


def default_cmap(version: str) -> str:
    """The official `run.py` colormap of a model version: 'inferno' (V1), 'spectral_r' (V2)."""
    return "inferno" if version == "v1" else "spectral_r"


def depth_picture(
    depth: np.ndarray, metric: bool, cmap: str, value_range: DepthRange | None = None
) -> np.ndarray:
    """[H, W] disparity (`metric=False`) or metres (`metric=True`) -> [H, W, 3] uint8 RGB.

    Disparity goes through `cmap` as `colorize(normalize_depth(...))`; metres through the
    reversed colormap, so near is the same colour for both (Spectral_r reversed is the
    official metric `run.py`'s Spectral, level for level).
    """
    levels = (normalize_depth(depth, value_range) * 255.0).astype(np.uint8)
    lut = _lut(cmap)
    return (lut[::-1] if metric else lut)[levels]


def side_by_side(image: np.ndarray, depth_rgb: np.ndarray, gap: int = GAP) -> np.ndarray:
    """[H, W, 3] image and [H, W, 3] depth -> [H, 2W + gap, 3] uint8 with a white gap."""
    if image.shape != depth_rgb.shape:
        raise ValueError(f"image {image.shape} and depth {depth_rgb.shape} differ in shape")
    white = np.full((image.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([image, white, depth_rgb], axis=1)
