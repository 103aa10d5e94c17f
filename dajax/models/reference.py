"""Depth Anything written plainly: stock `flax.linen` layers, no custom gradients of its own.

The same network and parameter tree as the fast `dajax.models.DepthAnything`, so every
checkpoint loads into both; `tests/models/test_reference_model.py` checks that the two agree in
values and in the gradients of the training losses. Read this file to learn the model,
`dajax.models.kernels` to learn what the fast one does differently (`docs/model.md`,
"Reference model and fast kernels"). Shared with the fast model: the PyTorch-exact resizes of
`dajax.models.resample` (position embeddings, DPT), whose gathered gradient
(`kernels.gather_resample`) is the one kernel both use.

The encoder is DINOv2 (`dinov2/models/vision_transformer.py`), a ViT like big_vision's
`models/vit.py` with: patch 14, a cls token, *learned* position embeddings stored for a 37x37
grid and resized bicubically per image, LayerScale (`ls1`, `ls2`) after each residual branch,
and a fused qkv projection. The head is DPT (`depth_anything/dpt.py`). Names follow PyTorch's
with `.{i}` written `_{i}`; all tensors are NHWC (PyTorch: NCHW).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from dajax.models.config import ModelConfig
from dajax.models.resample import interpolate_pos_embed, resize_bilinear
from dajax.models.variants import PATCH_SIZE, swiglu_hidden

_trunc02 = nn.initializers.truncated_normal(0.02)
# PyTorch's LayerNorm: eps 1e-6, variance as E[(x - mean)^2] (flax's fast variance differs).
LayerNorm = lambda name: nn.LayerNorm(epsilon=1e-6, use_fast_variance=False, name=name)  # noqa: E731
Dense = lambda n, name: nn.Dense(n, kernel_init=_trunc02, name=name)  # noqa: E731


class LayerScale(nn.Module):
    """x * gamma, one learned scale per channel (DINOv2's `ls1` / `ls2`, init 1.0)."""

    @nn.compact
    def __call__(self, x):
        return x * self.param("gamma", nn.initializers.ones, (x.shape[-1],))


class Attention(nn.Module):
    """Self-attention with one fused qkv Dense: its outputs are laid out [3, heads, head_dim]."""

    heads: int

    @nn.compact
    def __call__(self, x):  # [B, N, D]
        b, n, d = x.shape
        qkv = Dense(3 * d, "qkv")(x).reshape(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, N, heads, head_dim]
        out = jax.nn.dot_product_attention(q, k, v)  # scale head_dim ** -0.5
        return Dense(d, "proj")(out.reshape(b, n, d))


class Mlp(nn.Module):
    """'mlp': fc1 -> exact (erf) GELU -> fc2. 'swiglu' (ViT-G): `w12` gives [gate; value] in one
    Dense, hidden = silu(gate) * value, then `w3`; hidden width rounded up to a multiple of 8."""

    kind: str
    mlp_ratio: float

    @nn.compact
    def __call__(self, x):
        d = x.shape[-1]
        if self.kind == "swiglu":
            gate, value = jnp.split(Dense(2 * swiglu_hidden(d, self.mlp_ratio), "w12")(x), 2, -1)
            return Dense(d, "w3")(nn.silu(gate) * value)
        hidden = nn.gelu(Dense(int(d * self.mlp_ratio), "fc1")(x), approximate=False)
        return Dense(d, "fc2")(hidden)


class Block(nn.Module):
    """Pre-norm block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    heads: int
    ffn: str
    mlp_ratio: float

    @nn.compact
    def __call__(self, x):
        x = x + LayerScale(name="ls1")(Attention(self.heads, name="attn")(LayerNorm("norm1")(x)))
        y = Mlp(self.ffn, self.mlp_ratio, name="mlp")(LayerNorm("norm2")(x))
        return x + LayerScale(name="ls2")(y)


class PatchEmbed(nn.Module):
    """14x14 stride-14 convolution with bias (`patch_embed.proj`)."""

    dim: int

    @nn.compact
    def __call__(self, x):  # [B, H, W, 3] -> [B, H/14, W/14, dim]
        return nn.Conv(self.dim, (PATCH_SIZE,) * 2, PATCH_SIZE, "VALID", name="proj")(x)


class Encoder(nn.Module):
    """DINOv2 ViT; returns the final-LayerNorm'd patch tokens [B, h*w, D] of blocks `layers`."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x, layers):
        c, b = self.config, x.shape[0]
        if x.shape[1] % PATCH_SIZE or x.shape[2] % PATCH_SIZE:
            raise ValueError(f"input height and width must be multiples of 14, got {x.shape[1:3]}")
        gh, gw = x.shape[1] // PATCH_SIZE, x.shape[2] // PATCH_SIZE
        tokens = PatchEmbed(c.dim, name="patch_embed")(x).reshape(b, gh * gw, c.dim)
        cls = self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, c.dim))
        pos = self.param("pos_embed", _trunc02, (1, 1 + c.pretrain_grid**2, c.dim))
        # Stored for DINOv2's masked-image training, unused here; kept so checkpoints round-trip.
        self.param("mask_token", nn.initializers.zeros, (1, c.dim))
        tokens = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, c.dim)), tokens], axis=1)
        # Quirk: official DINOv2 resizes the 37x37 table with torch bicubic (A = -0.75) at
        # scale_factor (h + 0.1) / 37 (transformers: at size h), exactly reproduced here.
        tokens = tokens + interpolate_pos_embed(pos, (gh, gw), c.pretrain_grid, c.pos_embed)
        norm, outputs = LayerNorm("norm"), {}
        for i in range(c.depth):
            tokens = Block(c.heads, c.ffn, c.mlp_ratio, name=f"blocks_{i}")(tokens)
            if i in layers:
                outputs[i] = norm(tokens)[:, 1:]  # the cls token is not used downstream
        return [outputs[i] for i in layers]


