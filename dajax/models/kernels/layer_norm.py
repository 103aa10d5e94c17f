"""LayerNorm over the last axis with hand-written backwards (float32 statistics).

Replaces: autodiff of `flax.linen.LayerNorm(use_fast_variance=False)` (the reference's
  `nn.LayerNorm`), whose parameters (`scale`, `bias`), initial values and forward values
  `LayerNorm` keeps.
Pays on: GPUs (measured on H100 compiles: the saving is memory traffic); the same code runs
  on every platform.
Why: autodiff leaves XLA's GPU compiler about 12 activation-sized passes per LayerNorm
  backward, over five kernels.
Measured: `benchmarks/roofline.py` on H100 compiles of the ViT-S and ViT-L teacher steps
  (`benchmarks/notes/2026-11-26-roofline-program-changes.md`, the LayerNorm rows).

The backward keeps only the input and two per-row floats from the forward and computes

    x̂ = (x - mean) · rstd,  g = dy · scale
    dx = rstd · (g - mean(g) - x̂ · mean(g · x̂)),  dscale = Σ dy · x̂,  dbias = Σ dy

as one row-normalisation kernel for dx and one column reduction for dscale and dbias.

`DeferredLayerNorm` has the same parameters but returns x̂ and leaves `scale` and `bias` to
the caller, which folds them into the next matmul's weights (`kernels.folded_dense`). Its
backward is the row kernel alone, computed from the saved output x̂ (which the next matmul's
weight gradient keeps anyway) instead of the input.
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


def _standardized(x, mean, rstd):
    """x̂ = (x - mean) · rstd in float32."""
    return (x.astype(jnp.float32) - mean) * rstd


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


def _input_gradient(xhat: jnp.ndarray, rstd: jnp.ndarray, g: jnp.ndarray) -> jnp.ndarray:
    """dx of x̂ = (x - mean) · rstd from g = dx̂; all float32, [..., C] (rstd [..., 1])."""
    return rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))


def _backward(epsilon, dtype, residuals, dy):
    del epsilon, dtype
    x, mean, rstd, scale, bias = residuals
    dy32 = dy.astype(jnp.float32)
    xhat = _standardized(x, mean, rstd)
    dx = _input_gradient(xhat, rstd, dy32 * scale.astype(jnp.float32))
    rows = tuple(range(dy.ndim - 1))
    dscale = (dy32 * xhat).sum(rows)
    dbias = dy32.sum(rows)
    return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(bias.dtype)


layer_norm.defvjp(_forward, _backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def standardize(x: jnp.ndarray, epsilon: float, dtype: Dtype) -> jnp.ndarray:
    """x̂ = (x - mean) / sqrt(var + epsilon) over the last axis: [..., C] -> [..., C] `dtype`.

    `layer_norm` without scale and bias. The backward keeps the output x̂ and 1/std per row, not
    the input.
    """
    return _standardized(x, *_statistics(x, epsilon)).astype(dtype)


def _standardize_forward(x, epsilon, dtype):
    mean, rstd = _statistics(x, epsilon)
    xhat = _standardized(x, mean, rstd).astype(dtype)
    # Behind the barrier XLA cannot recompute x̂ from x inside the backward's kernel, which kept
    # x alive and made it copy the residual stream before each matmul that adds into it.
    xhat, rstd = jax.lax.optimization_barrier((xhat, rstd))
    return xhat, (xhat, rstd, jnp.empty((0,), x.dtype))


def _standardize_backward(epsilon, dtype, residuals, dy):
    del epsilon, dtype
    xhat, rstd, x_dtype = residuals
    dx = _input_gradient(xhat.astype(jnp.float32), rstd, dy.astype(jnp.float32))
    return (dx.astype(x_dtype.dtype),)


standardize.defvjp(_standardize_forward, _standardize_backward)


def _affine_params(module: nn.Module, channels: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """A LayerNorm's `scale` (ones) and `bias` (zeros), [C] `param_dtype`, declared on `module`
    (called from its compact method)."""
    scale = module.param("scale", nn.initializers.ones, (channels,), module.param_dtype)
    bias = module.param("bias", nn.initializers.zeros, (channels,), module.param_dtype)
    return scale, bias


class LayerNorm(nn.Module):
    """`flax.linen.LayerNorm(use_fast_variance=False)` over the last axis with `layer_norm`'s
    backward: params `scale` (ones) and `bias` (zeros), [C] `param_dtype`."""

    epsilon: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """x: [..., C] -> [..., C] `dtype`."""
        scale, bias = _affine_params(self, x.shape[-1])
        return layer_norm(x, scale, bias, self.epsilon, jnp.dtype(self.dtype))


class DeferredLayerNorm(nn.Module):
    """`LayerNorm`'s params with the affine left to the caller: `LayerNorm()(x)` equals
    `x̂ · scale + bias` for `x̂, (scale, bias) = DeferredLayerNorm()(x)`, up to rounding."""

    epsilon: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> tuple[jnp.ndarray, tuple[jnp.ndarray, jnp.ndarray]]:
        """x: [..., C] -> (x̂ [..., C] `dtype`, (scale [C], bias [C]) `param_dtype`)."""
        affine = _affine_params(self, x.shape[-1])
        return standardize(x, self.epsilon, jnp.dtype(self.dtype)), affine
