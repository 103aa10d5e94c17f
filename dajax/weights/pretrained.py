"""Load Depth Anything and DINOv2 weights from any supported file into Flax params.

Supported sources: official V1/V2 `.pth` (relative and V2 metric), DINOv2 hub `.pth`
(encoder only), Hugging Face `model.safetensors` (with its `config.json` when present), dajax
inference checkpoints (Orbax directories) and training runs' workdirs (their `export/`, else
the newest step's params). `.pth` files are read by a restricted unpickler that never executes
code (`dajax.weights.torch_pickle`).

The architecture is inferred from tensor names and shapes. What shapes cannot tell — V1 vs V2
(identical keys for ViT-S/B/L) and relative vs metric — comes from explicit arguments, then the
file name (`depth_anything_v2_*`, `depth_anything_vit?14`, `*metric_hypersim*`,
`*metric_vkitti*`), then a Hugging Face `config.json`; otherwise a clear error says which
argument to pass.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

import flax
import numpy as np

from dajax import checkpoints, paths
from dajax.models import DepthAnything, ModelConfig, param_shapes, variants
from dajax.weights import depth_anything_keys as keys
from dajax.weights.finite import require_finite
from dajax.weights.hub import resolve_weights
from dajax.weights.json_files import read_json_object
from dajax.weights.safetensors_io import load_safetensors, load_safetensors_index
from dajax.weights.torch_pickle import load_state_dict

HEAD_DIM = 64  # every released DINOv2 uses 64-wide attention heads
SHARD_INDEX = ".safetensors.index.json"
# What transformers' `save_pretrained` writes beside config.json, in the order we prefer.
HF_WEIGHT_FILES = ("model.safetensors", "model" + SHARD_INDEX, "pytorch_model.bin")


def read_tensors(path: str) -> dict[str, np.ndarray]:
    """Tensor name -> numpy array from a `.pth`/`.pt`/`.bin`, `.safetensors` or sharded
    safetensors index file; refuses tensors holding NaN or inf (`finite.require_finite`)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.endswith(".safetensors"):
        tensors = load_safetensors(path)
    elif path.endswith(SHARD_INDEX):
        tensors = load_safetensors_index(path)
    elif path.endswith((".pth", ".pt", ".bin", ".ckpt")):
        tensors = load_state_dict(path)
    else:
        raise ValueError(
            f"{path}: unknown checkpoint type; expected .pth/.pt (PyTorch), .safetensors, "
            "or a dajax or transformers checkpoint directory"
        )
    require_finite(tensors.items(), path)
    return tensors


def hf_folder_weights(folder: str) -> str | None:
    """The weights file of a transformers `save_pretrained` folder (config.json beside
    model.safetensors, a sharded index, or pytorch_model.bin), else None."""
    if not os.path.isfile(os.path.join(folder, "config.json")):
        return None
    found = (os.path.join(folder, n) for n in HF_WEIGHT_FILES)
    return next((f for f in found if os.path.isfile(f)), None)


