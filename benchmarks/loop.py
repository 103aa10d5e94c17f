"""The training loop's pace against its bare compiled step, and the demo's compile seconds.

    python benchmarks/loop.py                    # both parts (about 15 min on two CPU cores)
    python benchmarks/loop.py --part loop        # loop vs its bare step, teacher and student
    python benchmarks/loop.py --part demo        # the README demo twice: cold, then warm cache
    python benchmarks/loop.py --part demo --baseline OLD_TREE   # and an older tree, alternating

`--part loop` runs the demo's teacher and student stages (`configs/student.py:demo`, every
setting as the demo has it: log every 10 steps, checkpoints and depth previews every 50) for
`--steps` steps each, and the same compiled step without the loop: the loop's own `jit_step`
on the stage's recipe, called back to back, the loss read after the last, fed either
`--batches` batches already on the device ("step alone") or each step's batch from the
stage's input pipeline ("step + inputs": what the loop adds beyond that is logging, previews,
checkpoints and the non-finite guard). Those run before and after the loop; their mean is
the reference. The loop's pace is measured as the issue measured it, from `metrics.jsonl`
(its first log step to its last). Prints steps/s and the ratios.

`--part demo` runs `python -m dajax.main --config=configs/student.py:demo` twice in fresh
workdirs with a fresh persistent compilation cache (`JAX_COMPILATION_CACHE_DIR` in a temporary
folder; `--no-cache` turns it off instead), and prints each run's whole-process wall time and
the compile seconds of each stage from the run's log (`dajax.runtime.compile_report`: the two
training loops, the evaluation, and the whole process; "other" is the rest: the data engine,
the student's parameter init and start-up), and the teacher's and student's loop pace from
their `metrics.jsonl`. `--baseline` runs an older tree's demo as well, without the cache (as a
tree without a default cache runs), alternating with this one's: before 1, after 1 (cold
cache), before 2, after 2 (warm); a tree that logs no compile seconds gets the rest alone.
`--checkout` runs another tree's demo instead of this one's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from unittest import mock

import jax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from configs import student as student_config  # noqa: E402
from dajax import runtime, sharding  # noqa: E402
from dajax.training import demo, loop, pseudo_label, student, supervised, teacher  # noqa: E402
from dajax.training.metrics_log import read_metrics  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_COMMAND = ["-m", "dajax.main", "--config=configs/student.py:demo"]
REPORT = re.compile(r"INFO (.+?): ([\d.]+) s compiling (\d+) programs \((\d*)")


class _Captured(Exception):
    """Raised by the stand-in for `loop.train` to hand back the recipe a stage built."""

    def __init__(self, recipe: loop.Recipe):
        super().__init__("recipe captured")
        self.recipe = recipe


def _capture(module, run, config, workdir: str) -> loop.Recipe:
    """The `Recipe` that `run(config, workdir)` (a stage) passes to `module.train`."""

    def stand_in(recipe, *_):
        raise _Captured(recipe)

    with mock.patch.object(module, "train", stand_in):
        try:
            run(config, workdir)
        except _Captured as captured:
            return captured.recipe
    raise RuntimeError(f"{run.__module__}.run never called train")


def step_timers(recipe: loop.Recipe, config, steps: int, batches: int) -> dict:
    """The loop's compiled step alone (`loop.jit_step`, `loop.compile_step`) on a fresh state;
    returns {"step": timer, "step + inputs": timer}, each `timer() -> steps/s` over `steps`
    steps dispatched back to back, the loss read after the last. "step" cycles `batches`
    batches already on the device; "step + inputs" takes each batch from `recipe.batches`
    through `sharding.global_batch` as the loop does."""
    mesh = sharding.make_mesh(config.mesh.fsdp)
    state, state_sh, frozen = loop.initial_state(recipe, config, mesh)
    on_device = [sharding.global_batch(next(recipe.batches), mesh) for _ in range(batches)]
    step = loop.jit_step(recipe, config, mesh, state_sh)
    compiled = loop.compile_step(step, mesh, state, on_device[0], frozen)
    state, _ = compiled(state, on_device[0], frozen)  # the first call's one-time costs
    jax.block_until_ready(state)

    def timer(batch_of_step) -> float:
        nonlocal state
        start = time.perf_counter()
        for i in range(steps):
            state, metrics = compiled(state, batch_of_step(i), frozen)
        float(metrics["loss"])
        return steps / (time.perf_counter() - start)

    return {
        "step": lambda: timer(lambda i: on_device[i % batches]),
        "step + inputs": lambda: timer(lambda i: sharding.global_batch(next(recipe.batches), mesh)),
    }


def loop_steps_per_s(workdir: str) -> float:
    """The loop's pace from `metrics.jsonl`: steps/s from its first log step to its last."""
    records = [r for r in read_metrics(workdir) if "loss" in r]
    first, last = records[0], records[-1]
    return (last["step"] - first["step"]) / (last["time"] - first["time"])


