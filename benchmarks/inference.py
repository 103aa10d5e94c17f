"""Inference speed: dajax (JAX/XLA) vs transformers (PyTorch) on the same model and weights.

    python benchmarks/inference.py                      # ViT-S, 518x518, batch 1, fp32 + bf16
    python benchmarks/inference.py --encoders vitb --batch-sizes 1 8 --iters 7
    python benchmarks/inference.py --encoders vits vitb vitl --batch-sizes 1 32 \
        --dtypes bfloat16 --attention cudnn              # on a GPU
    python benchmarks/inference.py --served --profile /tmp/inference-trace

Both frameworks run the same randomly initialised Depth Anything architecture (transformers'
`DepthAnythingForDepthEstimation` with the released sizes; its weights converted into dajax
through the Hugging Face checkpoint path). The network alone is timed (no pre/post-processing),
in each of `--dtypes` (weights and compute, both frameworks), after warm-up, on the GPU when
PyTorch and JAX see one. Every runner (each framework in each dtype) is called once per round,
in turn, for `--iters` rounds, so a load change on a shared machine reaches all of them alike;
the table prints the min and median ms/image, dajax's speed-up over transformers in the same
dtype and over transformers float32, dajax's MFU (the forward's matmul and convolution FLOPs,
attention included, over the device's dense peak, when known) and the relative difference of
the outputs, so the comparison is of equal work.

On a CPU each of `--cores` runs in its own process started with that many cores
(`os.sched_setaffinity`, so both frameworks size their thread pools to it; 0 = all cores):
by default one core, then all. The header names the CPU and its matmul-relevant flags.

`--served` adds the time of the `jax.export` artifact that `python -m dajax.serving` writes
(exported for this platform, reloaded with `load_served`, as a server without dajax's model
code runs it). `--profile DIR` writes a `jax.profiler` trace of three dajax forwards per
encoder, batch size and dtype, with the optimised HLO that names the trace's kernels.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
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
from dajax.dtypes import DTYPES  # noqa: E402
from dajax.models import DepthAnything, ModelConfig, param_shapes  # noqa: E402
from dajax.models.kernels import ATTENTION_IMPLS  # noqa: E402
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


def interleaved_ms(runners: dict, iters: int) -> dict[str, list[float]]:
    """Wall times in ms of `iters` rounds that call each of `runners` (name -> function that
    blocks until its work is done) once, in turn, after one warm-up call each."""
    for run in runners.values():
        run()
    times = {name: [] for name in runners}
    for _ in range(iters):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(1000 * (time.perf_counter() - start))
    return times


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


def served_runner(config: ModelConfig, params, x: np.ndarray, dtype: str):
    """A function running the `jax.export` artifact of `config`/`params` (as `python -m
    dajax.serving` writes it, for this platform) on `x` [B, H, W, 3] float32."""
    platforms = (jax.export.default_export_platform(),)
    with tempfile.TemporaryDirectory() as served:
        export_network(config, params, served, x.shape[1], x.shape[2], dtype, platforms)
        run = load_served(served)
    images = jax.device_put(x)
    return lambda: run(images).block_until_ready()


def build_runners(config: ModelConfig, x: np.ndarray, args, device: torch.device):
    """For each dtype of `args.dtypes`: ('transformers'|'dajax'|'served', dtype) -> a function
    running that network on `x` [B, H, W, 3] float32 that returns its depth [B, H, W] once
    computed (a torch tensor or a JAX array); and, per dtype, dajax's run, its compiled program
    (for `--profile`) and its model FLOPs."""
    torch.manual_seed(0)
    ref = hf_model(config)
    state = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    runners, traced = {}, {}
    for name in args.dtypes:
        net = copy.deepcopy(ref).to(device, getattr(torch, name))
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        xt = xt.to(device, getattr(torch, name))

        def torch_run(net=net, xt=xt):
            with torch.inference_mode():
                out = net(pixel_values=xt).predicted_depth
            sync()
            return out

        dtype = jnp.dtype(name)
        model = DepthAnything(config, dtype=dtype, attention=args.attention)
        params = official_to_flax(to_official(state), param_shapes(model))
        params = jax.device_put(jax.tree.map(lambda a, d=dtype: jnp.asarray(a, d), params))
        xj = jax.device_put(x.astype(dtype))
        apply = jax.jit(lambda p, x, model=model: model.apply({"params": p}, x))
        compiled = apply.lower(params, xj).compile()
        dajax_run = lambda c=compiled, p=params, xj=xj: c(p, xj).block_until_ready()  # noqa: E731
        runners[("transformers", name)], runners[("dajax", name)] = torch_run, dajax_run
        if args.served:
            runners[("served", name)] = served_runner(config, params, x, name)
        plain = DepthAnything(config, dtype=dtype, attention="xla")
        flops = hardware.model_flops(
            jax.jit(lambda p, x, plain=plain: plain.apply({"params": p}, x)), params, xj
        )
        traced[name] = (lambda c=compiled, p=params, xj=xj: c(p, xj), compiled, flops)
    return runners, traced


def as_numpy(out) -> np.ndarray:
    """A torch tensor or JAX array as a float32 numpy array."""
    if isinstance(out, torch.Tensor):
        return out.float().cpu().numpy()
    return np.asarray(out, np.float32)


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over max |b|."""
    return float(np.abs(a - b).max() / np.abs(b).max())


