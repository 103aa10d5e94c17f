"""Per-device memory of the compiled train steps under data parallelism and FSDP.

    # on the GPUs themselves, or on fake CPU devices
    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
        python benchmarks/memory.py --encoder vitg --stages student --fsdp 1 8
    # for 8 H100s, compiled here without them (needs jax's CUDA plugin, no GPU)
    JAX_PLATFORMS=cpu python benchmarks/memory.py --target h100 --devices 8 --encoder vitg --fsdp 8
    # for a TPU pod slice (v5p-64: 32 chips), compiled here without it (needs libtpu)
    JAX_PLATFORMS=cpu python benchmarks/memory.py --target v5p:2x4x4 --encoder vitl \
        --stages teacher --fsdp 8 --labeled-per-device 2

Compiles (never runs) dajax's jitted step ahead of time on a ('slice', 'data', 'fsdp') mesh,
with the shardings the training loop uses (`dajax.sharding`; frozen encoders sharded like the
params), and prints XLA's memory analysis per device: arguments (params, optimiser state, the
batch slice, the frozen DINOv2), outputs and temporaries, and whether that fits the device.
`--target h100` runs XLA's GPU compiler for an H100 target description
(`hardware.GPU_TARGETS`), `--target v5e:2x2` (any TPU topology, `--slices` of them) XLA's TPU
compiler from libtpu: the same buffer assignment and scheduling a run on that hardware gets.
For TPUs the row adds a roofline time from XLA's TPU cost analysis of the program (its FLOPs at
the chip's peak or its HBM bytes at the chip's bandwidth, whichever is longer) and the MFU
that time gives the model FLOPs (`hardware.model_flops`); a bound, not a measurement. On fake
CPU devices the CPU compiler's numbers are an upper bound (it does not realise remat's
savings; see README).
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks import hardware  # noqa: E402
from benchmarks.train_step import make_batch, make_tx, stage_loss_fn, step_flops  # noqa: E402
from dajax import sharding  # noqa: E402
from dajax.models import DepthAnything, ModelConfig, param_shapes  # noqa: E402
from dajax.training.state import create_state, make_train_step  # noqa: E402


def compiler_options(device) -> dict:
    """XLA options for compiling, not running, on `device`'s platform."""
    if device.platform == "cpu":
        # Memory comes from buffer assignment, done before code generation: skipping LLVM's
        # optimisation (the program never runs) makes a ViT-G step compile several times faster.
        return {"xla_backend_optimization_level": 0}
    if device.client.runtime_type == "compile_only_runtime":
        # Without the device XLA's Triton GEMM tiler fails on some of the step's matmuls
        # ("Couldn't find output tile sizes"); cuBLAS takes them, with the same buffers.
        return {"xla_gpu_enable_triton_gemm": False}
    return {}


def abstract_step_inputs(model, stage: str, labeled: int, size: int, mesh=None):
    """(optimiser, state, batch, frozen) of `stage`'s step as `ShapeDtypeStruct`s for
    `labeled` labeled images at `size`², with the loop's shardings over `mesh` if given."""
    params = param_shapes(model)
    tx = make_tx(model)
    state = jax.eval_shape(lambda p: create_state(p, tx), params)
    batch = jax.eval_shape(lambda: make_batch(labeled, size, stage == "student"))
    frozen = {"dinov2": params["pretrained"]} if stage == "student" else None
    if mesh is not None:
        place = lambda tree, shardings: jax.tree.map(  # noqa: E731
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings
        )
        state = place(state, sharding.state_shardings(state, mesh))
        batch = place(batch, jax.tree.map(lambda _: sharding.batch_sharding(mesh), batch))
        if frozen is not None:
            frozen = place(frozen, sharding.state_shardings(frozen, mesh))
    return tx, state, batch, frozen


def compile_step(
    model, stage: str, fsdp: int, per_device_labeled: int, size: int, devices=None
) -> jax.stages.Compiled:
    """The step of `stage` compiled (not run) for a ('slice', 'data', 'fsdp') mesh of
    `devices`, with the loop's shardings, for `per_device_labeled` labeled images per device at
    `size`²; traced under the mesh, as kernels that XLA cannot partition (the TPU flash
    attention) need."""
    mesh = sharding.make_mesh(fsdp, devices)
    tx, state, batch, frozen = abstract_step_inputs(
        model, stage, per_device_labeled * mesh.size, size, mesh
    )
    step = jax.jit(
        make_train_step(stage_loss_fn(model, stage, mesh.size), tx, seed=0),
        out_shardings=(jax.tree.map(lambda a: a.sharding, state), sharding.replicated(mesh)),
        donate_argnums=0,
    )
    options = compiler_options(mesh.devices.flat[0])
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        lowered = step.lower(state, batch, frozen)
    return lowered.compile(compiler_options=options)


