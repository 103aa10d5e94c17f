"""DINOv2 ViT encoder (patch 14, cls token, LayerScale) as `flax.linen` modules.

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
from jax.ad_checkpoint import checkpoint_name

from dajax.models import conv, precision, resample, tpu_attention
from dajax.models.blocked_attention import blocked_attention
from dajax.models.layer_norm import DeferredLayerNorm, LayerNorm
from dajax.models.variants import PATCH_SIZE, swiglu_hidden

Dtype = jnp.dtype | type
_trunc02 = nn.initializers.truncated_normal(0.02)


def _layer_norm(dtype: Dtype, param_dtype: Dtype, name: str) -> LayerNorm:
    # Variance as E[(x - mean)^2] like PyTorch; flax.linen.LayerNorm's params and values.
    return LayerNorm(epsilon=1e-6, dtype=dtype, param_dtype=param_dtype, name=name)


class LayerScale(nn.Module):
    """DINOv2's per-channel output scale (`ls1` / `ls2`): declares `gamma` [dim] and returns it,
    for `AffineDense` to fold into the projection before it."""

    dim: int
    init_value: float = 1.0
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self) -> jnp.ndarray:
        return self.param(
            "gamma", nn.initializers.constant(self.init_value), (self.dim,), self.param_dtype
        )


Affine = tuple[jnp.ndarray, jnp.ndarray]

# `checkpoint_name` of the weights `folded_dense` computes; every remat policy saves them.
FOLDED_WEIGHTS = "folded_weights"


def folded_dense(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    bias: jnp.ndarray,
    dtype: Dtype,
    in_affine: Affine | None = None,
    out_scale: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """`((x · s + t) @ kernel + bias) · g` as one matmul of x with folded weights.

    Args:
      x: [..., I]; kernel: [I, O]; bias: [O].
      in_affine: (s, t), each [I]: an elementwise affine on the input (a LayerNorm's scale and
        bias), or None.
      out_scale: g [O] (a LayerScale's gamma), or None.

    Returns:
      [..., O] in `dtype`: `x @ kernel' + bias'` with kernel' = s[:, None] · kernel · g and
      bias' = (t @ kernel + bias) · g, folded in float32 and cast to `dtype` once; the matmul's
      result is float32 where `precision.result_dtype` says so (bf16 on CPUs). The affines
      then cost weight-sized work instead of activation-sized passes, forward and backward: in
      a ViT-L train step on an H100 the LayerNorms' scale/bias gradients and the LayerScales'
      multiplies took 11 of 95 memory-bound GB (`benchmarks/roofline.py`).
    """
    kernel32, bias32 = kernel.astype(jnp.float32), bias.astype(jnp.float32)
    if in_affine is not None:
        scale, shift = (a.astype(jnp.float32) for a in in_affine)
        bias32 = bias32 + jnp.dot(shift, kernel32, precision=jax.lax.Precision.HIGHEST)
        kernel32 = scale[:, None] * kernel32
    if out_scale is not None:
        kernel32 = kernel32 * out_scale.astype(jnp.float32)
        bias32 = bias32 * out_scale.astype(jnp.float32)
    kernel, bias = checkpoint_name((kernel32.astype(dtype), bias32.astype(dtype)), FOLDED_WEIGHTS)
    out = jnp.dot(x.astype(dtype), kernel, preferred_element_type=precision.result_dtype(dtype))
    return (out + bias).astype(dtype)


class AffineDense(nn.Module):
    """`nn.Dense` (params `kernel` [I, O], `bias` [O]; truncated-normal 0.02 and zeros) applied
    through `folded_dense`, so an input affine and an output scale cost no activation pass."""

    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jnp.ndarray,
        in_affine: Affine | None = None,
        out_scale: jnp.ndarray | None = None,
    ) -> jnp.ndarray:
        """x: [..., I] -> [..., features] `dtype`; see `folded_dense` for the affines."""
        kernel = self.param("kernel", _trunc02, (x.shape[-1], self.features), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        return folded_dense(x, kernel, bias, self.dtype, in_affine, out_scale)


ATTENTION_IMPLS = ("auto", "chunked", "xla", "cudnn", "portable", "tpu_flash")


def cudnn_attention_fits(dtype, head_dim: int) -> bool:
    """Whether cuDNN's fused attention takes [.., d] inputs of `dtype` on the default backend:
    an NVIDIA GPU of compute capability >= 8.0, float16/bfloat16, d a multiple of 8 up to 128.
    """
    if jax.default_backend() != "gpu" or jnp.dtype(dtype) not in (jnp.bfloat16, jnp.float16):
        return False
    try:
        major = int(str(jax.devices()[0].compute_capability).split(".")[0])
    except (AttributeError, ValueError):  # not CUDA (ROCm names its targets gfx...)
        return False
    return major >= 8 and head_dim % 8 == 0 and head_dim <= 128


def resolve_attention(impl: str, dtype, head_dim: int) -> str:
    """The kernel `impl` stands for: 'auto' is 'chunked' on CPU, 'tpu_flash' on TPU where
    `tpu_attention.partitionable`, 'cudnn' where `cudnn_attention_fits`, else 'xla' (chosen
    when the program is traced, on this machine); other names stand for themselves."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    if jax.default_backend() == "cpu":
        return "chunked"
    if jax.default_backend() == "tpu":
        return "tpu_flash" if tpu_attention.partitionable() else "xla"
    return "cudnn" if cudnn_attention_fits(dtype, head_dim) else "xla"


def scaled_dot_product_attention(
    q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, impl: str = "auto"
) -> jnp.ndarray:
    """Multi-head attention core over [B, heads, N, d] arrays.

    Args:
      impl: 'chunked' (`blocked_attention`: query blocks, hand-written backward; fastest on
        CPU), 'xla' (`jax.nn.dot_product_attention`, scores materialised), 'cudnn' (its cuDNN
        flash kernel, GPU only), 'portable' ('chunked' where the program is lowered for a CPU,
        'xla' elsewhere: one `jax.export` graph for several platforms, each with its kernel),
        'tpu_flash' (`tpu_attention`: the Pallas TPU flash kernel, TPU only), or 'auto' (see
        `resolve_attention`: cuDNN on Ampere and newer in half precision, Pallas on TPUs).
    """
    impl = resolve_attention(impl, q.dtype, q.shape[-1])
    if impl == "chunked":
        return blocked_attention(q, k, v)
    if impl == "tpu_flash":
        return tpu_attention.flash_attention(q, k, v)
    if impl == "portable":
        return jax.lax.platform_dependent(q, k, v, cpu=blocked_attention, default=_jax_nn_attention)
    return _jax_nn_attention(q, k, v, "cudnn" if impl == "cudnn" else None)


def _jax_nn_attention(q, k, v, implementation: str | None = None) -> jnp.ndarray:
    """`jax.nn.dot_product_attention` over [B, heads, N, d] arrays (`implementation` None:
    XLA's plain form)."""
    t = lambda a: jnp.swapaxes(a, 1, 2)  # noqa: E731  [B, N, heads, d] for jax.nn
    return t(jax.nn.dot_product_attention(t(q), t(k), t(v), implementation=implementation))


class QKV(nn.Module):
    """The qkv projection's parameters, stored fused as PyTorch's single `qkv` Linear (`kernel`
    [D, 3D], `bias` [3D], as `nn.Dense` names and initialises them), applied as three matmuls.

    Each of q, k, v comes out of its own matmul contiguous, so splitting heads is a reshape:
    slicing one [.., 3D] output into three strided parts made XLA copy the whole qkv tensor
    before the attention kernel (20% of a ViT-L forward's memory traffic on GPUs).
    """

    dim: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, in_affine: Affine | None = None
    ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
        """x: [.., D] -> q, k, v, each [.., D]; `in_affine` as in `folded_dense`."""
        kernel = self.param("kernel", _trunc02, (x.shape[-1], 3 * self.dim), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (3 * self.dim,), self.param_dtype)
        parts = slice(0, self.dim), slice(self.dim, 2 * self.dim), slice(2 * self.dim, None)
        return tuple(folded_dense(x, kernel[:, p], bias[p], self.dtype, in_affine) for p in parts)


class Attention(nn.Module):
    """Multi-head self-attention (`attn.qkv`, stored fused and applied as three matmuls by `QKV`;
    `attn.proj`)."""

    dim: int
    heads: int
    impl: str = "auto"  # see scaled_dot_product_attention
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jnp.ndarray,
        in_affine: Affine | None = None,
        out_scale: jnp.ndarray | None = None,
    ) -> jnp.ndarray:
        """x: [B, N, D] -> [B, N, D]; `in_affine` and `out_scale` are folded into the qkv and
        output projections (`folded_dense`)."""
        b, n, _ = x.shape
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        qkv = QKV(self.dim, name="qkv", **kw)(x, in_affine)
        heads = self.heads, self.dim // self.heads
        q, k, v = (a.reshape(b, n, *heads).transpose(0, 2, 1, 3) for a in qkv)  # [B, h, N, hd]
        out = scaled_dot_product_attention(q, k, v, self.impl).transpose(0, 2, 1, 3)
        return AffineDense(self.dim, name="proj", **kw)(
            out.reshape(b, n, self.dim), None, out_scale
        )


