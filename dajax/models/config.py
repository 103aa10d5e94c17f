"""`ModelConfig`: the full architecture of one Depth Anything model, as plain data.

A config is what a checkpoint needs besides its tensors: it is written next to converted and
trained params (JSON) and rebuilds the exact module. `ModelConfig.from_variant` fills it from
the variant table; tests build tiny configs field by field.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from dajax.models import variants


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a DINOv2 encoder + DPT head."""

    encoder: str = "vits"  # variant name, or 'custom' for hand-built configs
    version: str = "v2"  # 'v1' | 'v2': which blocks feed the head
    dim: int = 384  # encoder token width
    depth: int = 12  # encoder blocks
    heads: int = 6  # attention heads
    ffn: str = "mlp"  # 'mlp' | 'swiglu'
    mlp_ratio: float = 4.0  # FFN hidden / dim
    layers: tuple[int, ...] = (2, 5, 8, 11)  # blocks feeding the DPT head
    features: int = 64  # DPT fusion width
    out_channels: tuple[int, int, int, int] = (48, 96, 192, 384)  # DPT projection widths
    head: str = "relative"  # 'relative' (ReLU disparity) | 'metric' (sigmoid x max_depth)
    max_depth: float = 0.0  # metres, metric heads only
    pos_embed: str = "official"  # 'official' (DINOv2 scale_factor rule) | 'hf' (size rule)
    pretrain_grid: int = variants.PRETRAIN_GRID  # side of the stored position-embedding grid

    def __post_init__(self):
        if self.version not in variants.VERSIONS:
            raise ValueError(f"version must be one of {variants.VERSIONS}, got {self.version!r}")
        if self.head not in variants.HEADS:
            raise ValueError(f"head must be one of {variants.HEADS}, got {self.head!r}")
        if self.head == "metric" and self.max_depth <= 0:
            raise ValueError("a metric head needs max_depth > 0 (metres), e.g. 20 or 80")
        if self.pos_embed not in variants.POS_EMBED_MODES:
            raise ValueError(
                f"pos_embed must be one of {variants.POS_EMBED_MODES}, got {self.pos_embed!r}"
            )
        if self.ffn not in ("mlp", "swiglu"):
            raise ValueError(f"ffn must be 'mlp' or 'swiglu', got {self.ffn!r}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if len(self.layers) != 4 or not all(0 <= i < self.depth for i in self.layers):
            raise ValueError(f"layers must be 4 block indices in [0, {self.depth}): {self.layers}")

    @classmethod
    def from_variant(
        cls,
        encoder: str,
        version: str = "v2",
        head: str = "relative",
        max_depth: float = 0.0,
        pos_embed: str = "official",
    ) -> ModelConfig:
        """The released architecture for an encoder size and model version."""
        if encoder not in variants.ENCODERS:
            raise ValueError(
                f"unknown encoder {encoder!r}; expected one of {tuple(variants.ENCODERS)}"
            )
        if version == "v1" and encoder not in variants.V1_ENCODERS:
            raise ValueError(f"Depth Anything V1 has no {encoder} model (V1: vits, vitb, vitl)")
        enc = variants.ENCODERS[encoder]
        hd = variants.HEADS_BY_ENCODER[encoder]
        return cls(
            encoder=encoder,
            version=version,
            dim=enc.dim,
            depth=enc.depth,
            heads=enc.heads,
            ffn=enc.ffn,
            layers=variants.head_layers(encoder, version),
            features=hd.features,
            out_channels=hd.out_channels,
            head=head,
            max_depth=max_depth,
            pos_embed=pos_embed,
        )

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        """JSON text of all fields."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of `dataclasses.asdict`; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {unknown}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**fixed)
