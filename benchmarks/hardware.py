"""What the benchmarks run on: the JAX device, PyTorch's device, the peak for MFU, and the
accelerators (H100/H200, TPU pod slices) programs are compiled for without the hardware."""

from __future__ import annotations

import math
import os
import platform

import jax
import jax.extend
import numpy as np
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
    for tpu_kind, peak, _, _ in TPU_CHIPS.values():
        if kind == tpu_kind and dtype == "bfloat16":  # 'TPU v5' is in 'TPU v5 lite': match whole
            return peak
    for (name, dt), tflops in PEAK_TFLOPS.items():
        if name in kind and dt == dtype:
            return tflops * 1e12
    return None


def _hopper_target(name: str, memory_bytes: int, bandwidth: int) -> str:
    """XLA's GPU target description (`stream_executor.GpuTargetConfigProto`, text format) of an
    SXM Hopper GPU (132 SMs, compute capability 9.0) with CUDA 12.9 and cuDNN 9."""
    return f"""
gpu_device_info {{
  cuda_compute_capability {{ major: 9 minor: 0 }}
  core_count: 132
  fpus_per_core: 128
  clock_rate_ghz: 1.98
  memory_bandwidth: {bandwidth}
  device_memory_size: {memory_bytes}
  l2_cache_size: 52428800
  threads_per_block_limit: 1024
  threads_per_warp: 32
  threads_per_core_limit: 2048
  shared_memory_per_block: 49152
  shared_memory_per_block_optin: 232448
  shared_memory_per_core: 233472
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 8 }}
runtime_version {{ major: 12 minor: 9 }}
device_description_str: "{name}"
"""


# GPUs XLA can compile for without the device: name, memory bytes and HBM bytes/s, as the
# GPUs report them.
HOPPER_GPUS = {
    "h100": ("NVIDIA H100 80GB HBM3", 84_929_347_584, 3_352_320_000_000),
    "h200": ("NVIDIA H200", 150_754_820_096, 4_800_000_000_000),
}
GPU_TARGETS = {key: _hopper_target(*spec) for key, spec in HOPPER_GPUS.items()}


def compile_only_devices(target: str, count: int) -> list:
    """`count` devices of a GPU `target` (a `GPU_TARGETS` key) that XLA compiles for without
    the hardware: a compile-only topology from `jax.experimental.topologies`.

    Needs the CUDA plugin (`pip install "jax[cuda12]"`), not a GPU, and `JAX_PLATFORMS=cpu` in
    the environment (the plugin skips its device checks only then): the process runs on the CPU
    and only compiles for the GPU.
    """
    from jax.experimental import topologies

    if jax.config.jax_platforms != "cpu":
        raise SystemExit(f"compiling for {target} without the GPU needs JAX_PLATFORMS=cpu")
    try:
        topology = topologies.get_topology_desc(
            platform="cuda", target_config=GPU_TARGETS[target], topology=f"1x1x{count}"
        )
    except Exception as e:  # the plugin's error names no fix
        raise SystemExit(
            f"compiling for {target} without the GPU needs JAX's CUDA plugin "
            f'(pip install "jax[cuda12]=={jax.__version__}"): {e}'
        ) from e
    return list(topology.devices)


# TPU chips by generation: the device kind libtpu reports, dense bfloat16 peak FLOP/s, HBM bytes
# and HBM bytes/s per chip (Google Cloud's TPU system-architecture pages).
TPU_CHIPS = {
    "v5e": ("TPU v5 lite", 197e12, 16 * 2**30, 819e9),
    "v5p": ("TPU v5", 459e12, 95 * 2**30, 2765e9),
    "v6e": ("TPU v6 lite", 918e12, 32 * 2**30, 1640e9),
}
# Pod-slice topologies (chips per axis) the benchmarks use; libtpu takes any valid shape. Cloud
# names: v5e:2x2 = v5litepod-4, v5e:16x16 = v5litepod-256, v5p:2x2x4 = v5p-32 and v5p:2x4x4 =
# v5p-64 (v5p counts TensorCores, two per chip), v6e:8x8 = v6e-64.
TPU_TOPOLOGIES = (
    "v5e:2x2", "v5e:4x4", "v5e:16x16", "v5p:2x2x4", "v5p:2x4x4", "v5p:4x4x4", "v6e:4x4", "v6e:8x8",
)  # fmt: skip
# libtpu looks these up in the TPU VM's metadata when unset; compiling here there is none.
LIBTPU_QUIET_ENV = {
    "TPU_SKIP_MDS_QUERY": "1",
    "TPU_ACCELERATOR_TYPE": "v5litepod-4",
    "TPU_WORKER_HOSTNAMES": "localhost",
    "TPU_WORKER_ID": "0",
    "ALLOW_MULTIPLE_LIBTPU_LOAD": "1",  # several compiling processes (test workers) at once
}


