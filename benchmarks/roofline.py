"""Where a train step's time would go on a GPU, estimated from its compiled program.

    JAX_PLATFORMS=cpu python benchmarks/roofline.py --target h100 --encoder vitl \\
        --labeled-batch 16 --attention xla cudnn

Compiles dajax's step for one GPU of `--target` without the GPU (`hardware.GPU_TARGETS`; needs
JAX's CUDA plugin) and reads the optimised program XLA would run there: every kernel of the
entry computation with the bytes it reads and writes. Kernels fall in classes: matmuls
(cuBLAS), convolutions and fused attention (cuDNN), and the memory-bound rest (XLA's fused
elementwise/reduction kernels, copies, sorts). The roofline estimate charges the model's
matmul FLOPs (`hardware.model_flops`) at `--matmul-efficiency` of the dense peak, the FLOPs a
fused attention kernel does at `--attention-efficiency`, and the memory-bound kernels' bytes
at `--bandwidth-efficiency` of the HBM bandwidth:

    t ≈ F_matmul / (e_mm · peak) + F_attention / (e_attn · peak) + bytes / (e_m · bandwidth)

The defaults are the rates measured on an H100 for the ViT-L teacher step (benchmarks/README.md).
It is an estimate, not a measurement: it ignores launch gaps and overlap, and the attention rate
is per model FLOP (a flash backward's recomputation is inside that rate). Its use is comparing
variants of the same step (the attention kernel, remat, batch) before spending GPU time;
measure with `train_step.py`.

    JAX_PLATFORMS=cpu python benchmarks/roofline.py --target v5p:2x4x4 --encoder vitl \
        --stage attention --labeled-batch 2 --attention xla tpu_flash

For a TPU topology (libtpu's compiler, one chip) the time is the roofline bound of XLA's TPU
cost analysis (`memory.roofline_seconds`: FLOPs at the chip's bf16 peak or bytes at its HBM
bandwidth, whichever is longer); `--stage attention` compiles one attention core (forward and
backward, the encoder's heads, 1370 tokens at 518²) to compare the kernels per block. The
Pallas flash kernel's backward has no cost estimate, so its FLOPs are counted by hand
(`flash_kernel_flops`). Bounds, not measurements: no TPU was used.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import hardware  # noqa: E402
from benchmarks.memory import (  # noqa: E402
    abstract_step_inputs,
    compile_step,
    compiler_options,
    roofline_seconds,
)
from benchmarks.train_step import step_flops  # noqa: E402
from dajax.models import DepthAnything, ModelConfig, param_shapes  # noqa: E402
from dajax.models.kernels import tpu_attention  # noqa: E402
from dajax.models.kernels.attention import dot_product_attention  # noqa: E402
from dajax.models.variants import PATCH_SIZE  # noqa: E402

DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2}
DTYPE_BYTES.update({"f32": 4, "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8})
ARRAY = re.compile(r"\b(" + "|".join(DTYPE_BYTES) + r")\[([\d,]*)\]")
INSTRUCTION = re.compile(r"\s*(?:ROOT )?%(\S+) = (.*?) ([\w-]+)\((.*)$")
NOT_KERNELS = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast"}


def array_bytes(text: str) -> int:
    """Bytes of every array type in an HLO type string, e.g. '(bf16[2,3], f32[4])' -> 28."""
    total = 0
    for dtype, dims in ARRAY.findall(text):
        n = 1
        for d in filter(None, dims.split(",")):
            n *= int(d)
        total += n * DTYPE_BYTES[dtype]
    return total


def kernel_class(op: str, line: str) -> str:
    """'matmul', 'convolution', 'attention (fused)' or 'memory-bound' for one HLO kernel."""
    if op == "custom-call":
        target = re.search(r'custom_call_target="([^"]+)"', line)
        target = target.group(1) if target else ""
        if "fmha" in target or "flash" in target:
            return "attention (fused)"
        if "conv" in target:
            return "convolution"
        if "gemm" in target or "matmul" in target:
            return "matmul"
    if op == "fusion" and ("__triton_gemm" in line or "kind=kCustom" in line and "gemm" in line):
        return "matmul"
    return "memory-bound"


def kernel_bytes(hlo_text: str) -> dict[str, list[int]]:
    """{class: [kernels, bytes read + written]} over the entry computation of `hlo_text`."""
    entry = hlo_text[hlo_text.index("\nENTRY") :]
    entry = entry[: entry.index("\n}\n")]
    sizes: dict[str, int] = {}
    classes: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for line in entry.split("\n")[1:]:
        match = INSTRUCTION.match(line)
        if not match:
            continue
        name, result_type, op, rest = match.groups()
        sizes[name] = array_bytes(result_type)
        if op in NOT_KERNELS:
            continue
        if op in ("while", "conditional", "call"):
            raise ValueError(f"'{op}' in the entry computation: its kernels would go uncounted")
        operands = re.findall(r"%([\w.\-]+)", rest.split("),")[0])
        cls = classes[kernel_class(op, line)]
        cls[0] += 1
        cls[1] += sizes[name] + sum(sizes.get(o, 0) for o in operands)
    return dict(classes)


def _forward(model, batch: int, size: int):
    """The jitted network forward and abstract bf16 params and images, as inference runs it."""
    params = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, jnp.bfloat16), param_shapes(model)
    )
    images = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.bfloat16)
    return jax.jit(lambda p, x: model.apply({"params": p}, x)), params, images


def program_flops(model, stage: str, batch: int, size: int) -> float:
    """Model FLOPs of one step or forward of `model` as it is: a fused attention kernel's
    matmuls are not among them (see `attention_flops`)."""
    if stage == "inference":
        return hardware.model_flops(*_forward(model, batch, size))
    _, state, batch, frozen = abstract_step_inputs(model, stage, batch, size)
    return step_flops(model, stage, state, batch, frozen)


def attention_flops(plain_flops: float, model, stage: str, batch: int, size: int) -> float:
    """The model FLOPs that a fused attention kernel does: `plain_flops` (`program_flops` of the
    plain-attention program) less those of `model`'s (0 when `model` uses the plain form)."""
    return plain_flops - program_flops(model, stage, batch, size)


