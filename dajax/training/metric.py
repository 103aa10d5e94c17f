"""Stage `metric`: metric-depth fine-tuning of a V2-style metric head (sigmoid × max_depth).

As the official V2 `metric_depth/train.py`: the encoder starts from a relative Depth Anything
checkpoint (only its `pretrained` weights, `init.load='encoder'`), from DINOv2, or — to continue
from an official metric checkpoint (Hypersim / Virtual KITTI) — from all of a checkpoint's
weights (`init.load='all'`); the loss is SiLog on depth in metres over the pixels with
`min_depth ≤ gt ≤ max_depth`; AdamW with encoder LR 5e-6, decoder 10×, poly decay (power 0.9).

A loaded head must be a metric head with the run's `max_depth` (`check_loaded_head`): its
output is sigmoid × max_depth, so the same weights under another cap predict other metres.
"""

from __future__ import annotations

import logging

import jax
import numpy as np

from dajax.data.registry import check_training_data
from dajax.models import ModelConfig
from dajax.models.normalization import imagenet_normalize
from dajax.training import losses, setup
from dajax.training.supervised import train_supervised
from dajax.weights.pretrained import load_depth_anything

log = logging.getLogger("dajax")

LOADS = ("encoder", "all")


def make_loss_fn(model, min_depth: float, max_depth: float, lam: float = 0.5):
    """`(params, batch, frozen, rng) -> (loss, metrics)`: SiLog of the predicted metres against
    `batch = {image [B,H,W,3] uint8, target [B,H,W] metres, mask [B,H,W] bool}`.

    Only pixels with a valid target inside [min_depth, max_depth] (metres) count.
    """

    def loss_fn(params, batch, frozen, rng):
        pred = model.apply({"params": params}, imagenet_normalize(batch["image"]))
        target = batch["target"]
        valid = batch["mask"] & (target >= min_depth) & (target <= max_depth)
        loss = losses.silog_loss(pred, target, valid, lam)
        return loss, {"loss_silog": loss}

    return loss_fn


def initial_params(config: ModelConfig, init, seed: int) -> dict:
    """Host params for fine-tuning (see the module docstring).

    Args:
      config: the metric model's architecture.
      init: `config.init` with `weights` (a Depth Anything checkpoint or ''), `load`
        ('encoder' | 'all'), `rescale_max_depth` (see `check_loaded_head`) and `dinov2`
        (used when `weights` is '').
    """
    params = setup.initial_params(config, "" if init.weights else init.dinov2, seed)
    if not init.weights:
        return params
    if init.load not in LOADS:
        raise ValueError(f"init.load must be one of {LOADS}, got {init.load!r}")
    loaded_config, loaded = load_depth_anything(init.weights, arch=config.encoder)
    if (loaded_config.dim, loaded_config.depth) != (config.dim, config.depth):
        raise ValueError(
            f"{init.weights}: a {loaded_config.dim}-wide {loaded_config.depth}-block encoder "
            f"does not fit the configured {config.dim}-wide {config.depth}-block one "
            f"(config.model.encoder is {config.encoder!r}, the checkpoint's "
            f"{loaded_config.encoder!r}: pick its size with :variant=)"
        )
    if init.load == "all":
        check_loaded_head(loaded_config, config.max_depth, init)
    parts = ("pretrained",) if init.load == "encoder" else ("pretrained", "depth_head")
    for part in parts:
        _check_same_shapes(params[part], loaded[part], f"{init.weights} [{part}]")
        params[part] = jax.tree.map(np.asarray, loaded[part])
    log.info("initialised %s from %s", " and ".join(parts), init.weights)
    return params


def check_loaded_head(loaded: ModelConfig, max_depth: float, init) -> None:
    """Refuses a head whose predictions would silently change scale in this run.

    Args:
      loaded: the config of the checkpoint at `init.weights`.
      max_depth: the run's cap in metres (its head outputs sigmoid × max_depth).
      init: `config.init`; `rescale_max_depth=True` accepts a metric head trained with another
        cap: its sigmoid output is kept, so every prediction is scaled by
        max_depth / loaded.max_depth at step 0 (logged).

    Raises:
      ValueError: a relative head, or another cap without `init.rescale_max_depth`; one line
        naming the file, the depths and the ways out.
    """
    if loaded.head != "metric":
        raise ValueError(
            f"{init.weights}: init.load='all' needs a metric checkpoint, but its head is "
            f"{loaded.head} (disparity, not sigmoid × max_depth); set --config.init.load=encoder "
            "(the official choice), or, if the file is a metric model whose name does not say so, "
            f"convert it first: python -m dajax.convert {init.weights} OUT --head metric "
            "--max-depth METRES"
        )
    if loaded.max_depth == max_depth:
        return
    if not init.rescale_max_depth:
        raise ValueError(
            f"{init.weights}: its metric head was trained with max_depth {loaded.max_depth:g} m "
            f"but config.model.max_depth is {max_depth:g} m; set "
            f"--config.model.max_depth={loaded.max_depth:g} to keep its scale, or "
            "--config.init.rescale_max_depth=True to load it anyway (every prediction scaled by "
            f"{max_depth / loaded.max_depth:g} at step 0)"
        )
    log.warning(
        "init.rescale_max_depth: the head of %s (max_depth %g m) now outputs sigmoid × %g m, "
        "so every prediction is scaled by %g at step 0",
        init.weights,
        loaded.max_depth,
        max_depth,
        max_depth / loaded.max_depth,
    )


def _check_same_shapes(want: dict, got: dict, where: str) -> None:
    want_shapes = jax.tree.map(np.shape, want)
    got_shapes = jax.tree.map(np.shape, got)
    if want_shapes != got_shapes:
        raise ValueError(f"{where}: parameter shapes differ from the configured model")


def run(config, workdir: str) -> str:
    """Fine-tunes a metric model; returns the path of its exported inference checkpoint."""
    check_training_data(config.data)
    model, model_config = setup.model_from_config(config.model)
    if model_config.head != "metric":
        raise ValueError("metric fine-tuning needs config.model.head = 'metric' (and max_depth)")
    init = lambda: initial_params(model_config, config.init, config.seed)  # noqa: E731
    loss_fn = make_loss_fn(model, config.min_depth, model_config.max_depth)
    return train_supervised(config, workdir, model, model_config, init, loss_fn, "depth")
