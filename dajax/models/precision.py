"""The result dtype of the models' matmuls and convolutions in half-precision compute.

XLA:CPU runs a bfloat16 × bfloat16 matmul with a float32 result on its fast path (YNNPACK's
bf16 kernels: ~1.8x float32 on an AVX-512-BF16 core, more with AMX), but converts a matmul
whose result is bfloat16 to float32 first, so bf16 compute ran no faster than float32 there.
On CPUs the models' dots and convolutions therefore ask for a float32 result
(`preferred_element_type`) and round it to the compute dtype once. Elsewhere they keep the
input dtype: GPU and TPU matmuls accumulate in float32 inside already, and a float32 result
would double the output's memory traffic and make the backward's matmuls mixed
float32 × bfloat16 ones.
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
