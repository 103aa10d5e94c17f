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

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from dajax import paths
from dajax.models import DepthAnything, ModelConfig, param_shapes
from dajax.runtime import sync_processes

log = logging.getLogger("dajax")

CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"


def save_inference_params(path: paths.PathLike, params: dict, config: ModelConfig) -> None:
    """Writes params + architecture to a new directory `path` (must not exist).

    In a multi-process run every process calls this with the same host (numpy) params and
    path on a shared file system or bucket; Orbax writes from process 0 and the processes
    meet at barriers around it.
    """
    path = paths.resolve(path)
    if path.exists():
        raise FileExistsError(f"{path}: already exists; choose a new output directory")
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


class TrainCheckpointer:
    """Composite training checkpoints: train state + input-pipeline iterator state.

    Saves are asynchronous; `max_to_keep` recent steps are kept. The iterator (a grain
    `DatasetIterator`, or anything with `get_state`/`set_state`) is saved beside the state so a
    resumed run sees exactly the batches an uninterrupted one would have.

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
            item_handlers={"state": _state_handler(), "data": grain.checkpoint.CheckpointHandler()},
        )

    def latest_step(self) -> int | None:
        """The newest saved step, or None."""
        return self.manager.latest_step()

    def save(self, step: int, state, data_iterator=None, *, force: bool = False) -> bool:
        """Saves when `step` is due (or `force`); returns whether a save started."""
        items = {"state": ocp.args.PyTreeSave(state)}
        if data_iterator is not None:
            items["data"] = self._grain.checkpoint.CheckpointSave(data_iterator)
        return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

    def restore(self, step: int, abstract_state, data_iterator=None):
        """Restores the state onto `abstract_state`'s shardings (and the iterator in place)."""
        items = {
            "state": ocp.args.PyTreeRestore(
                item=abstract_state,
                restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state),
            )
        }
        if data_iterator is not None:
            items["data"] = self._grain.checkpoint.CheckpointRestore(data_iterator)
        return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

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
                return step, state
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
        """Blocks until pending asynchronous saves are on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Waits for saves and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()


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
