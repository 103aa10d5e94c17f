"""DINOv2 ViT encoder (patch 14, cls token, LayerScale), the fast implementation.

The same network and parameters as the reference encoder (`dajax.models.reference.Encoder`),
written with the kernels of `dajax.models.kernels`: each LayerNorm returns its standardised
input and leaves its scale and bias (`kernels.DeferredLayerNorm`), LayerScale returns its gamma
(`kernels.LayerScaleGamma`), and both are folded into the weights of the matmul next to them
(`kernels.FoldedDense`, `kernels.FoldedQKV`); attention, GELU and the patch convolution are
the kernels' too.

Module and parameter names follow the official `dinov2/models/vision_transformer.py`
(`patch_embed.proj`, `blocks.{i}.attn.qkv`, `ls1.gamma`, `norm`, ...) with list indices written
as `blocks_{i}`, so checkpoint conversion is a lookup table
(see `dajax.weights.depth_anything_keys`).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dajax.models import kernels
from dajax.models.kernels.folded_dense import Affine
from dajax.models.resample import interpolate_pos_embed
from dajax.models.variants import PATCH_SIZE, swiglu_hidden

Dtype = jnp.dtype | type
_trunc02 = nn.initializers.truncated_normal(0.02)


class Attention(nn.Module):
    """Multi-head self-attention: `attn.qkv` (stored fused as one [D, 3D] Dense, applied as
    three matmuls by `kernels.FoldedQKV`), the attention core (`kernels.dot_product_attention`)
    and `attn.proj`."""

    dim: int
    heads: int
    impl: str = "auto"  # attention kernel, see kernels.dot_product_attention
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jnp.ndarray,
        in_affine: Affine | None = None,
        out_scale: jnp.ndarray | None = None,
    ) -> jnp.ndarray:
        """x: [B, N, D] -> [B, N, D]; `in_affine` (the LayerNorm's) and `out_scale` (the
        LayerScale's) are folded into the qkv and output projections (`kernels.folded_dense`)."""
        b, n, _ = x.shape
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        qkv = kernels.FoldedQKV(self.dim, name="qkv", **kw)(x, in_affine)
        heads = self.heads, self.dim // self.heads
        q, k, v = (a.reshape(b, n, *heads).transpose(0, 2, 1, 3) for a in qkv)  # [B, h, N, hd]
        out = kernels.dot_product_attention(q, k, v, self.impl).transpose(0, 2, 1, 3)
        proj = kernels.FoldedDense(self.dim, name="proj", **kw)
        return proj(out.reshape(b, n, self.dim), None, out_scale)


class FeedForward(nn.Module):
    """DINOv2's FFN, `kind` 'mlp' (`fc1 -> erf GELU -> fc2`, hidden width `mlp_ratio · dim`) or
    'swiglu' (the fused SwiGLU: `w12` gives [gate; value], out = w3(silu(gate) * value), hidden
    width `swiglu_hidden`)."""

    kind: str
    dim: int
    mlp_ratio: float = 4.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jnp.ndarray,
        in_affine: Affine | None = None,
        out_scale: jnp.ndarray | None = None,
    ) -> jnp.ndarray:
        """x: [.., D] -> [.., dim]; `in_affine` is folded into the first projection, `out_scale`
        into the last (`kernels.folded_dense`)."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.kind == "swiglu":
            width = swiglu_hidden(self.dim, self.mlp_ratio)
            gate_value = kernels.FoldedDense(2 * width, name="w12", **kw)(x, in_affine)
            gate, value = jnp.split(gate_value, 2, axis=-1)
            hidden, out = nn.silu(gate) * value, "w3"
        else:
            width = int(self.dim * self.mlp_ratio)
            hidden = kernels.exact_gelu(kernels.FoldedDense(width, name="fc1", **kw)(x, in_affine))
            out = "fc2"
        return kernels.FoldedDense(self.dim, name=out, **kw)(hidden, None, out_scale)


_SAVE_FOLDED = jax.checkpoint_policies.save_only_these_names(kernels.FOLDED_WEIGHTS)
REMAT_POLICIES = {
    "none": None,
    "full": _SAVE_FOLDED,
    "dots": jax.checkpoint_policies.save_from_both_policies(
        jax.checkpoint_policies.dots_saveable, _SAVE_FOLDED
    ),
    "dots_no_batch": jax.checkpoint_policies.save_from_both_policies(
        jax.checkpoint_policies.dots_with_no_batch_dims_saveable, _SAVE_FOLDED
    ),
}


class Block(nn.Module):
    """Pre-norm transformer block: `x + ls1(attn(norm1(x)))`, `x + ls2(ffn(norm2(x)))`.

    The reference's `Block` with its parameters: each LayerNorm returns x̂ and its (scale, bias)
    unapplied (`kernels.DeferredLayerNorm`), each LayerScale its gamma
    (`kernels.LayerScaleGamma`), and the branch folds them into the weights of its first and
    last matmul.
    """

    dim: int
    heads: int
    ffn: str = "mlp"
    mlp_ratio: float = 4.0
    attention: str = "auto"  # attention kernel, see kernels.dot_product_attention
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """x: [B, N, dim] -> [B, N, dim] `dtype`."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        norm = dict(epsilon=1e-6, **kw)
        gamma = dict(dim=self.dim, param_dtype=self.param_dtype)
        attn = Attention(self.dim, self.heads, self.attention, name="attn", **kw)
        xhat, affine = kernels.DeferredLayerNorm(name="norm1", **norm)(x)
        x = x + attn(xhat, affine, kernels.LayerScaleGamma(name="ls1", **gamma)())
        ffn = FeedForward(self.ffn, self.dim, self.mlp_ratio, name="mlp", **kw)
        xhat, affine = kernels.DeferredLayerNorm(name="norm2", **norm)(x)
        return x + ffn(xhat, affine, kernels.LayerScaleGamma(name="ls2", **gamma)())


