"""Every Orbax call in dajax lives here.

Inference checkpoints (written by `python -m dajax.convert`, from a checkpoint file or a training
run) are a directory holding:
- `params/`: the Flax params tree as an Orbax `StandardCheckpointer` item, restorable onto any
  sharding;
- `model_config.json`: the `ModelConfig`, so the directory alone rebuilds the model.

Paths may be local or cloud URLs (`dajax.paths`).
"""

from __future__ import annotations

import json
import logging
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from dajax import paths
from dajax.models import DepthAnything, ModelConfig, param_shapes
from dajax.runtime import sync_processes
from dajax.weights.finite import require_finite

log = logging.getLogger("dajax")

CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"


def save_inference_params(path: paths.PathLike, params: dict, config: ModelConfig) -> None:
    """Writes params + architecture to a new directory `path` (must not exist).

    In a multi-process run every process calls this with the same host (numpy) params and
    path on a shared file system or bucket; Orbax writes from process 0 and the processes
    meet at barriers around it.

    Raises:
      FileExistsError: `path` exists. NonFiniteWeightsError (a ValueError,
        `dajax.weights.finite`): a parameter holds NaN or Inf (nothing is written).
    """
    path = paths.resolve(path)
    if path.exists():
        raise FileExistsError(f"{path}: already exists; choose a new output directory")
    flat = flax.traverse_util.flatten_dict(params, sep="/")
    require_finite(flat.items(), f"{path} (not written)")
    sync_processes("inference_params_check")
    if jax.process_index() == 0:
        path.mkdir(parents=True)
    sync_processes("inference_params_mkdir")
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path / PARAMS_DIR, params)
    if jax.process_index() == 0:
        (path / CONFIG_FILE).write_text(config.to_json())
    sync_processes("inference_params_done")


def is_inference_checkpoint(path: paths.PathLike) -> bool:
    """True when `path` is a directory written by `save_inference_params`."""
    return (paths.resolve(path) / CONFIG_FILE).exists()


def load_inference_params(
    path: paths.PathLike, sharding: jax.sharding.Sharding | None = None
) -> tuple[ModelConfig, dict]:
    """Reads a directory written by `save_inference_params`.

    Args:
      path: the checkpoint directory.
      sharding: where to place every param (default: the first local device).

    Returns:
      (config, params) with params as `jax.Array`s in their saved dtypes.
    """
    path = paths.resolve(path)
    if not is_inference_checkpoint(path):
        raise FileNotFoundError(f"{path}: not a dajax inference checkpoint (no {CONFIG_FILE})")
    config = ModelConfig.from_dict(json.loads((path / CONFIG_FILE).read_text()))
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    with ocp.StandardCheckpointer() as ckptr:
        params_dir = path / PARAMS_DIR
        saved = ckptr.metadata(params_dir).item_metadata.tree
        abstract = jax.tree.map(
            lambda want, have: jax.ShapeDtypeStruct(
                want.shape, np.dtype(have.dtype), sharding=sharding
            ),
            param_shapes(DepthAnything(config)),
            saved,
        )
        params = ckptr.restore(params_dir, abstract)
    return config, params


# Replica-parallel saving splits each replicated shard among its replicas, slicing it on device
# with one compiled program per shape and slice; below this many bytes per slice the I/O saved
# is not worth the compiles, and the first replica writes the whole shard.
REPLICA_PARALLEL_MIN_BYTES = 1 << 20


def _state_handler() -> ocp.PyTreeCheckpointHandler:
    """The train-state handler: orbax's, with replica-parallel saves for large arrays only."""
    arrays = ocp.type_handlers.ArrayHandler(
        min_slice_bytes_for_replica_parallel=REPLICA_PARALLEL_MIN_BYTES
    )
    registry = ocp.type_handlers.create_type_handler_registry(
        (jax.Array, arrays), (np.ndarray, ocp.type_handlers.NumpyHandler())
    )
    return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


CHECKSUMS_ITEM = "checksums"


def _bits(x: jax.Array) -> jax.Array:
    """x's bit patterns as uint32 (2- and 1-byte types zero-extended)."""
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    unsigned = {4: jnp.uint32, 2: jnp.uint16, 1: jnp.uint8}[x.dtype.itemsize]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


@jax.jit
def _digest(tree) -> tuple[jax.Array, list[jax.Array]]:
    """(whether every floating leaf is finite, each leaf's bit patterns summed mod 2^32)."""
    leaves = jax.tree.leaves(tree)
    checks = [jnp.all(jnp.isfinite(x)) for x in leaves if jnp.issubdtype(x.dtype, jnp.inexact)]
    finite = jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)
    return finite, [jnp.sum(_bits(x), dtype=jnp.uint32) for x in leaves]


