"""`kernels.resample`: the transposed taps are the resize matrix's transpose, and the custom
gradient equals autodiff's (scatter-add) gradient of the same gathers."""

import jax
import numpy as np
import pytest

from dajax.models.kernels.resample import apply_taps, gather_resample, transpose_taps


def _dense(idx, w, cols):
    """The [rows, cols] matrix whose row r is Σ_k w[r, k] · e_{idx[r, k]}."""
    m = np.zeros((idx.shape[0], cols), np.float64)
    np.add.at(m, (np.arange(idx.shape[0])[:, None], idx), w)
    return m


@pytest.mark.parametrize("out_size, in_size, k", [(9, 4, 2), (4, 9, 4), (7, 7, 3)])
def test_transposed_taps_are_the_transpose(out_size, in_size, k):
    rng = np.random.RandomState(out_size)
    idx = rng.randint(0, in_size, (out_size, k)).astype(np.int32)
    w = rng.randn(out_size, k).astype(np.float32)
    t_idx, t_w = transpose_taps(idx, w, in_size)
    assert t_idx.shape[0] == in_size
    np.testing.assert_array_equal(_dense(t_idx, t_w, out_size), _dense(idx, w, in_size).T)
    # Each input's feeds are listed in output order (the summation order of the backward).
    for i in range(in_size):
        fed = t_idx[i][t_w[i] != 0]
        assert list(fed) == sorted(fed)


def test_gradient_equals_autodiff_of_the_gathers():
    rng = np.random.RandomState(0)
    idx = rng.randint(0, 6, (10, 3)).astype(np.int32)
    w = rng.rand(10, 3).astype(np.float32)
    x = rng.randn(2, 6, 5).astype(np.float32)
    cotangent = rng.randn(2, 10, 5).astype(np.float32)
    want = jax.vjp(lambda x: apply_taps(x, 1, idx, w), x)[1](cotangent)[0]
    got = jax.vjp(lambda x: gather_resample(x, 1, idx, w), x)[1](cotangent)[0]
    np.testing.assert_array_equal(gather_resample(x, 1, idx, w), apply_taps(x, 1, idx, w))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
