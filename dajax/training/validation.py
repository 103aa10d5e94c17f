"""Validation during training: the eval stage's protocol on `config.eval`, every
`config.eval_every` steps.

`config.eval` holds a source spec `data` with its depth range and crop (`min_depth`,
`max_depth` in metres, `crop`; as an entry of `configs/eval.py`'s benchmark table),
`input_size` and `batch_size`. The model is scored by `dajax.eval.evaluate.evaluate` (the
jitted network of a `DepthEstimator`, the relative or metric protocol that its head implies),
the scores are logged as `val/<metric>` (metrics.jsonl, TensorBoard, curves.png), and the step
with the lowest AbsRel so far is recorded in `WORKDIR/best.json`.
"""

from __future__ import annotations

import json
import logging

import jax

from dajax import paths, runtime
from dajax.data.registry import build_source
from dajax.eval.evaluate import Bench, evaluate, resolve_protocol
from dajax.inference import DepthEstimator
from dajax.models import ModelConfig
from dajax.training import setup
from dajax.training.metrics_log import MetricsLog

log = logging.getLogger("dajax")

BEST_FILE = "best.json"
BEST_KEY = "abs_rel"  # lower is better under both protocols


class Validator:
    """Scores the training params on the validation source (see the module docstring).

    Args:
      eval_cfg: `config.eval`.
      model_config: the trained architecture (its head picks the protocol).
      workdir: where `best.json` goes.
      impl: the network implementation that scores them (`DepthEstimator`'s `impl`).
    """

    def __init__(self, eval_cfg, model_config: ModelConfig, workdir: str, impl: str = "fast"):
        self.source = build_source(eval_cfg.data)
        self.bench = Bench(
            eval_cfg.get("min_depth_eval", 1e-3),
            eval_cfg.max_depth_eval,
            eval_cfg.get("crop_region", "none"),
            model_config.head,
        )
        self.protocol = resolve_protocol("auto", model_config.head)
        self.model_config = model_config
        self.input_size = eval_cfg.input_size
        self.batch_size = eval_cfg.batch_size
        self.workdir = workdir
        self.impl = impl
        self._estimator: DepthEstimator | None = None

    def __call__(self, step: int, params, metrics_log: MetricsLog) -> dict | None:
        """Scores `params` (every process calls it); returns the scores on process 0.

        Process 0 evaluates while the others wait at a coordination-service barrier.
        """
        host_params = setup.gather_to_host(params)
        scores = None
        if jax.process_index() == 0:
            if self._estimator is None:  # one estimator, so its network compiles once
                self._estimator = DepthEstimator(
                    self.model_config, host_params, input_size=self.input_size, impl=self.impl
                )
            else:
                self._estimator.params = jax.device_put(host_params)
            scores = evaluate(
                self._estimator,
                self.source,
                self.bench,
                self.protocol,
                self.batch_size,
                progress="validation",
            )
            scores = {k: v for k, v in scores.items() if k != "images"}
            metrics_log.scalars(step, {f"val/{k}": v for k, v in scores.items()})
            log.info("step %d validation: %s", step, _format(scores))
            self._record_best(step, scores)
        runtime.sync_processes("validation_done")
        return scores

    def _record_best(self, step: int, scores: dict) -> None:
        best = read_best(self.workdir)
        if best is not None and best["scores"][BEST_KEY] <= scores[BEST_KEY]:
            return
        record = {"step": step, "metric": BEST_KEY, "scores": scores}
        paths.write_atomic(paths.resolve(self.workdir) / BEST_FILE, json.dumps(record, indent=2))
        log.info("step %d is the best so far (%s %.4g)", step, BEST_KEY, scores[BEST_KEY])


def read_best(workdir: paths.PathLike) -> dict | None:
    """`WORKDIR/best.json` ({step, metric, scores}), or None before the first validation."""
    path = paths.resolve(workdir) / BEST_FILE
    return json.loads(path.read_text()) if path.exists() else None


def from_config(config, model_config: ModelConfig | None, workdir: str) -> Validator | None:
    """A `Validator` when `config.eval_every > 0` (and the stage has a model), else None."""
    if config.get("eval_every", 0) <= 0 or model_config is None:
        return None
    return Validator(config.eval, model_config, workdir, config.model.get("impl", "fast"))


def _format(scores: dict) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in sorted(scores.items()))
