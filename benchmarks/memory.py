"""Per-device memory of the compiled train steps under data parallelism and FSDP.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
        python benchmarks/memory.py --encoder vitg --stages student --fsdp 1 8

Compiles (never runs) dajax's jitted step ahead of time on an 8-device mesh, with the shardings
the training loop uses (`dajax.sharding`), and prints XLA's memory analysis per device:
arguments (params, optimiser state, the batch slice, the frozen DINOv2), outputs and
temporaries. Run on fake CPU devices it needs no accelerator; the CPU compiler's buffer
assignment differs from the GPU's in detail, so read the totals as estimates (within ~10-20%).
The reference point printed beside each row is the memory of one 80 GB GPU.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.train_step import make_batch, make_tx, stage_loss_fn  # noqa: E402
from dajax import sharding  # noqa: E402
from dajax.models import DepthAnything, ModelConfig, param_shapes  # noqa: E402
from dajax.training.state import create_state, make_train_step  # noqa: E402

GPU_GIB = 80


def compiled_memory(model, stage: str, fsdp: int, per_device_labeled: int, size: int):
    """XLA's memory analysis of the step compiled for a ('data', 'fsdp') mesh."""
    mesh = sharding.make_mesh(fsdp)
    params = param_shapes(model)
    tx = make_tx(model)
    abstract = jax.eval_shape(lambda p: create_state(p, tx), params)
    state_sh = sharding.state_shardings(abstract, mesh)
    state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, state_sh
    )
    local = make_batch(per_device_labeled * mesh.size, size, stage == "student")
    batch = {
        k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding.batch_sharding(mesh))
        for k, v in local.items()
    }
    frozen = None
    if stage == "student":
        rep = sharding.replicated(mesh)
        frozen = {
            "dinov2": jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), params["pretrained"]
            )
        }
    step = jax.jit(
        make_train_step(stage_loss_fn(model, stage), tx, seed=0),
        out_shardings=(state_sh, sharding.replicated(mesh)),
        donate_argnums=0,
    )
    # Memory comes from XLA's buffer assignment, done before code generation: the compile skips
    # LLVM optimisation (never run), which on CPU makes a ViT-G step compile several times faster.
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}
    compiled = step.lower(state, batch, frozen).compile(compiler_options=options)
    return compiled.memory_analysis()


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
    args = p.parse_args()

    config = ModelConfig.from_variant(args.encoder, "v2")
    model = DepthAnything(config, dtype=jnp.bfloat16, remat=args.remat, attention=args.attention)
    n_params = sum(x.size for x in jax.tree.leaves(param_shapes(model)))
    print(
        f"{jax.device_count()} x {jax.devices()[0].device_kind}; {args.encoder} "
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
            mem = compiled_memory(model, stage, fsdp, args.labeled_per_device, args.size)
            # Donated state aliases its outputs: count arguments and temporaries once.
            total = mem.argument_size_in_bytes + mem.temp_size_in_bytes
            total += mem.output_size_in_bytes - mem.alias_size_in_bytes
            print(
                f"| {stage} | {jax.device_count() // fsdp} x {fsdp} | "
                f"{mem.argument_size_in_bytes / gib:.1f} | {mem.output_size_in_bytes / gib:.1f} | "
                f"{mem.temp_size_in_bytes / gib:.1f} | {total / gib:.1f} | "
                f"{'yes' if total / gib < GPU_GIB * 0.93 else 'no'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