def estimate_seconds(
    flops: float,
    fused_attention_flops: float,
    memory_bound_bytes: float,
    peak: float,
    bandwidth: float,
    efficiency: dict[str, float],
) -> float:
    """Roofline time of a step: its matmul FLOPs at `efficiency['matmul']` of `peak` FLOP/s,
    the fused attention kernels' FLOPs at `efficiency['attention']`, and the memory-bound
    kernels' bytes at `efficiency['bandwidth']` of `bandwidth` bytes/s; no launch gaps."""
    matmul = (flops - fused_attention_flops) / (efficiency["matmul"] * peak)
    attention = fused_attention_flops / (efficiency["attention"] * peak)
    return matmul + attention + memory_bound_bytes / (efficiency["bandwidth"] * bandwidth)


def compile_program(model, stage: str, batch: int, size: int, devices):
    """The step (or, for 'inference', the forward) compiled for one of `devices`."""
    if stage != "inference":
        return compile_step(model, stage, 1, batch, size, devices)
    forward, params, images = _forward(model, batch, size)
    on = jax.sharding.SingleDeviceSharding(devices[0])
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=on), params)
    images = jax.ShapeDtypeStruct(images.shape, images.dtype, sharding=on)
    return forward.lower(params, images).compile(compiler_options=compiler_options(devices[0]))


def attention_core(config: ModelConfig, batch: int, size: int, impl: str, device):
    """The jitted forward + backward of one attention core of `config`'s encoder with kernel
    `impl`, and its abstract bf16 q, k, v ([batch, heads, tokens, head dim] on `device`)."""
    tokens = 1 + (size // PATCH_SIZE) ** 2
    on = jax.sharding.SingleDeviceSharding(device)
    shape = (batch, config.heads, tokens, config.dim // config.heads)
    qkv = [jax.ShapeDtypeStruct(shape, jnp.bfloat16, sharding=on)] * 3
    loss = lambda q, k, v: dot_product_attention(q, k, v, impl).astype(jnp.float32).sum()  # noqa: E731
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))), qkv


