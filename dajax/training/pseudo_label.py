"""Stage `pseudo_label` (the data engine): a teacher labels unlabeled images into shards.

Work is split into shards of `config.shard_size` consecutive images; process p of P writes
shards p, p + P, ... Finished shards (final file name present) are skipped, so a restarted
job resumes; a half-written shard (`.tmp`) is redone. Images are predicted at their own
resolution through `DepthEstimator.batch` (grouped by network shape, one compile per shape).
Each label is min-max normalised to [0, 1] per image, then set to 0 (the farthest) on the sky
where the record carries a `sky` mask (procedural scenes; image folders with `sky_masks`), as
the paper's data engine does with a sky segmentation model (§3.1).
"""

from __future__ import annotations

import logging
import math
import time

import cv2
import jax
import numpy as np
from tqdm import tqdm

from dajax import paths
from dajax.data.pseudo_labels import PseudoLabelWriter, shard_name
from dajax.data.registry import build_source
from dajax.inference import DepthEstimator

log = logging.getLogger("dajax")


def stored_label(disparity: np.ndarray, sky: np.ndarray | None) -> np.ndarray:
    """The label a shard stores [H, W]: the teacher's disparity min-max normalised to [0, 1],
    then 0 on `sky` ([H, W] bool, or None when the sky is unknown)."""
    lo, hi = float(disparity.min()), float(disparity.max())
    label = (disparity - lo) / (hi - lo) if hi > lo else np.zeros_like(disparity)
    return label if sky is None else np.where(sky, 0.0, label).astype(label.dtype)


def _image_bytes(record: dict) -> bytes:
    if "image_bytes" in record:
        return record["image_bytes"]
    ok, png = cv2.imencode(".png", record["image"][:, :, ::-1])
    if not ok:
        raise ValueError(f"{record.get('source', '?')}: could not encode image")
    return png.tobytes()


def run(config, workdir: str) -> str:
    """Labels `config.data.unlabeled`; returns the shard directory (`workdir/shards`)."""
    out_dir = paths.resolve(workdir) / "shards"
    out_dir.mkdir(parents=True, exist_ok=True)
    source = build_source(config.data.unlabeled)
    estimator = DepthEstimator.from_pretrained(
        config.teacher_weights, input_size=config.input_size, dtype=config.model_dtype
    )
    count = math.ceil(len(source) / config.shard_size)
    mine = range(jax.process_index(), count, jax.process_count())
    todo = [s for s in mine if not (out_dir / shard_name(s, count)).exists()]
    log.info("pseudo-labelling: %d shards, %d already done here", len(mine), len(mine) - len(todo))
    start, images, with_sky = time.time(), 0, 0
    for shard in tqdm(todo, desc="shards", disable=jax.process_index() != 0):
        indices = range(
            shard * config.shard_size, min((shard + 1) * config.shard_size, len(source))
        )
        records = [source[i] for i in indices]
        maps = estimator.batch([r["image"] for r in records], config.batch_size)
        with PseudoLabelWriter(out_dir / shard_name(shard, count)) as writer:
            for i, record, disparity in zip(indices, records, maps, strict=True):
                meta = {
                    "source": str(record.get("source", i)),
                    "index": i,
                    "teacher": str(config.teacher_weights),
                }
                label = stored_label(disparity, record.get("sky"))
                writer.write(_image_bytes(record), label, meta)
        images += len(records)
        with_sky += sum("sky" in r for r in records)
    if images:
        log.info("labelled %d images at %.1f images/s", images, images / (time.time() - start))
        log.info("%d of %d images had a sky mask: their sky is disparity 0", with_sky, images)
    return str(out_dir)
