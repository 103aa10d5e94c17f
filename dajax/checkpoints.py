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

CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"


def save_inference_params(path: str | os.PathLike, params: dict, config: ModelConfig) -> None:
    """Writes params + architecture to a new directory `path` (must not exist)."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path):
        raise FileExistsError(f"{path}: already exists; choose a new output directory")
    os.makedirs(path)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(path, PARAMS_DIR), params)
    with open(os.path.join(path, CONFIG_FILE), "w") as f:
        f.write(config.to_json())


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