def flash_kernel_flops(shape: tuple[int, int, int, int]) -> float:
    """FLOPs of the Pallas flash kernels over q of `shape` [B, h, N, d], forward and backward:
    seven [N_p, N_p, d] matmuls per head (forward QKᵀ and PV; backward recomputes QKᵀ, then dV,
    dP, dQ, dK), 2·N_p²·d each, with N padded to whole blocks (N_p)."""
    b, h, n, d = shape
    padded = -(-n // tpu_attention.BLOCK) * tpu_attention.BLOCK
    return 7 * 2 * b * h * padded**2 * d


def tpu_rows(args, model) -> None:
    """Per attention kernel: one chip's temporaries, the FLOPs charged (XLA's count, or the
    model's / the flash kernels' where larger) and XLA's bytes, the roofline time, and (train
    stages) the MFU that time gives the model FLOPs."""
    device = hardware.tpu_devices(args.target)[0]
    peak, bandwidth = hardware.target_peak_bandwidth(args.target)
    config, batch = model.config, args.labeled_batch
    print(
        f"{device.device_kind} (compiled here without it); {args.encoder} {args.stage}, batch "
        f"{batch} on one chip, {args.size}², bf16 compute, remat={args.remat}; roofline at "
        f"{peak / 1e12:.0f} TFLOP/s and {bandwidth / 1e9:.0f} GB/s\n"
    )
    print("| attention | temps GiB | TFLOP charged | GB (XLA) | roofline ms | MFU |")
    print("|---|---|---|---|---|---|")
    for attention in args.attention:
        if args.stage == "attention":
            fn, qkv = attention_core(config, batch, args.size, attention, device)
            compiled, model_flops = fn.lower(*qkv).compile(), 0.0
            if attention == "tpu_flash":
                model_flops = flash_kernel_flops(qkv[0].shape)
        else:
            variant = model.clone(attention=attention)
            compiled = compile_program(variant, args.stage, batch, args.size, [device])
            model_flops = program_flops(model.clone(attention="xla"), args.stage, batch, args.size)
        cost = compiled.cost_analysis()
        seconds = roofline_seconds(compiled, peak, bandwidth, model_flops)
        mfu = f"{model_flops / seconds / peak:.0%}" if args.stage != "attention" else "-"
        print(
            f"| {attention} | {compiled.memory_analysis().temp_size_in_bytes / 2**30:.2f} | "
            f"{max(cost['flops'], model_flops) / 1e12:.2f} | {cost['bytes accessed'] / 1e9:.2f} | "
            f"{seconds * 1e3:.2f} | {mfu} |",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="h100", help="h100, h200 or a TPU topology (v5e:2x2)")
    p.add_argument("--encoder", default="vitl", choices=["vits", "vitb", "vitl", "vitg"])
    p.add_argument(
        "--stage",
        default="teacher",
        choices=["teacher", "student", "inference", "attention"],
        help="'attention': one attention core, forward + backward (TPU targets)",
    )
    p.add_argument(
        "--labeled-batch", type=int, default=16, help="labeled images per step; inference: batch"
    )
    p.add_argument("--size", type=int, default=518)
    p.add_argument("--remat", default="none")
    p.add_argument("--attention", nargs="+", default=["xla", "cudnn"])
    # Rates measured on an H100 (benchmarks/README.md, 2026-11-27) in the ViT-L teacher step:
    # matmuls and convolutions at ~705 TFLOP/s, cuDNN's flash attention at ~275 TFLOP/s of
    # model FLOPs (64-wide heads), XLA's memory-bound kernels at ~2.0 TB/s.
    p.add_argument("--matmul-efficiency", type=float, default=0.71)
    p.add_argument("--attention-efficiency", type=float, default=0.28)
    p.add_argument("--bandwidth-efficiency", type=float, default=0.59)
    args = p.parse_args()
    efficiency = {
        "matmul": args.matmul_efficiency,
        "attention": args.attention_efficiency,
        "bandwidth": args.bandwidth_efficiency,
    }

    config = ModelConfig.from_variant(args.encoder, "v2")
    model = DepthAnything(config, dtype=jnp.bfloat16, remat=args.remat)
    if args.target not in hardware.GPU_TARGETS:
        return tpu_rows(args, model)
    devices = hardware.compile_only_devices(args.target, 1)
    flops = program_flops(model.clone(attention="xla"), args.stage, args.labeled_batch, args.size)
    peak, bandwidth = hardware.target_peak_bandwidth(args.target)
    print(
        f"{devices[0].device_kind} (compiled here without it); {args.encoder} {args.stage}, "
        f"batch {args.labeled_batch}, {args.size}², bf16 compute, remat={args.remat}; "
        f"{flops / 1e12:.1f} TFLOP per step; estimate with matmuls at "
        f"{args.matmul_efficiency:.0%} and fused attention at {args.attention_efficiency:.0%} "
        f"of {peak / 1e12:.0f} TFLOP/s, memory-bound kernels at {args.bandwidth_efficiency:.0%} "
        f"of {bandwidth / 1e12:.2f} TB/s\n"
    )
    names = ["matmul", "convolution", "attention (fused)", "memory-bound"]
    print(
        "| attention | "
        + " | ".join(f"{n} GB (kernels)" for n in names)
        + " | est. ms/step | est. MFU |"
    )
    print("|---" * (len(names) + 3) + "|")
    for attention in args.attention:
        variant = model.clone(attention=attention)
        compiled = compile_program(variant, args.stage, args.labeled_batch, args.size, devices)
        classes = kernel_bytes(compiled.as_text())
        cells = [
            f"{classes.get(n, [0, 0])[1] / 1e9:.1f} ({classes.get(n, [0, 0])[0]})" for n in names
        ]
        fused = attention_flops(flops, variant, args.stage, args.labeled_batch, args.size)
        memory_bound = classes.get("memory-bound", [0, 0])[1]
        seconds = estimate_seconds(flops, fused, memory_bound, peak, bandwidth, efficiency)
        print(
            f"| {attention} | {' | '.join(cells)} | {seconds * 1e3:.0f} | "
            f"{flops / seconds / peak:.0%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
