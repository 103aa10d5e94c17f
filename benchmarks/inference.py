"""Inference speed: dajax (JAX/XLA) vs transformers (PyTorch) on the same model and weights.

    python benchmarks/inference.py                      # ViT-S, 518x518, batch 1 and 8
    python benchmarks/inference.py --encoder vitb --batch-sizes 1 --iters 3

Both frameworks run the same randomly initialised Depth Anything architecture (transformers'
`DepthAnythingForDepthEstimation` with the released sizes; its weights converted into dajax
through the Hugging Face checkpoint path). The network alone is timed (no pre/post-processing),
float32, after warm-up; the table prints the median ms/image and dajax's speed-up. Also checks
the two outputs agree, so the comparison is of equal work.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np
import torch
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

from dajax.models import DepthAnything, ModelConfig, param_shapes
from dajax.weights.depth_anything_keys import official_to_flax, to_official


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
    """Median wall time of `fn()` in milliseconds over `iters` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", default="vits", choices=["vits", "vitb", "vitl"])
    p.add_argument("--size", type=int, default=518)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--iters", type=int, default=5)
    args = p.parse_args()

    config = ModelConfig.from_variant(args.encoder, "v2", pos_embed="hf")
    torch.manual_seed(0)
    ref = hf_model(config)
    state = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    model = DepthAnything(config)
    params = jax.device_put(official_to_flax(to_official(state), param_shapes(model)))
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x))

    print(
        f"device: {jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores), torch threads {torch.get_num_threads()}, jax {jax.__version__}"
    )
    print(f"{args.encoder} {args.size}x{args.size} float32\n")
    print("| batch | dajax ms/img | transformers ms/img | speed-up | max |diff| |")
    print("|---|---|---|---|---|")
    for batch in args.batch_sizes:
        x = np.random.RandomState(0).randn(batch, args.size, args.size, 3).astype(np.float32)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        with torch.inference_mode():
            torch_out = ref(pixel_values=xt).predicted_depth.numpy()
            t_ms = median_ms(lambda xt=xt: ref(pixel_values=xt), args.iters) / batch
        jax_out = np.asarray(apply(params, x))
        j_ms = median_ms(lambda x=x: apply(params, x).block_until_ready(), args.iters) / batch
        diff = float(np.abs(jax_out - torch_out).max())
        print(f"| {batch} | {j_ms:.0f} | {t_ms:.0f} | {t_ms / j_ms:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
