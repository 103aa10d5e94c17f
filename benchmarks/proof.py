"""The method's claim in one command: a label-scarce teacher that reads the image, and students
that beat it (issue 29), with the paper's Table 9 rows, over seeds.

    python benchmarks/proof.py --seeds 0 1 2 --out benchmarks/proof

Per seed, on `--config` (`configs/student.py:proof,broad` by default: 40 labeled scenes, a
pool of 1600 unlabeled scenes and the held-out scenes, all drawn from the broader cameras; both
networks start from the stand-in for DINOv2 shipped in `configs/standin_encoder.safetensors`,
which `configs/pretrain.py` trained on class maps of other scenes, no depth): the demo's teacher
is trained on the labeled scenes and pseudo-labels the pool
(`dajax.training.demo.train_teacher_and_label`); one student per row is trained from the same
initial encoder on the same labels; every model is scored on the held-out scenes with the
zero-shot relative protocol (`evaluate_checkpoints`), beside the trivial baselines and the
token-grid oracle (`dajax.eval.oracle`). Rows:

| row | what |
|---|---|
| ramp, constant | the trivial predictors (`dajax.eval.baselines`) |
| oracle | the ground truth averaged over the encoder's token grid (input size / 14 cells a side) |
| teacher | the label-scarce teacher |
| student_lu | L_u alone: no jitter, grayscale or blur, no CutMix, no L_feat |
| student_lu_s | L_u + S (jitter, grayscale, blur and CutMix) |
| student | the full recipe: L_u + S + L_feat |

Each row gets AbsRel, δ1 and `content` (`content`: how much the per-image-normalised prediction
varies between images, as a fraction of the ground truth's; 0 for a prediction that ignores the
image). L_feat aligns to the initial encoder, as the paper's does to DINOv2;
`--config proof,broad,standin=False` starts both networks from a random encoder instead (L_feat
then aligns to the teacher's encoder), `--config proof,broad,dinov2=PATH` from DINOv2. The held-out
scenes come from the procedural family `heldout_family(--heldout-seed)`,
which no training set uses, so every seed gives scenes unseen in training.

Prints a Markdown table (mean ± sample standard deviation over seeds, and the share of the
ramp-to-oracle AbsRel gap closed) and whether issue 29's targets hold; writes the table to
`--out`.md, a bar plot to `--out`.png and every row and seed with the wall times, the machine
and the command to `--json` (default `--out`.json). Not part of CI: a seed takes tens of minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.hardware import cpu_model_and_flags  # noqa: E402
from configs import student as student_config  # noqa: E402
from dajax.data.registry import build_source  # noqa: E402
from dajax.eval import oracle  # noqa: E402
from dajax.eval.baselines import ConstantDisparity, VerticalRamp  # noqa: E402
from dajax.eval.evaluate import evaluate_checkpoints, predict  # noqa: E402
from dajax.inference import DepthEstimator  # noqa: E402
from dajax.models.variants import PATCH_SIZE  # noqa: E402
from dajax.training import demo, student  # noqa: E402

_NO_S = {"color_blur": False, "cutmix": False}
_S = {"color_blur": True, "cutmix": True}
# The students: the loss switches each row sets on the proof config (Table 9's rows).
STUDENTS = {
    "student_lu": {"unlabeled": True, **_NO_S, "feature": False},
    "student_lu_s": {"unlabeled": True, **_S, "feature": False},
    "student": {"unlabeled": True, **_S, "feature": True},
}
# The reference rows: their names here -> their names in `evaluate_checkpoints`' results.
REFERENCE_ROWS = {
    "ramp": "trivial: vertical ramp",
    "constant": "trivial: constant disparity",
    "oracle": oracle.ORACLE_ROW,
}
ROWS = ("ramp", "constant", "oracle", "teacher", *STUDENTS)
GAP_ROWS = ("teacher", *STUDENTS)  # rows with a "gap closed" cell
# Held-out families start here, above the small seeds the training sets use (1 and 2).
HELDOUT_BASE = 2**32


def heldout_family(heldout_seed: int) -> int:
    """The procedural family seed of the held-out scenes for `--heldout-seed` (any int):
    `HELDOUT_BASE + heldout_seed mod 2^32`, never a training set's seed."""
    return HELDOUT_BASE + heldout_seed % HELDOUT_BASE


def proof_config(config_arg: str, seed: int, heldout_seed: int):
    """`configs/student.py:<config_arg>` with the seed of both networks set to `seed` and the
    held-out scenes drawn from `heldout_family(heldout_seed)`."""
    config = student_config.get_config(config_arg)
    config.seed = config.teacher_stage.seed = seed
    config.final_eval.data.seed = heldout_family(heldout_seed)
    return config


