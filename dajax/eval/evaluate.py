"""Depth evaluation: the paper's zero-shot relative protocol and the official metric protocol.

Stage `eval` (`python -m dajax.main --config=configs/eval.py:dataset=nyu,weights=PATH`):

- relative models (and `protocol='relative'`): per image, the predicted disparity is aligned to
  the ground-truth disparity by least-squares scale and shift (`align.relative_depth_metrics`),
  then AbsRel and δ1 — paper Table 1;
- metric models (`protocol='metric'`): predictions clipped to the evaluation range, then the
  nine metrics of the official `compute_errors` (`dajax.eval.metrics`) — paper Table 3.

Both score the pixels inside the dataset's depth range (`min_depth < gt < max_depth`) and crop
(Eigen for NYU, Garg for KITTI), per image, then average over the images with valid pixels.
Predictions come at the ground-truth resolution from `DepthEstimator.batch` (bilinear resize of
the network output); `flip=True` averages with the prediction of the mirrored image.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence

import jax
import numpy as np
from tqdm import tqdm

from dajax import paths, runtime
from dajax.data.registry import build_source
from dajax.eval.align import relative_depth_metrics
from dajax.eval.baselines import BASELINES
from dajax.eval.metrics import (
    METRIC_KEYS,
    average_over_images,
    clip_prediction,
    crop_mask,
    per_image_metrics,
)
from dajax.eval.oracle import ORACLE_ROW, gap_closed, oracle_scores
from dajax.inference import DepthEstimator, load_estimator
from dajax.models.variants import PATCH_SIZE
from dajax.weights.options import loader_kwargs

log = logging.getLogger("dajax")

PROTOCOLS = ("auto", "relative", "metric")
RELATIVE_KEYS = ("abs_rel", "a1")


@dataclasses.dataclass(frozen=True)
class Bench:
    """One dataset's evaluation settings.

    Attributes:
      min_depth, max_depth: metres; pixels with min_depth < gt < max_depth are scored.
      crop: 'eigen' (NYU 480×640), 'garg' (KITTI) or 'none'.
      head: the evaluated model's head, 'relative' (disparity out) or 'metric' (metres out).
    """

    min_depth: float
    max_depth: float
    crop: str = "none"
    head: str = "relative"


def predict(estimator, images: Sequence[np.ndarray], batch_size: int, flip: bool) -> list:
    """Depth (or disparity) of each image at its own resolution, optionally flip-averaged.

    Args:
      estimator: anything with `batch(images, batch_size) -> list of [H, W]` (a
        `DepthEstimator`).
      images: [H_i, W_i, 3] uint8 RGB images.
      flip: average with the horizontally mirrored image's prediction, mirrored back (the
        V1/ZoeDepth evaluator's test-time augmentation).

    Returns:
      One [H_i, W_i] float32 array per image: disparity for relative models, metres for metric.
    """
    preds = estimator.batch(list(images), batch_size)
    if not flip:
        return preds
    mirrored = estimator.batch([np.ascontiguousarray(im[:, ::-1]) for im in images], batch_size)
    return [0.5 * (p + m[:, ::-1]) for p, m in zip(preds, mirrored, strict=True)]


def resolve_protocol(protocol: str, head: str) -> str:
    """'relative' or 'metric' for a model head ('relative' | 'metric'); 'auto' follows it."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "auto":
        return head
    if protocol == "metric" and head != "metric":
        raise ValueError(
            "the metric protocol needs a metric model (its output is affine-invariant "
            "disparity); use protocol='relative'"
        )
    return protocol


def _eval_region(record: dict, bench) -> np.ndarray:
    """The record's valid mask ∧ the depth range ∧ the crop ([H, W] bool)."""
    gt = record["depth"]
    box = crop_mask(*gt.shape, bench.crop)
    return record["mask"] & (gt > bench.min_depth) & (gt < bench.max_depth) & box


