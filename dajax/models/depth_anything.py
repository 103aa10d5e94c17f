"""Depth Anything = DINOv2 encoder (`pretrained`) + DPT head (`depth_head`).

`DepthAnything` is the fast implementation (`dajax.models.kernels`); `build_model` chooses it or
the plain `dajax.models.reference.ReferenceDepthAnything` (same parameters) by name.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dajax.models import kernels
from dajax.models.config import ModelConfig
from dajax.models.dinov2 import DinoVisionTransformer
from dajax.models.dpt import DPTHead
from dajax.models.reference import ReferenceDepthAnything
from dajax.models.variants import PATCH_SIZE

Dtype = jnp.dtype | type


def build_encoder(config: ModelConfig, **kw) -> DinoVisionTransformer:
    """The DINOv2 encoder of `config`; `kw` are `DinoVisionTransformer`'s compute options
    (dtype, param_dtype, remat, remat_blocks, attention)."""
    return DinoVisionTransformer(
        dim=config.dim,
        depth=config.depth,
        heads=config.heads,
        ffn=config.ffn,
        mlp_ratio=config.mlp_ratio,
        pretrain_grid=config.pretrain_grid,
        pos_embed_mode=config.pos_embed,
        **kw,
    )


class DepthAnything(nn.Module):
    """Monocular depth network.

    Attributes:
      config: the architecture (see `ModelConfig`).
      dtype: compute dtype (float32 or bfloat16); outputs are returned in float32.
      param_dtype: parameter storage dtype.
      remat: gradient-checkpointing policy of the encoder blocks, 'none' | 'full' | 'dots' |
        'dots_no_batch' (see `dajax.models.dinov2.REMAT_POLICIES`).
      remat_blocks: apply it to the first this-many blocks only (0 = all blocks).
      attention: attention kernel, 'auto' | 'chunked' | 'xla' | 'cudnn' | 'portable' |
        'tpu_flash' (see `dajax.models.kernels.attention.dot_product_attention`).
    """

    config: ModelConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    remat: str = "none"
    remat_blocks: int = 0
    attention: str = "auto"

    def setup(self):
        c = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.pretrained = build_encoder(
            c,
            remat=self.remat,
            remat_blocks=self.remat_blocks,
            attention=self.attention,
            **kw,
        )
        head_dtype = kernels.convolution_dtype(self.dtype)  # float32 on CPUs, see there
        self.depth_head = DPTHead(
            c.features, c.out_channels, c.head, dtype=head_dtype, param_dtype=self.param_dtype
        )

    def __call__(self, x: jnp.ndarray, return_features: bool = False):
        """Predicts depth.

        Args:
          x: [B, H, W, 3] float32 ImageNet-normalised RGB, H and W multiples of 14.
          return_features: also return the final encoder patch features (for the student's
            feature-alignment loss).

        Returns:
          depth [B, H, W] float32 — relative heads: disparity-like, >= 0, affine-invariant;
          metric heads: metres in (0, max_depth). With `return_features`, a tuple
          (depth, features [B, H/14 * W/14, C] float32).
        """
        c = self.config
        grid = (x.shape[1] // PATCH_SIZE, x.shape[2] // PATCH_SIZE)
        layers = tuple(c.layers)
        if return_features and layers[-1] != c.depth - 1:
            layers = layers + (c.depth - 1,)
        outs = self.pretrained(x.astype(self.dtype), layers)
        depth = self.depth_head([t for t, _ in outs[:4]], grid).astype(jnp.float32)
        if c.head == "metric":
            depth = depth * c.max_depth
        if return_features:
            return depth, outs[-1][0].astype(jnp.float32)
        return depth

    def encode(self, x: jnp.ndarray) -> jnp.ndarray:
        """Final encoder patch features [B, H/14 * W/14, C] float32 (LayerNorm applied)."""
        tokens, _ = self.pretrained(x.astype(self.dtype), (self.config.depth - 1,))[0]
        return tokens.astype(jnp.float32)


IMPLS = ("fast", "reference")


def build_model(
    config: ModelConfig, impl: str = "fast", dtype: Dtype = jnp.float32, **options
) -> nn.Module:
    """The Depth Anything network of `config`, in implementation `impl`.

    Args:
      config: the architecture.
      impl: 'fast' (`DepthAnything`, the kernels of `dajax.models.kernels`; the default) or
        'reference' (`ReferenceDepthAnything`: stock flax layers, float32 only). Both have the
        same parameter tree, call signature and `encode` method.
      dtype: compute dtype.
      options: `DepthAnything`'s other attributes (param_dtype, remat, remat_blocks,
        attention). The reference has none of them: given there, each must keep its default.

    Returns:
      The unbound flax module.
    """
    if impl not in IMPLS:
        raise ValueError(f"model impl must be one of {IMPLS}, got {impl!r}")
    if impl == "fast":
        return DepthAnything(config, dtype=dtype, **options)
    if jnp.dtype(dtype) != jnp.float32:
        raise ValueError(f"the reference model computes in float32, got dtype {jnp.dtype(dtype)}")
    defaults = {f.name: f.default for f in dataclasses.fields(DepthAnything)}
    changed = {k: v for k, v in options.items() if defaults.get(k, dataclasses.MISSING) != v}
    if changed:
        raise ValueError(f"the reference model has no kernel options; got {changed}")
    return ReferenceDepthAnything(config)


def init_params(model: nn.Module, rng: jax.Array) -> dict:
    """Random parameters for `model` (either implementation; DINOv2-style truncated normal,
    zero biases).

    Returns the plain `params` pytree (no 'params' collection wrapper), on the default device.
    The parameters do not depend on the image size, so the init runs on a 28 x 28 image.
    """
    x = jnp.zeros((1, 2 * PATCH_SIZE, 2 * PATCH_SIZE, 3), jnp.float32)
    lowered = jax.jit(lambda r, i: model.init(r, i)["params"]).lower(rng, x)
    return lowered.compile(compiler_options=kernels.init_compiler_options())(rng, x)


def param_shapes(model: nn.Module) -> dict:
    """Shape/dtype tree of the params, without allocating them (`jax.eval_shape`)."""
    x = jax.ShapeDtypeStruct((1, 2 * PATCH_SIZE, 2 * PATCH_SIZE, 3), np.float32)
    return jax.eval_shape(lambda r, i: model.init(r, i), jax.random.key(0), x)["params"]
