"""Load Depth Anything and DINOv2 weights from any supported file into Flax params.

Supported sources (SPEC §3): official V1/V2 `.pth` (relative and V2 metric), DINOv2 hub `.pth`
(encoder only), Hugging Face `model.safetensors` (with its `config.json` when present), and
dajax inference checkpoints (Orbax directories). `.pth` files are read by a restricted
unpickler that never executes code (`dajax.weights.torch_pickle`).

The architecture is inferred from tensor names and shapes. What shapes cannot tell — V1 vs V2
(identical keys for ViT-S/B/L) and relative vs metric — comes from explicit arguments, then the
file name (`depth_anything_v2_*`, `depth_anything_vit?14`, `*metric_hypersim*`,
`*metric_vkitti*`), then a Hugging Face `config.json`; otherwise a clear error says which
argument to pass.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from dajax import checkpoints
from dajax.models import DepthAnything, ModelConfig, param_shapes, variants
from dajax.weights import depth_anything_keys as keys
from dajax.weights.safetensors_io import load_safetensors
from dajax.weights.torch_pickle import load_state_dict

HEAD_DIM = 64  # every released DINOv2 uses 64-wide attention heads


def read_tensors(path: str) -> dict[str, np.ndarray]:
    """Tensor name -> numpy array from a `.pth`/`.pt`/`.bin` or `.safetensors` file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.endswith(".safetensors"):
        return load_safetensors(path)
    if path.endswith((".pth", ".pt", ".bin", ".ckpt")):
        return load_state_dict(path)
    raise ValueError(
        f"{path}: unknown checkpoint type; expected .pth/.pt (PyTorch), .safetensors, "
        "or a dajax checkpoint directory"
    )


def load_depth_anything(
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    version: str | None = None,
    head: str | None = None,
    max_depth: float | None = None,
    pos_embed: str = "official",
) -> tuple[ModelConfig, dict]:
    """Loads a full Depth Anything model (encoder + DPT head).

    Args:
      path: official `.pth`, Hugging Face `.safetensors`, or a dajax checkpoint directory.
      arch: 'vits' | 'vitb' | 'vitl' | 'vitg', checked against the tensors when given.
      version: 'v1' | 'v2'; required when neither the file name nor a config.json tells.
      head: 'relative' | 'metric'; default from the file name / config.json, else relative.
      max_depth: metres, for metric heads (default from the file name / config.json).
      pos_embed: 'official' (DINOv2 rule, default) or 'hf' (transformers' rule).

    Returns:
      (config, params) with params a nested dict of float32 numpy arrays (or, for dajax
      directories, the saved arrays).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        if not checkpoints.is_inference_checkpoint(path):
            raise FileNotFoundError(f"{path}: directory is not a dajax checkpoint")
        return checkpoints.load_inference_params(path)
    name = os.path.basename(path).lower()
    if "metric_depth_indoor" in name or "metric_depth_outdoor" in name:
        raise ValueError(
            f"{path}: V1 metric checkpoints use a ZoeDepth head; load them with "
            "dajax.inference.ZoeDepthEstimator.from_pretrained (or load_estimator)"
        )
    state = keys.to_official(read_tensors(path))
    if not any(k.startswith("depth_head.") for k in state):
        raise ValueError(
            f"{path}: encoder-only (DINOv2) checkpoint; load it with load_dinov2_encoder()"
        )
    hf = _hf_config(path)
    config = infer_config(
        state,
        name,
        hf,
        arch=arch,
        version=version,
        head=head,
        max_depth=max_depth,
        pos_embed=pos_embed,
    )
    try:
        params = keys.official_to_flax(state, param_shapes(DepthAnything(config)))
    except keys.CheckpointKeyError as e:
        raise keys.CheckpointKeyError(f"{path}: {e}") from None
    return config, params


def load_dinov2_encoder(path: str | os.PathLike, config: ModelConfig) -> dict:
    """Loads DINOv2 encoder weights into the `pretrained` subtree of `config`'s model.

    Accepts DINOv2 hub `.pth`, Hugging Face DINOv2 safetensors, or any full Depth Anything
    checkpoint (its head is ignored). This is how teachers and students are initialised.

    Returns:
      The encoder params tree (float32 numpy), to be placed at `params['pretrained']`.
    """
    path = os.fspath(path)
    state = keys.to_official(read_tensors(path))
    encoder_state = {k: v for k, v in state.items() if k.startswith("pretrained.")}
    target = param_shapes(DepthAnything(config))["pretrained"]
    try:
        return keys.official_to_flax(encoder_state, target, prefix="pretrained.")
    except keys.CheckpointKeyError as e:
        raise keys.CheckpointKeyError(
            f"{path}: does not fit encoder {config.encoder} (dim {config.dim}, depth "
            f"{config.depth}): {e}"
        ) from None


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
    """The `ModelConfig` of an official-layout state dict (see module docstring for rules)."""
    dim = state["pretrained.cls_token"].shape[-1]
    depth = 1 + max(
        int(m.group(1)) for k in state if (m := re.match(r"pretrained\.blocks\.(\d+)\.", k))
    )
    ffn = "swiglu" if "pretrained.blocks.0.mlp.w12.weight" in state else "mlp"
    encoder = next(
        (n for n, e in variants.ENCODERS.items() if (e.dim, e.depth, e.ffn) == (dim, depth, ffn)),
        "custom",
    )
    if arch is not None and arch != encoder:
        raise ValueError(
            f"arch={arch!r} was given but the tensors are {encoder} (dim {dim}, depth {depth})"
        )
    version = (
        version
        or _version_from_name(file_name, encoder)
        or _version_from_hf(hf_config, encoder, depth)
    )
    if version is None:
        raise ValueError(
            f"{file_name}: cannot tell Depth Anything V1 from V2 (same tensor names); "
            "pass version='v1' or version='v2' (CLI: --version v1|v2)"
        )
    layers = _hf_layers(hf_config) or (
        variants.head_layers(encoder, version)
        if encoder != "custom"
        else tuple(range(depth - 4, depth))
    )
    head, max_depth = _head_kind(file_name, hf_config, head, max_depth)
    hidden = state["pretrained.blocks.0.mlp.fc1.weight"].shape[0] if ffn == "mlp" else 4 * dim
    return ModelConfig(
        encoder=encoder,
        version=version,
        dim=dim,
        depth=depth,
        heads=max(1, dim // HEAD_DIM),
        ffn=ffn,
        mlp_ratio=hidden / dim,
        layers=layers,
        features=state["depth_head.scratch.layer1_rn.weight"].shape[0],
        out_channels=tuple(state[f"depth_head.projects.{i}.weight"].shape[0] for i in range(4)),
        head=head,
        max_depth=max_depth,
        pos_embed=pos_embed,
        pretrain_grid=int(round((state["pretrained.pos_embed"].shape[1] - 1) ** 0.5)),
    )


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
        raise ValueError(f"{name}: metric model without a known max depth; pass max_depth (metres)")
    return head, float(max_depth)


def _hf_config(path: str) -> dict | None:
    """The `config.json` beside a safetensors file, if any."""
    cfg = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if not path.endswith(".safetensors") or not os.path.isfile(cfg):
        return None
    with open(cfg) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg}: invalid JSON ({e})") from None