class PatchEmbed(nn.Module):
    """14x14 stride-14 patchifying convolution (`patch_embed.proj`)."""

    dim: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """[B, H, W, 3] -> [B, H/14, W/14, dim]."""
        return nn.Conv(
            self.dim,
            (PATCH_SIZE, PATCH_SIZE),
            strides=PATCH_SIZE,
            padding="VALID",
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="proj",
            conv_general_dilated=kernels.conv_general_dilated,
        )(x)


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT returning the normed outputs of selected blocks.

    Attributes mirror `ModelConfig`; `remat` recomputes each block in the backward pass;
    `attention` picks the attention kernel (`kernels.dot_product_attention`).

    Gradient checkpointing: `remat` names what a block keeps for the backward pass
    (`REMAT_POLICIES`: 'none' keeps everything; 'full' keeps only the block input and
    recomputes the rest; 'dots' keeps matmul outputs; 'dots_no_batch' keeps the weight matmuls
    but not attention's batched ones), applied to the first `remat_blocks` blocks (0 = all).
    Every policy also keeps the block's folded weights (`kernels.folded_dense`; weight-sized): under
    FSDP, recomputing them in the backward pass (from all-gathered parameters) doubled the ViT-G
    student step's temporaries (`benchmarks/notes/2026-11-26-gpu-compile-memory.md`).
    """

    dim: int
    depth: int
    heads: int
    ffn: str = "mlp"
    mlp_ratio: float = 4.0
    pretrain_grid: int = 37
    pos_embed_mode: str = "official"
    remat: str = "none"
    remat_blocks: int = 0
    attention: str = "auto"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _block(self, i: int):
        """The block class of block `i`: plain, or wrapped by `nn.remat` with its policy."""
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat must be one of {tuple(REMAT_POLICIES)}, got {self.remat!r}")
        if self.remat == "none" or 0 < self.remat_blocks <= i:
            return Block
        return nn.remat(Block, policy=REMAT_POLICIES[self.remat])

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, layers: Sequence[int]
    ) -> list[tuple[jnp.ndarray, jnp.ndarray]]:
        """Runs the encoder.

        Args:
          x: [B, H, W, 3] ImageNet-normalised images, H and W multiples of 14.
          layers: block indices whose outputs to return.

        Returns:
          For each index in `layers`, (patch tokens [B, h*w, C], cls token [B, C]) after the
          final LayerNorm, with h, w = H/14, W/14.
        """
        b, height, width, _ = x.shape
        if height % PATCH_SIZE or width % PATCH_SIZE:
            raise ValueError(
                f"input height and width must be multiples of {PATCH_SIZE}, got {height}x{width}"
            )
        gh, gw = height // PATCH_SIZE, width // PATCH_SIZE
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        tokens = PatchEmbed(self.dim, name="patch_embed", **kw)(x).reshape(b, gh * gw, self.dim)
        cls_token = self.param(
            "cls_token", nn.initializers.normal(1e-6), (1, 1, self.dim), self.param_dtype
        )
        pos_embed = self.param(
            "pos_embed", _trunc02, (1, 1 + self.pretrain_grid**2, self.dim), self.param_dtype
        )
        # Unused at inference; kept so checkpoints round-trip (DINOv2 masked-image training).
        self.param("mask_token", nn.initializers.zeros, (1, self.dim), self.param_dtype)
        cls = jnp.broadcast_to(cls_token.astype(tokens.dtype), (b, 1, self.dim))
        tokens = jnp.concatenate([cls, tokens], axis=1)
        pos = interpolate_pos_embed(pos_embed, (gh, gw), self.pretrain_grid, self.pos_embed_mode)
        tokens = tokens + pos.astype(tokens.dtype)

        # PyTorch's LayerNorm (eps 1e-6, variance as E[(x - mean)^2]) with a custom backward.
        norm = kernels.LayerNorm(epsilon=1e-6, name="norm", **kw)
        wanted, outputs = set(layers), {}
        for i in range(self.depth):
            tokens = kernels.materialize_gradient(tokens)  # a CPU compile fix; see the kernel
            tokens = self._block(i)(
                self.dim,
                self.heads,
                self.ffn,
                self.mlp_ratio,
                self.attention,
                name=f"blocks_{i}",
                **kw,
            )(tokens)
            if i in wanted:
                normed = norm(tokens)
                outputs[i] = (normed[:, 1:], normed[:, 0])
        return [outputs[i] for i in layers]
