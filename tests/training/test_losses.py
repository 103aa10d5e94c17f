"""Loss properties: invariances, closed forms, empty masks, CutMix regions, margins, and V2's
gradient matching and trim against numpy references."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dajax.training import losses


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    pred = rng.uniform(0.1, 2.0, (3, 12, 16)).astype(np.float32)
    target = rng.uniform(0.1, 2.0, (3, 12, 16)).astype(np.float32)
    mask = rng.rand(3, 12, 16) > 0.3
    return jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask)


def test_masked_median_matches_numpy():
    rng = np.random.RandomState(1)
    x = rng.randn(4, 9).astype(np.float32)
    mask = rng.rand(4, 9) > 0.4
    mask[0] = False
    got = np.asarray(losses.masked_median(jnp.asarray(x), jnp.asarray(mask)))
    expect = [np.median(r[m]) if m.any() else 0.0 for r, m in zip(x, mask, strict=True)]
    np.testing.assert_allclose(got, expect, rtol=1e-6)


def test_affine_invariance_of_both_sides(data):
    pred, target, mask = data
    base = losses.affine_invariant_loss(pred, target, mask)
    assert float(base) > 0.1
    moved = losses.affine_invariant_loss(7.3 * pred - 2.0, 0.2 * target + 5.0, mask)
    assert abs(float(moved) - float(base)) < 1e-5
    assert float(losses.affine_invariant_loss(3 * target + 1, target, mask)) < 1e-5


def test_closed_form_single_image():
    # Valid values [1, 2, 3, 4] vs [4, 3, 2, 1]: median 2.5, MAD 1 -> normalised (-1.5 .. 1.5)
    # and its negation; mean |difference| = (3 + 1 + 1 + 3) / 4 = 2.
    pred = jnp.array([[[1.0, 2.0], [3.0, 4.0]]])
    target = jnp.array([[[4.0, 3.0], [2.0, 1.0]]])
    mask = jnp.ones((1, 2, 2), bool)
    assert float(losses.affine_invariant_loss(pred, target, mask)) == pytest.approx(2.0)


def test_empty_masks_give_zero_and_finite_gradients(data):
    pred, target, _ = data
    empty = jnp.zeros(pred.shape, bool)
    value, grad = jax.value_and_grad(losses.affine_invariant_loss)(pred, target, empty)
    assert float(value) == 0.0 and bool(jnp.isfinite(grad).all())
    const = jnp.ones_like(pred)
    grad = jax.grad(losses.affine_invariant_loss)(const, const, jnp.ones(pred.shape, bool))
    assert bool(jnp.isfinite(grad).all())


def test_trimming_ignores_the_largest_residuals(data):
    pred, target, mask = data
    spiked = pred.at[0, 0, 0].set(1e4).at[0, 5, 5].set(-1e4)
    whole = jnp.ones(pred.shape)  # M = 1: the student's loss with CutMix off
    full = losses.cutmix_affine_invariant_loss(spiked, target, target, whole, mask)
    trimmed = losses.cutmix_affine_invariant_loss(spiked, target, target, whole, mask, 0.1)
    assert float(trimmed) < float(full)


def test_cutmix_regions(data):
    pred, target_a, mask = data
    target_b = target_a[::-1]
    ones = jnp.ones(pred.shape)
    np.testing.assert_allclose(
        losses.cutmix_affine_invariant_loss(pred, target_a, target_b, ones, mask),
        losses.affine_invariant_loss(pred, target_a, mask),
        rtol=1e-6,
    )
    box = jnp.zeros(pred.shape).at[:, 2:8, 3:11].set(1.0)
    inside = box > 0.5
    area = 6 * 8 / (12 * 16)
    expect = np.mean(
        [
            area
            * float(
                losses.affine_invariant_loss(
                    pred[i : i + 1], target_a[i : i + 1], (mask & inside)[i : i + 1]
                )
            )
            + (1 - area)
            * float(
                losses.affine_invariant_loss(
                    pred[i : i + 1], target_b[i : i + 1], (mask & ~inside)[i : i + 1]
                )
            )
            for i in range(3)
        ]
    )
    got = losses.cutmix_affine_invariant_loss(pred, target_a, target_b, box, mask)
    assert float(got) == pytest.approx(expect, rel=1e-5)


def test_feature_alignment_margin():
    rng = np.random.RandomState(2)
    f = jnp.asarray(rng.randn(2, 5, 8).astype(np.float32))
    assert float(losses.feature_alignment_loss(f, f)) == 0.0  # all within the margin
    grad = jax.grad(losses.feature_alignment_loss)(f, f)
    assert bool((grad == 0).all())
    g = -f  # cos = -1 everywhere: dissimilarity 2
    assert float(losses.feature_alignment_loss(f, g)) == pytest.approx(2.0, rel=1e-5)
    mixed = f.at[:, :2].set(-f[:, :2])  # 2 of 5 tokens opposite, 3 identical
    # Identical tokens contribute 0 but count in the mean: 2 x 2 / 5.
    assert float(losses.feature_alignment_loss(f, mixed, margin=0.15)) == pytest.approx(
        0.8, rel=1e-5
    )
    assert float(losses.share_within_margin(f, mixed, margin=0.15)) == pytest.approx(0.6)


def _rotated(f, angles):
    """Each token of f [N, 2] turned by its angle [N] (radians): 1 − cos = 1 − cos(angle)."""
    c, s = jnp.cos(angles), jnp.sin(angles)
    return jnp.stack([c * f[:, 0] - s * f[:, 1], s * f[:, 0] + c * f[:, 1]], -1)


def test_feature_alignment_is_continuous_across_the_margin():
    n, margin = 100, 0.15
    f = jnp.tile(jnp.asarray([[1.0, 0.0]]), (n, 1))
    at_margin = float(jnp.arccos(1 - margin))
    angles = jnp.full((n,), 0.1 * at_margin)  # all well inside
    below = angles.at[0].set(at_margin - 1e-4)
    above = angles.at[0].set(at_margin + 1e-4)
    loss = lambda a: float(losses.feature_alignment_loss(_rotated(f, a)[None], f[None], margin))  # noqa: E731
    assert loss(below) == 0.0
    # One token crossing changes the loss by its own term, 1 − cos / N ≈ α / N, no more.
    assert loss(above) == pytest.approx(margin / n, rel=1e-2)


def test_feature_alignment_gradient_does_not_grow_as_fewer_tokens_are_active():
    n = 64
    f = jnp.tile(jnp.asarray([[1.0, 0.0]]), (n, 1))
    grads = []
    for active in (1, n // 2, n):
        angles = jnp.where(jnp.arange(n) < active, 1.2, 0.01)  # 1 − cos(1.2) = 0.64 > α
        student = _rotated(f, angles)[None]
        grad = jax.grad(losses.feature_alignment_loss)(student, f[None])
        grads.append(float(jnp.linalg.norm(grad[0, 0])))  # token 0 is active in every case
    np.testing.assert_allclose(grads, grads[0], rtol=1e-5)


def test_silog_closed_form(data):
    _, target, mask = data
    scaled = target * 2.0  # g = log 2 everywhere: sqrt(l2^2 - 0.5 l2^2) = log2 / sqrt(2)
    assert float(losses.silog_loss(scaled, target, mask)) == pytest.approx(
        np.log(2) / np.sqrt(2), rel=1e-4
    )
    assert float(losses.silog_loss(scaled, target, mask, lam=1.0)) < 5e-3  # float32 cancellation
    assert bool(jnp.isfinite(jax.grad(losses.silog_loss)(target, target, mask)).all())


def test_gradient_matching_is_affine_invariant(data):
    pred, target, mask = data
    assert float(losses.gradient_matching_loss(2 * target + 1, target, jnp.ones_like(mask))) < 1e-4
    assert float(losses.gradient_matching_loss(pred, target, mask)) > 0.01


def test_gradient_has_no_shift_or_scale_component(data):
    # The loss is invariant to pred -> a * pred + b, so its gradient is orthogonal to both
    # directions: <g, 1> = 0 (shift) and <g, pred> = 0 (scale), per image. A gradient that is
    # stopped at the median breaks both.
    pred, target, mask = data
    grad = jax.grad(losses.affine_invariant_loss)(pred, target, mask)
    scale = float(jnp.abs(grad).sum())
    assert scale > 1e-3
    for b in range(pred.shape[0]):
        assert abs(float(grad[b].sum())) < 1e-5 * scale
        assert abs(float((grad[b] * pred[b]).sum())) < 1e-5 * scale
    cut = jax.grad(losses.cutmix_affine_invariant_loss)(
        pred, target, target[::-1], jnp.ones_like(pred), mask
    )
    for b in range(pred.shape[0]):
        assert abs(float(cut[b].sum())) < 1e-5 * float(jnp.abs(cut).sum())


# Depth Anything V2's additions, against independent numpy versions in closed loops.


def _normalized_np(d, valid):
    """(d − median) / mean|d − median| over the valid pixels of one image, 0 elsewhere."""
    out = np.zeros(d.shape)
    if valid.any():
        centred = d[valid].astype(np.float64) - np.median(d[valid])
        out[valid] = centred / max(np.abs(centred).mean(), 1e-6)
    return out


def _aligned_residual_np(pred, target, valid):
    """MiDaS's s·pred + t − target of one image on its valid pixels (least squares, float64)."""
    out = np.zeros(pred.shape)
    design = np.stack([pred[valid], np.ones(valid.sum())], 1).astype(np.float64)
    (scale, shift), *_ = np.linalg.lstsq(design, target[valid].astype(np.float64), rcond=None)
    out[valid] = scale * pred[valid] + shift - target[valid]
    return out


