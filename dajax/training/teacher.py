"""Stage `teacher`: DINOv2-initialised encoder + fresh DPT head on labeled data, or a whole
released Depth Anything model (`config.init.weights`) fine-tuned on them.

Loss: the affine-invariant loss on disparity targets (paper eq. 1-3); with
`config.loss.gradient_weight` > 0 (V2's recipe: 2) plus that weight times MiDaS's multi-scale
gradient matching loss over `config.loss.gradient_scales` scales.
"""

from __future__ import annotations

from dajax.data.registry import check_training_data
from dajax.models.normalization import imagenet_normalize
from dajax.training import losses, setup
from dajax.training.supervised import train_supervised


def make_loss_fn(model, loss_config=None):
    """`(params, batch, frozen, rng) -> (loss, metrics)` on the model's disparity for
    `batch = {image [B,H,W,3] uint8, target [B,H,W], mask [B,H,W]}`.

    The affine-invariant loss (`loss_labeled`), plus, when `loss_config` (`config.loss`) has
    `gradient_weight` > 0, that weight times `losses.gradient_matching_loss` over
    `gradient_scales` scales (`loss_gradient`). None or weight 0: the first term alone, and
    the gradient term is not computed.
    """
    weight = loss_config.gradient_weight if loss_config is not None else 0.0

    def loss_fn(params, batch, frozen, rng):
        pred = model.apply({"params": params}, imagenet_normalize(batch["image"]))
        loss = losses.affine_invariant_loss(pred, batch["target"], batch["mask"])
        metrics = {"loss_labeled": loss}
        if weight > 0:
            gradient = losses.gradient_matching_loss(
                pred, batch["target"], batch["mask"], loss_config.gradient_scales
            )
            metrics["loss_gradient"] = gradient
            loss = loss + weight * gradient
        return loss, metrics

    return loss_fn


def run(config, workdir: str) -> str:
    """Trains the teacher; returns the path of its exported inference checkpoint."""
    check_training_data(config.data)
    if config.init.get("weights"):
        model, model_config, init = setup.released_model(config.model, config.init)
    else:
        model, model_config = setup.model_from_config(config.model)
        init = lambda: setup.initial_params(model_config, config.init.dinov2, config.seed)  # noqa: E731
    loss_fn = make_loss_fn(model, config.loss)
    return train_supervised(config, workdir, model, model_config, init, loss_fn)