def roofline_seconds(
    compiled: jax.stages.Compiled, peak: float, bandwidth: float, min_flops: float = 0.0
) -> float:
    """Lower bound on one device's time for `compiled`: its FLOPs at `peak` FLOP/s or the bytes
    its kernels move at `bandwidth` bytes/s (XLA's cost analysis), whichever is longer. FLOPs
    are at least `min_flops`: XLA does not count inside kernels without a cost estimate (the
    Pallas flash attention's backward)."""
    cost = compiled.cost_analysis()
    return max(max(cost["flops"], min_flops) / peak, cost["bytes accessed"] / bandwidth)


def memory_row(compiled: jax.stages.Compiled, device_bytes: int) -> list[str]:
    """[args, outputs, temps, total] GiB cells and 'yes'/'no' (total within 93% of
    `device_bytes`) of a compiled step's per-device memory."""
    mem = compiled.memory_analysis()
    # Donated state aliases its outputs: count arguments and temporaries once.
    total = mem.argument_size_in_bytes + mem.temp_size_in_bytes
    total += mem.output_size_in_bytes - mem.alias_size_in_bytes
    sizes = (mem.argument_size_in_bytes, mem.output_size_in_bytes, mem.temp_size_in_bytes, total)
    return [f"{b / 2**30:.1f}" for b in sizes] + ["yes" if total < 0.93 * device_bytes else "no"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", default="vitg", choices=["vits", "vitb", "vitl", "vitg"])
    p.add_argument("--stages", nargs="+", default=["student"])
    p.add_argument("--fsdp", type=int, nargs="+", help="default: 1 8 (TPU targets: 1)")
    p.add_argument("--labeled-per-device", type=int, default=1)
    p.add_argument("--size", type=int, default=518)
    p.add_argument("--remat", default="full")
    p.add_argument(
        "--attention",
        default="xla",
        help="the GPU default 'xla' (scores materialised; cuDNN's flash kernel needs less; "
        "'tpu_flash' is the Pallas TPU kernel), not the CPU-only 'chunked'",
    )
    p.add_argument(
        "--target",
        default="host",
        help="'host': this process's devices; a GPU (h100, h200): compile for --devices of "
        "them here; a TPU topology (v5e:2x2, v5p:2x4x4, v6e:8x8, ...): its chips",
    )
    p.add_argument("--devices", type=int, default=8, help="device count for a GPU --target")
    p.add_argument("--slices", type=int, default=1, help="TPU pod slices (multi-slice)")
    return p


def main() -> None:
    args = _parser().parse_args()
    tpu = args.target != "host" and args.target not in hardware.GPU_TARGETS
    devices = None
    if args.target != "host":
        devices = hardware.target_devices(args.target, args.devices, args.slices)
    devices_shown = devices or jax.devices()
    device_bytes = hardware.device_memory_bytes(args.target) if devices else 80 * 10**9
    fsdps = args.fsdp or ([1] if tpu else [1, 8])

    config = ModelConfig.from_variant(args.encoder, "v2")
    model = DepthAnything(config, dtype=jnp.bfloat16, remat=args.remat, attention=args.attention)
    n_params = sum(x.size for x in jax.tree.leaves(param_shapes(model)))
    print(
        f"{len(devices_shown)} x {devices_shown[0].device_kind} ({device_bytes / 2**30:.0f} GiB, "
        f"{args.slices} slice(s)); {args.encoder} ({n_params / 1e6:.0f}M params, float32 + "
        f"AdamW), {args.size}², bfloat16 compute, remat={args.remat}, "
        f"attention={args.attention}, {args.labeled_per_device} labeled image(s) per device "
        "(student: + 2x unlabeled)\n"
    )
    tpu_cells = " roofline ms | MFU |" if tpu else ""
    print(f"| stage | slice x data x fsdp | args GiB | outputs GiB | temps GiB | total GiB | fits |"
          f"{tpu_cells}")  # fmt: skip
    print("|---" * (7 + 2 * tpu) + "|")
    for stage in args.stages:
        for fsdp in fsdps:
            compiled = compile_step(model, stage, fsdp, args.labeled_per_device, args.size, devices)
            mesh = sharding.make_mesh(fsdp, devices)
            cells = [stage, " x ".join(map(str, mesh.devices.shape))]
            cells += memory_row(compiled, device_bytes)
            if tpu:
                cells += _tpu_time_cells(compiled, model, stage, args, mesh.size)
            print("| " + " | ".join(cells) + " |", flush=True)


def _tpu_time_cells(compiled, model, stage: str, args, n_devices: int) -> list[str]:
    """[roofline ms, MFU] of a TPU step: `roofline_seconds` at the chip's rates, and the
    model FLOPs per device (the plain-attention program's, `hardware.model_flops`) over it."""
    peak, bandwidth = hardware.target_peak_bandwidth(args.target)
    plain = model.clone(attention="xla")
    labeled = args.labeled_per_device * n_devices
    _, state, batch, frozen = abstract_step_inputs(plain, stage, labeled, args.size)
    flops = step_flops(plain, stage, state, batch, frozen) / n_devices
    seconds = roofline_seconds(compiled, peak, bandwidth, flops)
    return [f"{seconds * 1e3:.0f}", f"{flops / seconds / peak:.0%}"]


if __name__ == "__main__":
    main()
