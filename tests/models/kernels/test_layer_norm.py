"""`dajax.models.kernels.layer_norm`: flax's LayerNorm values with hand-written backwards."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from dajax.models.kernels.layer_norm import DeferredLayerNorm, LayerNorm, standardize


def _inputs(dtype):
    x = (3.0 * jax.random.normal(jax.random.key(0), (2, 37, 48)) + 1.5).astype(dtype)
    d_out = jax.random.normal(jax.random.key(1), x.shape).astype(dtype)
    return x, d_out


def _trained_params(module, x):
    """Params as `module.init` makes them, moved away from ones and zeros."""
    params = module.init(jax.random.key(2), x)
    keys = iter(jax.random.split(jax.random.key(3), 2))
    return jax.tree.map(lambda a: a + 0.5 * jax.random.normal(next(keys), a.shape), params)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_params_and_values_equal_flax(dtype):
    x, _ = _inputs(dtype)
    flax_norm = nn.LayerNorm(epsilon=1e-6, use_fast_variance=False, dtype=dtype)
    ours = LayerNorm(epsilon=1e-6, dtype=dtype)
    params = _trained_params(flax_norm, x)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(2), x)) == jax.tree.map(
        jnp.shape, flax_norm.init(jax.random.key(2), x)
    )
    got = ours.apply(params, x)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, flax_norm.apply(params, x))


def test_gradients_match_torch():
    x, d_out = _inputs(jnp.float32)
    ours = LayerNorm(epsilon=1e-6)
    params = _trained_params(ours, x)
    _, vjp = jax.vjp(lambda p, x: ours.apply(p, x), params, x)
    d_params, d_x = vjp(d_out)

    tx = torch.tensor(np.asarray(x), requires_grad=True)
    weight = torch.tensor(np.asarray(params["params"]["scale"]), requires_grad=True)
    bias = torch.tensor(np.asarray(params["params"]["bias"]), requires_grad=True)
    torch.nn.functional.layer_norm(tx, (48,), weight, bias, eps=1e-6).backward(
        torch.tensor(np.asarray(d_out))
    )
    np.testing.assert_allclose(d_x, tx.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        d_params["params"]["scale"], weight.grad.numpy(), rtol=1e-5, atol=1e-4
    )
    np.testing.assert_allclose(d_params["params"]["bias"], bias.grad.numpy(), rtol=1e-5, atol=1e-4)


def test_half_precision_gradients_keep_dtypes_and_track_float32():
    x, d_out = _inputs(jnp.bfloat16)
    ours = LayerNorm(epsilon=1e-6, dtype=jnp.bfloat16)
    params = _trained_params(ours, x)
    d_params, d_x = jax.vjp(lambda p, x: ours.apply(p, x), params, x)[1](d_out)
    assert d_x.dtype == jnp.bfloat16 and d_params["params"]["scale"].dtype == jnp.float32
    full = LayerNorm(epsilon=1e-6)
    args = jax.tree.map(lambda a: a.astype(jnp.float32), (params, x, d_out))
    want_params, want_x = jax.vjp(lambda p, x: full.apply(p, x), *args[:2])[1](args[2])
    scale = float(jnp.abs(want_x).max())
    np.testing.assert_allclose(np.float32(d_x), want_x, atol=2e-2 * scale)
    for name in ("scale", "bias"):
        want = want_params["params"][name]
        np.testing.assert_allclose(
            d_params["params"][name], want, atol=2e-2 * float(jnp.abs(want).max())
        )


def test_backward_keeps_the_input_and_two_floats_per_row():
    """The residuals of the VJP: x (bfloat16 here), mean and 1/std per row, and the params;
    no activation-sized float32 copy."""
    x, _ = _inputs(jnp.bfloat16)
    ours = LayerNorm(epsilon=1e-6, dtype=jnp.bfloat16)
    params = ours.init(jax.random.key(2), x)
    _, vjp = jax.vjp(lambda x: ours.apply(params, x), x)
    residual_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(vjp))
    rows = x.size // x.shape[-1]
    param_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(params))
    assert residual_bytes <= x.nbytes + 2 * rows * 4 + param_bytes


def test_deferred_layer_norm_has_layer_norm_params_and_leaves_it_the_affine():
    x, _ = _inputs(jnp.float32)
    full = LayerNorm(epsilon=1e-6)
    params = _trained_params(full, x)
    deferred = DeferredLayerNorm(epsilon=1e-6)
    assert jax.tree.map(jnp.shape, deferred.init(jax.random.key(2), x)) == jax.tree.map(
        jnp.shape, params
    )
    xhat, (scale, bias) = deferred.apply(params, x)
    np.testing.assert_array_equal(scale, params["params"]["scale"])
    np.testing.assert_allclose(xhat * scale + bias, full.apply(params, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(xhat.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(xhat.std(-1), 1.0, rtol=1e-4)


def test_standardize_gradient_matches_torch():
    x, d_out = _inputs(jnp.float32)
    _, vjp = jax.vjp(lambda x: standardize(x, 1e-6, jnp.float32), x)
    tx = torch.tensor(np.asarray(x), requires_grad=True)
    torch.nn.functional.layer_norm(tx, (48,), eps=1e-6).backward(torch.tensor(np.asarray(d_out)))
    np.testing.assert_allclose(vjp(d_out)[0], tx.grad.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("in_dtype", [jnp.float32, jnp.bfloat16])
def test_standardize_keeps_its_output_and_returns_the_input_dtype(in_dtype):
    """The backward keeps x̂ (in the output dtype) and 1/std per row, not the input, and the
    input's gradient comes back in the input's dtype."""
    x, d_out = _inputs(in_dtype)
    xhat, vjp = jax.vjp(lambda x: standardize(x, 1e-6, jnp.bfloat16), x)
    assert xhat.dtype == jnp.bfloat16
    rows = x.size // x.shape[-1]
    assert sum(leaf.nbytes for leaf in jax.tree.leaves(vjp)) <= xhat.nbytes + rows * 4
    (dx,) = vjp(d_out.astype(jnp.bfloat16))
    assert dx.dtype == in_dtype
    want = jax.vjp(lambda x: standardize(x, 1e-6, jnp.float32), x.astype(jnp.float32))[1]
    want = want(d_out.astype(jnp.float32))[0]
    scale = float(jnp.abs(want).max())
    np.testing.assert_allclose(np.float32(dx), want, atol=2e-2 * scale)
