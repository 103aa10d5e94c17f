"""Pieces every training stage builds the same way: model, initial params, inputs, export."""

from __future__ import annotations

import logging
from collections.abc import Callable

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import multihost_utils

from dajax import checkpoints, models, paths, runtime, visualize
from dajax.data.registry import build_source
from dajax.data.transforms import crop, resize_shorter
from dajax.dtypes import compute_dtype
from dajax.inference import jitted_forward
from dajax.models import DepthAnything, ModelConfig, init_params
from dajax.models.normalization import imagenet_normalize
from dajax.weights.pretrained import load_depth_anything, load_dinov2_encoder

log = logging.getLogger("dajax")


def model_config(model_cfg) -> ModelConfig:
    """`ModelConfig` from `config.model`: a released variant (`encoder='vits'` ...), with
    `custom`'s fields changed if any, or with `encoder='custom'` the architecture `custom`
    holds (dim, depth, heads, layers, features, out_channels; the rest take their defaults).
    """
    custom = dict(model_cfg.get("custom") or {})
    if model_cfg.encoder == "custom":
        if not custom:
            raise ValueError(
                "config.model: encoder 'custom' needs its architecture in config.model.custom "
                "(dim, depth, heads, layers, features, out_channels)"
            )
        fields = dict(version=model_cfg.version, head=model_cfg.head, max_depth=model_cfg.max_depth)
        try:
            return ModelConfig.from_dict({**fields, **custom, "encoder": "custom"})
        except ValueError as e:
            raise ValueError(f"config.model.custom: {e}") from None
    base = ModelConfig.from_variant(
        model_cfg.encoder, model_cfg.version, model_cfg.head, model_cfg.max_depth
    )
    return base.replace(**custom) if custom else base


def model_from_config(
    model_cfg, architecture: ModelConfig | None = None
) -> tuple[nn.Module, ModelConfig]:
    """The Flax module of `config.model` and its `ModelConfig`.

    `architecture` (e.g. a released checkpoint's, `released_model`) replaces the one
    `model_cfg` describes; the compute options still come from `model_cfg`. `model_cfg.impl`
    picks the implementation (`dajax.models.build_model`): 'fast' (the default:
    `DepthAnything`, with `dtype`, `remat`, `remat_blocks` and `attention` from the config)
    or 'reference' (`ReferenceDepthAnything`: stock layers, float32, no kernel options); both
    have the same params.
    """
    config = architecture or model_config(model_cfg)
    impl = model_cfg.get("impl", "fast")
    options = dict(
        remat=model_cfg.remat, remat_blocks=model_cfg.remat_blocks, attention=model_cfg.attention
    )
    try:
        model = models.build_model(config, impl, compute_dtype(model_cfg.dtype), **options)
    except ValueError as e:
        raise ValueError(f"config.model: {e}") from None
    return model, config


def initial_params(config: ModelConfig, dinov2_path: str, seed: int) -> dict:
    """Host params: DINOv2 encoder weights (or a seeded random encoder) and a fresh head.

    With `dinov2_path == ''` the encoder is random (seeded): the demo's stand-in for DINOv2,
    announced in the log.
    """
    params = jax.device_get(init_params(DepthAnything(config), jax.random.key(seed)))
    if dinov2_path:
        params["pretrained"] = load_dinov2_encoder(dinov2_path, config)
        log.info("encoder initialised from %s", dinov2_path)
    else:
        log.warning("no DINOv2 weights given: the encoder is RANDOM (seed %d)", seed)
    return jax.tree.map(np.asarray, params)


def released_model(model_cfg, init) -> tuple[nn.Module, ModelConfig, Callable[[], dict]]:
    """A whole Depth Anything checkpoint (encoder and DPT head) to fine-tune, with relative
    head: official V1/V2 `.pth`, safetensors, a transformers folder, a dajax folder or `hf:`.

    The architecture is the checkpoint's (`load_depth_anything`); `model_cfg` gives only the
    compute options (dtype, remat, attention, impl).

    Args:
      model_cfg: `config.model`.
      init: `config.init`, with `weights` (the checkpoint) and `version` ('v1' | 'v2', for a
        `.pth` whose name does not tell; '' = from the file).

    Returns:
      (module, its ModelConfig, `() -> host params`: the checkpoint's, float32 numpy; the
      training loop calls it once the workdir is locked, and it logs where they came from).

    Raises:
      ValueError: one line naming the `config.init` field: `dinov2` set as well, the version
        unknown, or a metric head (the teacher's loss is for relative disparity).
    """
    if init.get("dinov2"):
        raise ValueError(
            "config.init.dinov2: set either init.weights (a whole Depth Anything model) or "
            "init.dinov2 (an encoder and a fresh head), not both"
        )
    try:
        config, params = load_depth_anything(init.weights, version=init.get("version") or None)
    except (ValueError, OSError) as e:
        text = str(e).replace("(CLI: --version v1|v2)", "(--config.init.version=v1|v2)")
        raise type(e)(f"config.init.weights: {text}") from None
    if config.head != "relative":
        raise ValueError(
            f"config.init.weights: {init.weights} is a metric model (sigmoid x "
            f"{config.max_depth:g} m), but this stage trains relative disparity; fine-tune it "
            "with configs/metric.py and --config.init.load=all"
        )
    model, config = model_from_config(model_cfg, config)
    params = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    where = (
        f"initialised the whole model (encoder and head) from {init.weights}: {config.encoder} "
        f"{config.version}, {config.depth} blocks of width {config.dim}"
    )

    def initial() -> dict:
        log.info(where)
        return params

    return model, config, initial