def _midas_gradient_np(residual, piece, scales=4):
    """MiDaS's `GradientLoss` with `reduction_batch_based`, in loops: at scale k (every 2^k-th
    row and column) Σ |R_i − R_j| over right and lower neighbours in the same piece, divided by
    the batch's pixels in any piece at that scale (piece < 0: not valid); summed over scales."""
    total = 0.0
    for k in range(scales):
        step = 2**k
        grads = pixels = 0.0
        for r, p in zip(residual[:, ::step, ::step], piece[:, ::step, ::step], strict=True):
            h, w = r.shape
            for i in range(h):
                for j in range(w):
                    if p[i, j] < 0:
                        continue
                    pixels += 1
                    if j + 1 < w and p[i, j + 1] == p[i, j]:
                        grads += abs(r[i, j + 1] - r[i, j])
                    if i + 1 < h and p[i + 1, j] == p[i, j]:
                        grads += abs(r[i + 1, j] - r[i, j])
        total += grads / pixels if pixels else 0.0
    return total


def _trim_np(residual, valid, fraction):
    """The valid pixels kept: floor((1 − fraction) n) smallest residuals, ties by position."""
    n = int(valid.sum())
    keep = int(Fraction(n) * (1 - Fraction(str(fraction))))
    order = [i for i in np.argsort(residual, kind="stable") if valid[i]]
    kept = np.zeros(valid.shape, bool)
    kept[order[:keep]] = True
    return kept


