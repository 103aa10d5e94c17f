"""A resize along one axis as gathers, with its transpose (the gradient) gathered too.

Replaces: autodiff of a gather-and-weight resize (`dajax.models.resample`'s PyTorch-exact
  bilinear and bicubic taps), whose transpose is a scatter-add.
Pays on: GPUs, which run scatter-adds with atomics; the same code runs on every platform.
Measured: the scatter fusions' share of a ViT-L teacher step on an H200
  (`benchmarks/notes/2026-11-26-h200.md`) and `benchmarks/roofline.py` on an H100 compile of
  the ViT-S teacher step (`benchmarks/notes/2026-11-26-roofline-program-changes.md`, the resize
  row). Forward values are unchanged (bit-identical).

A resize is given by its taps: for each output index o, input indices idx[o, :] and weights
w[o, :]. Its transpose sends each input index i the weighted sum of the output gradients it
fed, so it is again a gather, over the transposed taps (for each input, the outputs it feeds).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def apply_taps(x: jnp.ndarray, axis: int, idx: np.ndarray, w: np.ndarray) -> jnp.ndarray:
    """sum_k x.take(idx[:, k], axis) * w[:, k]: gathers along `axis` (its new length is
    len(idx)), weights cast to x's dtype.

    Args:
      x: any array; axis: the axis to resample; idx: [out, k] int32 input indices;
      w: [out, k] float32 weights.
    """
    shape = [1] * x.ndim
    shape[axis] = idx.shape[0]
    out = None
    for k in range(idx.shape[1]):
        taken = jnp.take(x, jnp.asarray(idx[:, k]), axis=axis, mode="clip")
        term = taken * jnp.asarray(w[:, k], dtype=x.dtype).reshape(shape)
        out = term if out is None else out + term
    return out


def transpose_taps(idx: np.ndarray, w: np.ndarray, in_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The taps of the resize's transpose: for each of the `in_size` inputs, the outputs it
    feeds and their weights, [in_size, k'] (k' = the most any input feeds; padded with
    weight-0 taps), in output order."""
    flat_in = idx.reshape(-1)
    order = np.argsort(flat_in, kind="stable")  # by input, then by output and tap
    counts = np.bincount(flat_in, minlength=in_size)
    slot = np.arange(flat_in.size) - np.repeat(np.cumsum(counts) - counts, counts)
    t_idx = np.zeros((in_size, max(int(counts.max()), 1)), np.int32)
    t_w = np.zeros(t_idx.shape, np.float32)
    t_idx[flat_in[order], slot] = np.repeat(np.arange(idx.shape[0]), idx.shape[1])[order]
    t_w[flat_in[order], slot] = w.reshape(-1)[order]
    return t_idx, t_w


def gather_resample(x: jnp.ndarray, axis: int, idx: np.ndarray, w: np.ndarray) -> jnp.ndarray:
    """`apply_taps(x, axis, idx, w)`, differentiated by gathering over `transpose_taps`.

    Args:
      x: any float array; axis: a non-negative axis of x; idx, w: the taps, [out, k].

    Returns:
      x with `axis` of length out.
    """
    return _gather_resample(x, axis, x.shape[axis], idx, w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _gather_resample(x, axis, in_size, idx, w):
    return apply_taps(x, axis, idx, w)


def _gather_resample_fwd(x, axis, in_size, idx, w):
    return apply_taps(x, axis, idx, w), None


def _gather_resample_bwd(axis, in_size, idx, w, _, grad):
    return (apply_taps(grad, axis, *transpose_taps(idx, w, in_size)),)


_gather_resample.defvjp(_gather_resample_fwd, _gather_resample_bwd)