def _load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def measure_stage(name, module, run, config, workdir, steps, batches) -> tuple[dict, str]:
    """One stage (`run`, whose `module.train` trains): each `step_timers` timer, the loop
    (`run(config, workdir)`, `steps` steps), then the timers again in reverse order. Returns
    ({stage, loop, and per timer: (before, after)} in steps/s, what `run` returned)."""
    timers = step_timers(_capture(module, run, config, workdir + "_bare"), config, steps, batches)
    row = {"stage": name}
    for what, timer in timers.items():
        print(f"{name}: {what} ({_load()})", flush=True)
        row[what] = [timer()]
    print(f"{name}: loop ({_load()})", flush=True)
    result = run(config, workdir)
    row["loop"] = loop_steps_per_s(workdir)
    for what, timer in reversed(timers.items()):
        print(f"{name}: {what} again ({_load()})", flush=True)
        row[what].append(timer())
    return row, result


def part_loop(steps: int, batches: int, folder: str) -> list[dict]:
    """Teacher then student at the demo's shapes, each as `measure_stage`."""
    runtime.use_compilation_cache(os.path.join(folder, "cache"))  # each program compiles once
    config = student_config.get_config(f"demo,steps={steps}")
    teacher_row, teacher_dir = measure_stage(
        "teacher",
        supervised,
        teacher.run,
        config.teacher_stage,
        f"{folder}/teacher",
        steps,
        batches,
    )
    shards = pseudo_label.run(
        demo.pseudo_label_config(config, teacher_dir), f"{folder}/pseudo_labels"
    )
    student_row, _ = measure_stage(
        "student",
        student,
        student.run,
        demo.student_config(config, teacher_dir, shards),
        f"{folder}/student",
        steps,
        batches,
    )
    return [teacher_row, student_row]