def tpu_chip(target: str) -> tuple[str, float, int, float]:
    """(device kind, peak bf16 FLOP/s, HBM bytes, HBM bytes/s) of a TPU `target` such as
    'v5e:2x2'; exits naming the known topologies when the generation is not a TPU one."""
    generation = target.split(":")[0]
    if generation not in TPU_CHIPS or ":" not in target:
        raise SystemExit(
            f"unknown accelerator target {target!r}: use a GPU ({', '.join(GPU_TARGETS)}) or a "
            f"TPU topology generation:shape ({', '.join(TPU_TOPOLOGIES)})"
        )
    return TPU_CHIPS[generation]


def tpu_devices(target: str, slices: int = 1) -> list:
    """The chips of `slices` TPU pod slices of topology `target` (e.g. 'v5p:2x4x4'), as
    compile-only devices (`jax.experimental.topologies`): XLA's TPU compiler, without a TPU.

    Needs libtpu (`pip install "jax[tpu]"`) and `JAX_PLATFORMS=cpu` (the process itself runs on
    the CPU). With `slices` > 1 each device carries its `slice_index` (multi-slice over DCN).
    """
    from jax.experimental import topologies

    tpu_chip(target)
    if jax.config.jax_platforms != "cpu":
        raise SystemExit(f"compiling for {target} without the TPU needs JAX_PLATFORMS=cpu")
    # Set only while libtpu starts: left in os.environ they would quiet every later libtpu start
    # of this process's children as well (a test of that noise saw nothing).
    unset = [name for name in LIBTPU_QUIET_ENV if name not in os.environ]
    os.environ.update({name: LIBTPU_QUIET_ENV[name] for name in unset})
    try:
        topology = topologies.get_topology_desc(
            platform="tpu", topology_name=target, num_slices=slices
        )
    except Exception as e:  # libtpu's own message is one of several lines, or a missing plugin
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SystemExit(
            f"libtpu cannot compile for TPU topology {target!r} ({first}); known topologies: "
            f'{", ".join(TPU_TOPOLOGIES)}; libtpu comes with pip install "jax[tpu]=='
            f'{jax.__version__}"'
        ) from e
    finally:
        for name in unset:
            os.environ.pop(name, None)
    return list(topology.devices)


def target_devices(target: str, count: int = 1, slices: int = 1) -> list:
    """Compile-only devices of `target`: `count` GPUs of a `GPU_TARGETS` key, or the chips of
    `slices` TPU pod slices of a topology (`tpu_devices`)."""
    if target in GPU_TARGETS:
        return compile_only_devices(target, count)
    return tpu_devices(target, slices)


def device_memory_bytes(target: str) -> int:
    """Memory of one device of `target` (a `GPU_TARGETS` key or a TPU topology), bytes."""
    if target in GPU_TARGETS:
        return HOPPER_GPUS[target][1]
    return tpu_chip(target)[2]


def target_peak_bandwidth(target: str) -> tuple[float, float]:
    """(dense bf16 FLOP/s, HBM bytes/s) of one device of `target`."""
    if target in GPU_TARGETS:
        return PEAK_TFLOPS[(target.upper(), "bfloat16")] * 1e12, HOPPER_GPUS[target][2]
    _, peak, _, bandwidth = tpu_chip(target)
    return peak, bandwidth


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


