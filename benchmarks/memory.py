"""Per-device memory of the compiled train steps under data parallelism and FSDP.

    # on the GPUs themselves, or on fake CPU devices
    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
        python benchmarks/memory.py --encoder vitg --stages student --fsdp 1 8
    # for 8 H100s, compiled here without them (needs jax's CUDA plugin, no GPU)
    JAX_PLATFORMS=cpu python benchmarks/memory.py --target h100 --devices 8 --encoder vitg --fsdp 8

Compiles (never runs) dajax's jitted step ahead of time on a ('data', 'fsdp') mesh, with the
shardings the training loop uses (`dajax.sharding`; frozen encoders sharded like the params),
and prints XLA's memory analysis per device: arguments (params, optimiser state, the batch
slice, the frozen DINOv2), outputs and temporaries. `--target h100` runs XLA's GPU compiler
for an H100 target description (`hardware.GPU_TARGETS`): the same buffer assignment and
scheduling a run on that GPU gets. On fake CPU devices the CPU compiler's numbers are an
upper bound (it does not realise remat's savings; see README). The reference point printed
beside each row is one 80 GB GPU.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks import hardware  # noqa: E402
from benchmarks.train_step import make_batch, make_tx, stage_loss_fn  # noqa: E402
from dajax import sharding  # noqa: E402
from dajax.models import DepthAnything, ModelConfig, param_shapes  # noqa: E402
from dajax.training.state import create_state, make_train_step  # noqa: E402

GPU_GIB = 80


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
    """The step of `stage` compiled (not run) for a ('data', 'fsdp') mesh of `devices`, with
    the loop's shardings, for `per_device_labeled` labeled images per device at `size`²."""
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
    return step.lower(state, batch, frozen).compile(compiler_options=options)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", default="vitg", choices=["vits", "vitb", "vitl", "vitg"])
    p.add_argument("--stages", nargs="+", default=["student"])
    p.add_argument("--fsdp", type=int, nargs="+", default=[1, 8])
    p.add_argument("--labeled-per-device", type=int, default=1)
    p.add_argument("--size", type=int, default=518)
    p.add_argument("--remat", default="full")
    p.add_argument(
        "--attention",
        default="xla",
        help="the GPU default 'xla' (scores materialised; cuDNN's flash kernel needs less), "
        "not the CPU-only 'chunked'",
    )
    p.add_argument(
        "--target",
        default="host",
        choices=["host", *hardware.GPU_TARGETS],
        help="'host': this process's devices; a GPU name: compile for --devices of them here",
    )
    p.add_argument("--devices", type=int, default=8, help="device count for a GPU --target")
    args = p.parse_args()
    devices = None
    if args.target != "host":
        devices = hardware.compile_only_devices(args.target, args.devices)
    devices_shown = devices or jax.devices()

    config = ModelConfig.from_variant(args.encoder, "v2")
    model = DepthAnything(config, dtype=jnp.bfloat16, remat=args.remat, attention=args.attention)
    n_params = sum(x.size for x in jax.tree.leaves(param_shapes(model)))
    print(
        f"{len(devices_shown)} x {devices_shown[0].device_kind}; {args.encoder} "
        f"({n_params / 1e6:.0f}M params, float32 + AdamW), {args.size}², bfloat16 compute, "
        f"remat={args.remat}, attention={args.attention}, {args.labeled_per_device} labeled "
        "image(s) per device "
        "(student: + 2x unlabeled)\n"
    )
    print("| stage | data x fsdp | args GiB | outputs GiB | temps GiB | total GiB | fits 80 GB |")
    print("|---|---|---|---|---|---|---|")
    gib = 2**30
    for stage in args.stages:
        for fsdp in args.fsdp:
            compiled = compile_step(model, stage, fsdp, args.labeled_per_device, args.size, devices)
            mem = compiled.memory_analysis()
            # Donated state aliases its outputs: count arguments and temporaries once.
            total = mem.argument_size_in_bytes + mem.temp_size_in_bytes
            total += mem.output_size_in_bytes - mem.alias_size_in_bytes
            print(
                f"| {stage} | {len(devices_shown) // fsdp} x {fsdp} | "
                f"{mem.argument_size_in_bytes / gib:.1f} | {mem.output_size_in_bytes / gib:.1f} | "
                f"{mem.temp_size_in_bytes / gib:.1f} | {total / gib:.1f} | "
                f"{'yes' if total / gib < GPU_GIB * 0.93 else 'no'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
