"""How far the demo's teacher gets per training budget, against the trivial baselines and the
best any model reading the demo's patch grid could do.

    python benchmarks/demo_budget.py --steps 150 600 2400 --out benchmarks/demo_budget

Trains the demo's teacher (`configs/teacher.py:demo`, every setting as the demo has it but the
step count, so each run has its own full learning-rate schedule) for each `--steps`, scores
every export on the demo's held-out scenes with the zero-shot relative protocol beside the
trivial baselines, and adds the token-grid oracle rows: the ground-truth disparity averaged
over a g x g grid of cells, interpolated back and scored through the same alignment. At g = 6
the oracle knows one exact mean disparity per patch token of the demo's 84-pixel input, a
yardstick for what the tokens must carry (a network can do better only by placing edges
inside a patch). `--steps` with no budgets prints the trivial and oracle rows alone.

Prints a Markdown table and writes it with the raw scores to `--out`.{md,json}. Not part of
CI: the default budgets take about ten minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from configs import student as student_config  # noqa: E402
from configs import teacher as teacher_config  # noqa: E402
from dajax.data.registry import build_source  # noqa: E402
from dajax.eval.evaluate import evaluate_checkpoints  # noqa: E402
from dajax.eval.oracle import oracle_scores  # noqa: E402
from dajax.training import teacher  # noqa: E402


def markdown(results: dict, runs: dict) -> str:
    """Rows in the order of `results`; training rows carry their steps, images and minutes."""
    lines = [
        "| model | steps | images seen | train min | AbsRel ↓ | δ1 ↑ |",
        "|---|---|---|---|---|---|",
    ]
    for name, scores in results.items():
        run = runs.get(name)
        cells = (
            [str(run["steps"]), str(run["images"]), f"{run['minutes']:.1f}"]
            if run
            else ["", "", ""]
        )
        lines.append(
            f"| {name} | {' | '.join(cells)} | {scores['abs_rel']:.4f} | {scores['a1']:.4f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, nargs="*", default=[150, 600, 2400])
    p.add_argument("--grids", type=int, nargs="+", default=[6, 12], help="oracle grids")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="runs/demo_budget", help="default: runs/demo_budget")
    p.add_argument("--out", default="benchmarks/demo_budget", help="output path stem")
    args = p.parse_args(argv)
    eval_cfg = student_config.get_config("demo").final_eval
    checkpoints, runs = {}, {}
    for steps in args.steps:
        config = teacher_config.get_config(f"demo,steps={steps}")
        config.seed = args.seed
        name = f"teacher, {steps} steps"
        start = time.time()
        checkpoints[name] = teacher.run(config, os.path.join(args.workdir, f"steps{steps}"))
        runs[name] = {
            "steps": steps,
            "images": steps * config.data.labeled_batch,
            "minutes": (time.time() - start) / 60,
        }
    results = evaluate_checkpoints(checkpoints, eval_cfg, args.workdir)
    source = build_source(eval_cfg.data)
    for grid in args.grids:
        results[f"oracle: ground truth on a {grid}x{grid} grid"] = oracle_scores(
            source, grid, eval_cfg.max_depth_eval
        )
    table = markdown(results, runs)
    print(table)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".md", "w") as f:
        f.write(table + "\n")
    with open(args.out + ".json", "w") as f:
        json.dump({"seed": args.seed, "runs": runs, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
