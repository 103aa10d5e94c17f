"""The attention core `softmax(q kᵀ / √d) v`, by the fastest kernel the platform has.

Replaces: `jax.nn.dot_product_attention` in XLA's plain form (the reference's attention).
Pays on: every platform, each with its own kernel: CPUs `blocked_attention`, TPUs
  `tpu_attention` (Pallas flash), NVIDIA GPUs of compute capability ≥ 8.0 in half precision
  cuDNN's fused flash kernel (through `jax.nn.dot_product_attention(implementation="cudnn")`).
  Those modules' docstrings name the benchmarks that measure them.

`resolve_attention` picks the kernel when the program is traced, on this machine. A program
exported to run on several platforms (`dajax.serving`) asks for 'portable' instead: the
choice between the CPU kernel and XLA's form is then made by `lax.platform_dependent` where
the graph is lowered.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dajax.models.kernels import tpu_attention
from dajax.models.kernels.blocked_attention import blocked_attention

ATTENTION_IMPLS = ("auto", "chunked", "xla", "cudnn", "portable", "tpu_flash")


def cudnn_attention_fits(dtype, head_dim: int) -> bool:
    """Whether cuDNN's fused attention takes [.., d] inputs of `dtype` on the default backend:
    an NVIDIA GPU of compute capability >= 8.0, float16/bfloat16, d a multiple of 8 up to 128.
    """
    if jax.default_backend() != "gpu" or jnp.dtype(dtype) not in (jnp.bfloat16, jnp.float16):
        return False
    try:
        major = int(str(jax.devices()[0].compute_capability).split(".")[0])
    except (AttributeError, ValueError):  # not CUDA (ROCm names its targets gfx...)
        return False
    return major >= 8 and head_dim % 8 == 0 and head_dim <= 128


def resolve_attention(impl: str, dtype, head_dim: int) -> str:
    """The kernel `impl` stands for: 'auto' is 'chunked' on CPU, 'tpu_flash' on TPU where
    `tpu_attention.partitionable`, 'cudnn' where `cudnn_attention_fits`, else 'xla' (chosen
    when the program is traced, on this machine); other names stand for themselves."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    if jax.default_backend() == "cpu":
        return "chunked"
    if jax.default_backend() == "tpu":
        return "tpu_flash" if tpu_attention.partitionable() else "xla"
    return "cudnn" if cudnn_attention_fits(dtype, head_dim) else "xla"


def dot_product_attention(
    q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, impl: str = "auto"
) -> jnp.ndarray:
    """softmax(q kᵀ / √d) v over [B, heads, N, d] arrays -> [B, heads, N, d] in q's dtype.

    Args:
      impl: 'chunked' (`blocked_attention`: query blocks, hand-written backward; fastest on
        CPU), 'xla' (`jax.nn.dot_product_attention`, scores materialised), 'cudnn' (its cuDNN
        flash kernel, GPU only), 'portable' ('chunked' where the program is lowered for a CPU,
        'xla' elsewhere: one `jax.export` graph for several platforms, each with its kernel),
        'tpu_flash' (`tpu_attention`: the Pallas TPU flash kernel, TPU only), or 'auto' (see
        `resolve_attention`: cuDNN on Ampere and newer in half precision, Pallas on TPUs).
    """
    impl = resolve_attention(impl, q.dtype, q.shape[-1])
    if impl == "chunked":
        return blocked_attention(q, k, v)
    if impl == "tpu_flash":
        return tpu_attention.flash_attention(q, k, v)
    if impl == "portable":
        return jax.lax.platform_dependent(q, k, v, cpu=blocked_attention, default=xla_attention)
    return xla_attention(q, k, v, "cudnn" if impl == "cudnn" else None)


def xla_attention(q, k, v, implementation: str | None = None) -> jnp.ndarray:
    """`jax.nn.dot_product_attention` over [B, heads, N, d] arrays (`implementation` None:
    XLA's plain form; 'cudnn': cuDNN's fused kernel)."""
    t = lambda a: jnp.swapaxes(a, 1, 2)  # noqa: E731  [B, N, heads, d] for jax.nn
    return t(jax.nn.dot_product_attention(t(q), t(k), t(v), implementation=implementation))