def test_gradient_matching_is_midas_gradient_loss_at_midas_scale(data):
    pred, target, mask = (np.asarray(x) for x in data)
    mask = mask.copy()
    mask[1] = False  # an image without valid pixels adds nothing, as in MiDaS
    residual = np.zeros(pred.shape)
    for i in (0, 2):
        residual[i] = _aligned_residual_np(pred[i], target[i], mask[i])
    piece = np.where(mask, 0, -1)
    for scales in (1, 4):
        want = _midas_gradient_np(residual, piece, scales)
        got = losses.gradient_matching_loss(
            jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask), scales
        )
        assert float(got) == pytest.approx(want, rel=1e-6)
    moved = losses.gradient_matching_loss(
        jnp.asarray(3 * pred + 1), jnp.asarray(target), jnp.asarray(mask)
    )
    assert float(moved) == pytest.approx(_midas_gradient_np(residual, piece), rel=1e-5)
    const = jnp.ones(pred.shape)  # MiDaS's singular system: s = t = 0, R = −target
    flat = _midas_gradient_np(np.where(mask, -target, 0.0), piece)
    got = losses.gradient_matching_loss(const, jnp.asarray(target), jnp.asarray(mask))
    assert float(got) == pytest.approx(flat, rel=1e-6)


def test_cutmix_gradient_matching_keeps_pairs_inside_one_region(data):
    pred, target_a, mask = (np.asarray(x) for x in data)
    target_b = target_a[::-1].copy()
    box = np.zeros(pred.shape, bool)
    box[:, 2:8, 3:11] = True
    residual, piece = np.zeros(pred.shape), np.full(pred.shape, -1)
    for i in range(len(pred)):
        for region, target, label in ((box[i], target_a[i], 0), (~box[i], target_b[i], 1)):
            valid = mask[i] & region
            residual[i][valid] = _aligned_residual_np(pred[i], target, valid)[valid]
            piece[i][valid] = label
    args = [jnp.asarray(x) for x in (pred, target_a, target_b, box.astype(np.float32), mask)]
    got = losses.cutmix_gradient_matching_loss(*args, scales=4)
    assert float(got) == pytest.approx(_midas_gradient_np(residual, piece), rel=1e-6)
    whole = jnp.ones(pred.shape)
    np.testing.assert_allclose(
        losses.cutmix_gradient_matching_loss(args[0], args[1], args[2], whole, args[4], 4),
        losses.gradient_matching_loss(args[0], args[1], args[4], 4),
        rtol=1e-6,
    )
    # Trimmed pixels leave the pairs and the count; the alignment still uses every pixel.
    trimmed_piece = piece.copy()
    for i in range(len(pred)):
        for region, target in ((box[i], target_a[i]), (~box[i], target_b[i])):
            valid = mask[i] & region
            res = np.abs(_normalized_np(pred[i], valid) - _normalized_np(target, valid)).ravel()
            kept = _trim_np(res, valid.ravel(), 0.1).reshape(valid.shape)
            trimmed_piece[i][valid & ~kept] = -1
    got = losses.cutmix_gradient_matching_loss(*args, scales=4, trim_fraction=0.1)
    assert float(got) == pytest.approx(_midas_gradient_np(residual, trimmed_piece), rel=1e-6)


