"""Zero-shot relative-depth evaluation of checkpoints on a labeled source: AbsRel and δ1.

Each model predicts disparity at the image resolution (`DepthEstimator.batch`), which is
aligned per image to the ground-truth disparity (`align.relative_depth_metrics`); per-image
scores are averaged over the images that have valid ground truth.
"""

from __future__ import annotations

import json
import logging
import os

import jax
import numpy as np

from dajax.data.registry import build_source
from dajax.eval.align import relative_depth_metrics
from dajax.inference import DepthEstimator

log = logging.getLogger("dajax")


def evaluate(estimator: DepthEstimator, source, max_depth: float, batch_size: int = 8) -> dict:
    """Mean AbsRel / δ1 of `estimator` over every record of `source`."""
    scores = {"abs_rel": [], "a1": []}
    metrics_fn = jax.jit(relative_depth_metrics, static_argnums=3)
    for start in range(0, len(source), batch_size):
        records = [source[i] for i in range(start, min(start + batch_size, len(source)))]
        preds = estimator.batch([r["image"] for r in records], batch_size)
        for record, pred in zip(records, preds, strict=True):
            out = metrics_fn(pred[None], record["depth"][None], record["mask"][None], max_depth)
            if bool(out["valid"][0]):
                for k in scores:
                    scores[k].append(float(out[k][0]))
    if not scores["a1"]:
        raise ValueError("evaluation set has no image with valid ground truth")
    return {k: float(np.mean(v)) for k, v in scores.items()} | {"images": len(scores["a1"])}


def evaluate_checkpoints(checkpoints: dict[str, str], eval_cfg, workdir: str) -> dict:
    """Evaluates named checkpoints; prints a table and writes `workdir/eval.json`."""
    source = build_source(eval_cfg.data)
    results = {}
    for name, path in checkpoints.items():
        est = DepthEstimator.from_pretrained(path, input_size=eval_cfg.input_size)
        results[name] = evaluate(est, source, eval_cfg.max_depth, eval_cfg.batch_size)
    lines = [
        f"held-out set: {len(source)} images ({eval_cfg.data.kind})",
        "| model | AbsRel ↓ | δ1 ↑ |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {r['abs_rel']:.4f} | {r['a1']:.4f} |" for n, r in results.items()]
    table = "\n".join(lines)
    if jax.process_index() == 0:
        print(table, flush=True)
        with open(os.path.join(workdir, "eval.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results