def state_digest(tree) -> tuple[bool, dict[str, int]]:
    """(whether every floating leaf of `tree` is finite, {leaf path: checksum}).

    A leaf's checksum is the sum of its elements' bit patterns modulo 2^32: integer addition
    is exact in any order, so it is the same on any sharding, device or process count, and any
    single flipped bit changes it. `tree`: arrays (sharded or not) or numpy arrays.
    """
    finite, sums = jax.device_get(_digest(tree))
    paths_ = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    return bool(finite), {p: int(v) for p, v in zip(paths_, sums, strict=True)}


class CheckpointSaveError(OSError):
    """A training checkpoint could not be written (a full disk, a lost bucket); the message
    names the step and the newest complete one, from which a rerun resumes."""


class TrainCheckpointer:
    """Composite training checkpoints: train state + input-pipeline iterator state + the
    state's checksums (`state_digest`).

    Saves are asynchronous; `max_to_keep` recent steps are kept. The iterator (a grain
    `DatasetIterator`, or anything with `get_state`/`set_state`) is saved beside the state so a
    resumed run sees exactly the batches an uninterrupted one would have.

    A state that is not finite is never written (`FloatingPointError`). A save that fails is
    reported at the next `save`, `check` or `close` as a one-line `CheckpointSaveError`. A
    step that restores with other checksums than it was saved with, with non-finite values
    or with an impossible iterator state (a negative position) counts as damaged: it is set
    aside and the next older step is restored (`restore_newest_readable`).

    Args:
      directory: where step folders go (created).
      save_every: steps between periodic saves.
      max_to_keep: how many recent checkpoints survive.
    """

    def __init__(self, directory: paths.PathLike, save_every: int, max_to_keep: int = 3):
        import grain

        self._grain = grain
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=save_every, max_to_keep=max_to_keep, create=True
        )
        self.manager = ocp.CheckpointManager(
            paths.resolve(directory),
            options=options,
            item_handlers={
                "state": _state_handler(),
                "data": grain.checkpoint.CheckpointHandler(),
                CHECKSUMS_ITEM: ocp.JsonCheckpointHandler(),
            },
        )
        self._pending: int | None = None  # a save started and not yet known to be complete
        self._complete = self.manager.latest_step()  # the newest step known to be on disk

    def warm_up(self, state) -> None:
        """Compiles the checksum program (`state_digest`) for `state`'s shapes and shardings by
        running it once, so the first save inside a training loop does not pay the compile."""
        state_digest(state)

    def latest_step(self) -> int | None:
        """The newest saved step, or None."""
        return self.manager.latest_step()

    def save(self, step: int, state, data_iterator=None, *, force: bool = False) -> bool:
        """Saves when `step` is due (or `force`); returns whether a save started.

        Waits for the previous save first (`CheckpointSaveError` if it failed) and refuses a
        non-finite `state` (`FloatingPointError`), naming the newest complete step."""
        self._finish_pending()
        finite, checksums = state_digest(state)
        if not finite:
            raise FloatingPointError(
                f"step {step}: the parameters or optimiser state hold NaN or Inf, so the step "
                f"was not saved; {self._newest()}. Lower the learning rate or check the data."
            )
        items = {
            "state": ocp.args.PyTreeSave(state),
            CHECKSUMS_ITEM: ocp.args.JsonSave(checksums),
        }
        if data_iterator is not None:
            items["data"] = self._grain.checkpoint.CheckpointSave(data_iterator)
        try:
            started = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
        except Exception as err:  # Orbax and TensorStore raise many types
            raise self._save_error(step, err) from err
        if started:
            self._pending = step
        return started

    def check(self) -> None:
        """Raises `CheckpointSaveError` if a save running in the background has failed."""
        if self._pending is None:
            return
        try:
            self.manager.check_for_errors()
        except Exception as err:
            raise self._save_error(self._pending, err) from err

    def _finish_pending(self) -> None:
        """Waits for the pending save; raises `CheckpointSaveError` if it failed."""
        if self._pending is None:
            return
        step, self._pending = self._pending, None
        try:
            self.manager.wait_until_finished()
        except Exception as err:
            raise self._save_error(step, err) from err
        self._complete = step

    def _newest(self) -> str:
        """Which step a rerun resumes from, as a phrase."""
        if self._complete is None:
            return "no checkpoint is on disk yet"
        return f"the newest complete checkpoint is step {self._complete}"

    def _save_error(self, step: int, err: BaseException) -> CheckpointSaveError:
        inner = _exception_chain(err)[-1]
        reason = (str(inner).splitlines() or [""])[0] or type(inner).__name__
        directory = self.manager.directory
        return CheckpointSaveError(
            f"{directory}: saving step {step} failed ({reason}); {self._newest()}, which a "
            "rerun resumes from"
        )

    def restore(self, step: int, abstract_state, data_iterator=None):
        """Restores the state onto `abstract_state`'s shardings (and the iterator in place).

        Raises `CorruptCheckpoint` when the restored state's checksums differ from the saved
        ones (steps saved without checksums are not checked), when it holds NaN or Inf, or when
        the iterator's restored position is negative."""
        items = {
            "state": ocp.args.PyTreeRestore(
                item=abstract_state,
                restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state),
            )
        }
        if data_iterator is not None:
            self._check_iterator_file(step)
            items["data"] = self._grain.checkpoint.CheckpointRestore(data_iterator)
        has_checksums = (self._step_dir(step) / CHECKSUMS_ITEM).exists()
        if has_checksums:
            items[CHECKSUMS_ITEM] = ocp.args.JsonRestore()
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        state = restored["state"]
        finite, checksums = state_digest(state)
        if has_checksums:
            saved = restored[CHECKSUMS_ITEM]
            changed = [k for k, v in checksums.items() if saved.get(k) != v]
            if changed:
                raise CorruptCheckpoint(
                    f"{self._step_dir(step)}: {len(changed)} array(s) differ from their saved "
                    f"checksums, first {changed[0]} (bit rot or an overwritten file)"
                )
        if not finite:
            raise CorruptCheckpoint(f"{self._step_dir(step)}: the state holds NaN or Inf")
        return state

    def _check_iterator_file(self, step: int) -> None:
        """Raises `CorruptCheckpoint` when this process's saved iterator state (grain's JSON)
        holds an impossible position; a file that does not parse is left to the restore."""
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        path = self._step_dir(step) / "data" / name
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        problem = _iterator_state_problem(saved)
        if problem:
            raise CorruptCheckpoint(f"{path}: {problem}")

    def restore_newest_readable(self, abstract_state, data_iterator=None):
        """Restores the newest step that reads back; returns (step, state), or None if none does.

        A step whose files are damaged (a truncated array file, a corrupt JSON; see
        `corruption_reason`) is logged with the reason, moved aside to
        `<directory>/<step>.corrupt-<UTC time>` (kept for inspection, invisible to Orbax) and
        the next older step is tried. Any other restore error (e.g. a checkpoint of a different
        model) propagates. With several processes, a step counts as readable only if it is on
        every process. The iterator is left as it was when no step restores.
        """
        initial = data_iterator.get_state() if data_iterator is not None else None
        for step in sorted(self.manager.all_steps(), reverse=True):
            reason, state = None, None
            try:
                state = self.restore(step, abstract_state, data_iterator)
            except CorruptCheckpoint as err:
                reason = str(err)
            except Exception as err:  # Orbax, TensorStore and json raise many types
                reason = corruption_reason(self._step_dir(step), err)
                if reason is None and isinstance(err, ValueError):
                    first_line = (str(err).splitlines() or [""])[0]
                    raise ValueError(
                        f"{self._step_dir(step)}: does not fit this run's model or optimiser "
                        f"({first_line}); was the workdir trained with another config?"
                    ) from err
                if reason is None:
                    raise
            if _everywhere(reason is None):
                self._complete = step
                return step, state
            if data_iterator is not None:
                data_iterator.set_state(initial)
            self._set_aside(step, reason or "unreadable on another process")
        if initial is not None:
            data_iterator.set_state(initial)
        return None

    def _step_dir(self, step: int) -> epath.Path:
        return epath.Path(self.manager.directory) / str(step)

    def _set_aside(self, step: int, reason: str) -> None:
        """Renames step `step`'s folder to `<step>.corrupt-<UTC time>` (process 0)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self._step_dir(step).parent / f"{step}.corrupt-{stamp}"
        while aside.exists():  # the same step set aside twice within a second
            aside = aside.parent / (aside.name + "+")
        log.warning(
            "checkpoint step %d is unreadable, skipped: %s (moved to %s)", step, reason, aside
        )
        sync_processes("checkpoint_set_aside_start")
        if jax.process_index() == 0:
            self._step_dir(step).rename(aside)
        sync_processes("checkpoint_set_aside_done")
        self.manager.reload()

    def restore_params(self, step: int, abstract_params):
        """Restores only `state.params` of step `step` (no optimiser state, no iterator).

        `abstract_params`: a tree of `jax.ShapeDtypeStruct` (with shardings) to restore onto.
        """
        items = {
            "state": ocp.args.PyTreeRestore(
                item={"params": abstract_params},
                restore_args=ocp.checkpoint_utils.construct_restore_args(
                    {"params": abstract_params}
                ),
                partial_restore=True,
            )
        }
        return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]["params"]

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk (`CheckpointSaveError` if one
        failed)."""
        self._finish_pending()

    def close(self) -> None:
        """Waits for saves and releases the manager (`CheckpointSaveError` if a save failed)."""
        try:
            self._finish_pending()
        finally:
            self.manager.close()


