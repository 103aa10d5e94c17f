"""Flax models: Depth Anything (DINOv2 encoder + DPT head), fast and reference, and the
variant table.

`build_model(config, impl="fast" | "reference")` picks the implementation: the fast one
(`depth_anything.py`, `dinov2.py`, `dpt.py`, written with the kernels of `kernels/`) or the
plain one (`reference.py`, stock `flax.linen` layers). Both have the same parameter tree.
"""

from dajax.models.config import ModelConfig
from dajax.models.depth_anything import (
    IMPLS,
    DepthAnything,
    build_model,
    init_params,
    param_shapes,
)
from dajax.models.reference import ReferenceDepthAnything

__all__ = [
    "IMPLS",
    "DepthAnything",
    "ModelConfig",
    "ReferenceDepthAnything",
    "build_model",
    "init_params",
    "param_shapes",
]