def normalise_per_image(disparity: np.ndarray) -> np.ndarray:
    """Each image's disparity minus its median, over its mean absolute deviation from that
    median (the paper's scale-and-shift normalisation, eqs. 2-3, over every pixel).

    Args:
      disparity: [N, H, W] any affine-invariant disparity (unitless).

    Returns:
      [N, H, W] float64; 0 for an image whose disparity is constant.
    """
    d = disparity.astype(np.float64)
    median = np.median(d, axis=(1, 2), keepdims=True)
    centred = d - median
    scale = np.abs(centred).mean(axis=(1, 2), keepdims=True)
    return np.divide(centred, scale, out=np.zeros_like(centred), where=scale > 0)


def between_image_spread(disparity: np.ndarray) -> float:
    """How much the per-image-normalised maps differ between images: the standard deviation
    over the N images at each pixel, averaged over the H x W pixels (unitless).

    Args:
      disparity: [N, H, W] disparity of N images of one size (N >= 2).
    """
    return float(normalise_per_image(disparity).std(axis=0).mean())


def content(prediction: np.ndarray, gt_disparity: np.ndarray) -> float:
    """`between_image_spread` of the predictions over the ground truth's: 0 for a prediction
    that is the same map (up to scale and shift) for every image, 1 for the ground truth itself,
    unchanged by any per-image positive scale and shift of the predictions. It measures how much
    a prediction depends on its image, not whether it is right (noise scores high): read it
    beside AbsRel.

    Args:
      prediction: [N, H, W] predicted disparity; gt_disparity: [N, H, W] ground-truth
        disparity, 0 where invalid (the sky).
    """
    return between_image_spread(prediction) / between_image_spread(gt_disparity)


def ground_truth_disparity(record: dict) -> np.ndarray:
    """A labeled record's disparity [H, W] (1/m), 0 outside its valid mask (the sky is the
    farthest), as the oracle and the training targets take it."""
    valid = record["mask"] & (record["depth"] > 0)
    return np.where(valid, 1.0 / np.maximum(record["depth"], 1e-6), 0.0).astype(np.float32)


