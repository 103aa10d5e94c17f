"""Pieces every training stage builds the same way: model, initial params, inputs, export."""

from __future__ import annotations

import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from dajax import checkpoints
from dajax.inference import DTYPES
from dajax.models import DepthAnything, ModelConfig, init_params
from dajax.models.variants import IMAGENET_MEAN, IMAGENET_STD
from dajax.weights.pretrained import load_dinov2_encoder

log = logging.getLogger("dajax")


def model_config(model_cfg) -> ModelConfig:
    """`ModelConfig` from `config.model` (a released variant, or `custom` field overrides)."""
    base = ModelConfig.from_variant(model_cfg.encoder, model_cfg.version)
    custom = dict(model_cfg.get("custom") or {})
    return base.replace(**custom) if custom else base


def build_model(model_cfg) -> tuple[DepthAnything, ModelConfig]:
    """The Flax module (compute dtype, remat, attention kernel from the config)."""
    config = model_config(model_cfg)
    model = DepthAnything(
        config,
        dtype=DTYPES[model_cfg.dtype],
        remat=model_cfg.remat,
        attention=model_cfg.attention,
    )
    return model, config


def initial_params(config: ModelConfig, dinov2_path: str, seed: int) -> dict:
    """Host params: DINOv2 encoder weights (or a seeded random encoder) and a fresh head.

    With `dinov2_path == ''` the encoder is random (seeded): the demo's stand-in for DINOv2,
    announced in the log.
    """
    params = jax.device_get(init_params(DepthAnything(config), jax.random.key(seed), 28))
    if dinov2_path:
        params["pretrained"] = load_dinov2_encoder(dinov2_path, config)
        log.info("encoder initialised from %s", dinov2_path)
    else:
        log.warning("no DINOv2 weights given: the encoder is RANDOM (seed %d)", seed)
    return jax.tree.map(np.asarray, params)


def normalize_images(images: jnp.ndarray) -> jnp.ndarray:
    """[B, H, W, 3] uint8 (or float in [0, 1]) -> ImageNet-normalised float32."""
    x = images.astype(jnp.float32)
    if images.dtype == jnp.uint8:
        x = x / 255.0
    return (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def export(workdir: str, params, config: ModelConfig) -> str:
    """Writes params as the inference checkpoint `workdir/export` (process 0).

    An existing export (from a shorter run resumed with more steps) is replaced atomically:
    the new one is written beside it and swapped in by rename.
    """
    path = os.path.join(workdir, "export")
    if jax.process_index() == 0:
        staging = path + ".tmp"
        shutil.rmtree(staging, ignore_errors=True)
        checkpoints.save_inference_params(staging, jax.device_get(params), config)
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(staging, path)
        log.info("exported inference params to %s", path)
    return path