def load_depth_anything(
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    version: str | None = None,
    head: str | None = None,
    max_depth: float | None = None,
    pos_embed: str | None = None,
) -> tuple[ModelConfig, dict]:
    """Loads a full Depth Anything model (encoder + DPT head).

    Args:
      path: official `.pth`, Hugging Face `.safetensors`, a transformers `save_pretrained`
        folder, a dajax checkpoint directory, a training run's workdir (a folder with
        `checkpoints/`: its `export/` when present, else the params of its newest saved step,
        `dajax.checkpoints.load_run`), or `hf:OWNER/REPO/FILE` (`dajax.weights.hub`).
      arch: 'vits' | 'vitb' | 'vitl' | 'vitg', checked against the tensors when given.
      version: 'v1' | 'v2'; required when neither the file name nor a config.json tells.
      head: 'relative' | 'metric'; default from the file name / config.json, else relative.
      max_depth: metres, for metric heads (default from the file name / config.json).
      pos_embed: 'official' (DINOv2 rule) or 'hf' (transformers' rule); default: a dajax
        directory's saved rule, else 'official'.

    For a dajax directory or a training run, `arch`, `version`, `head` and `max_depth` must
    agree with the saved config when given (ValueError otherwise); `pos_embed` replaces the
    saved rule. The options' command-line spelling is `dajax.weights.options`.

    Returns:
      (config, params) with params a nested dict of float32 numpy arrays (or, for dajax
      directories and training runs, the saved arrays as `jax.Array`s).

    Raises:
      ValueError (and subclasses) or OSError with one line naming the file.
    """
    path = resolve_weights(os.fspath(path))
    asked = dict(encoder=arch, version=version, head=head, max_depth=max_depth)
    if checkpoints.is_run(path):
        exported = paths.resolve(path) / checkpoints.EXPORT_DIR
        if checkpoints.is_inference_checkpoint(exported):
            return _load_dajax_directory(str(exported), asked, pos_embed)
        config, params, _ = checkpoints.load_run(path)
        return _as_asked(path, config, params, asked, pos_embed)
    if os.path.isdir(path) or paths.is_remote(path):  # a bucket URL: a dajax checkpoint
        weights_file = hf_folder_weights(path)
        if weights_file is None:
            return _load_dajax_directory(path, asked, pos_embed)
        path = weights_file
    name = os.path.basename(path).lower()
    if "metric_depth_indoor" in name or "metric_depth_outdoor" in name:
        raise ValueError(
            f"{path}: V1 metric checkpoints use a ZoeDepth head; load them with "
            "dajax.inference.ZoeDepthEstimator.from_pretrained (or load_estimator)"
        )
    try:
        state = keys.to_official(read_tensors(path))
        if not any(k.startswith("depth_head.") for k in state):
            raise ValueError("encoder-only (DINOv2) checkpoint; load it with load_dinov2_encoder()")
        config = infer_config(
            state, name, _hf_config(path), arch=arch, version=version, head=head,
            max_depth=max_depth, pos_embed=pos_embed or "official",
        )  # fmt: skip
        params = keys.official_to_flax(state, _param_shapes(config))
    except (keys.CheckpointKeyError, _ConfigError) as e:
        raise type(e)(f"{path}: {e}") from None
    return config, params


class _ConfigError(ValueError):
    """The tensors or options do not describe a model (prefixed with the file by the caller)."""


def _param_shapes(config: ModelConfig) -> dict:
    try:
        return param_shapes(DepthAnything(config))
    except (ValueError, TypeError, ZeroDivisionError) as e:
        raise _ConfigError(f"the tensors describe a model that cannot be built ({e})") from None


def _check_model_config(folder: str) -> None:
    """Reads a local dajax folder's model_config.json (bounded) and validates every field
    before any model is built; ValueError naming the file and the field otherwise."""
    config_file = os.path.join(folder, checkpoints.CONFIG_FILE)
    try:
        ModelConfig.from_dict(read_json_object(config_file))
    except ValueError as e:
        message = str(e)
        raise ValueError(
            message if message.startswith(config_file) else f"{config_file}: {message}"
        ) from None


def _load_dajax_directory(path: str, asked: dict, pos_embed: str | None):
    if not checkpoints.is_inference_checkpoint(path):
        raise FileNotFoundError(
            f"{path}: folder is neither a dajax checkpoint ({checkpoints.CONFIG_FILE}) nor a "
            f"transformers save_pretrained folder (config.json + {HF_WEIGHT_FILES[0]})"
        )
    if not paths.is_remote(path):
        _check_model_config(path)
    if not (paths.resolve(path) / checkpoints.PARAMS_DIR).exists():
        raise FileNotFoundError(
            f"{path}: has {checkpoints.CONFIG_FILE} but no {checkpoints.PARAMS_DIR}/; pass a "
            "converted folder, or a training run's workdir (the folder holding checkpoints/)"
        )
    try:
        config, params = checkpoints.load_inference_params(path)
    except (ValueError, TypeError, KeyError) as e:  # bad model_config.json, mismatched params
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise ValueError(
            f"{path}: unreadable dajax checkpoint ({type(e).__name__}: {first})"
        ) from None
    return _as_asked(path, config, params, asked, pos_embed)


def _as_asked(path, config: ModelConfig, params: dict, asked: dict, pos_embed: str | None):
    """A saved (config, params) after checking them against the caller's options: `asked`
    (ModelConfig field -> value or None) must agree, `pos_embed` replaces the saved rule, and
    every param must be finite. ValueError with one line naming `path` otherwise."""
    clash = [
        f"{'arch' if k == 'encoder' else k}={v!r} but it holds {getattr(config, k)!r}"
        for k, v in asked.items()
        if v is not None and v != getattr(config, k)
    ]
    if clash:
        raise ValueError(
            f"{path}: the saved model contradicts the options: {'; '.join(clash)} (drop the "
            "option; a converted file can be converted again with it)"
        )
    if pos_embed is not None:
        config = dataclasses.replace(config, pos_embed=pos_embed)
    named = flax.traverse_util.flatten_dict(params, sep="/").items()
    require_finite(named, path)
    return config, params


