"""The generic training loop shared by the teacher, student and metric fine-tuning stages.

Recipes supply the pieces (initial params, optimiser, loss, input iterator, frozen trees);
this module does the workdir lock, the jit/sharding recipe, checkpoint/resume, preemption,
logging (metrics.jsonl, TensorBoard, curves.png), validation and the non-finite guard.

The loop reads a log step's metrics (and the non-finite guard's count) after queueing the next
step, so the device never idles while the host logs (at once where the step also saves,
validates, ends or is preempted), then hands the writing to `MetricsLog`'s thread; curves.png
is redrawn at each
checkpoint and at the end. It logs the train step's compile time, the run's compile seconds
(`runtime.compile_report`) and its pace (steps/s after the compile). Each checkpoint save is
a line on stdout; the progress bar's clock starts after the compile, so its ETA counts steps.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
import optax
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from dajax import checkpoints, paths, runtime, sharding
from dajax.models import ModelConfig
from dajax.training import optimizer, validation
from dajax.training.metrics_log import MetricsLog
from dajax.training.preemption import Preempted, PreemptionWatch
from dajax.training.state import LossFn, TrainState, create_state, make_train_step
from dajax.training.workdir_lock import locked_workdir

log = logging.getLogger("dajax")


@dataclasses.dataclass(kw_only=True)
class Recipe:
    """What a stage trains (keywords only: nine fields are too many to pass by position).

    Attributes:
      init_params: () -> host params tree (numpy), e.g. DINOv2 encoder + fresh head.
      tx: the optimiser.
      loss_fn: `(params, batch, frozen, rng) -> (loss, metrics)`.
      batches: iterator of per-process numpy batch dicts with `get_state`/`set_state` and
        `start_prefetch` (the grain `DatasetIterator` protocol that its Orbax handler uses).
      frozen: a pytree of non-trained arrays passed to every step (or None).
      model_config: the architecture, written to `workdir/model_config.json` so that
        `python -m dajax.convert WORKDIR OUT` can rebuild the model from the workdir alone.
      on_log: optional `(step, state, metrics_log)` hook called at each log step; when it
        has a `warm_up(params)` method (`setup.DepthPreview`), the loop calls that after
        compiling the step, so nothing compiles between the steps, and when it has a
        `close(metrics_log)` method, the loop calls that after the last step (or before
        exiting on preemption), so a hook that defers its writing writes everything.
      learning_rates: optional `step -> {name: lr}`, logged with the step's metrics.
      plan: lines logged once the workdir is locked, e.g. each stream's global and
        per-process batch and the epochs the run makes over it (`pipeline.batch_plan`).
    """

    init_params: Callable[[], Any]
    tx: optax.GradientTransformation
    loss_fn: LossFn
    batches: Iterator[dict[str, np.ndarray]]
    frozen: Any = None
    model_config: ModelConfig | None = None
    on_log: Callable[[int, TrainState, MetricsLog], None] | None = None
    learning_rates: Callable[[int], dict[str, float]] | None = None
    plan: tuple[str, ...] = ()


def train(recipe: Recipe, config, workdir: str) -> TrainState:
    """Runs (or resumes) `config.total_steps` steps; returns the final state.

    The workdir is locked for the run (`workdir_lock`: a second run on it refuses to start).
    Resuming restores the newest readable checkpoint (a damaged newer one is moved aside).
    Raises `Preempted` (after saving) when a process receives SIGTERM, or SIGINT (Ctrl-C) in
    a run without JAX's preemption service (`preemption`). Checks the loop fields first
    (`check_loop_config`); never saves a non-finite state (`checkpoints.TrainCheckpointer`).

    Config fields used: `seed`, `total_steps`, `log_every`, `checkpoint_every`,
    `keep_checkpoints`, `mesh.fsdp`, `mesh.fsdp_min_size`, and, when `eval_every > 0`,
    `eval` (validation, see `dajax.training.validation`). With `optim`, one line says what
    happens to the learning-rate schedule when the warm-up lasts the whole run, or when a
    resumed run's `total_steps` differs from the workdir's saved `config.json`.
    """
    check_loop_config(config)
    with locked_workdir(workdir), runtime.compile_report(f"training {workdir}"):
        for line in recipe.plan:
            log.info(line)
        optim = config.get("optim")
        _note(optimizer.warmup_note(optim, config.total_steps) if optim else None)
        saved_total_steps = _saved_total_steps(workdir)
        _write_run_files(workdir, config, recipe.model_config)
        mesh = sharding.make_mesh(config.mesh.fsdp)
        state, state_sh, frozen = initial_state(recipe, config, mesh)
        ckpt = checkpoints.TrainCheckpointer(
            paths.resolve(workdir) / "checkpoints",
            config.checkpoint_every,
            config.keep_checkpoints,
        )
        try:
            restored = ckpt.restore_newest_readable(_abstract(state, state_sh), recipe.batches)
            if restored is not None:
                state = restored[1]
                log.info("resumed from step %d", restored[0])
                if optim and saved_total_steps is not None:
                    _note(
                        optimizer.resume_note(
                            optim, restored[0], saved_total_steps, config.total_steps
                        )
                    )
            with logging_redirect_tqdm(loggers=[logging.getLogger()]):
                return _run_steps(recipe, config, workdir, mesh, state, state_sh, frozen, ckpt)
        finally:
            ckpt.close()


# Loop fields and the smallest value each takes.
_LOOP_MINIMA = {
    "total_steps": 1,
    "log_every": 1,
    "checkpoint_every": 1,
    "keep_checkpoints": 1,
    "image_every": 0,
    "eval_every": 0,
}


def check_loop_config(config) -> None:
    """Refuses, in one line naming the field, a loop field that is not an integer at or above
    its minimum (`_LOOP_MINIMA`; fields a config does not have are skipped)."""
    for field, minimum in _LOOP_MINIMA.items():
        value = config.get(field, minimum)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"config.{field}: {value!r} must be an integer >= {minimum}")


def initial_state(recipe: Recipe, config, mesh):
    """(fresh sharded state, its shardings, sharded frozen tree) from `recipe.init_params`."""
    host_params = recipe.init_params()
    runtime.sync_processes("train_params_ready")  # hosts may finish loading far apart
    abstract = jax.eval_shape(lambda p: create_state(p, recipe.tx), host_params)
    state_sh = sharding.state_shardings(abstract, mesh, config.mesh.fsdp_min_size)
    params = jax.device_put(host_params, state_sh.params)
    state = jax.jit(lambda p: create_state(p, recipe.tx), out_shardings=state_sh)(params)
    frozen = None
    if recipe.frozen:  # sharded like the params: FSDP splits a frozen ViT-G as well
        frozen_sh = sharding.state_shardings(recipe.frozen, mesh, config.mesh.fsdp_min_size)
        frozen = jax.device_put(recipe.frozen, frozen_sh)
    return state, state_sh, frozen


def _abstract(state, shardings):
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), state, shardings
    )


def jit_step(recipe: Recipe, config, mesh, state_sh):
    """The jitted `step(state, batch, frozen) -> (state, metrics)`: the state donated and
    sharded as `state_sh`, the metrics replicated."""
    return jax.jit(
        make_train_step(recipe.loss_fn, recipe.tx, config.seed),
        out_shardings=(state_sh, sharding.replicated(mesh)),
        donate_argnums=0,
    )


def _run_steps(recipe, config, workdir, mesh, state, state_sh, frozen, ckpt) -> TrainState:
    """The step loop from `state.step` to `config.total_steps`: log, validate, save."""
    step_fn = jit_step(recipe, config, mesh, state_sh)
    validator = validation.from_config(config, recipe.model_config, workdir)
    preemption = PreemptionWatch(config.log_every)
    compiled = None
    step = first = int(state.step)
    progress = tqdm(
        initial=step,
        total=config.total_steps,
        desc="steps",
        disable=jax.process_index() != 0,
        dynamic_ncols=True,
    )
    try:
        with MetricsLog(workdir) as metrics_log:
            t_start = t_log = time.perf_counter()
            step_log, pending = step, None
            while step < config.total_steps:
                batch = sharding.global_batch(next(recipe.batches), mesh)
                if compiled is None:
                    compiled = compile_step(step_fn, mesh, state, batch, frozen)
                    if hasattr(recipe.on_log, "warm_up"):
                        recipe.on_log.warm_up(state.params)
                    ckpt.warm_up(state)
                    t_start = t_log = time.perf_counter()
                    _restart_clock(progress)
                state, metrics = compiled(state, batch, frozen)
                step += 1
                if pending is not None:  # the previous log step's values, ready by now
                    t_log, step_log = _log(pending, metrics_log, t_log, step_log)
                    pending = None
                    ckpt.check()  # a background save that failed stops the run here
                last = step == config.total_steps
                if step % config.log_every == 0 or last:
                    pending = _LogStep(step, metrics, batch, recipe.learning_rates)
                    if recipe.on_log:
                        recipe.on_log(step, state, metrics_log)
                validate = validator and (step % config.eval_every == 0 or last)
                # Only at multiples of checkpoint_every (Orbax alone would save step 1 too).
                due = step % config.checkpoint_every == 0
                if pending is not None and (validate or due or last):
                    t_log, step_log = _log(pending, metrics_log, t_log, step_log)
                    pending = None
                    ckpt.check()
                preempted = preemption.reached(step)
                if pending is not None and preempted:
                    t_log, step_log = _log(pending, metrics_log, t_log, step_log)
                    pending = None
                due = due or preempted
                if validate:
                    validator(step, state.params, metrics_log)
                    t_log, step_log = time.perf_counter(), step  # images/s leave it out
                if due and ckpt.save(step, state, recipe.batches, force=preempted):
                    _announce_save(progress, step, workdir)
                    metrics_log.write_curves()
                progress.update(1)
                if preempted:
                    _close_hook(recipe.on_log, metrics_log)
                    log.warning("%s: saved step %d, exiting", preemption.signal_name, step)
                    raise Preempted(step, preemption.signal_number)
            _close_hook(recipe.on_log, metrics_log)
            if ckpt.latest_step() != step and ckpt.save(step, state, recipe.batches, force=True):
                _announce_save(progress, step, workdir)
            seconds = time.perf_counter() - t_start
        _log_pace(first, step, seconds)
    finally:
        progress.close()
        preemption.close()
    return state


def _close_hook(on_log, metrics_log: MetricsLog) -> None:
    """Lets an `on_log` hook that defers its writing (`setup.DepthPreview`) finish it."""
    if hasattr(on_log, "close"):
        on_log.close(metrics_log)


def _note(line: str | None) -> None:
    """Logs `line` (a note on the learning-rate schedule) as a warning, once: on process 0."""
    if line and jax.process_index() == 0:
        log.warning(line)


def _restart_clock(progress: tqdm) -> None:
    """Restarts the progress bar's clock (after the first step's compile), so its rate and
    ETA count only the steps."""
    if not progress.disable:
        progress.start_t = progress.last_print_t = progress._time()


def _announce_save(progress: tqdm, step: int, workdir: str) -> None:
    """Prints one line on stdout (process 0) for a checkpoint save that started."""
    if not progress.disable:
        where = paths.resolve(workdir) / "checkpoints"
        progress.write(f"saving checkpoint step {step} in {where}", file=sys.stdout)


def _saved_total_steps(workdir: str) -> int | None:
    """`total_steps` of the run that last wrote `workdir/config.json`, or None (no file, or
    no such field)."""
    path = paths.resolve(workdir) / "config.json"
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text()).get("total_steps")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _write_run_files(workdir: str, config, model_config: ModelConfig | None) -> None:
    """`config.json` (the experiment) and `model_config.json` (the architecture), process 0."""
    if jax.process_index() != 0:
        return
    workdir = paths.resolve(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    paths.write_atomic(workdir / "config.json", config.to_json_best_effort(indent=2))
    if model_config is not None:
        paths.write_atomic(workdir / checkpoints.CONFIG_FILE, model_config.to_json())


def compile_step(step_fn, mesh, state, batch, frozen):
    """Ahead-of-time compile of `jit_step`'s step at these arguments' shapes, traced under
    `mesh` (kernels XLA cannot partition, TPU flash attention, are mapped over it by
    `shard_map`); logs the seconds it took and the compiled memory footprint."""
    start = time.perf_counter()
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        compiled = step_fn.lower(state, batch, frozen).compile()
    log.info("compiled the train step in %.1f s", time.perf_counter() - start)
    mem = compiled.memory_analysis()
    if mem is not None:
        total = sum(
            getattr(mem, f, 0) or 0
            for f in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
        )
        log.info("compiled train step: %.1f MiB per device (args+outputs+temps)", total / 2**20)
    runtime.sync_processes("train_step_compiled")
    return compiled


@dataclasses.dataclass
class _LogStep:
    """A log step's values on their way to the host: the loop reads them after dispatching the
    next step, so the device never waits for the host's logging."""

    step: int
    metrics: dict
    batch: dict
    learning_rates: Callable[[int], dict[str, float]] | None

    def __post_init__(self):
        for value in jax.tree.leaves(self.metrics):
            value.copy_to_host_async()


