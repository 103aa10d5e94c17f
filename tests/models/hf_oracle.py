"""Tiny `transformers` Depth Anything / DINOv2 models with random weights: the test oracle."""

from __future__ import annotations

import numpy as np
import torch
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

from dajax.models import ModelConfig

TINY_DIM = 128  # head_dim 64 like every released DINOv2, so heads = dim / 64 is inferable
TINY_DEPTH = 4


def tiny_depth_anything(
    *,
    swiglu: bool = False,
    metric: bool = False,
    max_depth: int = 20,
    seed: int = 0,
    depth: int = TINY_DEPTH,
    out_indices=(1, 2, 3, 4),
) -> DepthAnythingForDepthEstimation:
    """A 128-wide Depth Anything with every tensor randomised (eval mode, float32).

    `out_indices` count the embeddings as 0, as in transformers (block i is index i + 1).
    """
    torch.manual_seed(seed)
    backbone = Dinov2Config(
        hidden_size=TINY_DIM,
        num_hidden_layers=depth,
        num_attention_heads=TINY_DIM // 64,
        image_size=98,  # a 7x7 pretraining grid
        patch_size=14,
        out_indices=list(out_indices),
        reshape_hidden_states=False,
        apply_layernorm=True,
        use_swiglu_ffn=swiglu,
        layerscale_value=1.0,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=TINY_DIM,
        patch_size=14,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[16, 32, 64, 64],
        fusion_hidden_size=32,
        head_hidden_size=32,
        depth_estimation_type="metric" if metric else "relative",
        max_depth=max_depth if metric else 1,  # HF scales relative outputs by it too
    )
    model = DepthAnythingForDepthEstimation(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = 0.02 if "embeddings" in name else 0.2 / max(1.0, np.sqrt(p[0].numel() / 9))
            p.copy_(torch.randn(p.shape, generator=gen) * std + (1.0 if "lambda1" in name else 0))
        # Keep most of the final ReLU's inputs positive so the output is not all zeros.
        model.head.conv3.bias.add_(1.0)
    return model


def hf_depth(model, images_nhwc: np.ndarray) -> np.ndarray:
    """Runs the oracle: [B, H, W, 3] float32 -> [B, H, W] float32."""
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
        return model(pixel_values=x).predicted_depth.numpy()


def hf_state_dict(model) -> dict[str, np.ndarray]:
    """The model's tensors as numpy, in transformers' in-memory names."""
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def tiny_dinov2(seed: int = 0):
    """A 128-wide, 4-block transformers `Dinov2Model` with randomised tensors."""
    from transformers import Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(
        hidden_size=TINY_DIM,
        num_hidden_layers=TINY_DEPTH,
        num_attention_heads=TINY_DIM // 64,
        image_size=98,
        patch_size=14,
        layerscale_value=1.0,
    )
    model = Dinov2Model(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = 0.02 if "embeddings" in name else 0.2 / max(1.0, np.sqrt(p[0].numel()))
            p.copy_(torch.randn(p.shape, generator=gen) * std + (1.0 if "lambda1" in name else 0))
    return model


def tiny_config(**changes) -> ModelConfig:
    """The dajax `ModelConfig` of `tiny_depth_anything()` (defaults) / `tiny_dinov2()`."""
    base = ModelConfig(
        encoder="custom",
        version="v1",
        dim=TINY_DIM,
        depth=TINY_DEPTH,
        heads=TINY_DIM // 64,
        layers=(0, 1, 2, 3),
        features=32,
        out_channels=(16, 32, 64, 64),
        pretrain_grid=7,
    )
    return base.replace(**changes)