def load_dinov2_encoder(path: str | os.PathLike, config: ModelConfig) -> dict:
    """Loads DINOv2 encoder weights into the `pretrained` subtree of `config`'s model.

    Accepts DINOv2 hub `.pth`, Hugging Face DINOv2 safetensors, or any full Depth Anything
    checkpoint (its head is ignored). This is how teachers and students are initialised.

    Returns:
      The encoder params tree (float32 numpy), to be placed at `params['pretrained']`.
    """
    path = resolve_weights(os.fspath(path))
    target = param_shapes(DepthAnything(config))["pretrained"]
    try:
        state = keys.to_official(read_tensors(path))
        encoder_state = {k: v for k, v in state.items() if k.startswith("pretrained.")}
        return keys.official_to_flax(encoder_state, target, prefix="pretrained.")
    except keys.CheckpointKeyError as e:
        raise keys.CheckpointKeyError(
            f"{path}: does not fit encoder {config.encoder} (dim {config.dim}, depth "
            f"{config.depth}): {e}"
        ) from None


# Tensors whose shapes `infer_config` reads, with the rank each must have.
SHAPE_TENSORS = {
    "pretrained.cls_token": 3,
    "pretrained.pos_embed": 3,
    "depth_head.scratch.layer1_rn.weight": 4,
    **{f"depth_head.projects.{i}.weight": 4 for i in range(4)},
}


def _check_shape_tensors(state: dict[str, np.ndarray]) -> tuple[int, str]:
    """(depth, ffn) after checking every tensor `infer_config` reads is there with its rank;
    one _ConfigError lists all that are missing or mis-ranked."""
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"pretrained\.blocks\.(\d+)\.", k))}
    ffn = "swiglu" if "pretrained.blocks.0.mlp.w12.weight" in state else "mlp"
    needed = dict(SHAPE_TENSORS)
    needed[f"pretrained.blocks.0.mlp.{'w12' if ffn == 'swiglu' else 'fc1'}.weight"] = 2
    missing = [k for k in needed if k not in state]
    if not blocks:
        missing.append("pretrained.blocks.<i>.* (no encoder blocks at all)")
    elif blocks != set(range(len(blocks))):
        gaps = sorted(set(range(max(blocks) + 1)) - blocks)[:5] if max(blocks) < 1000 else "many"
        raise _ConfigError(f"encoder blocks are not numbered 0..{len(blocks) - 1} (missing {gaps})")
    ranks = [
        f"{k} {state[k].shape}" for k, r in needed.items() if k in state and state[k].ndim != r
    ]
    if missing or ranks:
        raise _ConfigError(
            "not a complete Depth Anything checkpoint: "
            + "; ".join(
                ([f"missing {missing}"] if missing else [])
                + ([f"wrong rank {ranks}"] if ranks else [])
            )
        )
    tokens = state["pretrained.pos_embed"].shape[1] - 1
    if tokens < 1 or round(tokens**0.5) ** 2 != tokens:
        raise _ConfigError(f"pretrained.pos_embed has {tokens + 1} tokens, not 1 + a square grid")
    return 1 + max(blocks), ffn