def test_trim_keeps_the_floor_share_and_splits_ties_at_the_cut():
    residual = jnp.asarray([[0.0] * 95 + [1.0, 2.0, 3.0, 4.0, 5.0]])
    kept = np.asarray(losses.trimmed_mask(residual, jnp.ones((1, 100), bool), 0.1))[0]
    assert kept.sum() == 90 and kept[:90].all() and not kept[90:].any()
    rng = np.random.RandomState(3)
    for fraction in (0.1, 0.47, 0.25):  # 100 × (1 − 0.47) is 52.99… in float32
        res = rng.randint(0, 4, (6, 100)).astype(np.float32)  # many ties
        valid = rng.rand(6, 100) > 0.3
        valid[0], valid[1] = True, False
        got = np.asarray(losses.trimmed_mask(jnp.asarray(res), jnp.asarray(valid), fraction))
        want = np.stack([_trim_np(r, v, fraction) for r, v in zip(res, valid, strict=True)])
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\), got 1.0"):
        losses.trimmed_mask(residual, jnp.ones((1, 100), bool), 1.0)


def test_trimmed_loss_keeps_an_image_whose_cut_falls_in_a_tie():
    # Image 0: the target permutes 5 of the prediction's 100 values, so median and deviation
    # agree and 95 residuals are exactly 0, 5 positive: trimming 10% keeps 90 zeros (loss 0),
    # and the image still counts in the mean over images.
    rng = np.random.RandomState(4)
    pred = rng.uniform(0.1, 2.0, (2, 10, 10)).astype(np.float32)
    target = pred.copy()
    target[0].flat[:5] = np.roll(pred[0].flat[:5], 1)
    target[1] = rng.uniform(0.1, 2.0, (10, 10))
    mask = jnp.ones(pred.shape, bool)

    def trimmed(p, t, m):  # M = 1: the student's trimmed loss with CutMix off
        p, t = jnp.asarray(p), jnp.asarray(t)
        return losses.cutmix_affine_invariant_loss(p, t, t, jnp.ones(p.shape), m, 0.1)

    both = trimmed(pred, target, mask)
    second = trimmed(pred[1:], target[1:], mask[1:])
    assert float(second) > 0.1
    assert float(both) == pytest.approx(0.5 * float(second), rel=1e-6)


def test_trimmed_cutmix_loss_trims_each_region_on_its_own(data):
    pred, target_a, mask = (np.asarray(x) for x in data)
    target_b = target_a[::-1].copy()
    box = np.zeros(pred.shape, bool)
    box[:, 2:8, 3:11] = True
    want = []
    for i in range(len(pred)):
        image = 0.0
        for region, target in ((box[i], target_a[i]), (~box[i], target_b[i])):
            valid = mask[i] & region
            res = np.abs(_normalized_np(pred[i], valid) - _normalized_np(target, valid)).ravel()
            kept = _trim_np(res, valid.ravel(), 0.1)
            image += res[kept].mean() * region.mean()
        want.append(image)
    args = [jnp.asarray(x) for x in (pred, target_a, target_b, box.astype(np.float32), mask)]
    got = losses.cutmix_affine_invariant_loss(*args, trim_fraction=0.1)
    assert float(got) == pytest.approx(np.mean(want), rel=1e-5)
    assert float(got) < float(losses.cutmix_affine_invariant_loss(*args))
