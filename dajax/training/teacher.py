"""Stage `teacher`: DINOv2-initialised encoder + fresh DPT head on labeled data.

Loss: the affine-invariant loss on disparity targets (paper eq. 1-3).
"""

from __future__ import annotations

from dajax.data.registry import check_training_data
from dajax.models.normalization import imagenet_normalize
from dajax.training import losses, setup
from dajax.training.supervised import train_supervised


def make_loss_fn(model):
    """`(params, batch, frozen, rng) -> (loss, metrics)`: the affine-invariant loss of the
    model's disparity on `batch = {image [B,H,W,3] uint8, target [B,H,W], mask [B,H,W]}`."""

    def loss_fn(params, batch, frozen, rng):
        pred = model.apply({"params": params}, imagenet_normalize(batch["image"]))
        loss = losses.affine_invariant_loss(pred, batch["target"], batch["mask"])
        return loss, {"loss_labeled": loss}

    return loss_fn


def run(config, workdir: str) -> str:
    """Trains the teacher; returns the path of its exported inference checkpoint."""
    check_training_data(config.data)
    model, model_config = setup.build_model(config.model)
    init = lambda: setup.initial_params(model_config, config.init.dinov2, config.seed)  # noqa: E731
    return train_supervised(config, workdir, model, model_config, init, make_loss_fn(model))
