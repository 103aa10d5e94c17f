"""Trivial depth predictors: the floor any trained model must clear under the same protocol.

Each has `batch(images, batch_size) -> list of [H, W] disparity`, the interface `evaluate`
calls, so a baseline goes through exactly the alignment and metrics a network does. Under
the zero-shot relative protocol (per-image least-squares scale and shift in disparity) the
constant map scores as the image's mean ground-truth disparity, and the ramp as the best
linear-in-height disparity of each image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ConstantDisparity:
    """The same disparity everywhere: after alignment, the image's mean disparity."""

    def batch(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
        """images: [H, W, 3] uint8 each -> one [H, W] float32 array of ones each."""
        return [np.ones(im.shape[:2], np.float32) for im in images]


class VerticalRamp:
    """Disparity growing linearly from the top row to the bottom row: floors recede upward,
    so lower pixels are usually nearer."""

    def batch(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
        """images: [H, W, 3] uint8 each -> one [H, W] float32 ramp in (0, 1] each."""
        out = []
        for im in images:
            h, w = im.shape[:2]
            rows = (np.arange(h, dtype=np.float32) + 1.0) / h
            out.append(np.repeat(rows[:, None], w, axis=1))
        return out


BASELINES = {"constant disparity": ConstantDisparity, "vertical ramp": VerticalRamp}
