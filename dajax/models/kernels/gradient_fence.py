"""An identity whose gradient XLA:CPU computes once, into its own buffer.

Replaces: nothing (the reference passes the residual stream from block to block directly);
  the fast encoder calls `materialize_gradient` on it before every block.
Pays on: CPUs only: the backward goes through `lax.platform_dependent`, and other platforms
  pass the gradient through untouched.
Why: the residual stream's gradient is a chain of adds through every later block, and
  XLA:CPU fuses that chain into each consumer of each block's gradient (the transposes for the
  weight-gradient matmuls), recomputing it per block: quadratic in depth.
Measured: `benchmarks/README.md`, the `train_step.py` table, with
  `benchmarks/notes/2026-11-26-cpu-train-step.md` (the fence's share of a ViT-S step).

On CPUs the gradient passes through a `lax.cond` (XLA never fuses through one;
`lax.optimization_barrier` does not help there, XLA:CPU removes it before fusion) whose
branches both return it unchanged: the second branch runs only when its first element is NaN
and writes that NaN again, so XLA cannot merge the branches into one and drop the conditional.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def materialize_gradient(x: jnp.ndarray) -> jnp.ndarray:
    """Identity on x (any shape); its gradient is materialised once on CPUs (see the module)."""
    return x


def _fence(grad: jnp.ndarray) -> jnp.ndarray:
    first = grad.reshape(-1)[0]
    renan = lambda g: g.reshape(-1).at[0].set(jnp.nan).reshape(g.shape)  # noqa: E731
    return jax.lax.cond(first == first, lambda g: g, renan, grad)


def _materialize_gradient_fwd(x):
    return x, None


def _materialize_gradient_bwd(_, grad):
    return (jax.lax.platform_dependent(grad, cpu=_fence, default=lambda g: g),)


materialize_gradient.defvjp(_materialize_gradient_fwd, _materialize_gradient_bwd)
