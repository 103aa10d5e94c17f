"""Tensor-name layouts of Depth Anything / DINOv2 checkpoints, and conversion to Flax params.

Three layouts exist:
- official Depth Anything `.pth` (`pretrained.*` encoder, `depth_head.*` DPT head);
- DINOv2 hub `.pth` (the encoder keys without `pretrained.`; chunked `blocks.c.i.` accepted);
- Hugging Face (`backbone.*`, `neck.*`, `head.*`; split q/k/v; fusion layer 0 = refinenet4),
  in both the hub file names and transformers 5.x in-memory names (`q_proj`, `gate_proj`).

Everything is first brought to the official layout (`to_official`), then mapped onto the Flax
tree by `official_to_flax`, which validates names and shapes against the model and reports
every problem in one error.
"""

from __future__ import annotations

import re

import flax
import ml_dtypes
import numpy as np

# refinenet4 never receives a skip input, so its resConfUnit1 is stored but unused.
UNUSED_OFFICIAL_KEYS = re.compile(r"^depth_head\.scratch\.refinenet4\.resConfUnit1\.")
# ConvTranspose2d weights are [in, out, kh, kw]; every other 4-D weight is Conv2d [out, in, ...].
_CONV_TRANSPOSE = re.compile(r"^depth_head\.resize_layers\.[01]\.weight$")

_HF_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^backbone\.", ""),
    (r"^embeddings\.cls_token$", "pretrained.cls_token"),
    (r"^embeddings\.mask_token$", "pretrained.mask_token"),
    (r"^embeddings\.position_embeddings$", "pretrained.pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "pretrained.patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.", r"pretrained.blocks.\1."),
    (r"^layernorm\.", "pretrained.norm."),
    (r"\.attention\.(output\.dense|o_proj)\.", ".attn.proj."),
    (r"\.layer_scale(\d)\.lambda1$", r".ls\1.gamma"),
    (r"\.mlp\.(weights_in)\.", ".mlp.w12."),
    (r"\.mlp\.(weights_out|down_proj)\.", ".mlp.w3."),
    (r"^neck\.reassemble_stage\.layers\.(\d)\.projection\.", r"depth_head.projects.\1."),
    (r"^neck\.reassemble_stage\.layers\.(\d)\.resize\.", r"depth_head.resize_layers.\1."),
    (r"^head\.conv1\.", "depth_head.scratch.output_conv1."),
    (r"^head\.conv2\.", "depth_head.scratch.output_conv2.0."),
    (r"^head\.conv3\.", "depth_head.scratch.output_conv2.2."),
)
_HF_QKV = re.compile(r"^(.*?)\.attention\.(?:attention\.)?(query|key|value|q_proj|k_proj|v_proj)\.")
_HF_SWIGLU_SPLIT = re.compile(r"^(.*)\.mlp\.(gate_proj|up_proj)\.")
_HF_NECK_CONV = re.compile(r"^neck\.convs\.(\d)\.")
_HF_FUSION = re.compile(r"^neck\.fusion_stage\.layers\.(\d)\.")


class CheckpointKeyError(ValueError):
    """Tensor names or shapes in a checkpoint do not fit the model."""


def detect_layout(keys) -> str:
    """'official' | 'dinov2' | 'hf' for a set of tensor names."""
    keys = set(keys)
    if any(k.startswith(("backbone.embeddings.", "embeddings.patch_embeddings.")) for k in keys):
        return "hf"
    if any(k.startswith("pretrained.") for k in keys):
        return "official"
    if "cls_token" in keys or any(k.startswith("blocks.") for k in keys):
        return "dinov2"
    sample = sorted(keys)[:5]
    raise CheckpointKeyError(
        f"not a Depth Anything, DINOv2 or Hugging Face depth checkpoint (first keys: {sample})"
    )