def conv(features, kernel, name, stride=1, bias=True):
    """A PyTorch-style conv: symmetric padding (k-1)/2 ('SAME' pads (0, 1) at stride 2)."""
    pad = ((kernel - 1) // 2,) * 2
    return nn.Conv(features, (kernel, kernel), stride, (pad, pad), use_bias=bias, name=name)


class ConvTranspose(nn.Module):
    """PyTorch `ConvTranspose2d(c, c, k, stride=k)`, kernel stored [k, k, in, out].

    PyTorch's transposed convolution is the gradient of a convolution; in `lax.conv_transpose`'s
    (correlation) form that is the kernel flipped in space."""

    features: int
    factor: int

    @nn.compact
    def __call__(self, x):  # [B, H, W, C] -> [B, H*k, W*k, features]
        k = self.factor
        init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform", in_axis=2, out_axis=3)
        kernel = self.param("kernel", init, (k, k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        dims = ("NHWC", "HWIO", "NHWC")
        y = jax.lax.conv_transpose(x, kernel[::-1, ::-1], (k, k), "VALID", dimension_numbers=dims)
        return y + bias


class ResidualConvUnit(nn.Module):
    @nn.compact
    def __call__(self, x):
        f = x.shape[-1]
        return x + conv(f, 3, "conv2")(nn.relu(conv(f, 3, "conv1")(nn.relu(x))))


class FeatureFusionBlock(nn.Module):
    """(x + RCU1(skip)) -> RCU2 -> bilinear resize (align_corners=True) -> 1x1 `out_conv`."""

    @nn.compact
    def __call__(self, x, skip, size):
        if skip is not None:  # refinenet4 has no skip: its stored resConfUnit1 is never used
            x = x + ResidualConvUnit(name="resConfUnit1")(skip)
        x = ResidualConvUnit(name="resConfUnit2")(x)
        size = size or (2 * x.shape[1], 2 * x.shape[2])  # refinenet1: x2
        return conv(x.shape[-1], 1, "out_conv")(resize_bilinear(x, size, align_corners=True))


class DPTHead(nn.Module):
    """Four token maps -> maps at 4x, 2x, 1x, 1/2x the patch grid -> fused -> [B, H, W]."""

    config: ModelConfig

    @nn.compact
    def __call__(self, tokens, grid):
        c, levels = self.config, []
        for i, (t, ch) in enumerate(zip(tokens, c.out_channels, strict=True)):
            x = conv(ch, 1, f"projects_{i}")(t.reshape(t.shape[0], *grid, t.shape[-1]))
            if i < 2:
                x = ConvTranspose(ch, 4 // 2**i, name=f"resize_layers_{i}")(x)
            elif i == 3:
                x = conv(ch, 3, "resize_layers_3", stride=2)(x)
            levels.append(conv(c.features, 3, f"layer{i + 1}_rn", bias=False)(x))
        l1, l2, l3, l4 = levels
        path = FeatureFusionBlock(name="refinenet4")(l4, None, l3.shape[1:3])
        path = FeatureFusionBlock(name="refinenet3")(path, l3, l2.shape[1:3])
        path = FeatureFusionBlock(name="refinenet2")(path, l2, l1.shape[1:3])
        path = FeatureFusionBlock(name="refinenet1")(path, l1, None)
        out = conv(c.features // 2, 3, "output_conv1")(path)
        out = resize_bilinear(out, (grid[0] * PATCH_SIZE, grid[1] * PATCH_SIZE), align_corners=True)
        out = conv(1, 1, "output_conv2_2")(nn.relu(conv(32, 3, "output_conv2_0")(out)))[..., 0]
        # Metric heads end in a sigmoid (the caller scales by max_depth), relative ones in ReLU.
        return nn.sigmoid(out) if c.head == "metric" else nn.relu(out)


class ReferenceDepthAnything(nn.Module):
    """`DepthAnything` in float32 with stock layers: same call signature, params and outputs."""

    config: ModelConfig
    dtype: jnp.dtype = jnp.float32  # only float32 here; `build_model` rejects others

    def setup(self):
        self.pretrained = Encoder(self.config)
        self.depth_head = DPTHead(self.config)

    def __call__(self, x, return_features=False):
        """x [B, H, W, 3] normalised, H, W multiples of 14 -> depth [B, H, W] (and, with
        `return_features`, the final encoder patch features [B, H/14 * W/14, C])."""
        c = self.config
        last = c.depth - 1
        outs = self.pretrained(x, tuple(c.layers) + (last,))
        depth = self.depth_head(outs[:4], (x.shape[1] // PATCH_SIZE, x.shape[2] // PATCH_SIZE))
        if c.head == "metric":
            depth = depth * c.max_depth
        return (depth, outs[-1]) if return_features else depth

    def encode(self, x):
        """Final encoder patch features [B, H/14 * W/14, C] (LayerNorm applied)."""
        return self.pretrained(x, (self.config.depth - 1,))[0]
