"""The paper's Table 9 ablation at small scale, on the demo's procedural world, over seeds.

    python benchmarks/ablation.py --seeds 0 1 2 --out benchmarks/ablation

For each seed: the demo's teacher is trained on the scarce labeled scenes and pseudo-labels the
unlabeled pool (`dajax.training.demo.train_teacher_and_label`); then one student per row is
trained from the same initial encoder on the same labels, and everything is scored on the
held-out scenes with the zero-shot relative protocol, beside the trivial baselines:

| row | L_u | S (jitter, blur and CutMix) | L_feat |
|---|---|---|---|
| student: L_u | yes | no | no |
| student: L_u + S | yes | yes | no |
| student: L_u + S + L_feat | yes | yes | yes |

`--config demo,broad` runs the rows on the paper's split (level labeled cameras; a broader
unlabeled pool and held-out set). Without DINOv2 weights the feature-alignment reference is
the teacher's encoder (the demo's `loss.feature_reference='auto'`); with `--dinov2 PATH` both
networks start from DINOv2 ViT-S (`configs/student.py:demo,dinov2=PATH`) and the reference is
DINOv2, as in the paper.
Prints a Markdown table (mean ± standard deviation over seeds) and writes it with a bar
plot and the raw scores to `--out`.{md,png,json}. Not part of CI: it takes tens of minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from configs import student as student_config  # noqa: E402
from dajax.eval.evaluate import evaluate_checkpoints  # noqa: E402
from dajax.training import demo, student  # noqa: E402

_NO_S = {"color_blur": False, "cutmix": False}
_S = {"color_blur": True, "cutmix": True}
ROWS = {
    "student: L_u": {"unlabeled": True, **_NO_S, "feature": False},
    "student: L_u + S": {"unlabeled": True, **_S, "feature": False},
    "student: L_u + S + L_feat": {"unlabeled": True, **_S, "feature": True},
}


def run_seed(seed: int, workdir: str, config_arg: str, dinov2: str) -> dict:
    """Teacher, pseudo-labels and one student per row for one seed; {row: scores}."""
    config = student_config.get_config(f"{config_arg},dinov2={dinov2}" if dinov2 else config_arg)
    config.seed = config.teacher_stage.seed = seed
    teacher_dir, shards = demo.train_teacher_and_label(config, workdir)
    checkpoints = {"teacher": teacher_dir}
    for name, switches in ROWS.items():
        row = demo.student_config(config, teacher_dir, shards)
        row.loss.update(switches)
        row_dir = os.path.join(workdir, name.split(": ")[1].replace(" + ", "_"))
        checkpoints[name] = student.run(row, row_dir)
    return evaluate_checkpoints(checkpoints, config.eval, workdir)


def summarise(per_seed: list[dict]) -> dict:
    """{row: {key: (mean, std)}} over seeds, for AbsRel and δ1."""
    out = {}
    for row in per_seed[0]:
        out[row] = {
            k: (float(np.mean(v)), float(np.std(v)))
            for k in ("abs_rel", "a1")
            for v in [[s[row][k] for s in per_seed]]
        }
    return out


def markdown(summary: dict, seeds: list[int], minutes: float, encoder: str) -> str:
    """The summary as a Markdown table (AbsRel and δ1, mean ± std) under a line naming the
    seeds, the feature-alignment reference and the wall time in minutes."""
    lines = [
        f"seeds {seeds}, mean ± std; feature reference: {encoder}; {minutes:.0f} min",
        "",
        "| model | AbsRel ↓ | δ1 ↑ |",
        "|---|---|---|",
    ]
    for row, s in summary.items():
        cells = [f"{s[k][0]:.4f} ± {s[k][1]:.4f}" for k in ("abs_rel", "a1")]
        lines.append(f"| {row} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def bar_plot(summary: dict, path: str) -> None:
    """Horizontal bars of AbsRel and δ1 per row (mean, std as error bars) into `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, title in zip(axes, ("abs_rel", "a1"), ("AbsRel ↓", "δ1 ↑"), strict=True):
        means = [summary[r][key][0] for r in rows]
        stds = [summary[r][key][1] for r in rows]
        ax.barh(rows, means, xerr=stds, color="tab:blue", capsize=3)
        ax.invert_yaxis()
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="default: 0 1 2")
    p.add_argument("--config", default="demo", help="configs/student.py argument (default: demo)")
    p.add_argument("--dinov2", default="", help="DINOv2 .pth for the encoders (default: none)")
    p.add_argument("--workdir", default="runs/ablation", help="default: runs/ablation")
    p.add_argument("--out", default="benchmarks/ablation", help="output path stem")
    args = p.parse_args(argv)
    start = time.time()
    per_seed = [
        run_seed(s, os.path.join(args.workdir, f"seed{s}"), args.config, args.dinov2)
        for s in args.seeds
    ]
    summary = summarise(per_seed)
    encoder = "DINOv2" if args.dinov2 else "the teacher's encoder (no DINOv2 weights)"
    table = markdown(summary, args.seeds, (time.time() - start) / 60, encoder)
    print(table)
    with open(args.out + ".md", "w") as f:
        f.write(table + "\n")
    with open(args.out + ".json", "w") as f:
        json.dump({"seeds": args.seeds, "per_seed": per_seed, "summary": summary}, f, indent=2)
    bar_plot(summary, args.out + ".png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