def run_encoder(encoder: str, args, device: torch.device, cores: str) -> None:
    """Prints one table row per batch size and dtype for one encoder size."""
    config = ModelConfig.from_variant(encoder, "v2", pos_embed="hf")
    for batch in args.batch_sizes:
        x = np.random.RandomState(0).randn(batch, args.size, args.size, 3).astype(np.float32)
        runners, traced = build_runners(config, x, args, device)
        outputs = {key: as_numpy(run()) for key, run in runners.items() if key[0] != "served"}
        times = interleaved_ms(runners, args.iters)
        ms = {key: (min(t) / batch, float(np.median(t)) / batch) for key, t in times.items()}
        base = ms.get(("transformers", "float32"))
        for name in args.dtypes:
            (t_min, t_med), (j_min, j_med) = ms[("transformers", name)], ms[("dajax", name)]
            vs_fp32 = f"{base[1] / j_med:.2f}x / {base[0] / j_min:.2f}x" if base else "-"
            ref32 = outputs.get(("transformers", "float32"))
            diff_fp32 = "-"
            if base:
                diff_fp32 = " / ".join(
                    f"{rel_diff(outputs[(framework, name)], ref32):.1e}"
                    for framework in ("dajax", "transformers")
                )
            run, compiled, flops = traced[name]
            if args.profile:
                tag = f"{encoder}_b{batch}_{name}_cores{cores.split()[0]}"
                profile_runs(run, compiled, os.path.join(args.profile, tag))
            served = ms.get(("served", name))
            print(
                f"| {cores} | {encoder} | {batch} | {name} | {t_min:.1f} / {t_med:.1f} | "
                f"{j_min:.1f} / {j_med:.1f} | {t_med / j_med:.2f}x / {t_min / j_min:.2f}x | "
                f"{vs_fp32} | {hardware.mfu(flops, j_med * batch / 1000, name)} | "
                f"{rel_diff(outputs[('dajax', name)], outputs[('transformers', name)]):.1e} | "
                f"{diff_fp32} |" + (f" {served[0]:.1f} / {served[1]:.1f} |" if served else ""),
                flush=True,
            )


def pinned_runs(script: str, core_counts: list[int], argv: list[str]) -> None:
    """Runs `script` with `argv` once per entry of `core_counts`, each in a process restricted
    to that many of this process's cores (0: all) before JAX or PyTorch size their thread
    pools; the process finds its label ('1', '2 (all)') in $DAJAX_BENCH_CORES."""
    allowed = sorted(os.sched_getaffinity(0))
    for cores in core_counts:
        use = allowed[:cores] if cores else allowed
        env = dict(os.environ, DAJAX_BENCH_CORES=f"{len(use)}{'' if cores else ' (all)'}")
        start = (
            f"import os, runpy; os.sched_setaffinity(0, {use}); "
            f"runpy.run_path({os.path.abspath(script)!r}, run_name='__main__')"
        )
        subprocess.run([sys.executable, "-c", start, *argv], env=env, check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoders", nargs="+", default=["vits"], choices=["vits", "vitb", "vitl"])
    p.add_argument("--size", type=int, default=518)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1])
    p.add_argument("--dtypes", "--dtype", nargs="+", choices=DTYPES, default=list(DTYPES))
    p.add_argument("--attention", default="auto", choices=ATTENTION_IMPLS, help="dajax kernel")
    p.add_argument("--iters", type=int, default=5, help="timed rounds (min and median)")
    p.add_argument(
        "--cores", type=int, nargs="+", default=[1, 0], help="CPU only: cores per run, 0 = all"
    )
    p.add_argument("--served", action="store_true", help="also time the jax.export artifact")
    p.add_argument("--profile", help="write jax.profiler traces and the optimised HLO here")
    args = p.parse_args()
    device = hardware.torch_device()
    cores = os.environ.get("DAJAX_BENCH_CORES")
    if cores is not None:
        cores = f"{cores}, torch {torch.get_num_threads()} threads"
    else:
        model, flags = hardware.cpu_model_and_flags()
        print(hardware.describe())
        print(f"CPU: {model or 'unknown'}; flags: {' '.join(flags) or '-'}")
        print(f"{args.size}x{args.size}, dajax attention={args.attention}, {args.iters} rounds\n")
        print(
            "| cores | encoder | batch | dtype | transformers ms/img min / median "
            "| dajax ms/img min / median | speed-up median / min "
            "| vs transformers float32 median / min | dajax MFU "
            "| rel. diff, same dtype | rel. diff vs transformers float32: dajax / transformers |"
            + (" served ms/img min / median |" if args.served else "")
        )
        print("|---" * (12 if args.served else 11) + "|", flush=True)
        if device.type == "cpu" and jax.default_backend() == "cpu":
            pinned_runs(__file__, args.cores, sys.argv[1:])
            return
        cores = "-"
    for encoder in args.encoders:
        run_encoder(encoder, args, device, cores)


if __name__ == "__main__":
    main()
