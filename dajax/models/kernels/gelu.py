"""Exact (erf) GELU computed in float32, with a backward recomputed from its input.

Replaces: `nn.gelu(x, approximate=False)` (the reference's MLP activation) and its autodiff.
Pays on: GPUs (measured on H100 compiles: the saving is memory traffic); the same code runs
  on every platform.
Why: autodiff of the erf form stores two more activation-sized partials per MLP, and
  `jax.nn.gelu` evaluates the erfc form in the input dtype, which XLA's GPU compiler splits
  into two kernels in the train step.
Measured: `benchmarks/roofline.py` on H100 compiles of the ViT-S teacher step
  (`benchmarks/notes/2026-11-26-roofline-program-changes.md`, the GELU rows).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _normal_cdf(x32: jnp.ndarray) -> jnp.ndarray:
    """Φ(x) = (1 + erf(x / √2)) / 2 of a float32 array."""
    return 0.5 * (1.0 + jax.lax.erf(x32 * 2.0**-0.5))


@jax.custom_vjp
def exact_gelu(x: jnp.ndarray) -> jnp.ndarray:
    """x · Φ(x) (erf GELU, PyTorch's default `nn.GELU`), any shape and float dtype.

    Computed as `0.5 · x · (1 + erf(x / √2))` in float32 and rounded to x's dtype, as PyTorch
    computes it for half-precision inputs. The gradient Φ(x) + x·φ(x) is recomputed from `x` in
    float32, so the forward pass keeps only its input for the backward.
    """
    x32 = x.astype(jnp.float32)
    return (x32 * _normal_cdf(x32)).astype(x.dtype)


def _exact_gelu_fwd(x):
    return exact_gelu(x), x


def _exact_gelu_bwd(x, grad):
    x32 = x.astype(jnp.float32)
    pdf = jnp.exp(-0.5 * x32 * x32) * (2.0 * jnp.pi) ** -0.5
    return ((grad.astype(jnp.float32) * (_normal_cdf(x32) + x32 * pdf)).astype(grad.dtype),)


exact_gelu.defvjp(_exact_gelu_fwd, _exact_gelu_bwd)
