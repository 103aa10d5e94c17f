"""Metric-depth error metrics, masks and resizing of the official `metric_depth` evaluator.

The metrics follow the official `compute_errors`: computed per image over its valid
pixels, then averaged over the images that have at least one valid pixel. Everything that
touches pixels is pure `jax.numpy` with static shapes: masks weight sums, nothing is
boolean-indexed, so `per_image_metrics`, `eval_mask`, `clip_prediction` and `resize_to` jit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

METRIC_KEYS = ("a1", "a2", "a3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log_10", "silog")

# dataset: (min_depth_eval, max_depth_eval, default crop), metres.
DATASET_EVAL = {"nyu": (1e-3, 10.0, "eigen"), "kitti": (1e-3, 80.0, "garg")}
CROPS = ("eigen", "garg", "none")
EIGEN_SHAPE = (480, 640)
EIGEN_BOX = (45, 471, 41, 601)  # rows 45..470, cols 41..600 of a 480×640 NYU map
GARG_FRACTIONS = (0.40810811, 0.99189189, 0.03594771, 0.96405229)  # of (H, H, W, W)


def _batched(x) -> jnp.ndarray:
    """[H, W] → [1, H, W]; [B, H, W] unchanged."""
    x = jnp.asarray(x)
    if x.ndim not in (2, 3):
        raise ValueError(f"expected [H, W] or [B, H, W], got shape {x.shape}")
    return x[None] if x.ndim == 2 else x


@jax.jit
def per_image_metrics(pred, gt, mask) -> dict[str, jnp.ndarray]:
    """The `compute_errors` metrics of each image over its masked pixels.

    Args:
      pred: [B, H, W] (or [H, W]) predicted depth, metres.
      gt: same shape, ground-truth depth, metres.
      mask: same shape, bool; only these pixels are scored. Pixels with gt ≤ 0 or pred ≤ 0
        inside the mask give inf/NaN, as in the official code.

    Returns:
      {key: [B] for key in METRIC_KEYS} plus 'valid': [B] int32 count of masked pixels. An
      image with an empty mask gets 0 for every metric; exclude it with 'valid' (see
      `average_over_images`). Per-image variance in silog is the two-pass
      mean((err − mean err)²), equal to mean(err²) − mean(err)² but without cancellation.
    """
    pred, gt, mask = _batched(pred), _batched(gt), _batched(mask).astype(bool)
    if not pred.shape == gt.shape == mask.shape:
        raise ValueError(f"pred {pred.shape}, gt {gt.shape} and mask {mask.shape} differ")
    dtype = jnp.result_type(pred.dtype, gt.dtype, jnp.float32)
    axes = (1, 2)
    count = mask.sum(axes)
    n = jnp.maximum(count, 1).astype(dtype)
    mean = lambda x: jnp.where(mask, x.astype(dtype), 0).sum(axes) / n
    pred = jnp.where(mask, pred.astype(dtype), 1)
    gt = jnp.where(mask, gt.astype(dtype), 1)
    thresh = jnp.maximum(gt / pred, pred / gt)
    err = jnp.log(pred) - jnp.log(gt)
    centred = err - mean(err)[:, None, None]
    return {
        "a1": mean(thresh < 1.25),
        "a2": mean(thresh < 1.25**2),
        "a3": mean(thresh < 1.25**3),
        "abs_rel": mean(jnp.abs(gt - pred) / gt),
        "sq_rel": mean((gt - pred) ** 2 / gt),
        "rmse": jnp.sqrt(mean((gt - pred) ** 2)),
        "rmse_log": jnp.sqrt(mean(err**2)),
        "log_10": mean(jnp.abs(jnp.log10(gt) - jnp.log10(pred))),
        "silog": jnp.sqrt(mean(centred**2)) * 100,
        "valid": count.astype(jnp.int32),
    }


def average_over_images(per_image: dict) -> dict[str, float]:
    """Mean of per-image metrics over the images with at least one valid pixel.

    Args:
      per_image: `per_image_metrics` output, or its [N] arrays concatenated over batches.

    Returns:
      {key: float for key in METRIC_KEYS}.

    Raises:
      ValueError: no image has a valid pixel.
    """
    valid = np.asarray(per_image["valid"]) > 0
    if not valid.any():
        raise ValueError("no image has a valid ground-truth pixel")
    return {k: float(np.mean(np.asarray(per_image[k], np.float64)[valid])) for k in METRIC_KEYS}


def depth_metrics(pred, gt, mask=None) -> dict[str, float]:
    """The official metric-depth metrics, per image then averaged over images.

    Args:
      pred: [H, W] or [B, H, W] predicted depth, metres.
      gt: same shape, ground-truth depth, metres.
      mask: same shape, bool; default gt > 0. Images with an empty mask are left out.

    Returns:
      {a1, a2, a3, abs_rel, sq_rel, rmse, rmse_log, log_10, silog}: floats (silog × 100).

    Raises:
      ValueError: the mask has no valid pixel at all.
    """
    gt = jnp.asarray(gt)
    mask = gt > 0 if mask is None else mask
    return average_over_images(per_image_metrics(pred, gt, mask))


def _depth_range(dataset: str | None, min_depth, max_depth) -> tuple[float, float]:
    """(min, max) evaluation depth in metres: explicit values override the dataset's caps."""
    if dataset is not None and dataset not in DATASET_EVAL:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(DATASET_EVAL)} or None")
    lo, hi, _ = DATASET_EVAL.get(dataset, (None, None, None))
    lo = lo if min_depth is None else min_depth
    hi = hi if max_depth is None else max_depth
    if lo is None or hi is None:
        raise ValueError("dataset=None needs both min_depth and max_depth")
    return float(lo), float(hi)


