"""The supervised training loop the teacher and metric stages share: a labeled mixture, one
loss, the generic loop, an exported inference checkpoint."""

from __future__ import annotations

from dajax.data.pipeline import batch_plan, labeled_dataset
from dajax.data.registry import build_source
from dajax.models import param_shapes
from dajax.training import setup
from dajax.training.loop import Recipe, train
from dajax.training.optimizer import build_optimizer


def labeled_batches(config, target: str = "disparity"):
    """The labeled mixture of `config.data.labeled` ((source spec, weight), ...), with
    normalised disparity targets or, for metric fine-tuning, depth in metres.

    Returns:
      (an iterator over this process's share of each global batch of
      `config.data.labeled_batch`, its lines for the run's log: each source's count of
      image/depth pairs, then its `batch_plan` line).
    """
    sources = [build_source(spec) for spec, _ in config.data.labeled]
    weights = [w for _, w in config.data.labeled]
    counts = tuple(
        f"labeled source {spec.kind} (weight {weight:g}): {len(source)} image/depth pairs"
        for (spec, weight), source in zip(config.data.labeled, sources, strict=True)
    )
    records = sum(len(s) for s in sources)
    plan = batch_plan("labeled", config.data.labeled_batch, records, config.total_steps)
    batches = labeled_dataset(
        sources,
        weights,
        size=config.data.crop,
        batch_size=config.data.labeled_batch,
        seed=config.seed,
        target=target,
        workers=config.data.workers,
    )
    return iter(batches), (*counts, plan)


def train_supervised(config, workdir, model, model_config, init, loss_fn, target="disparity"):
    """Trains `loss_fn` on `labeled_batches(config, target)` from `init()` (host params) and
    exports; returns the export path."""
    tx, learning_rates = build_optimizer(config.optim, param_shapes(model), config.total_steps)
    batches, plan = labeled_batches(config, target)
    recipe = Recipe(
        init_params=init,
        tx=tx,
        loss_fn=loss_fn,
        batches=batches,
        model_config=model_config,
        on_log=setup.labeled_preview(model, config),
        learning_rates=learning_rates,
        plan=plan,
    )
    state = train(recipe, config, workdir)
    return setup.write_inference_checkpoint(workdir, state.params, model_config)
