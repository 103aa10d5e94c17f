"""Exact softmax attention in query blocks, with a hand-written backward: the CPU kernel.

Replaces: `jax.nn.dot_product_attention` (XLA's form: the whole [N, N] score matrix per head).
Pays on: CPUs (`kernels.attention` picks it there; `attention="chunked"` forces it).
Measured: `benchmarks/README.md`, the `attention_block.py` table (against PyTorch's SDPA);
  against XLA's form and against autodiff of the blocked forward:
  `benchmarks/notes/2026-11-24-cpu-inference.md` and `2026-11-26-cpu-train-step.md`.

Forward, per head and per block of queries: scores [block, N] in float32, their softmax, the
block's output, and the log-sum-exp of each query row. Only the output and the log-sum-exp
(one float per query) are saved for the backward, which walks the query blocks again,
recomputes each block's probabilities from the saved log-sum-exp and accumulates the key and
value gradients (the FlashAttention-2 backward, in XLA ops):

    p = exp(s - lse),  dV += pᵀ dO,  dP = dO Vᵀ,  dS = p ⊙ (dP - rowsum(dO ⊙ O)),
    dQ = dS K / √d,  dK += dSᵀ Q / √d

On a CPU a [block, N] score tile stays in cache, and autodiff of the blocked forward would
instead save every block's probabilities (the whole [N, N] matrix per head) and read them back
with transposed matmuls.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

QUERY_BLOCK = 128  # query rows per block: a [128, N] float32 score tile is ~0.7 MB at N = 1370
# Largest float32 score tile (one query block, every image and head) computed at once; beyond
# it the heads are looped over. The demo's encoder (3 heads) at 168² (145 tokens, blocks of
# 73 queries), batch 12: 1.5 MB; ViT-S (6 heads) at 518², batch 2: 8.2 MB, looped.
VECTORISED_TILE = 4 << 20


def _blocking(n: int) -> tuple[int, int]:
    """(blocks, rows per block) covering n queries with at most `QUERY_BLOCK` rows each and
    the least padding (1370 queries -> 11 blocks of 125, not 11 of 128)."""
    blocks = -(-n // QUERY_BLOCK)
    return blocks, -(-n // blocks)


def _split(x: jnp.ndarray, blocks: int, rows: int) -> jnp.ndarray:
    """[N, ...] -> [blocks, rows, ...], zero-padded at the end."""
    pad = [(0, blocks * rows - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
    return jnp.pad(x, pad).reshape(blocks, rows, *x.shape[1:])


def _merge(x: jnp.ndarray, n: int) -> jnp.ndarray:
    """[blocks, rows, ...] -> [n, ...], padding dropped."""
    return x.reshape(-1, *x.shape[2:])[:n]


def _contract_rows(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """aᵀ b for a [R, M], b [R, K] -> [M, K] float32, without materialising aᵀ."""
    return jax.lax.dot_general(a, b, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def _attend(q, k_t, v):
    """softmax(q kᵀ / √d) v for q [.., M, d], k_t = kᵀ [.., d, N], v [.., N, d] in one piece ->
    (output [.., M, d], log-sum-exp of the scaled scores [.., M] float32).

    Written for XLA:CPU's fast paths: both matmuls take the inputs' dtype with a float32
    result, kᵀ comes in [d, N] layout (a bf16 q·kᵀ contracting both operands' last axes was
    run in float32) and the 1/√d scale is applied to the float32 scores, not to q. The scores'
    max, exp and rounding to v's dtype fuse into the first matmul; each row is normalised
    after the second matmul ([M, d] divisions instead of [M, N]).
    """
    scale = q.shape[-1] ** -0.5
    s = jnp.matmul(q, k_t, preferred_element_type=jnp.float32)
    m = s.max(axis=-1, keepdims=True)
    e = jnp.exp((s - m) * scale).astype(v.dtype)
    total = e.sum(axis=-1, keepdims=True, dtype=jnp.float32)
    out = jnp.matmul(e, v, preferred_element_type=jnp.float32) / total
    return out.astype(q.dtype), (m * scale + jnp.log(total))[..., 0]


def _forward(q, k, v):
    """One head: q, k, v [N, d] -> (output [N, d], log-sum-exp of the scores [N] float32)."""
    n, k_t = q.shape[0], k.T  # kᵀ made once per head, outside the loop over query blocks
    blocks, rows = _blocking(n)
    if blocks == 1:
        return _attend(q, k_t, v)
    out, lse = jax.lax.map(lambda q_block: _attend(q_block, k_t, v), _split(q, blocks, rows))
    return _merge(out, n), _merge(lse, n)


@jax.custom_vjp
def _head_attention(q, k, v):
    return _forward(q, k, v)[0]


def _head_attention_fwd(q, k, v):
    out, lse = _forward(q, k, v)
    return out, (q, k, v, out, lse)


def _head_attention_bwd(residuals, d_out):
    q, k, v, out, lse = residuals
    n, d = q.shape
    blocks, rows = _blocking(n)
    scale = d**-0.5
    f32 = jnp.float32
    delta = (d_out.astype(f32) * out.astype(f32)).sum(axis=-1)  # rowsum(dO ⊙ O)

    def block(carry, xs):
        dk, dv = carry
        q_block, d_out_block, lse_block, delta_block = xs
        s = jnp.dot(q_block, k_t, preferred_element_type=f32)
        p = jnp.exp(s * scale - lse_block[:, None])
        dv = dv + _contract_rows(p.astype(d_out.dtype), d_out_block)
        dp = jnp.dot(d_out_block, v.T, preferred_element_type=f32)
        ds = p * (dp - delta_block[:, None])
        dq_block = jnp.dot(ds.astype(k.dtype), k, preferred_element_type=f32) * scale
        dk = dk + _contract_rows(ds.astype(q.dtype), q_block) * scale
        return (dk, dv), dq_block.astype(q.dtype)

    k_t = k.T
    zeros = jnp.zeros((n, d), f32)
    if blocks == 1:
        (dk, dv), dq = block((zeros, zeros), (q, d_out, lse, delta))
    else:
        xs = tuple(_split(x, blocks, rows) for x in (q, d_out, lse, delta))
        (dk, dv), dq = jax.lax.scan(block, (zeros, zeros), xs)
        dq = _merge(dq, n)
    return dq, dk.astype(k.dtype), dv.astype(v.dtype)


_head_attention.defvjp(_head_attention_fwd, _head_attention_bwd)


def dense_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """softmax(q kᵀ / √d) v over [B, heads, N, d] in one piece (scores and softmax in float32)."""
    return _attend(q, jnp.swapaxes(k, -1, -2), v)[0]


def blocked_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """`dense_attention`'s values over [B, heads, N, d], in query blocks (see the module).

    Where one query block's float32 scores for every (image, head) fit in `VECTORISED_TILE`
    bytes, all heads are vectorised (`vmap`): short sequences then take a few large matmuls
    instead of a loop of tiny ones (for a symbolic batch size: sequences of one block).
    Longer ones: one device loops over every (image, head). With several devices the batch
    may be sharded, and a loop over a sharded axis gathers every image onto every device, so
    there the images are vectorised and only the heads are looped over.
    """
    b, h, n, d = q.shape
    per_head = jax.vmap(_head_attention)
    tile_per_image = h * _blocking(n)[1] * n * 4
    if isinstance(b, int):
        vectorise = b * tile_per_image <= VECTORISED_TILE
    else:  # a symbolic batch (an exported serving function): vectorise one-block sequences
        vectorise = n <= QUERY_BLOCK
    if vectorise:
        flat = lambda a: a.reshape(b * h, n, d)  # noqa: E731
        return per_head(flat(q), flat(k), flat(v)).reshape(b, h, n, d)
    heads = lambda q, k, v: jax.lax.map(lambda a: _head_attention(*a), (q, k, v))  # noqa: E731
    if jax.device_count() > 1:
        return jax.vmap(heads)(q, k, v)
    flat = lambda a: a.reshape(b * h, n, d)  # noqa: E731
    return heads(flat(q), flat(k), flat(v)).reshape(b, h, n, d)