def print_loop_table(rows: list[dict], steps: int) -> None:
    """Steps/s (mean of before / after the loop) and the loop's ratios to them."""
    print(
        f"\n| stage, {steps} steps | step alone | step + inputs | loop "
        "| loop / step alone | loop / (step + inputs) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        alone, fed = (sum(r[k]) / 2 for k in ("step", "step + inputs"))
        cells = [
            f"{alone:.2f} ({r['step'][0]:.2f} / {r['step'][1]:.2f})",
            f"{fed:.2f} ({r['step + inputs'][0]:.2f} / {r['step + inputs'][1]:.2f})",
            f"{r['loop']:.2f}",
            f"{r['loop'] / alone:.3f}",
            f"{r['loop'] / fed:.3f}",
        ]
        print(f"| {r['stage']} | " + " | ".join(cells) + " |")


def run_demo(checkout: str, workdir: str, env: dict) -> dict:
    """One whole-process run of the README demo command: its wall seconds, the compile
    reports of its log ({label: seconds, programs, cache hits}) and the training loops' pace
    ({stage: steps/s from metrics.jsonl})."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, *DEMO_COMMAND, f"--workdir={workdir}"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if out.returncode:
        raise RuntimeError(f"the demo failed:\n{out.stderr[-3000:]}")
    reports = {}
    for label, seconds, programs, hits in REPORT.findall(out.stderr):
        key = "total" if label.startswith("stage ") else os.path.basename(label)
        reports[key] = (float(seconds), int(programs), int(hits or 0))
    pace = {s: loop_steps_per_s(os.path.join(workdir, s)) for s in ("teacher", "student")}
    return {"wall": wall, "compile": reports, "loop": pace}


def _demo_env(cache: str | None) -> dict:
    """This process's environment with the persistent cache in `cache`, or off (None)."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    if cache:
        return env | {"JAX_COMPILATION_CACHE_DIR": cache}
    return env | {runtime.CACHE_SWITCH: "0"}


def part_demo(checkout: str, folder: str, cache: bool, baseline: str | None) -> list[dict]:
    """The README demo twice from `checkout`, in fresh workdirs, sharing a fresh persistent
    cache (or none); with a `baseline` checkout, its runs (no cache: what a tree without a
    default cache does) alternate with these, so both see the same machine load."""
    trees = [("before", baseline, None)] if baseline else []
    trees.append(("after" if baseline else "", checkout, "demo_cache" if cache else None))
    runs = []
    for i in (1, 2):
        for name, tree, cache_dir in trees:
            label = f"{name} {i}".strip()
            print(f"demo run {label} ({_load()})", flush=True)
            env = _demo_env(cache_dir and os.path.join(folder, cache_dir))
            runs.append(run_demo(tree, os.path.join(folder, label.replace(" ", "_")), env))
            runs[-1]["run"] = label
            print(f"  {runs[-1]['wall']:.1f} s ({_load()})", flush=True)
    return runs


STAGES = ("teacher", "student", "evaluation")  # the demo's compile reports, beside "total"


def _with_other(reports: dict) -> dict:
    """`reports` plus "other": the total less the named stages (seconds, programs, hits)."""
    if "total" not in reports:
        return reports
    named = [reports[s] for s in STAGES if s in reports]
    other = tuple(t - sum(r[i] for r in named) for i, t in enumerate(reports["total"]))
    return reports | {"other": other}


def _cell(report: tuple | None) -> str:
    if report is None:
        return "–"
    seconds, programs, hits = report
    return f"{seconds:.1f} ({programs}, {hits} cached)"


def print_demo_table(runs: list[dict]) -> None:
    columns = (*STAGES, "other", "total")
    header = " | ".join(f"{c}: compile s (programs, cached)" for c in columns)
    print(f"\n| run | wall s | loop steps/s teacher / student | {header} |")
    print("|---|---|---|" + "---|" * len(columns))
    for run in runs:
        reports = _with_other(run["compile"])
        cells = " | ".join(_cell(reports.get(c)) for c in columns)
        pace = f"{run['loop']['teacher']:.2f} / {run['loop']['student']:.2f}"
        print(f"| {run['run']} | {run['wall']:.1f} | {pace} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "loop", "demo"), default="all")
    parser.add_argument("--steps", type=int, default=150, help="steps per stage (the demo's)")
    parser.add_argument("--batches", type=int, default=10, help="distinct batches, bare step")
    parser.add_argument("--checkout", default=REPO, help="the tree whose demo runs (--part demo)")
    parser.add_argument("--no-cache", action="store_true", help="demo without the cache")
    parser.add_argument("--baseline", help="an older tree whose demo runs alternate (no cache)")
    parser.add_argument("--out", help="also write the raw numbers to this JSON file")
    args = parser.parse_args()
    print(f"{jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, {_load()}")
    with tempfile.TemporaryDirectory(prefix="dajax-loop-bench-") as folder:
        results = {}
        if args.part in ("all", "loop"):
            results["loop"] = part_loop(args.steps, args.batches, folder)
        if args.part in ("all", "demo"):
            results["demo"] = part_demo(args.checkout, folder, not args.no_cache, args.baseline)
    print(f"\nended with {_load()}")
    if "loop" in results:
        print_loop_table(results["loop"], args.steps)
    if "demo" in results:
        print_demo_table(results["demo"])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
