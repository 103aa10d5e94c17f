"""The token-grid oracle: the best a model that knows one exact disparity per patch token
could score, a yardstick beside the trivial predictors (`dajax.eval.baselines`).

The ground-truth disparity is averaged over a g x g grid of cells and interpolated back to
full size. With g = input size / 14, the oracle knows the mean disparity under each of the
encoder's patch tokens; a network can beat it only by placing edges inside a patch.
"""

from __future__ import annotations

import jax
import numpy as np

from dajax.eval.align import relative_depth_metrics

ORACLE_ROW = "oracle: token grid"


def grid_oracle(depth: np.ndarray, mask: np.ndarray, grid: int) -> np.ndarray:
    """The ground truth's disparity seen through a `grid` x `grid` partition of the image:
    averaged over each cell, then interpolated bilinearly back to full size.

    Args:
      depth: [H, W] metres; mask: [H, W] bool, valid pixels. Invalid pixels count as
        disparity 0 (sky lies at infinity).
      grid: cells per side (cell edges at rounded multiples of H / grid and W / grid).

    Returns:
      [H, W] float32 disparity.
    """
    disparity = np.where(mask, 1.0 / np.maximum(depth, 1e-6), 0.0)
    rows = np.linspace(0, depth.shape[0], grid + 1).round().astype(int)
    cols = np.linspace(0, depth.shape[1], grid + 1).round().astype(int)
    cells = np.array(
        [
            [disparity[r0:r1, c0:c1].mean() for c0, c1 in zip(cols[:-1], cols[1:], strict=True)]
            for r0, r1 in zip(rows[:-1], rows[1:], strict=True)
        ],
        np.float32,
    )
    return np.asarray(jax.image.resize(cells, depth.shape, "linear"))


def oracle_predictions(records, grid: int) -> list[np.ndarray]:
    """`grid_oracle` of each record's `depth` [H, W] metres over its valid, positive pixels."""
    return [grid_oracle(r["depth"], r["mask"] & (r["depth"] > 0), grid) for r in records]


def oracle_scores(source, grid: int, max_depth: float) -> dict:
    """Mean AbsRel and δ1 of `grid_oracle` over every record of `source` (the zero-shot
    relative protocol: least-squares scale and shift in disparity), with the image count."""
    records = [source[i] for i in range(len(source))]
    depth = np.stack([r["depth"] for r in records])
    mask = np.stack([r["mask"] for r in records]) & (depth > 0)
    pred = np.stack(oracle_predictions(records, grid))
    scores = relative_depth_metrics(pred, depth, mask, max_depth)
    return {k: float(np.mean(scores[k])) for k in ("abs_rel", "a1")} | {"images": len(records)}


def gap_closed(abs_rel: float, ramp: float, oracle: float) -> float:
    """The share of the AbsRel gap from the vertical ramp to the oracle that a model closes:
    (ramp − abs_rel) / (ramp − oracle); 0 at the ramp, 1 at the oracle."""
    return (ramp - abs_rel) / (ramp - oracle)
