"""Input-pipeline throughput: labeled and student batches at 518, and where perturbations run.

    python benchmarks/input_pipeline.py                 # 518 crops, 64 images per row
    python benchmarks/input_pipeline.py --images 32 --size 266

Rows (images/s for one worker, i.e. one host process with grain's in-process reading):
- labeled, procedural: render a 600×800 procedural RGB-D scene, then resize/crop/flip and
  build the disparity target (the built-in data's full cost);
- labeled, cached records: the same transforms on records already in memory (what a real
  dataset costs after decoding);
- unlabeled, pseudo-label shards: read an ArrayRecord shard, decode the PNG and the float16
  label, resize/crop;
- strong perturbations + CutMix: dajax's jitted on-device version (`dajax.data.perturb`) vs
  the same operations per image on the host with OpenCV/numpy, the usual PyTorch-style
  choice. This comparison is why dajax runs them inside the train step.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import tempfile
import time

import cv2
import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from configs.student import get_config as student_config  # noqa: E402
from dajax.data import perturb  # noqa: E402
from dajax.data.pipeline import labeled_dataset, unlabeled_dataset  # noqa: E402
from dajax.data.procedural import ProceduralScenes  # noqa: E402
from dajax.data.pseudo_labels import PseudoLabelSource, PseudoLabelWriter, shard_name  # noqa: E402


class Cached:
    """The first `n` records of a source, held in memory."""

    def __init__(self, source, n: int):
        self.records = [source[i] for i in range(n)]

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]


def images_per_s(dataset, images: int, batch: int) -> float:
    """Throughput of iterating `images` images from a batched grain dataset (after 1 batch)."""
    it = iter(dataset)
    next(it)
    start = time.perf_counter()
    for _ in itertools.islice(it, images // batch):
        pass
    return (images // batch) * batch / (time.perf_counter() - start)


def host_perturb(image: np.ndarray, partner: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour jitter, grayscale, blur and CutMix of one uint8 image on the host (OpenCV)."""
    x = image.astype(np.float32) / 255
    x = np.clip(x * rng.uniform(0.6, 1.4), 0, 1)
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]
    x = np.clip((x - gray.mean()) * rng.uniform(0.6, 1.4) + gray.mean(), 0, 1)
    x = np.clip(gray + (x - gray) * rng.uniform(0.6, 1.4), 0, 1)
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-36, 36)) % 360
    x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.random() < 0.2:
        x = np.repeat(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None], 3, -1)
    if rng.random() < 0.5:
        x = cv2.GaussianBlur(x, (9, 9), rng.uniform(0.1, 2.0))
    if rng.random() < 0.5:
        h, w = x.shape[:2]
        lam = rng.random()
        ch, cw = int(h * np.sqrt(lam)), int(w * np.sqrt(lam))
        y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        x[y0 : y0 + ch, x0 : x0 + cw] = partner[y0 : y0 + ch, x0 : x0 + cw] / 255
    return x


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=518)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    size, n, b = args.size, args.images, args.batch
    scenes = ProceduralScenes(4 * n, round(size * 600 / 518), round(size * 800 / 518))
    cfg = student_config().perturb

    rows = []
    rows.append(
        (
            "labeled, procedural (render + transforms)",
            images_per_s(labeled_dataset([scenes], None, size=size, batch_size=b, seed=0), n, b),
        )
    )
    cached = Cached(scenes, 2 * b)
    rows.append(
        (
            "labeled, cached records (transforms)",
            images_per_s(labeled_dataset([cached], None, size=size, batch_size=b, seed=0), n, b),
        )
    )
    with tempfile.TemporaryDirectory() as shards:
        with PseudoLabelWriter(os.path.join(shards, shard_name(0, 1))) as writer:
            for record in cached.records:
                png = cv2.imencode(".png", record["image"][:, :, ::-1])[1].tobytes()
                writer.write(png, 1.0 / np.maximum(record["depth"], 0.1), {"source": "scene"})
        source = PseudoLabelSource(shards)
        unlabeled = unlabeled_dataset(source, size=size, batch_size=b, seed=0)
        rows.append(
            ("unlabeled, pseudo-label shards (decode + crop)", images_per_s(unlabeled, n, b))
        )

    batch = np.stack([cached[i % len(cached)]["image"][:size, :size] for i in range(b)])
    device_fn = jax.jit(
        lambda x, key: perturb.strong_perturb(
            perturb.cutmix(
                x, jax.numpy.roll(x, 1, 0), perturb.cutmix_masks(key, b, size, size, 0.5)
            ),
            key,
            cfg,
        )
    )
    x = jax.device_put(batch.astype(np.float32) / 255)
    device_fn(x, jax.random.key(0)).block_until_ready()
    start = time.perf_counter()
    for i in range(n // b):
        device_fn(x, jax.random.key(i)).block_until_ready()
    rows.append(
        ("perturbations + CutMix, dajax (jit)", (n // b) * b / (time.perf_counter() - start))
    )
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(n):
        host_perturb(batch[i % b], batch[(i + 1) % b], rng)
    rows.append(("perturbations + CutMix, host OpenCV", n / (time.perf_counter() - start)))

    print(
        f"device: {jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores), {size}x{size} crops, batch {b}, {n} images per row\n"
    )
    print("| stage | images/s (1 worker) |")
    print("|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:.1f} |")


if __name__ == "__main__":
    main()
