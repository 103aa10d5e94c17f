"""Depth maps for every image of a source, computed in batches and cached on disk.

Each image's disparity map is stored as `<cache_dir>/<key>.npy` ([H, W] float32 at the image's
resolution, the `DepthEstimator` output), where `<key>` is a SHA-1 of the image path, so a run
that stops part-way resumes where it stopped: files that exist are never recomputed. Files are
written to a temporary name and renamed, so a crash cannot leave a truncated map.

The classifier sees depth as an image rendered like the study it reproduces (and Depth Anything's
`run.py --grayscale`): `depth_to_image` min-max normalises the disparity of each map to
0..255, truncates to uint8 and repeats it to 3 channels.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Protocol

import numpy as np
from tqdm import tqdm

from dajax.io.outputs import write_npy

log = logging.getLogger("dajax")


class Estimator(Protocol):
    """What the cache needs of `dajax.inference.DepthEstimator`."""

    def batch(self, images, batch_size: int = 8) -> list[np.ndarray]: ...


def cache_key(path: str) -> str:
    """The cache file stem for an image path: 40 hex digits of SHA-1(path)."""
    return hashlib.sha1(os.fspath(path).encode("utf-8")).hexdigest()


def depth_file(cache_dir: str, path: str) -> str:
    """Where the depth map of image `path` lives in `cache_dir`."""
    return os.path.join(cache_dir, cache_key(path) + ".npy")


def cache_depth_maps(
    estimator: Estimator, source, cache_dir: str, batch_size: int = 8, progress: bool = True
) -> int:
    """Computes and stores the depth map of every record of `source` not yet in `cache_dir`.

    Args:
      estimator: a `DepthEstimator` (anything with `.batch(images, batch_size)`).
      source: random-access records `{image [H, W, 3] uint8, path str, ...}`.
      cache_dir: the cache folder (created).
      batch_size: images per network call.
      progress: show a tqdm bar.

    Returns:
      The number of maps computed (0 when everything was cached).
    """
    os.makedirs(cache_dir, exist_ok=True)
    todo = [
        i for i in range(len(source)) if not os.path.exists(depth_file(cache_dir, _path(source, i)))
    ]
    if not todo:
        log.info("depth cache %s: all %d maps present", cache_dir, len(source))
        return 0
    log.info("depth cache %s: computing %d of %d maps", cache_dir, len(todo), len(source))
    bar = tqdm(total=len(todo), desc="depth maps", unit="img", disable=not progress)
    for start in range(0, len(todo), batch_size):
        records = [source[i] for i in todo[start : start + batch_size]]
        maps = estimator.batch([r["image"] for r in records], batch_size=batch_size)
        for record, disparity in zip(records, maps, strict=True):
            write_npy(depth_file(cache_dir, record["path"]), np.asarray(disparity, np.float32))
        bar.update(len(records))
    bar.close()
    return len(todo)


def load_depth(cache_dir: str, path: str) -> np.ndarray:
    """The cached [H, W] float32 disparity of image `path` (FileNotFoundError if missing)."""
    return np.load(depth_file(cache_dir, path))


def depth_to_image(disparity: np.ndarray) -> np.ndarray:
    """Renders a depth map as the reproduced study did: min-max to 0..255, uint8, 3 channels.

    `(d - d.min()) / (d.max() - d.min()) * 255` truncated to uint8 and repeated along a new
    last axis. Non-finite values count as the minimum; a constant map gives zeros.

    Args:
      disparity: [H, W] float, any units (bigger = nearer for disparity).

    Returns:
      [H, W, 3] uint8, all three channels equal.
    """
    d = np.asarray(disparity, np.float64)
    finite = np.isfinite(d)
    if not finite.any():
        return np.zeros(d.shape + (3,), np.uint8)
    lo, hi = d[finite].min(), d[finite].max()
    d = np.where(finite, d, lo)
    scaled = (d - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(d)
    gray = np.clip(scaled, 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def _path(source, index: int) -> str:
    """The path of record `index` without decoding its image when the source has an index."""
    split = getattr(source, "split", None)
    return split.paths[index] if split is not None else source[index]["path"]
