"""A DINOv2 encoder with a per-pixel classifier on its last tokens: the network of the encoder
pre-training stage (`dajax.training.pretrain`), whose encoder then starts a depth model."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from dajax.models.config import ModelConfig
from dajax.models.depth_anything import build_encoder
from dajax.models.variants import PATCH_SIZE


class PatchClassifier(nn.Module):
    """`pretrained` (the encoder of `config`, named as in `DepthAnything`, so its params drop
    into a depth model) + `classifier`: one linear map from each final patch token to the class
    logits of the token's 14 x 14 pixels (as MAE's decoder maps tokens to pixels).

    Attributes:
      config: the encoder's architecture (its head fields are unused).
      num_classes: classes per pixel.
      dtype: compute dtype; logits are returned in float32.
    """

    config: ModelConfig
    num_classes: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """x: [B, H, W, 3] float32 ImageNet-normalised RGB, H and W multiples of 14 ->
        logits [B, H, W, num_classes] float32."""
        b, h, w, _ = x.shape
        gh, gw = h // PATCH_SIZE, w // PATCH_SIZE
        encoder = build_encoder(
            self.config, dtype=self.dtype, param_dtype=self.param_dtype, name="pretrained"
        )
        tokens, _ = encoder(x.astype(self.dtype), (self.config.depth - 1,))[0]  # [B, N, D]
        logits = nn.Dense(
            PATCH_SIZE * PATCH_SIZE * self.num_classes,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="classifier",
        )(tokens)
        logits = logits.reshape(b, gh, gw, PATCH_SIZE, PATCH_SIZE, self.num_classes)
        logits = logits.transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, self.num_classes)
        return logits.astype(jnp.float32)