class CorruptCheckpoint(ValueError):
    """A step that restored but whose contents cannot be right (see `TrainCheckpointer`)."""


def _iterator_state_problem(state, where: str = "") -> str | None:
    """What is impossible in an input iterator's state (a nested dict/list of JSON values):
    a negative integer (positions and counters are never negative); else None."""
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        if isinstance(state, int) and not isinstance(state, bool) and state < 0:
            return f"{where or 'state'} is {state}, a negative position"
        return None
    for key, value in items:
        problem = _iterator_state_problem(value, f"{where}.{key}" if where else str(key))
        if problem:
            return problem
    return None


# TensorStore's status codes (and phrases) for a file that is short, garbled or missing.
_READ_FAILURES = ("DATA_LOSS", "OUT_OF_RANGE", "NOT_FOUND", "Error reading", "Error decoding")
_JSON_FILES = (".json", "_CHECKPOINT_METADATA", "_METADATA")


def corruption_reason(step_dir: paths.PathLike, error: BaseException) -> str | None:
    """Why a checkpoint step failed to restore, if its files are damaged; else None.

    Names the file where it can: a JSON file of the step that does not parse, or the array
    store TensorStore could not read (its message names the store's folder and the array).
    """
    for path in _files(paths.resolve(step_dir)):
        if path.name.endswith(_JSON_FILES):
            try:
                json.loads(path.read_text())
            except (OSError, ValueError) as err:
                return f"{path}: {type(err).__name__}: {err}"
    for err in _exception_chain(error):
        message = str(err).splitlines()[0] if str(err) else ""
        if isinstance(err, (json.JSONDecodeError, FileNotFoundError, EOFError)):
            return f"{step_dir}: {type(err).__name__}: {message}"
        if any(code in message for code in _READ_FAILURES):
            return message
    return None


