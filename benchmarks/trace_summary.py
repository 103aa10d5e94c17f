"""Where a step's time goes: totals per kernel from a `jax.profiler` Perfetto trace.

    python benchmarks/train_step.py --encoder vitl --dtype bfloat16 --profile /tmp/prof
    python benchmarks/trace_summary.py /tmp/prof/teacher --top 25

Reads the newest `perfetto_trace.json.gz` under the folder, keeps the complete events of the
device (GPU stream / TPU core) threads, or of every thread when the trace has no device, and
prints the share of busy time per kernel name and per coarse category (matmul/convolution,
attention, fusion, copies/collectives, other).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re

# First match wins. XLA names its fused kernels after their ops ("loop_convert_fusion"), so a
# bare "conv" would take elementwise converts for convolutions: library kernels are matched by
# their own names (cuBLAS nvjet, cutlass, cuDNN xmma/implicit_gemm), XLA's Triton matmuls by
# "gemm_fusion", CPU convolutions by the op's name.
CATEGORIES = (
    ("attention", re.compile(r"flash|fmha|cudnn.*attn|attention|sdpa|cudnn::fusion", re.I)),
    (
        "matmul/conv",
        re.compile(
            r"gemm|cutlass|cublas|nvjet|xmma|^sm\d+_|matmul|\bdot\b|convolution|conv_general",
            re.I,
        ),
    ),
    (
        "copy/collective",
        re.compile(r"^copy[._\d]|memcpy|memset|all-?reduce|all-?gather|nccl", re.I),
    ),
    ("fusion", re.compile(r"fusion|loop_|input_|reduce", re.I)),
)


def newest_trace(folder: str) -> str:
    """Path of the newest Perfetto trace below `folder`."""
    found = glob.glob(os.path.join(folder, "**", "perfetto_trace.json.gz"), recursive=True)
    if not found:
        raise SystemExit(f"{folder}: no perfetto_trace.json.gz below it")
    return max(found, key=os.path.getmtime)


def kernel_times(path: str) -> dict[str, float]:
    """Total microseconds per event name on device threads (all threads if none)."""
    with gzip.open(path, "rt") as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    process_names = {
        e["pid"]: e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    device_pids = {
        pid for pid, name in process_names.items() if re.search(r"/device:|GPU|TPU", name)
    }
    totals: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("ph") != "X" or (device_pids and e.get("pid") not in device_pids):
            continue
        totals[e["name"]] += float(e.get("dur", 0.0))
    return totals


def category(name: str) -> str:
    """The coarse kind of a kernel, from its name."""
    for label, pattern in CATEGORIES:
        if pattern.search(name):
            return label
    return "other"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder")
    p.add_argument("--top", type=int, default=20)
    args = p.parse_args()
    totals = kernel_times(newest_trace(args.folder))
    busy = sum(totals.values()) or 1.0
    by_category: dict[str, float] = collections.defaultdict(float)
    for name, us in totals.items():
        by_category[category(name)] += us
    print(f"busy time {busy / 1000:.1f} ms in {len(totals)} kernels\n")
    print("| category | ms | share |\n|---|---|---|")
    for label, us in sorted(by_category.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {us / 1000:.1f} | {us / busy:.1%} |")
    print("\n| kernel | ms | share |\n|---|---|---|")
    for name, us in sorted(totals.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"| `{name[:70]}` | {us / 1000:.2f} | {us / busy:.1%} |")


if __name__ == "__main__":
    main()
