"""Official Depth Anything V1 metric (ZoeDepth) checkpoints -> `ZoeDepthMetric` Flax params.

The official `depth_anything_metric_depth_{indoor,outdoor}.pt` hold the state dict of
`metric_depth/zoedepth`'s `ZoeDepth` (under a "model" key):
- the core, `core.core.{pretrained,depth_head}.*` (`ZoeDepth.core` is a `DepthAnythingCore`
  whose `.core` is `DPT_DINOv2`): mapped by `depth_anything_keys.official_to_flax` onto
  `params['core']`;
- the head: `conv2`, `seed_bin_regressor._net.{0,2}`, `seed_projector._net.{0,2}`,
  `projectors.{i}._net.{0,2}`, `attractors.{i}._net.{0,2}`, `conditional_log_binomial.mlp.{0,2}`
  (all 1x1 Conv2d), plus the constant buffers
  `conditional_log_binomial.log_binomial_transform.{k_idx,K_minus_1}` (checked, not stored).
"""

from __future__ import annotations

import os
import re

import flax
import jax
import numpy as np

from dajax.models import ModelConfig
from dajax.models.zoedepth import ZoeDepthMetric
from dajax.weights import depth_anything_keys as da_keys
from dajax.weights.depth_anything_keys import CheckpointKeyError
from dajax.weights.finite import require_finite
from dajax.weights.torch_pickle import load_state_dict

CORE_PREFIX = "core.core."
LOG_BINOMIAL_BUFFERS = (
    "conditional_log_binomial.log_binomial_transform.k_idx",
    "conditional_log_binomial.log_binomial_transform.K_minus_1",
)
_HEAD_KEY = re.compile(
    r"^(?P<mod>conv2|seed_bin_regressor\._net\.[02]|seed_projector\._net\.[02]"
    r"|projectors\.\d+\._net\.[02]|attractors\.\d+\._net\.[02]"
    r"|conditional_log_binomial\.mlp\.[02])\.(?P<leaf>weight|bias)$"
)


def head_flax_path(official_key: str) -> tuple[str, ...] | None:
    """Flax params path of one official head tensor name, or None if it is not one."""
    m = _HEAD_KEY.match(official_key)
    if m is None:
        return None
    mod = m.group("mod").replace("._net.", ".net.")
    mod = re.sub(r"\.(\d+)(?=\.|$)", r"_\1", mod)
    leaf = "kernel" if m.group("leaf") == "weight" else "bias"
    return (*mod.split("."), leaf)


def head_official_key(path: tuple[str, ...]) -> str:
    """Inverse of `head_flax_path`."""
    *mods, leaf = path
    name = ".".join(re.sub(r"_(\d+)$", r".\1", m) for m in mods)
    name = re.sub(r"(^|\.)net\.", r"\1_net.", name)
    return f"{name}.{'weight' if leaf == 'kernel' else 'bias'}"


def infer_head_hparams(state: dict[str, np.ndarray]) -> dict:
    """`ZoeDepthMetric` head sizes read from tensor shapes (official names).

    Returns:
      dict with n_bins, seed_mlp_dim, bin_embedding_dim, mlp_dim, n_attractors.

    Raises:
      CheckpointKeyError: a tensor needed for the sizes is absent.
    """
    needed = ("seed_bin_regressor._net.0.weight", "seed_bin_regressor._net.2.weight")
    needed += ("seed_projector._net.0.weight", "seed_projector._net.2.weight")
    missing = [k for k in needed if k not in state]
    idx = sorted(
        int(m.group(1))
        for k in state
        if (m := re.match(r"^attractors\.(\d+)\._net\.2\.weight$", k))
    )
    if not idx:
        missing.append("attractors.0._net.2.weight")
    if missing:
        raise CheckpointKeyError(f"not a ZoeDepth metric checkpoint: missing {missing}")
    return dict(
        n_bins=int(state["seed_bin_regressor._net.2.weight"].shape[0]),
        seed_mlp_dim=int(state["seed_bin_regressor._net.0.weight"].shape[0]),
        bin_embedding_dim=int(state["seed_projector._net.2.weight"].shape[0]),
        mlp_dim=int(state["seed_projector._net.0.weight"].shape[0]),
        n_attractors=tuple(int(state[f"attractors.{i}._net.2.weight"].shape[0]) for i in idx),
    )


