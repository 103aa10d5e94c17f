"""One attention call of a ViT block on a CPU: dajax's blocked kernel vs PyTorch's SDPA.

    python benchmarks/attention_block.py                 # ViT-S at 518²: [1, 6, 1370, 64]
    python benchmarks/attention_block.py --heads 16 --batch 2 --iters 20

Times `dajax.models.kernels.blocked_attention.blocked_attention` (jitted) and
`torch.nn.functional.scaled_dot_product_attention` on the same q, k, v in float32 and
bfloat16, interleaved as in `inference.py` (min and median over `--iters` rounds), once per
`--cores` setting (one core, then all, by default), and checks both against the float32
textbook softmax.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks import hardware  # noqa: E402
from benchmarks.inference import interleaved_ms, pinned_runs, rel_diff  # noqa: E402
from dajax.models.kernels.blocked_attention import blocked_attention  # noqa: E402


def textbook(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """softmax(q kᵀ / √d) v over [B, heads, N, d] float32 numpy arrays."""
    s = np.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(-1, keepdims=True))
    return np.einsum("bhqk,bhkd->bhqd", p / p.sum(-1, keepdims=True), v)


def rows(args, cores: str) -> None:
    """Prints one row per dtype."""
    shape = (args.batch, args.heads, args.tokens, args.head_dim)
    q, k, v = np.random.RandomState(0).randn(3, *shape).astype(np.float32)
    want = textbook(q, k, v)
    attend = jax.jit(blocked_attention)
    for name in ("float32", "bfloat16"):
        tq, tk, tv = (torch.from_numpy(a).to(getattr(torch, name)) for a in (q, k, v))
        jq, jk, jv = (jnp.asarray(a, name) for a in (q, k, v))

        def torch_run(tq=tq, tk=tk, tv=tv):
            with torch.inference_mode():
                return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv)

        def dajax_run(jq=jq, jk=jk, jv=jv):
            return attend(jq, jk, jv).block_until_ready()

        runs = {"sdpa": torch_run, "dajax": dajax_run}
        times = interleaved_ms(runs, args.iters)
        (t_min, t_med), (j_min, j_med) = (
            (min(times[n]), float(np.median(times[n]))) for n in ("sdpa", "dajax")
        )
        t_err = rel_diff(torch_run().float().numpy(), want)
        j_err = rel_diff(np.asarray(runs["dajax"](), np.float32), want)
        print(
            f"| {cores} | {list(shape)} | {name} | {t_min:.1f} / {t_med:.1f} | "
            f"{j_min:.1f} / {j_med:.1f} | {t_med / j_med:.2f}x / {t_min / j_min:.2f}x | "
            f"{t_err:.1e} / {j_err:.1e} |",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--tokens", type=int, default=1370, help="518² at patch 14, with cls")
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--iters", type=int, default=10, help="timed rounds (min and median)")
    p.add_argument("--cores", type=int, nargs="+", default=[1, 0], help="cores per run, 0 = all")
    args = p.parse_args()
    cores = os.environ.get("DAJAX_BENCH_CORES")
    if cores is None:
        model, flags = hardware.cpu_model_and_flags()
        print(hardware.describe())
        print(f"CPU: {model or 'unknown'}; flags: {' '.join(flags) or '-'}\n")
        print(
            "| cores | q, k, v shape | dtype | torch SDPA ms min / median "
            "| dajax ms min / median | speed-up median / min "
            "| rel. error vs float32 textbook: SDPA / dajax |"
        )
        print("|---" * 7 + "|", flush=True)
        pinned_runs(__file__, args.cores, sys.argv[1:])
        return
    rows(args, f"{cores}, torch {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
