"""The zero-shot relative-depth protocol (paper Table 1; not released by the authors).

Per image, the predicted disparity is aligned to the ground-truth disparity (1 / depth) by
least-squares scale and shift over valid pixels, converted to depth, and scored with AbsRel
and δ1. Pure jnp with static shapes: masks weight sums, nothing is boolean-indexed.
"""

from __future__ import annotations

import jax.numpy as jnp

EPS = 1e-8


def align_scale_shift(pred, target, mask) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per-image (scale, shift) minimising Σ mask · (scale · pred + shift − target)².

    Args:
      pred, target: [B, H, W]; mask: [B, H, W] bool.

    Returns:
      scale [B], shift [B]. A constant prediction (singular normal equations) gets scale 0 and
      shift = the mean target; an empty mask gets (0, 0).
    """
    m = mask.astype(jnp.float32)
    axes = (1, 2)
    n = m.sum(axes)
    sp, st = (m * pred).sum(axes), (m * target).sum(axes)
    spp, spt = (m * pred * pred).sum(axes), (m * pred * target).sum(axes)
    det = n * spp - sp * sp
    ok = det > EPS * jnp.maximum(n * spp, 1.0)
    safe = jnp.where(ok, det, 1.0)
    scale = jnp.where(ok, (n * spt - sp * st) / safe, 0.0)
    shift = jnp.where(ok, (spp * st - sp * spt) / safe, st / jnp.maximum(n, 1.0))
    return scale, shift


def relative_depth_metrics(pred_disparity, gt_depth, mask, max_depth: float) -> dict:
    """AbsRel and δ1 per image after disparity-space alignment.

    Args:
      pred_disparity: [B, H, W] predicted relative disparity.
      gt_depth: [B, H, W] metres.
      mask: [B, H, W] bool, valid ground truth (gt_depth > 0).
      max_depth: the aligned disparity is clamped at 1 / max_depth before inversion, so depth
        never exceeds the dataset cap and is never divided by zero.

    Returns:
      {'abs_rel': [B], 'a1': [B], 'valid': [B] bool (images with at least one valid pixel)}.
    """
    mask = mask & (gt_depth > 0)
    gt_disp = jnp.where(mask, 1.0 / jnp.maximum(gt_depth, EPS), 0.0)
    scale, shift = align_scale_shift(pred_disparity, gt_disp, mask)
    aligned = scale[:, None, None] * pred_disparity + shift[:, None, None]
    depth = 1.0 / jnp.maximum(aligned, 1.0 / max_depth)
    m = mask.astype(jnp.float32)
    n = jnp.maximum(m.sum((1, 2)), 1.0)
    safe_gt = jnp.where(mask, gt_depth, 1.0)
    abs_rel = (m * jnp.abs(depth - safe_gt) / safe_gt).sum((1, 2)) / n
    ratio = jnp.maximum(depth / safe_gt, safe_gt / depth)
    a1 = (m * (ratio < 1.25)).sum((1, 2)) / n
    return {"abs_rel": abs_rel, "a1": a1, "valid": mask.any(axis=(1, 2))}
