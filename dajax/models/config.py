"""`ModelConfig`: the full architecture of one Depth Anything model, as plain data.

A config is what a checkpoint needs besides its tensors: it is written next to converted and
trained params (JSON) and rebuilds the exact module. `ModelConfig.from_variant` fills it from
the variant table; tests build tiny configs field by field.

A config file is data from outside, so every field is checked for type and range when a config
is made (`INT_RANGES`, `MAX_MLP_RATIO`, `MAX_CHANNELS`, `MAX_METRIC_DEPTH`), before anything is
built from it: one ValueError naming the field, never a model traced with 10**6 blocks or a
NaN depth range.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from typing import Any

from dajax.models import variants

# Inclusive ranges of the integer fields; the released models use dim <= 1536, depth <= 40.
INT_RANGES = {
    "dim": (1, 8192),
    "depth": (1, 128),
    "heads": (1, 256),
    "features": (1, 4096),
    "pretrain_grid": (1, 256),
}
MAX_CHANNELS = 8192  # each DPT projection width
MAX_MLP_RATIO = 16.0
MAX_METRIC_DEPTH = 1e5  # metres
CHOICES = {
    "encoder": (*variants.ENCODERS, "custom"),
    "version": variants.VERSIONS,
    "head": variants.HEADS,
    "ffn": ("mlp", "swiglu"),
    "pos_embed": variants.POS_EMBED_MODES,
}


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _is_int(value, low: int, high: int) -> bool:
    return (
        isinstance(value, numbers.Integral) and not isinstance(value, bool) and low <= value <= high
    )


def _is_real(value, low: float, high: float) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )


def _check_ints(name: str, values, count: int, low: int, high: int) -> None:
    if not (
        isinstance(values, list | tuple)
        and len(values) == count
        and all(_is_int(v, low, high) for v in values)
    ):
        raise ValueError(f"{name} must be {count} ints in [{low}, {high}], got {_show(values)}")


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
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if not (isinstance(value, str) and value in choices):
                raise ValueError(f"{name} must be one of {choices}, got {_show(value)}")
        for name, (low, high) in INT_RANGES.items():
            if not _is_int(getattr(self, name), low, high):
                raise ValueError(
                    f"{name} must be an int in [{low}, {high}], got {_show(getattr(self, name))}"
                )
        if not (_is_real(self.mlp_ratio, 0.0, MAX_MLP_RATIO) and self.mlp_ratio > 0):
            raise ValueError(
                f"mlp_ratio must be a number in (0, {MAX_MLP_RATIO}], got {_show(self.mlp_ratio)}"
            )
        if not _is_real(self.max_depth, 0.0, MAX_METRIC_DEPTH):
            raise ValueError(
                f"max_depth must be a finite number in [0, {MAX_METRIC_DEPTH:g}] (metres), got "
                f"{_show(self.max_depth)}"
            )
        if self.head == "metric" and self.max_depth <= 0:
            raise ValueError("a metric head needs max_depth > 0 (metres), e.g. 20 or 80")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        _check_ints("layers", self.layers, 4, 0, self.depth - 1)
        _check_ints("out_channels", self.out_channels, 4, 1, MAX_CHANNELS)

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
        """Inverse of `dataclasses.asdict`; unknown keys, and values out of type or range, are
        a ValueError naming them."""
        if not isinstance(d, dict):
            raise ValueError(f"a model config is a mapping of fields, not a {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {unknown}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**fixed)