def preview_images(source_spec, count: int, size: int) -> np.ndarray:
    """The first `count` images of a source, centre-cropped to [count, size, size, 3] uint8."""
    source = build_source(source_spec)
    images = []
    for i in range(min(count, len(source))):
        record = resize_shorter({"image": source[i]["image"]}, size)
        h, w = record["image"].shape[:2]
        images.append(crop(record, (h - size) // 2, (w - size) // 2, size)["image"])
    return np.stack(images)


class DepthPreview:
    """An `on_log` hook, called on every process: every `every` steps it logs `images`
    ([N, H, W, 3] uint8, H and W multiples of 14) beside the model's colour-mapped disparity as
    TensorBoard images `preview/<i>`.

    The network is `inference.jitted_forward(model)`, so stages training the same model (the
    demo's teacher and student) share its compile; the training loop calls `warm_up` before
    its first step, so the compile happens there and not at the first preview. A preview is
    queued behind its step and read at the next log step (or `close`), by when it has long
    been computed: the loop never waits for it.
    """

    def __init__(self, model, images: np.ndarray, every: int):
        self.images, self.every = images, every
        self._predict = jitted_forward(model)
        self._normalized = np.asarray(imagenet_normalize(images))
        self._pending: tuple[int, jax.Array] | None = None

    def warm_up(self, params) -> None:
        """Compiles the network for `params`' shapes and shardings (running it once); every
        process calls it."""
        self._predict(params, self._normalized)

    def __call__(self, step: int, state, metrics_log) -> None:
        self._write_pending(metrics_log)
        if step % self.every == 0:
            disparities = self._predict(state.params, self._normalized)
            if disparities.is_fully_addressable:
                disparities.copy_to_host_async()
            self._pending = (step, disparities)

    def close(self, metrics_log) -> None:
        """Writes the preview still queued (the last log step's); every process calls it."""
        self._write_pending(metrics_log)

    def _write_pending(self, metrics_log) -> None:
        if self._pending is None:
            return
        (step, disparities), self._pending = self._pending, None
        disparities = multihost_utils.process_allgather(disparities, tiled=True)
        if not metrics_log.active:
            return
        for i, (image, disparity) in enumerate(zip(self.images, disparities, strict=True)):
            depth_rgb = visualize.colorize(visualize.normalize_depth(disparity), "spectral_r")
            metrics_log.image(step, f"preview/{i}", visualize.side_by_side(image, depth_rgb, 4))


def depth_preview(model, images: np.ndarray, every: int) -> DepthPreview | None:
    """A `DepthPreview` of `images` every `every` steps; None (no hook) for `every <= 0`."""
    return DepthPreview(model, images, every) if every > 0 else None


def labeled_preview(model, config):
    """`depth_preview` on two images of the first labeled source, every `config.image_every`."""
    if config.image_every <= 0:
        return None
    images = preview_images(config.data.labeled[0][0], 2, config.data.crop)
    return depth_preview(model, images, config.image_every)


def gather_to_host(params):
    """The whole params tree as numpy on every process (every process must call it: with
    several processes the shards are all-gathered)."""
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(params, tiled=True)
    return jax.device_get(params)


def write_inference_checkpoint(workdir: paths.PathLike, params, config: ModelConfig) -> str:
    """Writes params as the inference checkpoint `workdir/export`; every process calls it.

    The params are gathered to every host (they may be sharded over processes), written by
    process 0, and an existing export (from a shorter run resumed with more steps) is replaced:
    the new one is written beside it and renamed into place (atomic on a local disk; in a
    bucket, a rename copies, so a crash there may leave `export.tmp` complete beside a
    partial `export`).
    """
    path = paths.resolve(workdir) / checkpoints.EXPORT_DIR
    staging = path.parent / "export.tmp"
    runtime.sync_processes("export_start")
    host_params = gather_to_host(params)
    if jax.process_index() == 0:
        staging.rmtree(missing_ok=True)
    checkpoints.save_inference_params(staging, host_params, config)
    if jax.process_index() == 0:
        if path.exists():
            path.rmtree()
        staging.rename(path)
        log.info("exported inference params to %s", path)
    runtime.sync_processes("export_done")
    return str(path)