def _normal_cdf(x32: jnp.ndarray) -> jnp.ndarray:
    """Φ(x) = (1 + erf(x / √2)) / 2 of a float32 array."""
    return 0.5 * (1.0 + jax.lax.erf(x32 * 2.0**-0.5))


@jax.custom_vjp
def exact_gelu(x: jnp.ndarray) -> jnp.ndarray:
    """x · Φ(x) (erf GELU, PyTorch's default `nn.GELU`), any shape and float dtype.

    Computed as `0.5 · x · (1 + erf(x / √2))` in float32 and rounded to x's dtype, as PyTorch
    computes it for half-precision inputs. (`jax.nn.gelu` evaluates the erfc form in the input
    dtype, which XLA's GPU compiler split into two kernels in the train step.) The gradient
    Φ(x) + x·φ(x) is recomputed from `x` in float32, so the forward pass keeps only its input for
    the backward (autodiff of the erf form stores two more activation-sized partials per MLP).
    """
    x32 = x.astype(jnp.float32)
    return (x32 * _normal_cdf(x32)).astype(x.dtype)


def _exact_gelu_fwd(x):
    return exact_gelu(x), x


def _exact_gelu_bwd(x, grad):
    x32 = x.astype(jnp.float32)
    pdf = jnp.exp(-0.5 * x32 * x32) * (2.0 * jnp.pi) ** -0.5
    return ((grad.astype(jnp.float32) * (_normal_cdf(x32) + x32 * pdf)).astype(grad.dtype),)