def _dot_flops(eqn) -> int:
    """2·M·N·K of a `dot_general`: 2 × output elements × contracted length."""
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    return 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)


def _valid_taps(size: int, kernel: int, out: int, stride, lhs_dil, rhs_dil, pad) -> int:
    """Over one spatial dimension of a convolution, the (output position, kernel tap) pairs
    that land on an input element rather than on padding or a hole of the input dilation."""
    x = np.arange(out)[:, None] * stride + np.arange(kernel)[None, :] * rhs_dil - pad[0]
    return int(np.sum((x >= 0) & (x <= (size - 1) * lhs_dil) & (x % lhs_dil == 0)))


def _conv_flops(eqn) -> int:
    """2 multiply-adds' worth per (output element, input feature, kernel tap that reads an input
    element) of a convolution: a transposed (input-dilated) convolution counts the taps that
    meet its input, not the holes."""
    p = eqn.params
    lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
    out = eqn.outvars[0].aval.shape
    dims = p["dimension_numbers"]
    taps = 1
    for i, (li, ri, oi) in enumerate(
        zip(dims.lhs_spec[2:], dims.rhs_spec[2:], dims.out_spec[2:], strict=True)
    ):
        taps *= _valid_taps(
            lhs[li],
            rhs[ri],
            out[oi],
            p["window_strides"][i],
            p["lhs_dilation"][i],
            p["rhs_dilation"][i],
            p["padding"][i],
        )
    out_elements = out[dims.out_spec[0]] * out[dims.out_spec[1]]
    return 2 * out_elements * rhs[dims.rhs_spec[1]] * taps


def _sub_jaxprs(eqn):
    """The jaxprs nested in `eqn`'s params (jit, remat, custom derivatives, cond branches)."""
    for value in eqn.params.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, jax.extend.core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax.extend.core.Jaxpr):
                yield item


def jaxpr_flops(jaxpr) -> int:
    """Matmul and convolution FLOPs of the live equations of a jaxpr (those its outputs or
    effects depend on: autodiff leaves dead forward work that XLA removes), nested jaxprs
    included (a `scan` counts its body once per iteration; a `cond` its costliest branch)."""
    live = {v for v in jaxpr.outvars if isinstance(v, jax.extend.core.Var)}
    total = 0
    for eqn in reversed(jaxpr.eqns):
        if not eqn.effects and live.isdisjoint(eqn.outvars):
            continue
        live.update(v for v in eqn.invars if isinstance(v, jax.extend.core.Var))
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "while":
            raise ValueError("a while loop's trip count is unknown: its FLOPs cannot be counted")
        elif name == "cond":
            total += max(jaxpr_flops(branch.jaxpr) for branch in eqn.params["branches"])
        else:
            inner = sum(jaxpr_flops(sub) for sub in _sub_jaxprs(eqn))
            total += inner * (eqn.params["length"] if name == "scan" else 1)
    return total


def model_flops(jitted, *args) -> int:
    """Model FLOPs of `jitted(*args)`: its matmuls and convolutions, 2 per multiply-add,
    counted on the traced program (the same on every backend; elementwise work, a few percent
    of a ViT's, is left out as in the usual MFU convention).

    Pass a function whose attention is the plain XLA form (`attention='xla'`): a fused
    attention kernel is an opaque call whose matmuls the count would miss. With remat, the
    backward's recomputed forward counts too (hardware FLOPs); time MFU without remat. Array
    arguments may be `ShapeDtypeStruct`s.
    """
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
    return jaxpr_flops(jitted.trace(*abstract).jaxpr.jaxpr)


# The /proc/cpuinfo flags that decide which matmul kernels a CPU gets (AVX-512, bf16, AMX).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_model_and_flags(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, list[str]]:
    """The CPU's model name and which of `CPU_FLAGS` it has, from `cpuinfo` (Linux); ('', [])
    where the file is missing."""
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        return "", []
    fields = {}
    for line in text.splitlines():  # "key<tabs>: value", one block per logical CPU
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    have = set(fields.get("flags", "").split())
    return fields.get("model name", ""), [f for f in CPU_FLAGS if f in have]
