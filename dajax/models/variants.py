"""The one table of Depth Anything / DINOv2 architecture variants.

Everything that differs between ViT-S/B/L/G and between Depth Anything V1 and V2 is read from
here: encoder width/depth/heads/FFN type, the encoder blocks whose outputs feed the DPT head,
and the head's feature and projection widths.
"""

from __future__ import annotations

import dataclasses

PATCH_SIZE = 14
PRETRAIN_GRID = 37  # DINOv2 position embeddings were trained at 518 px = 37 x 37 patches.

VERSIONS = ("v1", "v2")
HEADS = ("relative", "metric")
POS_EMBED_MODES = ("official", "hf")


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """DINOv2 ViT hyper-parameters."""

    dim: int  # token width
    depth: int  # number of transformer blocks
    heads: int  # attention heads (head_dim = dim / heads)
    ffn: str  # 'mlp' (GELU, 4x) or 'swiglu' (fused SwiGLU, hidden rounded to 8)
    v2_layers: tuple[int, ...]  # blocks feeding the DPT head in Depth Anything V2


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """DPT head widths."""

    features: int  # fusion width
    out_channels: tuple[int, int, int, int]  # per-level projection widths


ENCODERS: dict[str, EncoderSpec] = {
    "vits": EncoderSpec(384, 12, 6, "mlp", (2, 5, 8, 11)),
    "vitb": EncoderSpec(768, 12, 12, "mlp", (2, 5, 8, 11)),
    "vitl": EncoderSpec(1024, 24, 16, "mlp", (4, 11, 17, 23)),
    "vitg": EncoderSpec(1536, 40, 24, "swiglu", (9, 19, 29, 39)),
}

HEADS_BY_ENCODER: dict[str, HeadSpec] = {
    "vits": HeadSpec(64, (48, 96, 192, 384)),
    "vitb": HeadSpec(128, (96, 192, 384, 768)),
    "vitl": HeadSpec(256, (256, 512, 1024, 1024)),
    "vitg": HeadSpec(384, (1536, 1536, 1536, 1536)),
}

# Released V1 models stop at ViT-L; V2 adds ViT-G.
V1_ENCODERS = ("vits", "vitb", "vitl")
# Metric-depth ranges of the official V2 metric checkpoints, keyed by training set.
V2_METRIC_MAX_DEPTH = {"hypersim": 20.0, "vkitti": 80.0}


def swiglu_hidden(dim: int, mlp_ratio: float = 4.0) -> int:
    """Hidden width of DINOv2's fused SwiGLU FFN: int(2/3 * ratio * dim) rounded up to 8."""
    return (int(int(dim * mlp_ratio) * 2 / 3) + 7) // 8 * 8


def head_layers(encoder: str, version: str, depth: int | None = None) -> tuple[int, ...]:
    """Encoder block indices whose (normed) outputs feed the DPT head.

    Args:
      encoder: 'vits' | 'vitb' | 'vitl' | 'vitg'.
      version: 'v1' (the last four blocks) or 'v2' (fixed per-size indices).
      depth: number of blocks, for custom (e.g. tiny test) encoders; defaults to the table.
    """
    if version not in VERSIONS:
        raise ValueError(f"unknown Depth Anything version {version!r}; expected one of {VERSIONS}")
    n = ENCODERS[encoder].depth if depth is None else depth
    if version == "v1":
        return tuple(range(n - 4, n))
    return ENCODERS[encoder].v2_layers
