"""Flax models: the DINOv2 encoder, the DPT head, Depth Anything, and the variant table."""

from dajax.models.config import ModelConfig
from dajax.models.depth_anything import DepthAnything, init_params, param_shapes

__all__ = ["DepthAnything", "ModelConfig", "init_params", "param_shapes"]
