"""Stage `pretrain`: a stand-in for DINOv2 on the procedural world. The encoder learns to tell
what each pixel shows (sky, floor, walls, ceiling, each object's shape) on many scenes whose
depth it never sees, then starts the teacher and the student and is L_feat's frozen reference,
as DINOv2 is in the paper (`docs/method.md`, "The proof run").

    python -m dajax.main --config=configs/pretrain.py --workdir=runs/pretrain

Writes `WORKDIR/encoder.safetensors`: the encoder under the official Depth Anything names
(`pretrained.*`, float16), loadable wherever DINOv2 weights are (`--config.init.dinov2=PATH`).
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dajax import paths
from dajax.data.procedural import SEMANTIC_CLASSES
from dajax.dtypes import compute_dtype
from dajax.models import init_params, param_shapes
from dajax.models.normalization import imagenet_normalize
from dajax.models.patch_classifier import PatchClassifier
from dajax.training import setup
from dajax.training.loop import Recipe, train
from dajax.training.optimizer import build_optimizer
from dajax.training.supervised import labeled_batches
from dajax.weights.depth_anything_keys import flax_to_official
from dajax.weights.safetensors_io import save_safetensors

log = logging.getLogger("dajax")

ENCODER_FILE = "encoder.safetensors"


def segmentation_loss(logits: jnp.ndarray, labels: jnp.ndarray) -> tuple[jnp.ndarray, dict]:
    """Mean softmax cross-entropy over pixels, and the share of pixels classified right.

    Args:
      logits: [B, H, W, C] float32; labels: [B, H, W] int32 in [0, C).

    Returns:
      (loss: scalar nats per pixel, {"loss_semantic": loss, "pixel_accuracy": [0, 1]}).
    """
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    accuracy = (logits.argmax(-1) == labels).mean()
    return loss, {"loss_semantic": loss, "pixel_accuracy": accuracy}


def make_loss_fn(model: PatchClassifier):
    """`(params, batch, frozen, rng) -> (loss, metrics)` for `batch = {image [B,H,W,3] uint8,
    target [B,H,W] int32 classes}` (the labeled pipeline's `target='semantics'`)."""

    def loss_fn(params, batch, frozen, rng):
        logits = model.apply({"params": params}, imagenet_normalize(batch["image"]))
        return segmentation_loss(logits, batch["target"])

    return loss_fn


def write_encoder(path: paths.PathLike, params: dict, note: str = "") -> None:
    """Writes `params['pretrained']` (host arrays) as a safetensors file of official
    `pretrained.*` names, in float16 (half the bytes of float32, the released checkpoints'
    dtype; loaders cast to the model's float32), with `note` in its metadata."""
    tensors = flax_to_official({"pretrained": params["pretrained"]})
    tensors = {k: np.asarray(v, np.float16) for k, v in tensors.items()}
    metadata = {"format": "dajax encoder", "classes": ",".join(SEMANTIC_CLASSES)}
    if note:
        metadata["note"] = note
    save_safetensors(paths.resolve(path), tensors, metadata)


def run(config, workdir: str) -> str:
    """Trains the encoder and its classifier on `config.data.labeled` (class maps:
    `procedural_semantics` sources); returns the path of `WORKDIR/encoder.safetensors`."""
    _, model_config = setup.model_from_config(config.model)
    dtype = compute_dtype(config.model.dtype)
    model = PatchClassifier(model_config, len(SEMANTIC_CLASSES), dtype=dtype)

    def init():
        return jax.device_get(init_params(model, jax.random.key(config.seed)))

    tx, learning_rates = build_optimizer(config.optim, param_shapes(model), config.total_steps)
    batches, plan = labeled_batches(config, target="semantics")
    recipe = Recipe(
        init_params=init,
        tx=tx,
        loss_fn=make_loss_fn(model),
        batches=batches,
        model_config=model_config,
        learning_rates=learning_rates,
        plan=plan,
    )
    state = train(recipe, config, workdir)
    path = paths.resolve(workdir) / ENCODER_FILE
    host = setup.gather_to_host(state.params)
    if jax.process_index() == 0:
        write_encoder(path, host, f"{config.total_steps} steps of configs/pretrain.py")
        log.info("wrote the pre-trained encoder to %s", path)
    return str(path)
