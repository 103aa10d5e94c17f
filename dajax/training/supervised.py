"""The supervised training loop the teacher and metric stages share: a labeled mixture, one
loss, the generic loop, an exported inference checkpoint."""

from __future__ import annotations

import logging

from dajax.data.pipeline import batch_plan, labeled_dataset
from dajax.data.registry import build_source
from dajax.models import param_shapes
from dajax.training import setup
from dajax.training.loop import Recipe, train
from dajax.training.optimizer import build_optimizer

log = logging.getLogger("dajax")


def labeled_batches(config, target: str = "disparity"):
    """The labeled mixture of `config.data.labeled` ((source spec, weight), ...), with
    normalised disparity targets or, for metric fine-tuning, depth in metres; this process's
    share of each global batch of `config.data.labeled_batch`. Logs the batch plan."""
    sources = [build_source(spec) for spec, _ in config.data.labeled]
    weights = [w for _, w in config.data.labeled]
    records = sum(len(s) for s in sources)
    log.info(batch_plan("labeled", config.data.labeled_batch, records, config.total_steps))
    return labeled_dataset(
        sources,
        weights,
        size=config.data.crop,
        batch_size=config.data.labeled_batch,
        seed=config.seed,
        target=target,
        workers=config.data.workers,
    )


def train_supervised(config, workdir, model, model_config, init, loss_fn, target="disparity"):
    """Trains `loss_fn` on `labeled_batches(config, target)` from `init()` (host params) and
    exports; returns the export path."""
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
