"""The classification study: does a Depth Anything depth map help classify an image?

    python -m dajax.main --config=configs/classify.py:demo --workdir=runs/classify_demo
    python -m dajax.main --config=configs/classify.py:data=photos/ --workdir=runs/classify \
        --config.depth.weights=depth_anything_v2_vits.pth \
        --config.backbone.weights=resnet50-0676ba61.pth

A frozen backbone (ImageNet
ResNet-50 by default) turns each RGB image and each rendered depth map
(`depth_cache.depth_to_image`) into a feature vector; an MLP head is trained on the depth
features, the RGB features, and both concatenated, and the final-epoch train/val loss and
accuracy of the three are tabulated, written to `results.json`, and plotted in `curves.png`.

Depth sources (`config.depth_source`):
  'estimator': a `DepthEstimator` from `config.depth.weights`, cached per image under
    `workdir/depth_cache/`; with no weights a tiny random-weight model (`config.depth.model`)
    stands in and a warning says so: its maps carry no depth knowledge.
  'render': the procedural demo only: the renderer's true depth, shown as disparity (1 / z
    metres, bigger = nearer, like the estimator), i.e. what a perfect depth model would give.
Features are cached under `workdir/features/`, keyed by the data, depth and backbone settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time

import numpy as np

from dajax.projects.classify import data as cdata
from dajax.projects.classify import depth_cache, features, mlp

log = logging.getLogger("dajax")

MODALITIES = {"depth": ("depth",), "rgb": ("rgb",), "rgb+depth": ("rgb", "depth")}
DEPTH_SOURCES = ("estimator", "render")


class _Column:
    """A lazy sequence of one field of a source's records."""

    def __init__(self, source, field: str):
        self.source, self.field = source, field

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.source[index][self.field]


class _CachedDepthImages:
    """A lazy sequence of `depth_to_image` of each cached depth map of a source."""

    def __init__(self, source, cache_dir: str):
        self.paths, self.cache_dir = source.split.paths, cache_dir

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return depth_cache.depth_to_image(depth_cache.load_depth(self.cache_dir, self.paths[index]))


