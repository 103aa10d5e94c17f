"""Where a step's time goes: totals per kernel from a `jax.profiler` Perfetto trace.

    python benchmarks/train_step.py --encoder vitl --dtype bfloat16 --profile /tmp/prof
    python benchmarks/trace_summary.py /tmp/prof/teacher --top 25
    python benchmarks/demo_step.py --profile /tmp/demo-trace       # 5 steps per trace
    python benchmarks/trace_summary.py /tmp/demo-trace/teacher-float32 --steps 5

Reads the newest `perfetto_trace.json.gz` under the folder and keeps the complete events of the
device (GPU stream / TPU core) threads or, in a CPU trace, of XLA's own threads (`tf_XLA...`:
the operations XLA:CPU runs, without its executor's wrapper and bookkeeping events). Prints the
busy time per coarse category (matmul/convolution, attention, fusion, copies/collectives,
other) and per kernel name, divided by `--steps`. On a CPU the busy time is summed over XLA's
threads, so it can exceed the wall time.

With the optimised HLO of the traced program beside the trace (`optimized_hlo.txt`, as the
benchmarks' `--profile` writes it; or `--hlo`), a kernel's category is taken from what it
computes (a fusion holding a dot or a convolution is a matmul/convolution, a sort is a sort),
and a third table splits the busy time by part of the train step, forward and backward, from
each operation's `op_name`: encoder blocks by sub-module, the DPT head by module, the loss,
the optimiser update, and operations without an `op_name` (XLA's copies).
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
# XLA:CPU's executor events that wrap or mark the operations rather than being one.
CPU_WRAPPERS = re.compile(r"^(ThunkExecutor|ThreadpoolListener|SlinkyThreadPool|end: )")
# An HLO instruction: `%name = type opcode(...)`, with its `calls=` and `op_name` if any.
HLO_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = \S+ ([\w\-]+)\(([^\n]*)$", re.M)


def newest_trace(folder: str) -> str:
    """Path of the newest Perfetto trace below `folder`."""
    found = glob.glob(os.path.join(folder, "**", "perfetto_trace.json.gz"), recursive=True)
    if not found:
        raise SystemExit(f"{folder}: no perfetto_trace.json.gz below it")
    return max(found, key=os.path.getmtime)


def _metadata(events: list, kind: str) -> dict:
    """pid (process_name) or (pid, tid) (thread_name) -> its name."""
    key = (lambda e: e["pid"]) if kind == "process_name" else (lambda e: (e["pid"], e["tid"]))
    return {key(e): e["args"]["name"] for e in events if e.get("ph") == "M" and e["name"] == kind}


def kernel_times(path: str) -> dict[str, float]:
    """Total microseconds per event name on device threads; in a CPU trace (no device events),
    on XLA's threads, wrapper events left out."""
    with gzip.open(path, "rt") as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    complete = [e for e in events if e.get("ph") == "X"]
    processes = _metadata(events, "process_name")
    devices = {pid for pid, name in processes.items() if re.search(r"/device:|GPU|TPU", name)}
    on_device = [e for e in complete if e.get("pid") in devices]
    if not on_device:  # a CPU trace: XLA:CPU's own threads
        threads = {t for t, n in _metadata(events, "thread_name").items() if n.startswith("tf_XLA")}
        on_device = [
            e
            for e in complete
            if (e["pid"], e.get("tid")) in threads and not CPU_WRAPPERS.match(e["name"])
        ]
    totals: dict[str, float] = collections.defaultdict(float)
    for e in on_device or complete:
        totals[e["name"]] += float(e.get("dur", 0.0))
    return totals


def category(name: str, computes: str | None = None) -> str:
    """The coarse kind of a kernel: what it `computes` (from the HLO) if known, else from its
    name."""
    if computes:
        return computes
    for label, pattern in CATEGORIES:
        if pattern.search(name):
            return label
    return "other"


def hlo_operations(text: str) -> dict[str, tuple[str, str | None]]:
    """Instruction name -> (its `op_name`, what it computes: 'matmul/conv' for a dot, a
    convolution or a fusion holding one, 'sort', 'copy/collective' for a copy, else None), from
    optimised HLO text."""
    bodies = dict(re.findall(r"^%?([\w.\-]+) [^\n]*\{\n(.*?)^\}", text, re.M | re.S))
    products = {c for c, body in bodies.items() if re.search(r" (dot|convolution)\(", body)}
    out = {}
    for name, opcode, rest in HLO_INSTRUCTION.findall(text):
        called = re.search(r"calls=%?([\w.\-]+)", rest)
        if opcode in ("dot", "convolution") or (called and called.group(1) in products):
            computes = "matmul/conv"
        else:
            computes = {"sort": "sort", "copy": "copy/collective"}.get(opcode)
        op_name = re.search(r'op_name="([^"]*)"', rest)
        out[name] = (op_name.group(1) if op_name else "", computes)
    return out


def step_part(op_name: str) -> str:
    """The part of a train step an operation belongs to, from its `op_name`, with 'fwd' or
    'bwd' (inside autodiff's transpose)."""
    direction = "bwd" if "transpose(" in op_name else "fwd"
    block = re.search(r"pretrained/blocks_\d+/(?:\w+\()*(\w+)", op_name)
    head = re.search(r"depth_head/(?:\w+\()*(\w+)", op_name)
    if block:
        part = f"encoder blocks: {block.group(1)}"
    elif "pretrained/" in op_name:
        part = "encoder: patch embed, pos embed, norms"
    elif head:
        part = "head: " + re.sub(r"_\d+$", "", head.group(1))
    elif "jvp(" in op_name or "transpose(" in op_name:
        part = "loss (and inputs)"
    elif op_name:
        part, direction = "optimizer update", ""
    else:
        return "no op_name (XLA's copies)"
    return f"{part} {direction}".strip()


def _table(title: str, totals: dict[str, float], busy: float, steps: int, top: int = 0) -> None:
    print(f"\n| {title} | ms per step | share |\n|---|---|---|")
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    for label, us in ranked[:top] if top else ranked:
        print(f"| {label} | {us / 1000 / steps:.2f} | {us / busy:.1%} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--steps", type=int, default=1, help="steps in the trace (per-step times)")
    p.add_argument("--hlo", default="", help="optimised HLO (default: optimized_hlo.txt in folder)")
    args = p.parse_args()
    totals = kernel_times(newest_trace(args.folder))
    hlo_path = args.hlo or os.path.join(args.folder, "optimized_hlo.txt")
    operations = {}
    if os.path.exists(hlo_path):
        with open(hlo_path) as f:
            operations = hlo_operations(f.read())
    busy = sum(totals.values()) or 1.0
    by_category: dict[str, float] = collections.defaultdict(float)
    by_part: dict[str, float] = collections.defaultdict(float)
    for name, us in totals.items():
        op_name, computes = operations.get(name, ("", None))
        by_category[category(name, computes)] += us
        by_part[step_part(op_name)] += us
    print(f"busy time {busy / 1000 / args.steps:.1f} ms per step in {len(totals)} kernels")
    _table("category", by_category, busy, args.steps)
    if operations:
        _table("part of the step", by_part, busy, args.steps)
    named = {f"`{name[:70]}`": us for name, us in totals.items()}
    _table("kernel", named, busy, args.steps, args.top)


if __name__ == "__main__":
    main()
