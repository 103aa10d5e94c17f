"""Dense layers with a LayerNorm's affine and a LayerScale folded into their weights.

Replaces: in each DINOv2 block, `nn.LayerNorm`'s `x̂ · scale + bias` before the first matmul
  of a branch and LayerScale's `y · gamma` after its last one (the reference's
  `Dense(LayerNorm(x))` and `LayerScale(Dense(h))`), and the qkv projection's one [D, 3D]
  matmul whose output is sliced into q, k and v.
Pays on: GPUs (measured on H100 compiles: the saving is memory traffic); the same code runs
  on every platform.
Measured: `benchmarks/roofline.py` on H100 compiles of the ViT-L steps
  (`benchmarks/notes/2026-11-26-roofline-program-changes.md`, the q/k/v and "affines folded"
  rows); the saving is memory-bound traffic.

`folded_dense` computes `((x · s + t) @ W + b) · g` as one matmul of x with folded weights
`W' = s[:, None] · W · g`, `b' = (t @ W + b) · g`: the affines then cost weight-sized work
instead of activation-sized passes, forward and backward. The parameters are the reference's
(`kernel`, `bias`, `scale`, `gamma`, under the same names), so checkpoints load into both.
The folded weights carry the `checkpoint_name` `FOLDED_WEIGHTS`, which every remat policy of
the encoder saves: under FSDP, recomputing them from all-gathered parameters in the backward
doubled the ViT-G student step's temporaries on 8 H100s (`benchmarks/README.md`, the
`memory.py` table; `benchmarks/notes/2026-11-26-gpu-compile-memory.md`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from dajax.models.kernels.precision import dot

Dtype = jnp.dtype | type
Affine = tuple[jnp.ndarray, jnp.ndarray]
_trunc02 = nn.initializers.truncated_normal(0.02)

# `checkpoint_name` of the weights `folded_dense` computes; every remat policy saves them.
FOLDED_WEIGHTS = "folded_weights"


def folded_dense(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    bias: jnp.ndarray,
    dtype: Dtype,
    in_affine: Affine | None = None,
    out_scale: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """`((x · s + t) @ kernel + bias) · g` as one matmul of x with folded weights.

    Args:
      x: [..., I]; kernel: [I, O]; bias: [O].
      in_affine: (s, t), each [I]: an elementwise affine on the input (a LayerNorm's scale and
        bias), or None.
      out_scale: g [O] (a LayerScale's gamma), or None.

    Returns:
      [..., O] in `dtype`: `x @ kernel' + bias'` with kernel' = s[:, None] · kernel · g and
      bias' = (t @ kernel + bias) · g, folded in float32 and cast to `dtype` once; the matmul
      is `precision.dot` (float32 result and half-precision backward matmuls on CPUs).
    """
    kernel32, bias32 = kernel.astype(jnp.float32), bias.astype(jnp.float32)
    if in_affine is not None:
        scale, shift = (a.astype(jnp.float32) for a in in_affine)
        bias32 = bias32 + jnp.dot(shift, kernel32, precision=jax.lax.Precision.HIGHEST)
        kernel32 = scale[:, None] * kernel32
    if out_scale is not None:
        kernel32 = kernel32 * out_scale.astype(jnp.float32)
        bias32 = bias32 * out_scale.astype(jnp.float32)
    kernel, bias = checkpoint_name((kernel32.astype(dtype), bias32.astype(dtype)), FOLDED_WEIGHTS)
    return (dot(x.astype(dtype), kernel) + bias).astype(dtype)


class FoldedDense(nn.Module):
    """`nn.Dense` (params `kernel` [I, O], `bias` [O]; truncated-normal 0.02 and zeros) applied
    through `folded_dense`, so an input affine and an output scale cost no activation pass."""

    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jnp.ndarray,
        in_affine: Affine | None = None,
        out_scale: jnp.ndarray | None = None,
    ) -> jnp.ndarray:
        """x: [..., I] -> [..., features] `dtype`; see `folded_dense` for the affines."""
        kernel = self.param("kernel", _trunc02, (x.shape[-1], self.features), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        return folded_dense(x, kernel, bias, self.dtype, in_affine, out_scale)


class FoldedQKV(nn.Module):
    """The qkv projection's parameters, stored as PyTorch's single `qkv` Linear (`kernel`
    [D, 3D], `bias` [3D], as `nn.Dense` names and initialises them), applied as three
    `folded_dense` matmuls over its q, k and v column blocks.

    Each of q, k, v comes out of its own matmul contiguous, so splitting heads is a reshape.
    """

    dim: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, in_affine: Affine | None = None
    ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
        """x: [.., D] -> q, k, v, each [.., D]; `in_affine` as in `folded_dense`."""
        kernel = self.param("kernel", _trunc02, (x.shape[-1], 3 * self.dim), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (3 * self.dim,), self.param_dtype)
        parts = slice(0, self.dim), slice(self.dim, 2 * self.dim), slice(2 * self.dim, None)
        return tuple(folded_dense(x, kernel[:, p], bias[p], self.dtype, in_affine) for p in parts)


class LayerScaleGamma(nn.Module):
    """DINOv2's LayerScale parameter (`ls1.gamma` / `ls2.gamma`, [dim], init `init_value`),
    returned unapplied: the caller passes it as `out_scale` to the last `folded_dense` of the
    residual branch instead of multiplying the branch's output by it."""

    dim: int
    init_value: float = 1.0
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self) -> jnp.ndarray:
        """-> gamma [dim] `param_dtype`."""
        return self.param(
            "gamma", nn.initializers.constant(self.init_value), (self.dim,), self.param_dtype
        )
