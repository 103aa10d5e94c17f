"""Stage `teacher`: DINOv2-initialised encoder + fresh DPT head on labeled data.

Loss: the affine-invariant loss on disparity targets (paper eq. 1-3).
"""

from __future__ import annotations

from dajax.data.pipeline import labeled_dataset
from dajax.data.registry import build_source
from dajax.models import param_shapes
from dajax.training import losses, setup
from dajax.training.loop import Recipe, train
from dajax.training.optimizer import build_optimizer


def labeled_batches(config, target: str = "disparity"):
    """The labeled mixture of `config.data.labeled` ((source spec, weight), ...), with
    normalised disparity targets or, for metric fine-tuning, depth in metres."""
    sources = [build_source(spec) for spec, _ in config.data.labeled]
    weights = [w for _, w in config.data.labeled]
    return labeled_dataset(
        sources,
        weights,
        size=config.data.crop,
        batch_size=config.data.labeled_batch,
        seed=config.seed,
        target=target,
        workers=config.data.workers,
    )


def make_loss_fn(model):
    """`(params, batch, frozen, rng) -> (loss, metrics)`: the affine-invariant loss of the
    model's disparity on `batch = {image [B,H,W,3] uint8, target [B,H,W], mask [B,H,W]}`."""

    def loss_fn(params, batch, frozen, rng):
        pred = model.apply({"params": params}, setup.normalize_images(batch["image"]))
        loss = losses.affine_invariant_loss(pred, batch["target"], batch["mask"])
        return loss, {"loss_labeled": loss}

    return loss_fn


def run(config, workdir: str) -> str:
    """Trains the teacher; returns the path of its exported inference checkpoint."""
    model, model_config = setup.build_model(config.model)
    init = lambda: setup.initial_params(model_config, config.init.dinov2, config.seed)  # noqa: E731
    return train_supervised(config, workdir, model, model_config, init, make_loss_fn(model))


def train_supervised(config, workdir, model, model_config, init, loss_fn, target="disparity"):
    """Trains `loss_fn` on `labeled_batches(config, target)` from `init()` (host params) and
    exports; returns the export path. The loop of the teacher and metric stages."""
    tx, learning_rates = build_optimizer(config.optim, param_shapes(model), config.total_steps)
    recipe = Recipe(
        init,
        tx,
        loss_fn,
        iter(labeled_batches(config, target)),
        model_config=model_config,
        on_log=setup.labeled_preview(model, config),
        learning_rates=learning_rates,
    )
    state = train(recipe, config, workdir)
    return setup.export(workdir, state.params, model_config)