def _score(protocol: str, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, bench) -> dict:
    """Per-image scores of one prediction: {key: float} plus 'valid' (bool)."""
    if protocol == "relative":
        disparity = pred if bench.head == "relative" else 1.0 / np.maximum(pred, 1e-6)
        out = _relative_jit(disparity[None], gt[None], mask[None], float(bench.max_depth))
        scores = {k: float(out[k][0]) for k in RELATIVE_KEYS}
        return scores | {"valid": bool(out["valid"][0])}
    clipped = clip_prediction(pred, None, bench.min_depth, bench.max_depth)
    out = per_image_metrics(clipped[None], gt[None], mask[None])
    return {k: float(out[k][0]) for k in METRIC_KEYS} | {"valid": int(out["valid"][0]) > 0}


_relative_jit = jax.jit(relative_depth_metrics, static_argnums=3)


def evaluate(
    estimator,
    source,
    bench,
    protocol: str,
    batch_size: int = 4,
    flip=False,
    progress: str | None = None,
) -> dict:
    """Scores `estimator` on every record of `source`.

    Args:
      estimator: a `DepthEstimator` (or anything with `batch` and `config.head`).
      source: random-access records `{image [H, W, 3] uint8, depth [H, W] m, mask [H, W]}`.
      bench: the dataset's evaluation settings (`Bench`).
      protocol: 'relative' or 'metric'.
      progress: the label of a progress bar over the images (on process 0), or None for none.

    Returns:
      {metric: mean over images with valid pixels} plus 'images' (how many were scored).

    Raises:
      ValueError: no image has a valid pixel in the evaluation region.
    """
    keys = RELATIVE_KEYS if protocol == "relative" else METRIC_KEYS
    scores: dict[str, list] = {k: [] for k in keys} | {"valid": []}
    bar = tqdm(
        total=len(source),
        desc=progress,
        unit="img",
        leave=False,
        disable=progress is None or jax.process_index() != 0,
        dynamic_ncols=True,
    )
    with bar:
        for start in range(0, len(source), batch_size):
            records = [source[i] for i in range(start, min(start + batch_size, len(source)))]
            preds = predict(estimator, [r["image"] for r in records], batch_size, flip)
            for record, pred in zip(records, preds, strict=True):
                s = _score(protocol, pred, record["depth"], _eval_region(record, bench), bench)
                for k in scores:
                    scores[k].append(s[k])
            bar.update(len(records))
    means = average_over_images(scores) if protocol == "metric" else _relative_means(scores)
    return means | {"images": int(np.sum(scores["valid"]))}


def _relative_means(scores: dict) -> dict:
    valid = np.asarray(scores["valid"], bool)
    if not valid.any():
        raise ValueError("no image has a valid ground-truth pixel in the evaluation region")
    return {k: float(np.mean(np.asarray(scores[k])[valid])) for k in RELATIVE_KEYS}


