"""What the benchmarks run on: the JAX device, PyTorch's device, and the peak for MFU."""

from __future__ import annotations

import os
import platform

import jax
import torch

# Dense peak TFLOP/s per device by (device-kind substring, compute dtype), from the vendors'
# data sheets (SXM parts; no sparsity). float32 matmuls run as TF32 on these GPUs by default.
PEAK_TFLOPS = {
    ("H200", "bfloat16"): 989.4,
    ("H200", "float32"): 494.7,
    ("H100", "bfloat16"): 989.4,
    ("H100", "float32"): 494.7,
    ("A100", "bfloat16"): 312.0,
    ("A100", "float32"): 156.0,
}


def peak_flops(dtype: str, override_tflops: float = 0.0) -> float | None:
    """FLOP/s peak of the first JAX device for `dtype`, or None when unknown (e.g. CPUs)."""
    if override_tflops:
        return override_tflops * 1e12
    kind = jax.devices()[0].device_kind
    for (name, dt), tflops in PEAK_TFLOPS.items():
        if name in kind and dt == dtype:
            return tflops * 1e12
    return None


def torch_device() -> torch.device:
    """CUDA when PyTorch sees a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe() -> str:
    """One line naming the devices and versions."""
    host = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    dev = torch_device()
    torch_on = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    return (
        f"device: {jax.devices()[0].device_kind} ({host}), jax {jax.__version__}; "
        f"torch {torch.__version__} on {torch_on} ({torch.get_num_threads()} threads)"
    )


def mfu(flops: float | None, seconds: float, dtype: str, override_tflops: float = 0.0) -> str:
    """'xx.x%' model-FLOP utilisation, or '-' when the FLOPs or the peak are unknown."""
    peak = peak_flops(dtype, override_tflops)
    return f"{flops / seconds / peak:.1%}" if flops and peak else "-"


def model_flops(jitted, *args) -> float | None:
    """FLOPs of `jitted(*args)` from XLA's analysis of the lowered (unoptimised) HLO.

    Pass a function whose attention is the plain XLA form (`attention='xla'`): a fused
    attention kernel is an opaque custom call that the count would miss, and GPU matmuls
    become library calls after optimisation. Array arguments may be `ShapeDtypeStruct`s.
    """
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
    # Lowered for the CPU: the count is the same everywhere, and GPU lowerings report none.
    cost = jitted.trace(*abstract).lower(lowering_platforms=("cpu",)).cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return (cost or {}).get("flops")