exact_gelu.defvjp(_exact_gelu_fwd, _exact_gelu_bwd)


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
        into the last (`folded_dense`)."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.kind == "swiglu":
            width = swiglu_hidden(self.dim, self.mlp_ratio)
            gate_value = AffineDense(2 * width, name="w12", **kw)(x, in_affine)
            gate, value = jnp.split(gate_value, 2, axis=-1)
            hidden, out = nn.silu(gate) * value, "w3"
        else:
            width = int(self.dim * self.mlp_ratio)
            hidden = exact_gelu(AffineDense(width, name="fc1", **kw)(x, in_affine))
            out = "fc2"
        return AffineDense(self.dim, name=out, **kw)(hidden, None, out_scale)


_SAVE_FOLDED = jax.checkpoint_policies.save_only_these_names(FOLDED_WEIGHTS)
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

    Each LayerNorm's scale and bias and each LayerScale are folded into the weights of the
    matmul next to them (`folded_dense`); the parameters are the reference's.
    """

    dim: int
    heads: int
    ffn: str = "mlp"
    mlp_ratio: float = 4.0
    attention: str = "auto"  # see scaled_dot_product_attention
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        norm = dict(epsilon=1e-6, **kw)
        gamma = dict(dim=self.dim, param_dtype=self.param_dtype)
        attn = Attention(self.dim, self.heads, self.attention, name="attn", **kw)
        xhat, affine = DeferredLayerNorm(name="norm1", **norm)(x)
        x = x + attn(xhat, affine, LayerScale(name="ls1", **gamma)())
        ffn = FeedForward(self.ffn, self.dim, self.mlp_ratio, name="mlp", **kw)
        xhat, affine = DeferredLayerNorm(name="norm2", **norm)(x)
        return x + ffn(xhat, affine, LayerScale(name="ls2", **gamma)())


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
            conv_general_dilated=conv.conv_general_dilated,
        )(x)


@jax.custom_vjp
def materialize_gradient(x: jnp.ndarray) -> jnp.ndarray:
    """Identity whose gradient XLA:CPU computes once, into its own buffer.

    Placed between encoder blocks. The residual stream's gradient is a chain of adds through
    every later block, and XLA:CPU fused that chain into each consumer of each block's
    gradient (the transposes for the weight-gradient matmuls), recomputing it per block:
    quadratic in depth, ~3 s of a ViT-S step at 518², batch 2. On CPUs the gradient passes
    through a `lax.cond` (never fused) whose branches both return it unchanged; the second
    branch runs only when its first element is NaN and writes that NaN again, so XLA cannot
    merge the branches into one and drop the conditional. Other platforms pass it through.
    """
    return x


def _fence(grad: jnp.ndarray) -> jnp.ndarray:
    first = grad.reshape(-1)[0]
    renan = lambda g: g.reshape(-1).at[0].set(jnp.nan).reshape(g.shape)  # noqa: E731
    return jax.lax.cond(first == first, lambda g: g, renan, grad)


def _materialize_gradient_fwd(x):
    return x, None


def _materialize_gradient_bwd(_, grad):
    return (jax.lax.platform_dependent(grad, cpu=_fence, default=lambda g: g),)


materialize_gradient.defvjp(_materialize_gradient_fwd, _materialize_gradient_bwd)


def interpolate_pos_embed(
    pos_embed: jnp.ndarray, grid_hw: tuple[int, int], pretrain_grid: int, mode: str
) -> jnp.ndarray:
    """Resizes DINOv2's learned position embeddings to a patch grid.

    Args:
      pos_embed: [1, 1 + G*G, C] (cls first), G = `pretrain_grid`.
      grid_hw: (h, w) patch grid of the input image.
      pretrain_grid: G, 37 for the released models.
      mode: 'official' — `interpolate(scale_factor=((h+0.1)/G, (w+0.1)/G), mode='bicubic')`,
        as DINOv2 and Depth Anything do; 'hf' — `interpolate(size=(h, w))` as `transformers`.
        Both return the table unchanged on the pretraining grid with a square image.

    Returns:
      [1, 1 + h*w, C] in float32 (resampled in float32 whatever the param dtype).
    """
    h, w = grid_hw
    pos_embed = pos_embed.astype(jnp.float32)
    if (h, w) == (pretrain_grid, pretrain_grid):
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    grid = patch_pos.reshape(1, pretrain_grid, pretrain_grid, -1)
    if mode == "official":
        scale = ((h + 0.1) / pretrain_grid, (w + 0.1) / pretrain_grid)
        grid = resample.resize_bicubic_by_scale(grid, scale)
    else:
        grid = resample.resize_bicubic_to_size(grid, (h, w))
    return jnp.concatenate([cls_pos, grid.reshape(1, h * w, -1)], axis=1)


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT returning the normed outputs of selected blocks.

    Attributes mirror `ModelConfig`; `remat` recomputes each block in the backward pass;
    `attention` picks the attention kernel (`scaled_dot_product_attention`).

    Gradient checkpointing: `remat` names what a block keeps for the backward pass
    (`REMAT_POLICIES`: 'none' keeps everything; 'full' keeps only the block input and
    recomputes the rest; 'dots' keeps matmul outputs; 'dots_no_batch' keeps the weight matmuls
    but not attention's batched ones), applied to the first `remat_blocks` blocks (0 = all).
    Every policy also keeps the block's folded weights (`folded_dense`; weight-sized): under
    FSDP, recomputing them in the backward pass (from all-gathered parameters) took the ViT-G
    student step on 8 H100s from 22 to 48 GiB of temporaries per GPU.
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

        norm = _layer_norm(name="norm", **kw)
        wanted, outputs = set(layers), {}
        for i in range(self.depth):
            tokens = materialize_gradient(tokens)
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
