"""Pallas TPU flash attention for ViT token counts, partitioned over the mesh by `shard_map`.

Replaces: `jax.nn.dot_product_attention`'s XLA form, which writes the [heads, N, N] scores and
  probabilities to HBM and reads them back, forward and backward.
Pays on: TPUs (`kernels.attention` picks it there under a mesh or on one chip;
  `attention="tpu_flash"` forces it).
Measured: compiled for v5p and v6e at the paper's per-chip batches, against XLA's form
  (`benchmarks/notes/2026-12-01-tpu-compiles.md`, "The attention kernel, per block"); the
  saving is bytes moved and temporary memory.

JAX's Pallas TPU `flash_attention` (a Mosaic kernel: query and key blocks of 128 held in VMEM,
scores never written to HBM, a fused backward) takes sequences that are whole blocks. DINOv2
at 518² has 1 + 37 × 37 = 1370 tokens: they are padded to 1408 (11 blocks) and the padding
is masked with segment ids (real tokens 1, padding 0; a token attends only to its own
segment), so real queries never see padded keys and the padded rows are dropped.

XLA cannot partition a Mosaic call: under `jit` over a sharded batch the kernel runs inside
`jax.shard_map`, each device on its own images (and heads, when the batch does not divide
over the devices). The mesh is the one in context (`jax.set_mesh`); without one the kernel
runs unpartitioned, which is right on one device only (`partitionable`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import flash_attention as pallas_flash
from jax.sharding import PartitionSpec as P

BLOCK = 128  # the kernel's query and key block, and the token padding unit


def partitionable() -> bool:
    """Whether a traced call can place the kernel: one device, or a mesh in context to
    `shard_map` it over (a Mosaic kernel on a sharded operand fails to compile)."""
    return jax.device_count() == 1 or not jax.sharding.get_abstract_mesh().empty


def _padded_kernel(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """The Pallas kernel over [B, h, N, d] arrays, N padded to whole blocks and masked."""
    b, _, n, d = q.shape
    padded = -(-n // BLOCK) * BLOCK
    pad = lambda a: jnp.pad(a, ((0, 0), (0, 0), (0, padded - n), (0, 0)))  # noqa: E731
    ids = jnp.broadcast_to((jnp.arange(padded) < n).astype(jnp.int32), (b, padded))
    out = pallas_flash.flash_attention(
        pad(q),
        pad(k),
        pad(v),
        segment_ids=pallas_flash.SegmentIds(q=ids, kv=ids),
        sm_scale=d**-0.5,
        block_sizes=pallas_flash.BlockSizes.get_default(b, q.shape[1], padded, padded, d),
    )
    return out[:, :, :n]


def _kernel_precision(dtype) -> str:
    """Mosaic has no float32 contract precision for half-precision operands, so a process-wide
    `jax_default_matmul_precision='highest'` would fail the kernels' compile: they trace at
    'default' unless the inputs are float32."""
    return "highest" if dtype == jnp.float32 else "default"


@jax.custom_vjp
def _kernel(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """`_padded_kernel` with its forward and backward kernels traced at `_kernel_precision`
    (the backward traces when the gradient is taken, outside any forward context)."""
    with jax.default_matmul_precision(_kernel_precision(q.dtype)):
        return _padded_kernel(q, k, v)


def _kernel_fwd(q, k, v):
    with jax.default_matmul_precision(_kernel_precision(q.dtype)):
        return jax.vjp(_padded_kernel, q, k, v)


def _kernel_bwd(pullback, grad):
    with jax.default_matmul_precision(_kernel_precision(grad.dtype)):
        return pullback(grad)


_kernel.defvjp(_kernel_fwd, _kernel_bwd)


def _split_axes(mesh, sizes: list[int]) -> list[tuple[str, ...]]:
    """Mesh axes for each of `sizes` (the batch, then heads), in mesh order: each axis goes to
    the first dimension it still divides; axes that divide none leave the work replicated."""
    taken: list[tuple[str, ...]] = [() for _ in sizes]
    for name in mesh.axis_names:
        for i, size in enumerate(sizes):
            used = math.prod(mesh.shape[a] for a in taken[i])
            if size % (used * mesh.shape[name]) == 0:
                taken[i] += (name,)
                break
    return taken


def flash_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """softmax(q kᵀ / √d) v over [B, heads, N, d] arrays -> [B, heads, N, d] in q's dtype, by
    the Pallas TPU kernel, any N; under a mesh in context each device attends its own batch
    (and head) slice."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return _kernel(q, k, v)
    batch_axes, head_axes = _split_axes(mesh, [q.shape[0], q.shape[1]])
    spec = P(batch_axes or None, head_axes or None)
    return jax.shard_map(
        _kernel, mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec, check_vma=False
    )(q, k, v)