def to_official(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Renames any supported layout to the official Depth Anything names."""
    layout = detect_layout(state)
    if layout == "official":
        return dict(state)
    if layout == "dinov2":
        return {"pretrained." + _unchunk(k): v for k, v in state.items()}
    return _hf_to_official(state)


def _unchunk(key: str) -> str:
    """`blocks.{chunk}.{i}.` (FSDP block chunks, global i) -> `blocks.{i}.`."""
    return re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", key)


def _hf_to_official(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    fused: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        key = re.sub(r"^backbone\.", "", key)
        if m := _HF_QKV.match(key):
            part = m.group(2)[0]  # q / k / v
            fused_key = _rename_hf(f"{m.group(1)}.attn.qkv.{key.rsplit('.', 1)[1]}")
            fused.setdefault(fused_key, {})[part] = value
            continue
        if m := _HF_SWIGLU_SPLIT.match(key):
            part = "g" if m.group(2) == "gate_proj" else "u"
            fused_key = _rename_hf(f"{m.group(1)}.mlp.w12.{key.rsplit('.', 1)[1]}")
            fused.setdefault(fused_key, {})[part] = value
            continue
        if m := _HF_NECK_CONV.match(key):
            key = f"depth_head.scratch.layer{int(m.group(1)) + 1}_rn." + key[m.end() :]
        elif m := _HF_FUSION.match(key):
            rest = key[m.end() :]
            rest = re.sub(r"^projection\.", "out_conv.", rest)
            rest = re.sub(r"^residual_layer(\d)\.convolution(\d)\.", r"resConfUnit\1.conv\2.", rest)
            key = f"depth_head.scratch.refinenet{4 - int(m.group(1))}." + rest
        out[_rename_hf(key)] = value
    for key, parts in fused.items():
        order = "qkv" if "qkv" in key else "gu"
        missing = [p for p in order if p not in parts]
        if missing:
            raise CheckpointKeyError(f"{key}: incomplete split tensors, missing {missing}")
        out[key] = np.concatenate([parts[p] for p in order], axis=0)
    return out


def _rename_hf(key: str) -> str:
    for pattern, repl in _HF_RENAMES:
        key = re.sub(pattern, repl, key)
    return key


def _flax_path(official_key: str) -> tuple[str, ...]:
    key = official_key.replace("depth_head.scratch.", "depth_head.")
    key = re.sub(r"\.(\d+)(?=\.|$)", r"_\1", key)
    return tuple(key.split("."))


def _resolve_leaf(path: tuple[str, ...], targets: dict) -> tuple[str, ...] | None:
    """The target path for a tensor; PyTorch's `weight` is Flax's `kernel` or `scale`."""
    candidates = [path]
    if path[-1] == "weight":
        candidates = [path[:-1] + ("kernel",), path[:-1] + ("scale",)]
    return next((p for p in candidates if p in targets), None)


def _to_flax_layout(official_key: str, value: np.ndarray) -> np.ndarray:
    if value.ndim == 4:
        if _CONV_TRANSPOSE.match(official_key):
            return value.transpose(2, 3, 0, 1)
        return value.transpose(2, 3, 1, 0)
    if value.ndim == 2 and official_key.endswith(".weight"):
        return value.T
    return value


def official_to_flax(
    state: dict[str, np.ndarray], target_shapes: dict, *, prefix: str = ""
) -> dict:
    """Maps an official-layout state dict onto a Flax params tree.

    Args:
      state: official tensor names -> arrays (PyTorch layouts).
      target_shapes: the model's params tree of arrays or `ShapeDtypeStruct`s (e.g. from
        `param_shapes`), restricted to the subtree to fill when `prefix` is given.
      prefix: official-name prefix to strip first (e.g. 'pretrained.' to fill the encoder only).

    Returns:
      Nested dict of numpy arrays in the target's dtypes and Flax layouts.

    Raises:
      CheckpointKeyError: listing every unknown, missing and mis-shaped tensor at once.
    """
    targets = flax.traverse_util.flatten_dict(target_shapes)
    filled, unknown, misshaped = {}, [], []
    for key, value in state.items():
        if UNUSED_OFFICIAL_KEYS.match(key):
            continue
        path = (
            _resolve_leaf(_flax_path(key[len(prefix) :]), targets)
            if key.startswith(prefix)
            else None
        )
        if path is None:
            unknown.append(key)
            continue
        array = _to_flax_layout(key, np.asarray(value))
        if place_tensor(key, np.shape(value), array, targets[path], misshaped):
            filled[path] = array.astype(targets[path].dtype)
    missing = sorted("/".join(p) for p in targets if p not in filled)
    raise_key_problems(unknown, missing, misshaped)
    return flax.traverse_util.unflatten_dict(filled)


def place_tensor(key: str, checkpoint_shape, array: np.ndarray, target, misshaped: list) -> bool:
    """Whether `array` (the tensor `key`, already in Flax layout) has the target's shape, and
    floating-point values where the target is floating-point (integers or booleans would be
    cast silently); otherwise notes why in `misshaped`."""
    if array.shape != tuple(target.shape):
        misshaped.append(
            f"{key}: checkpoint {tuple(checkpoint_shape)} -> expected {tuple(target.shape)} "
            "(Flax layout)"
        )
        return False
    if _is_float(np.dtype(target.dtype)) and not _is_float(array.dtype):
        misshaped.append(f"{key}: {array.dtype} values where the model has floats")
        return False
    return True


def _is_float(dtype: np.dtype) -> bool:
    """float16/32/64 or bfloat16 (whose numpy kind is 'V')."""
    return dtype.kind == "f" or dtype == ml_dtypes.bfloat16


def raise_key_problems(unknown, missing, misshaped, problems=(), missing_what="parameters"):
    """Raises one `CheckpointKeyError` listing unknown / missing / mis-shaped tensors (and any
    earlier `problems`); does nothing when all are empty."""
    problems = list(problems)
    if unknown:
        problems.append(f"unknown tensors: {sorted(unknown)}")
    if missing:
        problems.append(f"missing {missing_what}: {missing}")
    if misshaped:
        problems.append(f"mis-shaped or non-float tensors: {misshaped}")
    if problems:
        raise CheckpointKeyError("; ".join(problems))


def flax_to_official(params: dict) -> dict[str, np.ndarray]:
    """Inverse of `official_to_flax`: Flax params -> official names and PyTorch layouts."""
    out = {}
    for path, value in flax.traverse_util.flatten_dict(params).items():
        *mods, leaf = path
        names = []
        for m in mods:
            names.extend(re.sub(r"_(\d+)$", r".\1", m).split("."))
        if names[0] == "depth_head" and names[1] not in ("projects", "resize_layers"):
            names.insert(1, "scratch")
        key = ".".join(names)
        value = np.asarray(value)
        if leaf in ("kernel", "scale"):
            key += ".weight"
            if value.ndim == 4 and _CONV_TRANSPOSE.match(key):
                value = value.transpose(2, 3, 0, 1)
            elif value.ndim == 4:
                value = value.transpose(3, 2, 0, 1)
            elif value.ndim == 2:
                value = value.T
        else:
            key += "." + leaf
        out[key] = value
    return out