def zoedepth_to_flax(state: dict[str, np.ndarray], target_shapes: dict) -> dict:
    """Maps an official ZoeDepth state dict onto the `ZoeDepthMetric` params tree.

    Args:
      state: official tensor names -> arrays (PyTorch layouts).
      target_shapes: the model's params tree (arrays or `ShapeDtypeStruct`s).

    Returns:
      Nested dict of numpy arrays in the target's dtypes and Flax layouts.

    Raises:
      CheckpointKeyError: listing every unknown, missing and mis-shaped tensor at once (core
        names as the Depth Anything mapping reports them, head names as in the file).
    """
    core_state = {k[len(CORE_PREFIX) :]: v for k, v in state.items() if k.startswith(CORE_PREFIX)}
    head_targets = {k: v for k, v in target_shapes.items() if k != "core"}
    problems = []
    core = None
    try:
        core = da_keys.official_to_flax(core_state, target_shapes["core"])
    except CheckpointKeyError as e:
        problems.append(f"core ({CORE_PREFIX}*): {e}")

    targets = flax.traverse_util.flatten_dict(head_targets)
    filled, unknown, misshaped = {}, [], []
    for key, value in state.items():
        if key.startswith(CORE_PREFIX):
            continue
        if key in LOG_BINOMIAL_BUFFERS:
            _check_buffer(key, np.asarray(value), target_shapes, problems)
            continue
        path = head_flax_path(key)
        if path is None or path not in targets:
            unknown.append(key)
            continue
        array = np.asarray(value)
        if array.ndim == 4:
            array = array.transpose(2, 3, 1, 0)  # Conv2d [O, I, kh, kw] -> [kh, kw, I, O]
        if da_keys.place_tensor(key, np.shape(value), array, targets[path], misshaped):
            filled[path] = array.astype(targets[path].dtype)
    missing = sorted(head_official_key(p) for p in targets if p not in filled)
    da_keys.raise_key_problems(unknown, missing, misshaped, problems, missing_what="tensors")
    params = flax.traverse_util.unflatten_dict(filled)
    params["core"] = core
    return params


def _check_buffer(key: str, value: np.ndarray, target_shapes: dict, problems: list) -> None:
    n_bins = target_shapes["seed_bin_regressor"]["net_2"]["kernel"].shape[-1]
    expected = np.arange(n_bins) if key.endswith("k_idx") else np.array([n_bins - 1])
    if value.size != expected.size or not np.array_equal(value.reshape(-1), expected):
        problems.append(f"{key}: expected {expected.tolist()}, got {value.reshape(-1).tolist()}")


def flax_to_zoedepth(params: dict) -> dict[str, np.ndarray]:
    """Inverse of `zoedepth_to_flax`: Flax params -> official names and PyTorch layouts
    (without the constant log-binomial buffers)."""
    out = {CORE_PREFIX + k: v for k, v in da_keys.flax_to_official(params["core"]).items()}
    head = {k: v for k, v in params.items() if k != "core"}
    for path, value in flax.traverse_util.flatten_dict(head).items():
        value = np.asarray(value)
        out[head_official_key(path)] = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value
    return out


def load_zoedepth_metric(
    path: str | os.PathLike,
    encoder: str = "vitl",
    max_depth: float = 10.0,
    *,
    min_depth: float = 1e-3,
    min_temp: float = 0.0212,
    max_temp: float = 50.0,
    config: ModelConfig | None = None,
) -> tuple[ZoeDepthMetric, dict]:
    """Loads an official Depth Anything V1 metric checkpoint (`.pt`) into Flax.

    Args:
      path: `depth_anything_metric_depth_{indoor,outdoor}.pt` (or any `torch.save` of a
        `ZoeDepth` state dict, optionally wrapped under "model").
      encoder: the core's size ('vitl' for the released files).
      max_depth: metres, 10 (NYU, indoor) or 80 (KITTI, outdoor); kept on the module for
        evaluation (the softplus head does not clip).
      min_depth, min_temp, max_temp: the config values (`config_zoedepth.json`).
      config: the core's `ModelConfig` (overrides `encoder`; e.g. tiny test models).

    Returns:
      (module, params): `module.apply({'params': params}, x)` gives metric depth in metres.

    Raises:
      CheckpointKeyError: naming the file and every missing / unknown / mis-shaped tensor.
    """
    path = os.fspath(path)
    state = load_state_dict(path)
    require_finite(state.items(), path)
    if config is None:
        config = ModelConfig.from_variant(encoder, version="v1")
    try:
        hparams = infer_head_hparams(state)
        module = ZoeDepthMetric(
            config,
            min_depth=min_depth,
            max_depth=max_depth,
            min_temp=min_temp,
            max_temp=max_temp,
            **hparams,
        )
        params = zoedepth_to_flax(state, zoedepth_param_shapes(module))
    except CheckpointKeyError as e:
        raise CheckpointKeyError(f"{path}: {e}") from None
    return module, params


def zoedepth_param_shapes(module: ZoeDepthMetric) -> dict:
    """Shape/dtype tree of the params, without allocating them."""
    x = jax.ShapeDtypeStruct((1, 28, 28, 3), np.float32)
    return jax.eval_shape(lambda r, i: module.init(r, i), jax.random.key(0), x)["params"]
