"""`kernels.folded_dense`: affines folded into a matmul's weights equal the affines applied."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dajax.models.kernels.folded_dense import FoldedDense, folded_dense


def _arrays():
    keys = iter(jax.random.split(jax.random.key(0), 8))
    draw = lambda *shape: jax.random.normal(next(keys), shape)  # noqa: E731
    x, kernel, bias = draw(3, 5, 16), draw(16, 24) * 0.2, draw(24)
    scale, shift, gamma = 1.0 + 0.3 * draw(16), draw(16), 0.5 * draw(24)
    return x, kernel, bias, scale, shift, gamma


def _applied(x, kernel, bias, scale, shift, gamma):
    return ((x * scale + shift) @ kernel + bias) * gamma


@pytest.mark.parametrize("in_affine, out_scale", [(True, True), (True, False), (False, True)])
def test_folded_affines_equal_applied_affines_in_value_and_gradient(in_affine, out_scale):
    x, kernel, bias, scale, shift, gamma = _arrays()
    ones, zeros = jnp.ones_like(scale), jnp.zeros_like(shift)

    def folded(*args):
        x, kernel, bias, scale, shift, gamma = args
        return folded_dense(
            x,
            kernel,
            bias,
            jnp.float32,
            (scale, shift) if in_affine else None,
            gamma if out_scale else None,
        )

    def applied(*args):
        x, kernel, bias, scale, shift, gamma = args
        if not in_affine:
            scale, shift = ones, zeros
        return _applied(x, kernel, bias, scale, shift, gamma if out_scale else 1.0)

    args = (x, kernel, bias, scale, shift, gamma)
    cotangent = jax.random.normal(jax.random.key(1), (3, 5, 24))
    got, got_vjp = jax.vjp(folded, *args)
    want, want_vjp = jax.vjp(applied, *args)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for name, g, w in zip(
        "x kernel bias scale shift gamma".split(),
        got_vjp(cotangent),
        want_vjp(cotangent),
        strict=True,
    ):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4, err_msg=name)


def test_bfloat16_folding_tracks_float32():
    x, kernel, bias, scale, shift, gamma = _arrays()
    got = folded_dense(x, kernel, bias, jnp.bfloat16, (scale, shift), gamma)
    assert got.dtype == jnp.bfloat16
    want = _applied(x, kernel, bias, scale, shift, gamma)
    np.testing.assert_allclose(np.float32(got), want, atol=2e-2 * float(jnp.abs(want).max()))


def test_affine_dense_has_dense_params_and_values():
    x = _arrays()[0]
    dense = nn.Dense(24, kernel_init=nn.initializers.truncated_normal(0.02))
    ours = FoldedDense(24)
    params = ours.init(jax.random.key(2), x)
    want = dense.init(jax.random.key(2), x)
    jax.tree.map(np.testing.assert_array_equal, params, want)
    np.testing.assert_allclose(ours.apply(params, x), dense.apply(params, x), rtol=1e-6)