def format_table(results: dict, protocol: str, reference: dict | None = None) -> str:
    """A Markdown table of `{dataset: scores}`; `reference` ({dataset: {key: value}}) adds the
    published numbers as a second row per dataset."""
    keys = RELATIVE_KEYS if protocol == "relative" else METRIC_KEYS
    names = {"abs_rel": "AbsRel ↓", "a1": "δ1 ↑", "a2": "δ2 ↑", "a3": "δ3 ↑"}
    header = ["dataset", "images"] + [names.get(k, k) for k in keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for dataset, scores in results.items():
        cells = [dataset, str(scores["images"])] + [f"{scores[k]:.4f}" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
        published = (reference or {}).get(dataset)
        if published:
            ref = [f"{published[k]:.3f}" if k in published else "–" for k in keys]
            lines.append("| " + " | ".join([f"{dataset} (paper)", "–", *ref]) + " |")
    return "\n".join(lines)


RAMP_ROW = "trivial: vertical ramp"  # `evaluate_checkpoints`' row of BASELINES' ramp


def _with_gap_closed(table: str, results: dict, models) -> str:
    """`table` (one line per entry of `results`, in order, under a header and a separator) with
    a "gap closed" column: for each of `models`, the share of the AbsRel gap from the vertical
    ramp to the token-grid oracle it closes (`oracle.gap_closed`); blank for the other rows."""
    ramp, oracle = results[RAMP_ROW]["abs_rel"], results[ORACLE_ROW]["abs_rel"]
    lines = table.split("\n")
    cells = ["gap closed ↑", "---"] + [
        f"{gap_closed(scores['abs_rel'], ramp, oracle):.2f}" if name in models else ""
        for name, scores in results.items()
    ]
    return "\n".join(f"{line} {cell} |" for line, cell in zip(lines, cells, strict=True))


def _write_results(workdir: str, name: str, payload: dict) -> str:
    path = paths.resolve(workdir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    paths.write_atomic(path, json.dumps(payload, indent=2))
    return str(path)


def run(config, workdir: str) -> dict:
    """Stage `eval`: evaluates `config.weights` on `config.datasets`; prints the table and
    writes `workdir/eval.json`. Returns {dataset: scores}."""
    if not config.weights:
        raise ValueError("set the checkpoint to evaluate: --config=configs/eval.py:weights=PATH")
    impl = config.get("impl", "fast")
    load = loader_kwargs(config.get("load", {}))
    estimator = load_estimator(config.weights, config.input_size, config.dtype, impl, **load)
    head = estimator.config.head
    protocol = resolve_protocol(config.protocol, head)
    results = {}
    for name in config.datasets:
        spec = config.benchmarks[name]
        bench = Bench(spec.min_depth_eval, spec.max_depth_eval, spec.crop_region, head)
        source = build_source(spec.data)
        log.info("evaluating %s on %s: %d images", config.weights, name, len(source))
        results[name] = evaluate(
            estimator, source, bench, protocol, config.batch_size, config.flip, progress=name
        )
    reference = config.reference[protocol].get(estimator.config.encoder)
    table = format_table(results, protocol, reference.to_dict() if reference else None)
    if jax.process_index() == 0:
        print(f"{config.weights} ({protocol} protocol, flip={config.flip})\n{table}", flush=True)
        payload = {"weights": config.weights, "protocol": protocol, "flip": config.flip}
        _write_results(workdir, "eval.json", payload | {"results": results})
    return results


def evaluate_checkpoints(checkpoints: dict[str, str], eval_cfg, workdir: str) -> dict:
    """Zero-shot relative scores of named checkpoints on one source (the demo's final table),
    below the trivial baselines' rows (`dajax.eval.baselines`) and the token-grid oracle's
    (`dajax.eval.oracle`, one cell per patch token of `eval_cfg.input_size`) so the numbers can
    be judged; prints the table, with the share of the ramp-to-oracle gap each checkpoint
    closes, and writes `workdir/eval.json` ({name: scores}). Checkpoints of one architecture
    share their network's compiles (`inference.jitted_forward`); the log gets the compile
    seconds."""
    source = build_source(eval_cfg.data)
    bench = Bench(eval_cfg.get("min_depth_eval", 1e-3), eval_cfg.max_depth_eval, "none", "relative")
    estimators = {f"trivial: {name}": make() for name, make in BASELINES.items()}
    with runtime.compile_report("evaluation"):
        for name, path in checkpoints.items():
            estimators[name] = DepthEstimator.from_pretrained(path, input_size=eval_cfg.input_size)
        results = {
            name: evaluate(est, source, bench, "relative", eval_cfg.batch_size, progress=name)
            for name, est in estimators.items()
        }
    oracle = oracle_scores(source, eval_cfg.input_size // PATCH_SIZE, eval_cfg.max_depth_eval)
    trivial = {name: scores for name, scores in results.items() if name not in checkpoints}
    results = {**trivial, ORACLE_ROW: oracle, **{name: results[name] for name in checkpoints}}
    table = _with_gap_closed(
        format_table(results, "relative").replace("| dataset |", "| model |", 1),
        results,
        checkpoints,
    )
    if jax.process_index() == 0:
        print(f"held-out set: {len(source)} images ({eval_cfg.data.kind})\n{table}", flush=True)
        _write_results(workdir, "eval.json", results)
    return results