def crop_mask(height: int, width: int, crop: str) -> np.ndarray:
    """The official evaluation crop as a [height, width] bool array.

    Args:
      crop: 'eigen' (NYU, fixed rows 45..470 / cols 41..600, needs 480×640), 'garg' (KITTI,
        rows int(0.40810811·H)..int(0.99189189·H), cols int(0.03594771·W)..int(0.96405229·W),
        end-exclusive) or 'none'.
    """
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; known: {CROPS}")
    out = np.zeros((height, width), bool)
    if crop == "none":
        out[:] = True
    elif crop == "eigen":
        if (height, width) != EIGEN_SHAPE:
            raise ValueError(f"the eigen crop is defined on {EIGEN_SHAPE}, got {height, width}")
        r0, r1, c0, c1 = EIGEN_BOX
        out[r0:r1, c0:c1] = True
    else:
        f0, f1, f2, f3 = GARG_FRACTIONS
        out[int(f0 * height) : int(f1 * height), int(f2 * width) : int(f3 * width)] = True
    return out


def eval_mask(gt, dataset: str | None, min_depth=None, max_depth=None, crop=None) -> jnp.ndarray:
    """Valid evaluation pixels: min_depth < gt < max_depth, inside the dataset's crop.

    Args:
      gt: [H, W] or [B, H, W] ground-truth depth, metres.
      dataset: 'nyu' (1e-3..10 m, eigen crop), 'kitti' (1e-3..80 m, garg crop) or None
        (then min_depth and max_depth are required and the default crop is 'none').
      min_depth, max_depth: metres; override the dataset's caps (strict bounds, as official).
      crop: 'eigen', 'garg' or 'none'; default the dataset's.

    Returns:
      bool, same shape as gt.
    """
    lo, hi = _depth_range(dataset, min_depth, max_depth)
    crop = crop or DATASET_EVAL.get(dataset, (None, None, "none"))[2]
    gt = jnp.asarray(gt)
    box = jnp.asarray(crop_mask(gt.shape[-2], gt.shape[-1], crop))
    return (gt > lo) & (gt < hi) & box


def clip_prediction(pred, dataset: str | None, min_depth=None, max_depth=None) -> jnp.ndarray:
    """Predictions clamped to the evaluation range, as the official evaluator does.

    Args:
      pred: any shape, predicted depth, metres.
      dataset, min_depth, max_depth: as in `eval_mask`.

    Returns:
      same shape: values clamped to [min, max]; +inf → max, NaN → min.
    """
    lo, hi = _depth_range(dataset, min_depth, max_depth)
    pred = jnp.asarray(pred)
    return jnp.where(jnp.isnan(pred), lo, jnp.clip(pred, lo, hi))


def resize_to(pred, shape: tuple[int, int]) -> jnp.ndarray:
    """Bilinear resize of predictions to the ground-truth size.

    Half-pixel centres and no antialiasing, i.e. torch `F.interpolate(mode='bilinear',
    align_corners=False)` as in the official evaluator, also when shrinking.

    Args:
      pred: [H, W] or [B, H, W] depth.
      shape: (H', W') target size.

    Returns:
      [H', W'] or [B, H', W'], pred's float dtype.
    """
    pred = jnp.asarray(pred)
    if pred.ndim not in (2, 3):
        raise ValueError(f"expected [H, W] or [B, H, W], got shape {pred.shape}")
    out_shape = (*pred.shape[:-2], *shape)
    return jax.image.resize(pred, out_shape, "bilinear", antialias=False)