def run_seed(config, workdir: str) -> tuple[list[dict], dict]:
    """Teacher, pseudo-labels, the students and the held-out scores of one seed.

    Returns:
      (one entry per row in `ROWS` order: {name, seed, absrel, delta1, content}, {stage: wall
      seconds}).
    """
    seconds, start = {}, time.time()
    teacher_dir, shards = demo.train_teacher_and_label(config, workdir)
    seconds["teacher_and_pseudo_labels"] = time.time() - start
    checkpoints = {"teacher": teacher_dir}
    for name, switches in STUDENTS.items():
        start = time.time()
        row = demo.student_config(config, teacher_dir, shards)
        row.loss.update(switches)
        checkpoints[name] = student.run(row, os.path.join(workdir, name))
        seconds[name] = time.time() - start
    start = time.time()
    scores = evaluate_checkpoints(checkpoints, config.final_eval, workdir)
    scores = {name: scores[REFERENCE_ROWS.get(name, name)] for name in ROWS}
    source = build_source(config.final_eval.data)
    records = [source[i] for i in range(len(source))]
    images = [r["image"] for r in records]
    predictions = {
        "ramp": VerticalRamp().batch(images),
        "constant": ConstantDisparity().batch(images),
        "oracle": oracle.oracle_predictions(records, config.final_eval.input_size // PATCH_SIZE),
    }
    for name, path in checkpoints.items():
        estimator = DepthEstimator.from_pretrained(path, input_size=config.final_eval.input_size)
        predictions[name] = predict(estimator, images, config.final_eval.batch_size, flip=False)
    gt = np.stack([ground_truth_disparity(r) for r in records])
    seconds["evaluation"] = time.time() - start
    entries = [
        {
            "name": name,
            "seed": int(config.seed),
            "absrel": scores[name]["abs_rel"],
            "delta1": scores[name]["a1"],
            "content": content(np.stack(predictions[name]), gt),
        }
        for name in ROWS
    ]
    return entries, seconds


def _by_row(entries: list[dict], key: str) -> dict[str, np.ndarray]:
    """{row: [S] values of `key`, in seed order}."""
    return {name: np.array([e[key] for e in entries if e["name"] == name]) for name in ROWS}


def gap_closed(entries: list[dict]) -> dict[str, np.ndarray]:
    """{row in GAP_ROWS: [S] per seed (ramp − row) / (ramp − oracle) in AbsRel}: 0 at the
    ramp, 1 at the token-grid oracle."""
    absrel = _by_row(entries, "absrel")
    ramp, best = absrel["ramp"], absrel["oracle"]
    return {name: oracle.gap_closed(absrel[name], ramp, best) for name in GAP_ROWS}


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


def checks(entries: list[dict]) -> dict[str, dict]:
    """Issue 29's section-2 targets: {target: {"holds": bool or None (not measurable with one
    seed), "values": what it was judged on}}."""
    absrel, teacher_content = _by_row(entries, "absrel"), _by_row(entries, "content")["teacher"]
    closed = gap_closed(entries)["teacher"]
    margin = absrel["teacher"] - absrel["student"]  # [S], > 0: the student is better
    out = {
        "teacher closes >= 0.5 of the ramp-to-oracle gap (every seed)": {
            "holds": bool(np.all(closed >= 0.5)),
            "values": closed.round(4).tolist(),
        },
        "teacher content >= 0.5 (every seed)": {
            "holds": bool(np.all(teacher_content >= 0.5)),
            "values": teacher_content.round(4).tolist(),
        },
        "student < teacher in AbsRel (every seed)": {
            "holds": bool(np.all(margin > 0)),
            "values": margin.round(4).tolist(),
        },
    }
    mean_margin, teacher_std = float(np.mean(margin)), _mean_std(absrel["teacher"])[1]
    out["mean margin >= 3 x teacher std and >= 0.005"] = {
        "holds": bool(mean_margin >= max(3 * teacher_std, 0.005)) if len(margin) > 1 else None,
        "values": [round(mean_margin, 4), round(3 * teacher_std, 4)],
    }
    return out


def markdown(entries: list[dict], header: str) -> str:
    """The table (rows in `ROWS` order; AbsRel, δ1, content and gap closed as mean ± std over
    seeds) under `header`, then the checks of `checks` as a list."""
    columns = {key: _by_row(entries, key) for key in ("absrel", "delta1", "content")}
    closed = gap_closed(entries)
    lines = [
        header,
        "",
        "| row | AbsRel ↓ | δ1 ↑ | content ↑ | gap closed ↑ |",
        "|---|---|---|---|---|",
    ]
    for name in ROWS:
        cells = [columns[key][name] for key in columns] + [closed.get(name)]
        text = ["" if c is None else "{:.4f} ± {:.4f}".format(*_mean_std(c)) for c in cells]
        lines.append(f"| {name} | " + " | ".join(text) + " |")
    lines.append("")
    for target, result in checks(entries).items():
        verdict = {True: "holds", False: "FAILS", None: "n/a (one seed)"}[result["holds"]]
        lines.append(f"- {target}: {verdict} ({result['values']})")
    return "\n".join(lines)


def bar_plot(entries: list[dict], path: str) -> None:
    """Horizontal bars of AbsRel, δ1 and content per row (mean over seeds, sample std as error
    bars) into `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    titles = {"absrel": "AbsRel ↓", "delta1": "δ1 ↑", "content": "content ↑"}
    for ax, (key, title) in zip(axes, titles.items(), strict=True):
        stats = [_mean_std(v) for v in _by_row(entries, key).values()]
        ax.barh(ROWS, [m for m, _ in stats], xerr=[s for _, s in stats], capsize=3)
        ax.invert_yaxis()
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> dict:
    """What the run ran on: CPU model and its matmul-relevant flags, cores usable and present,
    platform, JAX version and devices."""
    model, flags = cpu_model_and_flags()
    return {
        "cpu": model or platform.processor(),
        "cpu_flags": flags,
        "cores_usable": len(os.sched_getaffinity(0)),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "devices": [d.device_kind for d in jax.devices()],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="default: 0 1 2")
    p.add_argument(
        "--heldout-seed", type=int, default=0, help="the held-out scenes' seed (default: 0)"
    )
    p.add_argument(
        "--config",
        default="proof,broad",
        help="configs/student.py argument (default: proof,broad)",
    )
    p.add_argument("--workdir", default="runs/proof", help="default: runs/proof")
    p.add_argument("--out", default="benchmarks/proof", help="path stem of the .md and .png")
    p.add_argument("--json", default="", help="the scores' JSON (default: <out>.json)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    start = time.time()
    entries, seconds = [], {}
    for seed in args.seeds:
        seed_start = time.time()
        config = proof_config(args.config, seed, args.heldout_seed)
        seed_entries, stages = run_seed(config, os.path.join(args.workdir, f"seed{seed}"))
        entries += seed_entries
        seconds[str(seed)] = {"total": time.time() - seed_start, **stages}
    total = time.time() - start
    command = shlex.join(["python", "benchmarks/proof.py", *argv])
    header = (
        f"`{command}`: seeds {args.seeds}, held-out seed {args.heldout_seed}, config "
        f"{args.config}; mean ± sample std over seeds; {total / 60:.1f} min on {machine()['cpu']}"
    )
    table = markdown(entries, header)
    print(table, flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".md", "w") as f:
        f.write(table + "\n")
    bar_plot(entries, args.out + ".png")
    payload = {
        "rows": entries,
        "checks": checks(entries),
        "seeds": args.seeds,
        "heldout_seed": args.heldout_seed,
        "heldout_family": heldout_family(args.heldout_seed),
        "config": args.config,
        "command": command,
        "wall_seconds": {"total": total, "per_seed": seconds},
        "machine": machine(),
    }
    with open(args.json or args.out + ".json", "w") as f:
        json.dump(payload, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
