"""The result dtype of the fast model's matmuls and convolutions in half-precision compute.

Replaces: a bf16 × bf16 matmul or convolution with a bf16 result (what `nn.Dense`/`nn.Conv`
  compute at `dtype=bfloat16`).
Pays on: CPUs only; elsewhere `result_dtype` returns None and the products keep the input dtype.
Measured: XLA:CPU runs bf16 × bf16 with a float32 result on its fast path (YNNPACK's bf16
  kernels: ~1.8x float32 on an AVX-512-BF16 core, more with AMX) but converts a matmul whose
  result is bf16 to float32 first, so bf16 compute ran no faster than float32 before this
  (`docs/cpu_inference.md`).

On CPUs the fast model's dots and convolutions therefore ask for a float32 result
(`preferred_element_type`) and round it to the compute dtype once. GPU and TPU matmuls
accumulate in float32 inside already, and a float32 result there would double the output's
memory traffic and make the backward's matmuls mixed float32 × bfloat16 ones.
"""

from __future__ import annotations

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
