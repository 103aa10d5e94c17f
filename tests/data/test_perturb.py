"""On-device perturbations and CutMix: exact masks and mixing, ranges, determinism."""

import jax
import jax.numpy as jnp
import numpy as np

from configs import student
from dajax.data import perturb

PERTURB = student.get_config().perturb  # the paper's settings, as the student uses them


def test_cutmix_masks_are_single_boxes_applied_with_probability_p():
    masks = np.asarray(perturb.cutmix_masks(jax.random.key(0), 400, 24, 32, p=0.5))
    assert set(np.unique(masks)) <= {0.0, 1.0}
    mixed = masks.reshape(400, -1).any(1)
    assert 0.4 < mixed.mean() < 0.6
    for m in masks[mixed]:
        rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        box = m[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        assert box.all() and m.sum() == box.size  # one filled rectangle
        assert np.all(np.diff(rows) == 1) and np.all(np.diff(cols) == 1)
    assert not np.asarray(perturb.cutmix_masks(jax.random.key(1), 20, 8, 8, p=0.0)).any()


def test_cutmix_takes_inside_pixels_from_a_and_outside_from_b():
    key_a, key_b = jax.random.split(jax.random.key(2))
    a = jax.random.uniform(key_a, (6, 10, 12, 3))
    b = jax.random.uniform(key_b, (6, 10, 12, 3))
    masks = perturb.cutmix_masks(jax.random.key(3), 6, 10, 12, p=1.0)
    mixed = np.asarray(perturb.cutmix(a, b, masks))
    inside = np.asarray(masks, bool)
    np.testing.assert_array_equal(mixed[inside], np.asarray(a)[inside])
    np.testing.assert_array_equal(mixed[~inside], np.asarray(b)[~inside])


def test_strong_perturbations_stay_in_range_are_seeded_and_keep_shape():
    x = jax.random.uniform(jax.random.key(4), (8, 16, 16, 3))
    run = jax.jit(lambda x, k: perturb.strong_perturb(x, k, PERTURB))
    y1, y2, y3 = run(x, jax.random.key(5)), run(x, jax.random.key(5)), run(x, jax.random.key(6))
    assert y1.shape == x.shape and float(y1.min()) >= 0.0 and float(y1.max()) <= 1.0
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1, y3)


def test_grayscale_and_blur_limits():
    x = jax.random.uniform(jax.random.key(7), (4, 12, 12, 3))
    gray = np.asarray(perturb.random_grayscale(x, jax.random.key(8), p=1.0))
    np.testing.assert_allclose(gray[..., 0], gray[..., 2])
    np.testing.assert_allclose(gray[..., 0], np.asarray(x) @ np.array([0.299, 0.587, 0.114]), 1e-6)
    flat = jnp.full((2, 9, 9, 3), 0.3)
    blurred = perturb.gaussian_blur(flat, jax.random.key(9), p=1.0)
    np.testing.assert_allclose(blurred, 0.3, atol=1e-6)  # a blur preserves constants
    untouched = perturb.gaussian_blur(x, jax.random.key(9), p=0.0)
    np.testing.assert_array_equal(untouched, x)