def _fingerprint(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def build_sources(config):
    """(train source, val source, true depths {'train', 'val'} [N, H, W] metres or None)."""
    d = config.data
    if d.kind == "camouflage":
        ds = cdata.camouflage_dataset(d.n_per_class, tuple(d.classes), d.size, d.seed, d.contrast)
        splits = cdata.stratified_split(ds["labels"], d.val_fraction, d.seed)
        sources, depths = [], {}
        for name, idx in zip(("train", "val"), splits, strict=True):
            paths = [ds["paths"][i] for i in idx]
            sources.append(
                cdata.ArraySource(ds["images"][idx], ds["labels"][idx], paths, ds["classes"])
            )
            depths[name] = ds["depths"][idx]
        return sources[0], sources[1], depths
    if d.kind == "image_folder":
        if not d.root:
            raise ValueError("config.data.root is empty: pass configs/classify.py:data=DIR")
        train, val = cdata.image_folder_splits(d.root, d.val_fraction, d.seed)
        return train, val, None
    raise ValueError(f"config.data.kind must be 'camouflage' or 'image_folder', got {d.kind!r}")


def build_estimator(depth_cfg, seed: int):
    """A `DepthEstimator` from `depth_cfg.weights`, or a random tiny one (with a warning)."""
    from dajax.inference import DepthEstimator
    from dajax.models import ModelConfig

    if depth_cfg.weights:
        return DepthEstimator.from_pretrained(depth_cfg.weights, input_size=depth_cfg.input_size)
    model_config = ModelConfig.from_dict(depth_cfg.model.to_dict())
    log.warning(
        "!!! config.depth.weights is None: depth maps come from a RANDOM-WEIGHT tiny Depth "
        "Anything (%s); they carry no depth knowledge. Pass --config.depth.weights=PATH. !!!",
        model_config.encoder,
    )
    return DepthEstimator.random(model_config, seed=seed, input_size=depth_cfg.input_size)


def depth_images(config, workdir: str, train, val, true_depths):
    """Rendered depth images ([H, W, 3] uint8 sequences) of both splits, and a cache tag."""
    source = config.depth_source
    if source == "render":
        if true_depths is None:
            raise ValueError(
                "depth_source='render' needs the procedural demo (data.kind='camouflage')"
            )
        log.info("depth maps: the renderer's true depth, as disparity 1/z")
        render = lambda z: [depth_cache.depth_to_image(1.0 / d) for d in z]  # noqa: E731
        return render(true_depths["train"]), render(true_depths["val"]), "render"
    if source != "estimator":
        raise ValueError(f"depth_source must be one of {DEPTH_SOURCES}, got {source!r}")
    dc = config.depth
    tag = _fingerprint(
        dc.weights, dc.input_size, None if dc.weights else dc.model.to_dict(), config.seed
    )
    cache_dir = os.path.join(workdir, "depth_cache", tag)
    estimator = build_estimator(dc, config.seed)
    for split in (train, val):
        depth_cache.cache_depth_maps(estimator, split, cache_dir, dc.batch_size)
    return _CachedDepthImages(train, cache_dir), _CachedDepthImages(val, cache_dir), tag


def extract_all(config, workdir: str, train, val, depth_train, depth_val, depth_tag):
    """Features {'rgb', 'depth'} x {'train', 'val'} ([N, D] float32) and the extractor."""
    b = config.backbone
    extractor = features.FeatureExtractor(
        b.name, b.image_size, b.weights, b.output, _dinov2_config(b), config.seed
    )
    log.info("backbone: %s at %d px", extractor.description, extractor.image_size)
    images = {
        ("rgb", "train"): _Column(train, "image"),
        ("rgb", "val"): _Column(val, "image"),
        ("depth", "train"): depth_train,
        ("depth", "val"): depth_val,
    }
    split_paths = {"train": train.split.paths, "val": val.split.paths}
    out = {}
    for (modality, split), seq in images.items():
        key = _fingerprint(split_paths[split], b.to_dict(), config.seed,
                           depth_tag if modality == "depth" else None)  # fmt: skip
        path = os.path.join(workdir, "features", f"{b.name}-{modality}-{split}-{key}.npy")
        out[(modality, split)] = features.cached_features(extractor, seq, path, b.batch_size)
    return out, extractor


def _dinov2_config(b):
    from dajax.models import ModelConfig

    base = ModelConfig.from_variant(b.dinov2_variant)
    custom = dict(b.get("dinov2_custom") or {})
    return base.replace(**custom) if custom else base


def run(config, workdir: str) -> dict:
    """Runs the study into `workdir`; see the module docstring.

    Returns:
      The results dict also written to `workdir/results.json`: per experiment its
      `feature_dim`, final-epoch `train_loss`, `train_acc`, `val_loss`, `val_acc` (loss in nats,
      accuracy in [0, 1]) and the per-epoch `history`.
    """
    start = time.time()
    os.makedirs(workdir, exist_ok=True)
    train, val, true_depths = build_sources(config)
    classes = tuple(train.classes)
    log.info("classify: %d train / %d val images, %d classes", len(train), len(val), len(classes))
    depth_train, depth_val, tag = depth_images(config, workdir, train, val, true_depths)
    feats, extractor = extract_all(config, workdir, train, val, depth_train, depth_val, tag)
    y_train, y_val = train.split.labels, val.split.labels
    experiments = {}
    for name in config.experiments:
        if name not in MODALITIES:
            raise ValueError(f"unknown experiment {name!r}; expected some of {tuple(MODALITIES)}")
        x_tr = np.concatenate([feats[(m, "train")] for m in MODALITIES[name]], axis=1)
        x_va = np.concatenate([feats[(m, "val")] for m in MODALITIES[name]], axis=1)
        history = mlp.train_head(x_tr, y_train, x_va, y_val, config.head, config.seed, len(classes))
        experiments[name] = {"feature_dim": x_tr.shape[1], "history": history}
        experiments[name].update({k: v[-1] for k, v in history.items()})
        log.info("%s: val acc %.3f", name, history["val_acc"][-1])
    results = {
        "classes": classes,
        "n_train": len(train),
        "n_val": len(val),
        "data": config.data.kind,
        "depth_source": config.depth_source,
        "depth_weights": config.depth.weights,
        "backbone": extractor.description,
        "backbone_weights": config.backbone.weights,
        "epochs": config.head.epochs,
        "experiments": experiments,
        "seconds": round(time.time() - start, 1),
    }
    table = format_table(results, extractor)
    print(table)
    log.info("\n%s", table)
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    plot_curves(experiments, os.path.join(workdir, "curves.png"))
    log.info("results.json and curves.png written to %s (%.1f s)", workdir, results["seconds"])
    return results


def format_table(results: dict, extractor) -> str:
    """The results table (final epoch) as text, with a line saying what the features are."""
    lines = [
        f"features per modality: {extractor.description}",
        f"depth: {results['depth_source']}; {results['n_train']} train / {results['n_val']} val "
        f"images, {len(results['classes'])} classes, {results['epochs']} epochs",
        f"{'experiment':<12}{'dim':>6}{'train loss':>12}{'train acc':>11}{'val loss':>10}"
        f"{'val acc':>9}",
    ]
    for name, r in results["experiments"].items():
        lines.append(
            f"{name:<12}{r['feature_dim']:>6}{r['train_loss']:>12.4f}{r['train_acc']:>11.3f}"
            f"{r['val_loss']:>10.4f}{r['val_acc']:>9.3f}"
        )
    return "\n".join(lines)


def plot_curves(experiments: dict, path: str) -> None:
    """Per-epoch loss and accuracy (train dashed, val solid), one colour per experiment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, r) in enumerate(experiments.items()):
        h, color = r["history"], f"C{i}"
        epochs = np.arange(1, len(h["val_loss"]) + 1)
        for ax, metric in zip(axes, ("loss", "acc"), strict=True):
            ax.plot(epochs, h[f"train_{metric}"], "--", color=color, label=f"{name} train")
            ax.plot(epochs, h[f"val_{metric}"], "-", color=color, label=f"{name} val")
    for ax, title in zip(axes, ("cross-entropy loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