def _files(directory: epath.Path) -> list[epath.Path]:
    """Every file under `directory`, sorted (by listing, which buckets support as well)."""
    if not directory.is_dir():
        return []
    out = []
    for child in sorted(directory.iterdir()):
        out += _files(child) if child.is_dir() else [child]
    return out


def _exception_chain(error: BaseException) -> list[BaseException]:
    """`error`, then its causes/contexts, innermost last."""
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _everywhere(ok: bool) -> bool:
    """Whether `ok` holds on every process (a one-integer all-gather; no-op in one process)."""
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    return bool(np.min(multihost_utils.process_allgather(np.int32(ok))))


# A training run's params as an inference checkpoint: the training-workdir source of
# `python -m dajax.convert WORKDIR OUT [--step N]`, and how every loader takes a run folder
# (`dajax.weights.pretrained.load_depth_anything`).
EXPORT_DIR = "export"  # where a finished training run writes its inference checkpoint


def is_run(path: paths.PathLike) -> bool:
    """Whether `path` is a training run's workdir (a folder holding `checkpoints/`; local or a
    bucket URL, `dajax.paths`)."""
    return (paths.resolve(path) / "checkpoints").is_dir()


def load_run(workdir: paths.PathLike, step: int | None = None) -> tuple[ModelConfig, dict, int]:
    """The params of `workdir`'s checkpoint `step` (default: newest), without the optimiser
    state or the iterator.

    Returns:
      (config from `model_config.json`, params as `jax.Array`s on the first local device in
      their saved dtypes, the step).

    Raises:
      FileNotFoundError naming what is missing (the config, any saved step, the step).
    """
    config_path = paths.resolve(workdir) / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(
            f"{config_path}: missing; is {workdir} the --workdir of a dajax training run?"
        )
    config = ModelConfig.from_dict(json.loads(config_path.read_text()))
    ckpt_dir = config_path.parent / "checkpoints"
    ckpt = TrainCheckpointer(ckpt_dir, save_every=1)
    try:
        steps = ckpt.manager.all_steps()
        if not steps:
            raise FileNotFoundError(
                f"{workdir}: a training run with no saved step yet; wait for its first "
                "checkpoint, or pass a checkpoint file or a converted folder"
            )
        step = max(steps) if step is None else step
        if step not in steps:
            raise FileNotFoundError(f"{ckpt_dir}: no checkpoint for step {step}; have {steps}")
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
            param_shapes(DepthAnything(config)),
        )
        params = ckpt.restore_params(step, abstract)
    finally:
        ckpt.close()
    return config, params, step


def export_run(workdir: paths.PathLike, out: paths.PathLike, step: int | None = None) -> int:
    """Writes the params of `workdir`'s checkpoint `step` (default: newest) to `out` (either
    may be a bucket URL, `dajax.paths`).

    Returns the exported step. Raises FileNotFoundError naming what is missing.
    """
    config, params, step = load_run(workdir, step)
    save_inference_params(out, jax.tree.map(np.asarray, params), config)
    return step
