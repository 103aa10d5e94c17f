"""Half-precision matmuls on CPUs: bf16 operands with float32 results, forward and backward.

Replaces: a bf16 × bf16 matmul or convolution with a bf16 result (what `nn.Dense`/`nn.Conv`
  compute at `dtype=bfloat16`); autodiff's backward of a bf16 × bf16 → float32 matmul, whose
  two matmuls multiply the float32 cotangent by a bf16 operand; a DPT head in bf16.
Pays on: CPUs only; elsewhere `result_dtype` returns None, the products keep the input dtype
  and `dot` is `jnp.dot`.
Why: XLA:CPU runs bf16 × bf16 with a float32 result on its fast path (YNNPACK's bf16
  kernels) but converts a matmul whose result is bf16 to float32 first, so without
  `result_dtype` bf16 compute runs no faster than float32 (`docs/cpu_inference.md`). A mixed
  float32 × bf16 matmul it also runs in float32, after converting the bf16 operand, and
  autodiff's backward of a bf16 step is made of those; `dot`'s backward casts the cotangent
  to bf16 once, so its input-gradient matmul runs on the fast path.
Measured: `benchmarks/README.md`, the `inference.py` and `demo_step.py` tables, with
  `benchmarks/notes/2026-12-07-cpu-training-pace.md`.

On CPUs the fast model's dots and convolutions therefore ask for a float32 result
(`preferred_element_type`) and round it to the compute dtype once; `dot` keeps the backward's
matmuls bf16 × bf16 as well; and the DPT head, all convolutions, computes in float32
(`convolution_dtype`: XLA:CPU has no bf16 convolution). GPU and TPU matmuls accumulate in
float32 inside already, and a float32 result there would double the output's memory traffic
and make the backward's matmuls mixed float32 × bfloat16 ones.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def result_dtype(dtype) -> jnp.dtype | None:
    """`preferred_element_type` for a matmul or convolution whose inputs are `dtype`: float32
    for a half-precision `dtype` when the program is traced for a CPU, else None (the input
    dtype). Decided when the program is traced, on this machine (like the attention kernel)."""
    dtype = jnp.dtype(dtype)
    if dtype.itemsize < 4 and jnp.issubdtype(dtype, jnp.floating):
        return jnp.float32 if jax.default_backend() == "cpu" else None
    return None


def convolution_dtype(dtype) -> jnp.dtype:
    """The dtype a convolutional decoder computes in for compute `dtype`: float32 for a
    half-precision `dtype` when the program is traced for a CPU, else `dtype`.

    XLA:CPU has no bf16 convolution: it converts a bf16 convolution's operands to float32 and
    its result back, and some bf16 kernel gradients it rewrites into slow reductions. The DPT
    head's 3x3 convolutions therefore gain nothing from bf16 on a CPU, and the conversions
    around them and bf16 elementwise work between them cost time.
    """
    dtype = jnp.dtype(dtype)
    return jnp.dtype(jnp.float32) if result_dtype(dtype) is not None else dtype


def dot(x: jnp.ndarray, w: jnp.ndarray, precision=None) -> jnp.ndarray:
    """x [..., K] @ w [K, N] -> [..., N], in `result_dtype(x.dtype)` (float32 for half-precision
    operands on CPUs, else x's dtype); `precision` as `jnp.dot`'s.

    Where the result is float32 the backward's matmuls keep half-precision operands as well:
    the cotangent is rounded to x's dtype once, and dx = g wᵀ and dw = xᵀ g take it with a
    float32 result (then rounded to x's and w's dtypes, as autodiff returns them).
    """
    if result_dtype(x.dtype) is None:
        return jnp.dot(x, w, precision=precision)
    return _half_dot(x, w, precision)


def _contract_rows(a: jnp.ndarray, b: jnp.ndarray, precision) -> jnp.ndarray:
    """aᵀ b for a [..., K], b [..., N] (the leading axes flattened into rows) -> [K, N]
    float32."""
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    dims = (((0,), (0,)), ((), ()))
    return jax.lax.dot_general(a, b, dims, precision, preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _half_dot(x, w, precision):
    return jnp.dot(x, w, precision=precision, preferred_element_type=jnp.float32)


def _half_dot_fwd(x, w, precision):
    return _half_dot(x, w, precision), (x, w)


def _half_dot_bwd(precision, residuals, g):
    x, w = residuals
    g = g.astype(x.dtype)
    dx = jnp.dot(g, w.T, precision=precision, preferred_element_type=jnp.float32)
    return dx.astype(x.dtype), _contract_rows(x, g, precision).astype(w.dtype)


_half_dot.defvjp(_half_dot_fwd, _half_dot_bwd)
