"""Depth Anything's losses: pure, jittable, masked (paper eq. 1-6).

Shapes: `pred`, `target` are [B, H, W] float32 disparity (relative models) or metres (SiLog);
`mask` is [B, H, W] bool/float, 1 = valid. Everything is computed with static shapes (masked
sorts and sums, no boolean indexing), and every division is guarded so empty masks give 0 and
finite gradients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPS = 1e-6


def _flat(x: jnp.ndarray) -> jnp.ndarray:
    return x.reshape(x.shape[0], -1)


def masked_median(x: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Per-image median of the valid values, like `np.median` (mean of the two middles).

    Args:
      x: [B, N] values.
      mask: [B, N] bool.

    Returns:
      [B] medians (0 for images without valid values).
    """
    n = mask.sum(axis=1)
    ordered = jnp.sort(jnp.where(mask, x, jnp.inf), axis=1)
    lo = jnp.clip((n - 1) // 2, 0, x.shape[1] - 1)
    hi = jnp.clip(n // 2, 0, x.shape[1] - 1)
    pick = lambda i: jnp.take_along_axis(ordered, i[:, None], axis=1)[:, 0]  # noqa: E731
    return jnp.where(n > 0, 0.5 * (pick(lo) + pick(hi)), 0.0)


def normalize_affine(d: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """(d - median) / mean|d - median| per image over valid pixels (paper eq. 2-3).

    Args:
      d: [B, N]; mask: [B, N] bool.

    Returns:
      [B, N] normalised values (invalid pixels are 0). The scale is clamped at EPS so a
      constant map gives 0 rather than NaN.

    The gradient flows through the median as well as the deviation, as in the paper's
    equations. That keeps the gradient itself shift-invariant: the loss does not change when
    `d` moves by a constant, so its gradient has no component along that direction. Stopping
    the median's gradient leaves such a component, which pushes every output up or down
    together; on the demo it cost the teacher AbsRel 0.17 -> 0.26 and the student more.
    """
    m = mask.astype(d.dtype)
    t = masked_median(d, mask)[:, None]
    centred = (d - t) * m
    s = jnp.abs(centred).sum(axis=1, keepdims=True) / jnp.maximum(m.sum(axis=1, keepdims=True), 1)
    return centred / jnp.maximum(s, EPS)


def affine_invariant_residuals(pred, target, mask) -> tuple[jnp.ndarray, jnp.ndarray]:
    """|d̂_pred − d̂_target| per pixel [B, N] and the validity [B, N] bool."""
    mask = _flat(mask).astype(bool)
    p = normalize_affine(_flat(pred), mask)
    g = normalize_affine(_flat(target), mask)
    return jnp.abs(p - g) * mask, mask


def _mean_over_images(per_pixel, mask) -> jnp.ndarray:
    counts = mask.sum(axis=1)
    per_image = per_pixel.sum(axis=1) / jnp.maximum(counts, 1)
    has = counts > 0
    return jnp.where(has, per_image, 0.0).sum() / jnp.maximum(has.sum(), 1)


def affine_invariant_loss(
    pred: jnp.ndarray, target: jnp.ndarray, mask: jnp.ndarray, trim_fraction: float = 0.0
) -> jnp.ndarray:
    """Scale-and-shift-invariant L1 on disparity (paper eq. 1).

    Each image: normalise prediction and target by their own masked median and mean absolute
    deviation, then average |difference| over valid pixels; images weigh equally, images
    without valid pixels are skipped. `trim_fraction` > 0 ignores that fraction of each image's
    largest residuals (the V2-style robust option, e.g. 0.1).

    Returns:
      Scalar float32; exactly invariant to `pred -> a * pred + b` and `target -> c * target + e`
      for a, c > 0.
    """
    residual, valid = affine_invariant_residuals(pred, target, mask)
    if trim_fraction > 0:
        valid = _trim(residual, valid, trim_fraction)
        residual = residual * valid
    return _mean_over_images(residual, valid)


def _trim(residual: jnp.ndarray, valid: jnp.ndarray, fraction: float) -> jnp.ndarray:
    """Drops the `fraction` largest residuals of each image from `valid`."""
    n = valid.sum(axis=1)
    keep = jnp.floor(n * (1.0 - fraction)).astype(jnp.int32)
    ordered = jnp.sort(jnp.where(valid, residual, -jnp.inf), axis=1)[:, ::-1]
    threshold = jnp.take_along_axis(
        ordered, jnp.clip(n - keep - 1, 0, residual.shape[1] - 1)[:, None], axis=1
    )
    return valid & ((residual < threshold) | (keep[:, None] == n[:, None]))


def cutmix_affine_invariant_loss(
    pred: jnp.ndarray,
    target_a: jnp.ndarray,
    target_b: jnp.ndarray,
    cutmix_mask: jnp.ndarray,
    valid_mask: jnp.ndarray,
) -> jnp.ndarray:
    """CutMix loss (paper eq. 4-5) for a student input u_ab = u_a ⊙ M + u_b ⊙ (1 − M).

    The affine-invariant loss inside M against `target_a` (teacher on u_a) and outside M against
    `target_b`, each normalised over its own region, combined per image with weights ΣM/HW and
    Σ(1−M)/HW.

    Args:
      cutmix_mask: [B, H, W] 1 where the pixel comes from u_a.
      valid_mask: [B, H, W] pixels with a usable pseudo-label.
    """
    m = _flat(cutmix_mask) > 0.5
    valid = _flat(valid_mask).astype(bool)
    p = _flat(pred)
    total = 0.0
    for region, target in ((m, target_a), (~m, target_b)):
        region_valid = valid & region
        pn = normalize_affine(p, region_valid)
        gn = normalize_affine(_flat(target), region_valid)
        per_image = (jnp.abs(pn - gn) * region_valid).sum(axis=1) / jnp.maximum(
            region_valid.sum(axis=1), 1
        )
        total = total + per_image * region.mean(axis=1)
    return total.mean()


def _token_dissimilarity(student: jnp.ndarray, frozen: jnp.ndarray) -> jnp.ndarray:
    """1 − cos(f, f') per token [B, N] (no gradient into `frozen`)."""
    frozen = jax.lax.stop_gradient(frozen)
    num = (student * frozen).sum(-1)
    den = jnp.sqrt((student**2).sum(-1) * (frozen**2).sum(-1) + EPS)
    return 1.0 - num / den


def feature_alignment_loss(
    student: jnp.ndarray, frozen: jnp.ndarray, margin: float = 0.15
) -> jnp.ndarray:
    """Semantic feature alignment with a tolerance margin (paper eq. 6).

    Per token, 1 − cos(f, f'); tokens already within `margin` (1 − cos < α) are "not
    considered": they contribute 0, and the sum is divided by the number of all tokens. So the
    loss and its gradient are continuous in the features (a token crossing the margin changes
    the loss by its own term, at most α / N), and a token's gradient does not depend on how
    many others are outside the margin. Dividing by the active tokens instead would make the
    loss jump from 0 to ≥ α when one token crosses, and scale that token's gradient by
    N / active.

    Args:
      student: [B, N, C] student encoder patch features.
      frozen: [B, N, C] frozen DINOv2 features (no gradient flows into them).
      margin: α, the tolerance on 1 − cos.

    Returns:
      Scalar; 0 (with zero gradient) when every token is within the margin.
    """
    dissimilarity = _token_dissimilarity(student, frozen)
    return jnp.where(dissimilarity >= margin, dissimilarity, 0.0).mean()


def share_within_margin(student: jnp.ndarray, frozen: jnp.ndarray, margin: float = 0.15):
    """The share of tokens with 1 − cos(f, f') < `margin` (scalar in [0, 1]), the tokens
    `feature_alignment_loss` leaves alone; logged beside it. Shapes as there."""
    return (_token_dissimilarity(student, frozen) < margin).mean()


def _align_least_squares(pred, target, mask):
    """Per-image scale/shift s, t minimising Σ mask (s·pred + t − target)² (MiDaS)."""
    m = mask.astype(pred.dtype)
    a00, a01, a11 = (m * pred * pred).sum(1), (m * pred).sum(1), m.sum(1)
    b0, b1 = (m * pred * target).sum(1), (m * target).sum(1)
    det = a00 * a11 - a01 * a01
    ok = det > EPS
    safe = jnp.where(ok, det, 1.0)
    s = jnp.where(ok, (a11 * b0 - a01 * b1) / safe, 0.0)
    t = jnp.where(ok, (a00 * b1 - a01 * b0) / safe, 0.0)
    return s[:, None, None], t[:, None, None]


def gradient_matching_loss(
    pred: jnp.ndarray, target: jnp.ndarray, mask: jnp.ndarray, scales: int = 4
) -> jnp.ndarray:
    """Multi-scale gradient matching (MiDaS), the V2-style extra (off by default).

    The prediction is first aligned to the target by per-image least squares (scale and
    shift); then at each of `scales` scales (stride 2^k subsampling) the L1 of the x/y
    differences of the residual is averaged over pixels where both neighbours are valid.
    """
    s, t = _align_least_squares(_flat(pred), _flat(target), _flat(mask))
    residual = (s[:, :, 0] * _flat(pred) + t[:, :, 0]).reshape(pred.shape) - target
    m = mask.astype(pred.dtype)
    total = 0.0
    for k in range(scales):
        step = 2**k
        r, mk = residual[:, ::step, ::step], m[:, ::step, ::step]
        gx = jnp.abs(r[:, :, 1:] - r[:, :, :-1]) * mk[:, :, 1:] * mk[:, :, :-1]
        gy = jnp.abs(r[:, 1:] - r[:, :-1]) * mk[:, 1:] * mk[:, :-1]
        count = mk[:, :, 1:].sum() + mk[:, 1:].sum()
        total = total + (gx.sum() + gy.sum()) / jnp.maximum(count, 1)
    return total / scales


def silog_loss(
    pred: jnp.ndarray, target: jnp.ndarray, mask: jnp.ndarray, lam: float = 0.5
) -> jnp.ndarray:
    """Scale-invariant log loss for metric fine-tuning: sqrt(mean(g²) − λ·mean(g)²).

    g = log(pred) − log(target) over valid pixels of the whole batch (as V2's `SiLogLoss`);
    both sides are clamped at EPS before the log. A tiny floor inside the square root keeps the
    gradient finite when the loss is 0.
    """
    m = mask.astype(pred.dtype)
    g = (jnp.log(jnp.maximum(pred, EPS)) - jnp.log(jnp.maximum(target, EPS))) * m
    n = jnp.maximum(m.sum(), 1)
    mean_g, mean_g2 = g.sum() / n, (g * g).sum() / n
    return jnp.sqrt(jnp.maximum(mean_g2 - lam * mean_g**2, 0.0) + EPS**2)


def depth_to_disparity(depth: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """1 / depth where valid, 0 elsewhere (no offset, as the paper's targets)."""
    return jnp.where(mask, 1.0 / jnp.maximum(depth, EPS), 0.0)
