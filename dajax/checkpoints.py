"""Every Orbax call in dajax lives here.

Inference checkpoints (written by `python -m dajax.convert` and `python -m dajax.export`) are a
directory holding:
- `params/`: the Flax params tree as an Orbax `StandardCheckpointer` item, restorable onto any
  sharding;
- `model_config.json`: the `ModelConfig`, so the directory alone rebuilds the model.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from dajax.models import DepthAnything, ModelConfig, param_shapes
from dajax.runtime import sync_processes

CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"


def save_inference_params(path: str | os.PathLike, params: dict, config: ModelConfig) -> None:
    """Writes params + architecture to a new directory `path` (must not exist).

    In a multi-process run every process calls this with the same host (numpy) params and
    path on a shared file system; Orbax writes from process 0 and the processes meet at
    barriers around it.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path):
        raise FileExistsError(f"{path}: already exists; choose a new output directory")
    sync_processes("inference_params_check")
    if jax.process_index() == 0:
        os.makedirs(path)
    sync_processes("inference_params_mkdir")
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(path, PARAMS_DIR), params)
    if jax.process_index() == 0:
        with open(os.path.join(path, CONFIG_FILE), "w") as f:
            f.write(config.to_json())
    sync_processes("inference_params_done")


def is_inference_checkpoint(path: str | os.PathLike) -> bool:
    """True when `path` is a directory written by `save_inference_params`."""
    return os.path.isfile(os.path.join(os.fspath(path), CONFIG_FILE))


def load_inference_params(
    path: str | os.PathLike, sharding: jax.sharding.Sharding | None = None
) -> tuple[ModelConfig, dict]:
    """Reads a directory written by `save_inference_params`.

    Args:
      path: the checkpoint directory.
      sharding: where to place every param (default: the first local device).

    Returns:
      (config, params) with params as `jax.Array`s in their saved dtypes.
    """
    path = os.path.abspath(os.fspath(path))
    if not is_inference_checkpoint(path):
        raise FileNotFoundError(f"{path}: not a dajax inference checkpoint (no {CONFIG_FILE})")
    with open(os.path.join(path, CONFIG_FILE)) as f:
        config = ModelConfig.from_dict(json.load(f))
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    with ocp.StandardCheckpointer() as ckptr:
        params_dir = os.path.join(path, PARAMS_DIR)
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

    def __init__(self, directory: str | os.PathLike, save_every: int, max_to_keep: int = 3):
        import grain

        self._grain = grain
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=save_every, max_to_keep=max_to_keep, create=True
        )
        self.manager = ocp.CheckpointManager(
            os.path.abspath(os.fspath(directory)),
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