def _log(pending: _LogStep, metrics_log, t_log: float, step_log: int) -> tuple[float, int]:
    """Waits for a log step's metrics, stops the run if a step was non-finite, and logs the
    metrics with the learning rates and the pace since the previous log step (`step_log`,
    ended at `t_log`, perf_counter seconds). Returns the new (t_log, step_log)."""
    values = jax.device_get(pending.metrics)
    step = pending.step
    _check_finite(step, int(values["skipped_steps"]), float(values["loss"]))
    now = time.perf_counter()
    seconds_per_step = (now - t_log) / max(step - step_log, 1)
    if pending.learning_rates:
        values = dict(values, **pending.learning_rates(step - 1))
    _log_step(step, values, pending.batch, seconds_per_step, metrics_log)
    return now, step


def _check_finite(step: int, skipped: int, loss: float) -> None:
    """Raises when `skipped` (steps with a non-finite loss or gradient, never applied) > 0."""
    if skipped:
        raise FloatingPointError(
            f"step {step}: {skipped} step(s) had a non-finite loss or gradients (last loss "
            f"{loss}); their updates were not applied. Check the input data for NaN/Inf depth "
            "and lower the learning rate."
        )


def _log_step(step, metrics, batch, seconds_per_step, metrics_log: MetricsLog) -> None:
    """Logs the step's metrics (host values) plus throughput (images of all batch parts per
    second and device)."""
    values = {k: float(v) for k, v in metrics.items()}
    images = sum(v.shape[0] for k, v in batch.items() if k.endswith("image"))
    values["images_per_s_per_device"] = images / max(seconds_per_step, 1e-9) / jax.device_count()
    metrics_log.scalars(step, values)
    log.info("step %d: %s", step, " ".join(f"{k}={v:.4g}" for k, v in sorted(values.items())))


def _log_pace(first: int, last: int, seconds: float) -> None:
    """Logs the loop's pace: steps `first`→`last` took `seconds` after the compile, logging,
    validation and checkpoints included."""
    if last > first:
        log.info(
            "steps %d-%d: %.1f s after the compile, %.2f steps/s",
            first + 1,
            last,
            seconds,
            (last - first) / seconds,
        )