def infer_config(
    state: dict[str, np.ndarray],
    file_name: str,
    hf_config: dict | None,
    *,
    arch: str | None,
    version: str | None,
    head: str | None,
    max_depth: float | None,
    pos_embed: str,
) -> ModelConfig:
    """The `ModelConfig` of an official-layout state dict (see module docstring for rules).

    Raises ValueError (without the file name: callers add it) when tensors are missing or
    mis-ranked, or what the tensors, options and file name say disagrees.
    """
    depth, ffn = _check_shape_tensors(state)
    hf_layers = _hf_layers(hf_config)
    if hf_layers is not None and max(hf_layers) >= depth:
        raise _ConfigError(
            f"config.json backbone_config.out_indices {[i + 1 for i in hf_layers]} name blocks "
            f"past the tensors' {depth}"
        )
    dim = state["pretrained.cls_token"].shape[-1]
    encoder = next(
        (n for n, e in variants.ENCODERS.items() if (e.dim, e.depth, e.ffn) == (dim, depth, ffn)),
        "custom",
    )
    if arch is not None and arch != encoder:
        raise _ConfigError(
            f"arch={arch!r} was given but the tensors are {encoder} (dim {dim}, depth {depth})"
        )
    version = (
        version
        or _version_from_name(file_name, encoder)
        or _version_from_hf(hf_config, encoder, depth)
    )
    if version is None:
        raise _ConfigError(
            "cannot tell Depth Anything V1 from V2 (same tensor names); "
            "pass version='v1' or version='v2' (CLI: --version v1|v2)"
        )
    layers = _hf_layers(hf_config) or (
        variants.head_layers(encoder, version)
        if encoder != "custom"
        else tuple(range(depth - 4, depth))
    )
    head, max_depth = _head_kind(file_name, hf_config, head, max_depth)
    hidden = state["pretrained.blocks.0.mlp.fc1.weight"].shape[0] if ffn == "mlp" else 4 * dim
    try:
        return ModelConfig(
            encoder=encoder,
            version=version,
            dim=dim,
            depth=depth,
            heads=max(1, dim // HEAD_DIM),
            ffn=ffn,
            mlp_ratio=hidden / max(dim, 1),
            layers=layers,
            features=state["depth_head.scratch.layer1_rn.weight"].shape[0],
            out_channels=tuple(state[f"depth_head.projects.{i}.weight"].shape[0] for i in range(4)),
            head=head,
            max_depth=max_depth,
            pos_embed=pos_embed,
            pretrain_grid=round((state["pretrained.pos_embed"].shape[1] - 1) ** 0.5),
        )
    except ValueError as e:
        raise _ConfigError(str(e)) from None


def _version_from_name(name: str, encoder: str) -> str | None:
    if encoder == "vitg" or "v2" in name:
        return "v2"
    if re.search(r"depth_anything_vit[sbl]14", name):
        return "v1"
    return None


def _version_from_hf(hf: dict | None, encoder: str, depth: int) -> str | None:
    layers = _hf_layers(hf)
    if layers is None:
        return None
    if layers == tuple(range(depth - 4, depth)):
        return "v1"
    return "v2"


def _hf_layers(hf: dict | None) -> tuple[int, ...] | None:
    """Block indices from a Hugging Face config (its out_indices count the embeddings as 0)."""
    if not hf or "out_indices" not in hf.get("backbone_config", {}):
        return None
    return tuple(int(i) - 1 for i in hf["backbone_config"]["out_indices"])


def _head_kind(name, hf, head, max_depth) -> tuple[str, float]:
    if head is None:
        metric = "metric" in name or (hf or {}).get("depth_estimation_type") == "metric"
        head = "metric" if metric else "relative"
    if head == "relative":
        return head, 0.0
    if max_depth is None:
        by_name = [d for k, d in variants.V2_METRIC_MAX_DEPTH.items() if k in name]
        max_depth = by_name[0] if by_name else (hf or {}).get("max_depth")
    if not max_depth:
        raise _ConfigError("metric model without a known max depth; pass max_depth (metres)")
    return head, float(max_depth)


def _hf_config(path: str) -> dict | None:
    """The `config.json` beside a transformers weights file, if any (read bounded), with the
    fields dajax reads checked: `backbone_config.out_indices` 4 block numbers >= 1 (their
    upper bound is the tensors' depth), `max_depth` null or a finite number >= 0."""
    cfg = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    hf_file = path.endswith((".safetensors", SHARD_INDEX)) or path.endswith("pytorch_model.bin")
    if not hf_file or not os.path.isfile(cfg):
        return None
    hf = read_json_object(cfg)
    backbone = hf.get("backbone_config", {})
    if not isinstance(backbone, dict):
        raise ValueError(f"{cfg}: backbone_config is not an object")
    indices = backbone.get("out_indices")
    if indices is not None and not (
        isinstance(indices, list) and len(indices) == 4 and all(_is_int(i, 1) for i in indices)
    ):
        raise ValueError(f"{cfg}: backbone_config.out_indices is not 4 block numbers >= 1")
    max_depth = hf.get("max_depth")
    if max_depth is not None and not (
        isinstance(max_depth, int | float)
        and not isinstance(max_depth, bool)
        and math.isfinite(max_depth)
        and max_depth >= 0
    ):
        raise ValueError(f"{cfg}: max_depth is not a finite number >= 0 (metres)")
    return hf


def _is_int(value, lowest: int) -> bool:
    return type(value) is int and value >= lowest
