"""Inference speed: dajax (JAX/XLA) vs transformers (PyTorch) on the same model and weights.

    python benchmarks/inference.py                      # ViT-S, 518x518, batch 1 and 8
    python benchmarks/inference.py --encoders vitb --batch-sizes 1 --iters 3
    python benchmarks/inference.py --encoders vits vitb vitl --batch-sizes 1 32 \
        --dtype bfloat16 --attention cudnn                # on a GPU
    python benchmarks/inference.py --served --profile /tmp/inference-trace

Both frameworks run the same randomly initialised Depth Anything architecture (transformers'
`DepthAnythingForDepthEstimation` with the released sizes; its weights converted into dajax
through the Hugging Face checkpoint path). The network alone is timed (no pre/post-processing),
in float32 or bfloat16 (weights and compute, both frameworks), after warm-up, on the GPU when
PyTorch and JAX see one; the table prints the median ms/image, dajax's speed-up, dajax's MFU
(the forward's matmul and convolution FLOPs, attention included, over the device's dense
peak, when known) and the relative difference of the two outputs, so the comparison is of
equal work.

`--served` adds the time of the `jax.export` artifact that `python -m dajax.serving` writes
(exported for this platform, reloaded with `load_served`, as a server without dajax's model
code runs it). `--profile DIR` writes a `jax.profiler` trace of three dajax forwards per
encoder and batch size, with the optimised HLO that names the trace's kernels.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks import hardware  # noqa: E402
from dajax.models import DepthAnything, ModelConfig, param_shapes  # noqa: E402
from dajax.models.dinov2 import ATTENTION_IMPLS  # noqa: E402
from dajax.serving import export_network, load_served  # noqa: E402
from dajax.weights.depth_anything_keys import official_to_flax, to_official  # noqa: E402


def hf_model(config: ModelConfig) -> DepthAnythingForDepthEstimation:
    """transformers' Depth Anything with the architecture of `config` (random weights)."""
    backbone = Dinov2Config(
        hidden_size=config.dim,
        num_hidden_layers=config.depth,
        num_attention_heads=config.heads,
        image_size=518,
        patch_size=14,
        out_indices=[i + 1 for i in config.layers],
        reshape_hidden_states=False,
        apply_layernorm=True,
        layerscale_value=1.0,
        use_swiglu_ffn=config.ffn == "swiglu",
    )
    hf_config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=config.dim,
        patch_size=14,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=list(config.out_channels),
        fusion_hidden_size=config.features,
        head_hidden_size=32,
    )
    return DepthAnythingForDepthEstimation(hf_config).eval()


def median_ms(fn, iters: int) -> float:
    """Median wall time of `fn()` in milliseconds over `iters` runs (after one warm-up);
    `fn` must block until its work is done."""
    fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def profile_runs(run, compiled, logdir: str, runs: int = 3) -> None:
    """A `jax.profiler` trace of `runs` calls of `run` (a dajax step or forward returning
    device arrays; TensorBoard/XProf and Perfetto files) and the optimised program of
    `compiled` (`optimized_hlo.txt`, which names the trace's kernels)."""
    with jax.profiler.trace(logdir, create_perfetto_trace=True):
        for _ in range(runs):
            out = run()
        jax.block_until_ready(out)
    with open(os.path.join(logdir, "optimized_hlo.txt"), "w") as f:
        f.write(compiled.as_text())


def served_ms(config: ModelConfig, params, x: np.ndarray, dtype: str, iters: int) -> float:
    """Median ms per call of the `jax.export` artifact of `config`/`params` (as
    `python -m dajax.serving` writes it, for this platform) on `x` [B, H, W, 3] float32."""
    platforms = (jax.export.default_export_platform(),)
    with tempfile.TemporaryDirectory() as served:
        export_network(config, params, served, x.shape[1], x.shape[2], dtype, platforms)
        run = load_served(served)
    images = jax.device_put(x)
    return median_ms(lambda: run(images).block_until_ready(), iters)


def run_encoder(encoder: str, args, device: torch.device) -> None:
    """Prints one table row per batch size for one encoder size."""
    config = ModelConfig.from_variant(encoder, "v2", pos_embed="hf")
    torch.manual_seed(0)
    ref = hf_model(config)
    state = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    bf16 = args.dtype == "bfloat16"
    ref = ref.to(device, torch.bfloat16 if bf16 else torch.float32)
    dtype = jnp.bfloat16 if bf16 else jnp.float32
    model = DepthAnything(config, dtype=dtype, attention=args.attention)
    params = official_to_flax(to_official(state), param_shapes(model))
    params = jax.device_put(jax.tree.map(lambda a: jnp.asarray(a, dtype), params))
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x))
    plain = DepthAnything(config, dtype=dtype, attention="xla")
    plain_apply = jax.jit(lambda p, x: plain.apply({"params": p}, x))
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    for batch in args.batch_sizes:
        x = np.random.RandomState(0).randn(batch, args.size, args.size, 3).astype(np.float32)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)
        xt = xt.to(torch.bfloat16) if bf16 else xt

        def torch_run(xt=xt):
            out = ref(pixel_values=xt).predicted_depth
            sync()
            return out

        with torch.inference_mode():
            torch_out = torch_run().float().cpu().numpy()
            t_ms = median_ms(torch_run, args.iters) / batch
        xj = jax.device_put(x.astype(dtype))
        compiled = apply.lower(params, xj).compile()
        jax_out = np.asarray(compiled(params, xj), np.float32)
        j_run = lambda c=compiled, xj=xj: c(params, xj).block_until_ready()  # noqa: E731
        j_ms = median_ms(j_run, args.iters) / batch
        if args.profile:
            profile_runs(j_run, compiled, os.path.join(args.profile, f"{encoder}_b{batch}"))
        served = (
            f" {served_ms(config, params, x, args.dtype, args.iters) / batch:.2f} |"
            if args.served
            else ""
        )
        rel = float(np.abs(jax_out - torch_out).max() / np.abs(torch_out).max())
        flops = hardware.model_flops(plain_apply, params, xj)
        util = hardware.mfu(flops, j_ms * batch / 1000, args.dtype)
        print(
            f"| {encoder} | {batch} | {j_ms:.2f} | {1000 / j_ms:.0f} | {t_ms:.2f} | "
            f"{t_ms / j_ms:.2f}x | {util} | {rel:.1e} |{served}",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoders", nargs="+", default=["vits"], choices=["vits", "vitb", "vitl"])
    p.add_argument("--size", type=int, default=518)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--attention", default="auto", choices=ATTENTION_IMPLS, help="dajax kernel")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--served", action="store_true", help="also time the jax.export artifact")
    p.add_argument("--profile", help="write jax.profiler traces and the optimised HLO here")
    args = p.parse_args()

    device = hardware.torch_device()
    print(hardware.describe())
    print(f"{args.size}x{args.size} {args.dtype}, dajax attention={args.attention}\n")
    served = " served ms/img |" if args.served else ""
    print(
        "| encoder | batch | dajax ms/img | dajax img/s | transformers ms/img | speed-up "
        f"| dajax MFU | rel. max diff |{served}"
    )
    print("|---" * (9 if args.served else 8) + "|")
    for encoder in args.encoders:
        run_encoder(encoder, args, device)


if __name__ == "__main__":
    main()
