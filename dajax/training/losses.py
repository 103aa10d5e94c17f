"""Depth Anything's losses (V1 paper eq. 1-6; V2's gradient matching and trim): pure,
jittable, masked.

Shapes: `pred`, `target` are [B, H, W] float32 disparity (relative models) or metres (SiLog);
`mask` is [B, H, W] bool/float, 1 = valid. Everything is computed with static shapes (masked
sorts and sums, no boolean indexing), and every division is guarded so empty masks give 0 and
finite gradients.
"""

from __future__ import annotations

from fractions import Fraction

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


def _mean_over_images(per_pixel, mask) -> jnp.ndarray:
    counts = mask.sum(axis=1)
    per_image = per_pixel.sum(axis=1) / jnp.maximum(counts, 1)
    has = counts > 0
    return jnp.where(has, per_image, 0.0).sum() / jnp.maximum(has.sum(), 1)


def affine_invariant_loss(pred: jnp.ndarray, target: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Scale-and-shift-invariant L1 on disparity (paper eq. 1).

    Each image: normalise prediction and target by their own masked median and mean absolute
    deviation, then average |difference| over valid pixels; images weigh equally, images
    without valid pixels are skipped. (V2's trim of the largest residuals applies to
    pseudo-labels: `cutmix_affine_invariant_loss`'s `trim_fraction`.)

    Returns:
      Scalar float32; exactly invariant to `pred -> a * pred + b` and `target -> c * target + e`
      for a, c > 0.
    """
    valid = _flat(mask).astype(bool)
    difference = normalize_affine(_flat(pred), valid) - normalize_affine(_flat(target), valid)
    return _mean_over_images(jnp.abs(difference) * valid, valid)


def _keep_counts(n: jnp.ndarray, fraction: float) -> jnp.ndarray:
    """floor((1 − fraction) · n) for int32 counts n, in exact integer arithmetic: 1 − fraction
    is taken as the nearest ratio p/q with q ≤ 10⁴ (0.9 is 9/10). In float32, 100 × (1 − 0.47)
    floors to 52, not 53."""
    ratio = Fraction(1.0 - fraction).limit_denominator(10_000)
    p, q = ratio.numerator, ratio.denominator
    return (n // q) * p + (n % q) * p // q


def trimmed_mask(residual: jnp.ndarray, valid: jnp.ndarray, fraction: float) -> jnp.ndarray:
    """`valid` less each image's largest residuals (V2 ignores a pseudo-label's worst 10%).

    Keeps exactly floor((1 − fraction) · n) of an image's n valid pixels, those with the
    smallest residuals. Pixels are ranked by a stable sort, so equal residuals at the cut are
    split by position: 95 zeros and 5 positives with fraction 0.1 keep the first 90 zeros.

    Args:
      residual: [B, N] per-pixel losses.
      valid: [B, N] bool.
      fraction: the share to ignore, in [0, 1).

    Returns:
      [B, N] bool, a subset of `valid`.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the trimmed fraction must be in [0, 1), got {fraction}")
    valid = valid.astype(bool)
    b, n = residual.shape
    order = jnp.argsort(jnp.where(valid, residual, jnp.inf), axis=1, stable=True)
    kept_in_order = jnp.arange(n)[None, :] < _keep_counts(valid.sum(axis=1), fraction)[:, None]
    return jnp.zeros_like(valid).at[jnp.arange(b)[:, None], order].set(kept_in_order)


def _cutmix_regions(pred, target_a, target_b, cutmix_mask, valid_mask, trim_fraction):
    """The two CutMix regions, inside M against `target_a` and outside against `target_b`.

    Returns:
      Per region: (its target [B, N]; its valid pixels [B, N] bool; |d̂_pred − d̂_target|
      [B, N], each side normalised over those pixels; the pixels the losses count [B, N] bool,
      the valid ones less the `trim_fraction` largest residuals; the region's share [B]).
    """
    m = _flat(cutmix_mask) > 0.5
    valid = _flat(valid_mask).astype(bool)
    p = _flat(pred)
    regions = []
    for region, target in ((m, target_a), (~m, target_b)):
        region_valid = valid & region
        target = _flat(target)
        residual = jnp.abs(
            normalize_affine(p, region_valid) - normalize_affine(target, region_valid)
        )
        counted = region_valid
        if trim_fraction > 0:
            counted = trimmed_mask(residual, region_valid, trim_fraction)
        regions.append((target, region_valid, residual, counted, region.mean(axis=1)))
    return regions


def cutmix_affine_invariant_loss(
    pred: jnp.ndarray,
    target_a: jnp.ndarray,
    target_b: jnp.ndarray,
    cutmix_mask: jnp.ndarray,
    valid_mask: jnp.ndarray,
    trim_fraction: float = 0.0,
) -> jnp.ndarray:
    """CutMix loss (paper eq. 4-5) for a student input u_ab = u_a ⊙ M + u_b ⊙ (1 − M).

    The affine-invariant loss inside M against `target_a` (teacher on u_a) and outside M against
    `target_b`, each normalised over its own region, combined per image with weights ΣM/HW and
    Σ(1−M)/HW. `trim_fraction` > 0 ignores that fraction of each region's largest residuals
    (`trimmed_mask`): each region is a pseudo-labeled sample of its own, u_a's or u_b's.

    Args:
      cutmix_mask: [B, H, W] 1 where the pixel comes from u_a.
      valid_mask: [B, H, W] pixels with a usable pseudo-label.
    """
    total = 0.0
    regions = _cutmix_regions(pred, target_a, target_b, cutmix_mask, valid_mask, trim_fraction)
    for _, _, residual, counted, area in regions:
        per_image = (residual * counted).sum(axis=1) / jnp.maximum(counted.sum(axis=1), 1)
        total = total + per_image * area
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


def _neighbour_l1(residual: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Σ |R_i − R_j| over horizontal and vertical neighbours i, j both in `mask` (all [B, H, W])."""
    pair_x = mask[:, :, 1:] & mask[:, :, :-1]
    pair_y = mask[:, 1:] & mask[:, :-1]
    grad_x = jnp.abs(residual[:, :, 1:] - residual[:, :, :-1]) * pair_x
    grad_y = jnp.abs(residual[:, 1:] - residual[:, :-1]) * pair_y
    return grad_x.sum() + grad_y.sum()


def _multiscale_gradient(pieces, scales: int) -> jnp.ndarray:
    """MiDaS's `GradientLoss` with its batch-based reduction, over residual maps on disjoint masks.

    Args:
      pieces: ((residual R [B, H, W], mask [B, H, W] bool), ...); a neighbour pair counts when
        both pixels lie in one piece's mask.
      scales: K; scale k keeps every 2^k-th row and column.

    Returns:
      Σ_k (Σ over the batch's pairs at scale k of |∇x R| + |∇y R|) / (valid pixels of the batch
      at scale k): a sum over scales, each divided by pixels, not pairs (0 for no pixels).
    """
    if scales < 1:
        raise ValueError(f"gradient matching needs at least 1 scale, got {scales}")
    total = 0.0
    for k in range(scales):
        step = 2**k
        grads, count = 0.0, 0
        for residual, mask in pieces:
            r, m = residual[:, ::step, ::step], mask[:, ::step, ::step]
            grads = grads + _neighbour_l1(r, m)
            count = count + m.sum()
        total = total + grads / jnp.maximum(count, 1)
    return total


def _least_squares_residual(pred, target, mask) -> jnp.ndarray:
    """s·pred + t − target per pixel [B, N] (0 off the mask) for `pred`, `target` [B, N] and
    `mask` [B, N] bool: s, t the per-image scale and shift minimising Σ_mask (s·pred + t −
    target)², MiDaS's `compute_scale_and_shift` (solved centred, for float32). A prediction
    constant over the mask (spread below 1e-5 of its magnitude) gets s = t = 0, as MiDaS's
    singular system does."""
    m = mask.astype(pred.dtype)
    n = jnp.maximum(m.sum(axis=1, keepdims=True), 1)
    pred_mean = (m * pred).sum(axis=1, keepdims=True) / n
    target_mean = (m * target).sum(axis=1, keepdims=True) / n
    spread = (pred - pred_mean) * m
    variance = (spread * spread).sum(axis=1, keepdims=True)
    ok = variance > 1e-10 * (m * pred * pred).sum(axis=1, keepdims=True)
    covariance = (spread * (target - target_mean)).sum(axis=1, keepdims=True)
    scale = jnp.where(ok, covariance / jnp.where(ok, variance, 1.0), 0.0)
    shift = jnp.where(ok, target_mean - scale * pred_mean, 0.0)
    return (scale * pred + shift - target) * m


def gradient_matching_loss(
    pred: jnp.ndarray, target: jnp.ndarray, mask: jnp.ndarray, scales: int = 4
) -> jnp.ndarray:
    """MiDaS's multi-scale gradient matching L_gm (V2 adds it with weight 2), as MiDaS computes
    it in `ScaleAndShiftInvariantLoss`.

    R = s·pred + t − target: the prediction aligned to the target disparity by per-image least
    squares, so R is invariant to `pred -> a * pred + b` and scales with the target (whose
    disparity the data pipeline normalises per image to [0, 1]). Then MiDaS's `GradientLoss`:
    at each of `scales` scales (every 2^k-th row and column) |∇x R| + |∇y R| summed over
    neighbour pairs with both pixels valid, divided by the batch's valid pixels at that scale;
    summed over the scales. (Taken instead between the median/MAD-normalised maps of the
    affine-invariant term, 2 L_gm stalled the demo's teacher at a constant output:
    docs/method.md.)

    Args:
      pred, target: [B, H, W] disparity; mask: [B, H, W] bool; scales: K (MiDaS: 4).

    Returns:
      Scalar float32; 0 for an empty mask.
    """
    valid = _flat(mask).astype(bool)
    residual = _least_squares_residual(_flat(pred), _flat(target), valid)
    pieces = ((residual.reshape(pred.shape), valid.reshape(pred.shape)),)
    return _multiscale_gradient(pieces, scales)


def cutmix_gradient_matching_loss(
    pred: jnp.ndarray,
    target_a: jnp.ndarray,
    target_b: jnp.ndarray,
    cutmix_mask: jnp.ndarray,
    valid_mask: jnp.ndarray,
    scales: int,
    trim_fraction: float = 0.0,
) -> jnp.ndarray:
    """`gradient_matching_loss` for a CutMix input, with the regions of
    `cutmix_affine_invariant_loss`: in each region the prediction is aligned to that region's
    target over its valid pixels; neighbour pairs count only inside one region (the two sides
    of the boundary are aligned apart), and the pixels that region's trim ignores
    (`trim_fraction`) are left out of the pairs and of the pixel count. Shapes as there; M = 1
    gives `gradient_matching_loss`.
    """
    regions = _cutmix_regions(pred, target_a, target_b, cutmix_mask, valid_mask, trim_fraction)
    pieces = [
        (
            _least_squares_residual(_flat(pred), target, valid).reshape(pred.shape),
            counted.reshape(pred.shape),
        )
        for target, valid, _, counted, _ in regions
    ]
    return _multiscale_gradient(pieces, scales)


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
