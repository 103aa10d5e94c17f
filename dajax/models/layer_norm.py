"""LayerNorm over the last axis with a hand-written backward (float32 statistics).

Same parameters (`scale`, `bias`), initial values and forward values as
`flax.linen.LayerNorm(use_fast_variance=False)`: statistics in float32 whatever the input
dtype, the output in the module's dtype. Autodiff of that forward leaves XLA's GPU compiler
about 12 activation-sized passes per LayerNorm backward spread over five kernels (26 of the
105 memory-bound GB of a ViT-L teacher step on an H100, `benchmarks/roofline.py`). The
backward here keeps only the input and two per-row floats from the forward and computes

    x̂ = (x - mean) · rstd,  g = dy · scale
    dx = rstd · (g - mean(g) - x̂ · mean(g · x̂)),  dscale = Σ dy · x̂,  dbias = Σ dy

as one row-normalisation kernel for dx and one column reduction for dscale and dbias.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = jnp.dtype | type


def _statistics(x: jnp.ndarray, epsilon: float) -> tuple[jnp.ndarray, jnp.ndarray]:
    """x: [..., C] -> (mean, 1 / sqrt(var + epsilon)), each [..., 1] float32."""
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    return mean, jax.lax.rsqrt(var + epsilon)


def _normalize(x, mean, rstd, scale, bias, dtype):
    y = (x.astype(jnp.float32) - mean) * (rstd * scale.astype(jnp.float32))
    return (y + bias.astype(jnp.float32)).astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def layer_norm(
    x: jnp.ndarray, scale: jnp.ndarray, bias: jnp.ndarray, epsilon: float, dtype: Dtype
) -> jnp.ndarray:
    """Normalises the last axis of x: [..., C] with scale, bias: [C]; returns [..., C] `dtype`.

    Statistics and arithmetic in float32; the gradient of x comes back in x's dtype, those of
    scale and bias in theirs.
    """
    mean, rstd = _statistics(x, epsilon)
    return _normalize(x, mean, rstd, scale, bias, dtype)


def _forward(x, scale, bias, epsilon, dtype):
    # Saved, not recomputed: XLA otherwise recomputes the row statistics inside the backward's
    # kernels and can no longer fuse dscale's column reduction with dbias's.
    mean, rstd = jax.lax.optimization_barrier(_statistics(x, epsilon))
    return _normalize(x, mean, rstd, scale, bias, dtype), (x, mean, rstd, scale, bias)


def _backward(epsilon, dtype, residuals, dy):
    del epsilon, dtype
    x, mean, rstd, scale, bias = residuals
    dy32 = dy.astype(jnp.float32)
    xhat = (x.astype(jnp.float32) - mean) * rstd
    g = dy32 * scale.astype(jnp.float32)
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    rows = tuple(range(dy.ndim - 1))
    dscale = (dy32 * xhat).sum(rows)
    dbias = dy32.sum(rows)
    return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(bias.dtype)


layer_norm.defvjp(_forward, _backward)


class LayerNorm(nn.Module):
    """`flax.linen.LayerNorm(use_fast_variance=False)` over the last axis with `layer_norm`'s
    backward: params `scale` (ones) and `bias` (zeros), [C] `param_dtype`."""

    epsilon: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """x: [..., C] -> [..., C] `dtype`."""
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
        return layer_norm(x, scale, bias, self.epsilon, jnp.dtype(self.dtype))
