"""Loss properties: invariances, closed forms, empty masks, CutMix regions, margins."""

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
    full = losses.affine_invariant_loss(spiked, target, mask, trim_fraction=0.0)
    trimmed = losses.affine_invariant_loss(spiked, target, mask, trim_fraction=0.1)
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
