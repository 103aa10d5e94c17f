"""ZoeDepth metric head on a Depth Anything V1 core (official V1 `metric_depth/` checkpoints).

Reproduces `ZoeDepth.forward` of the official `metric_depth/zoedepth` code (config
`config_zoedepth.json`: softplus bin centres, inverse attractors of kind 'mean', log-binomial
output) with `DepthAnythingCore` wrapping the V1 DINOv2 + DPT model. All tensors are NHWC.

The core's DPT head is hooked, in this order (`DepthAnythingCore.layer_names`):
'out_conv' (the ReLU after `output_conv2.0`, 32 channels at 14h x 14w), 'l4_rn' (the
bottleneck, ceil(h/2) x ceil(w/2)), then the refinenet outputs 'r4' (h), 'r3' (2h), 'r2' (4h),
'r1' (8h), for a patch grid h x w. Every resize inside the head is bilinear with
`align_corners=True`.

Reference details that are easy to get wrong (all reproduced here):
- The attractors call `inv_attractor(dx)` without passing `alpha` / `gamma`, so the config's
  `attractor_alpha` (1000) and `attractor_gamma` have no effect: the function defaults alpha =
  300, gamma = 2 are used, `dc = dx / (1 + 300 dx^2)`.
- `memory_efficient` from the config is not passed to the attractor layers, so their default
  (False: `torch.mean` over the attractor axis) is the one that runs.
- The seed regressor's hidden width is 256 (`SeedBinRegressorUnnormed` default), the
  projectors' and attractors' 128; `min_depth` / `max_depth` do not enter the softplus graph
  (the output is not clipped).
- Softplus is PyTorch's (beta 1, threshold 20); GELU is the exact (erf) form.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from dajax.models import kernels
from dajax.models.config import ModelConfig
from dajax.models.depth_anything import DepthAnything
from dajax.models.normalization import imagenet_normalize
from dajax.models.resample import resize_bilinear
from dajax.models.variants import PATCH_SIZE

Dtype = jnp.dtype | type

# `DepthAnythingCore` hooks: head output features, bottleneck, then decoder blocks.
CORE_LAYER_NAMES = ("out_conv", "l4_rn", "r4", "r3", "r2", "r1")
N_CORE_OUT = 32  # channels of 'out_conv' (the DPT head's `head_features_2`)
INV_ATTRACTOR_ALPHA = 300.0  # the defaults the reference actually runs with (see above)
INV_ATTRACTOR_GAMMA = 2


def torch_softplus(x: jnp.ndarray, threshold: float = 20.0) -> jnp.ndarray:
    """`torch.nn.Softplus()` (beta 1): x above `threshold`, else log1p(exp(x))."""
    return jnp.where(x > threshold, x, jnp.log1p(jnp.exp(jnp.minimum(x, threshold))))


def inv_attractor(dx: jnp.ndarray) -> jnp.ndarray:
    """Inverse attractor shift `dx / (1 + alpha * dx^gamma)` with alpha 300, gamma 2."""
    return dx / (1 + INV_ATTRACTOR_ALPHA * dx**INV_ATTRACTOR_GAMMA)


def log_binom(n: np.ndarray, k: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """log(n choose k) by Stirling's approximation, as the reference computes it.

    Evaluated in NumPy float32 on the constant bin indices (under `jit`, XLA may reassociate
    `(n + eps) - (k + eps) + eps` to 0 at k = n and turn 0 * log(0) into NaN).
    """
    n = np.asarray(n, np.float32) + np.float32(eps)
    k = np.asarray(k, np.float32) + np.float32(eps)
    return n * np.log(n) - k * np.log(k) - (n - k) * np.log(n - k + np.float32(eps))


def _conv1x1(features: int, name: str | None, dtype, param_dtype) -> nn.Conv:
    return nn.Conv(
        features,
        (1, 1),
        padding=((0, 0), (0, 0)),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
        conv_general_dilated=kernels.conv_general_dilated,
    )


def _resize(x: jnp.ndarray, size: Sequence[int]) -> jnp.ndarray:
    """Bilinear, align_corners=True (a no-op at equal size)."""
    return resize_bilinear(x, tuple(size), align_corners=True)


class ConvMLP(nn.Module):
    """1x1 conv -> ReLU -> 1x1 conv (official `_net.0`, `_net.2`; here `net_0`, `net_2`).

    Attributes:
      hidden: width of the first conv.
      features: output channels.
      final: 'none' (`Projector`) or 'softplus' (`SeedBinRegressorUnnormed`).
    """

    hidden: int
    features: int
    final: str = "none"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """[B, H, W, C] -> [B, H, W, features]."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = nn.relu(_conv1x1(self.hidden, "net_0", **kw)(x))
        x = _conv1x1(self.features, "net_2", **kw)(x)
        return torch_softplus(x) if self.final == "softplus" else x


class AttractorLayerUnnormed(nn.Module):
    """Moves unbounded bin centres towards per-pixel attractor points.

    The attractor MLP is `_net` = 1x1 conv, ReLU, 1x1 conv, softplus (here `net_0`, `net_2`).

    Attributes:
      n_attractors: attractor points per pixel.
      mlp_dim: hidden width of the attractor MLP.
    """

    n_attractors: int
    mlp_dim: int = 128
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, b_prev: jnp.ndarray, prev_embedding: jnp.ndarray
    ) -> jnp.ndarray:
        """New bin centres.

        Args:
          x: bin embedding [B, h, w, E].
          b_prev: previous bin centres [B, h', w', n_bins] (metres), resized to (h, w).
          prev_embedding: previous bin embedding [B, h'', w'', E], resized and added to x.

        Returns:
          bin centres [B, h, w, n_bins] (metres, unbounded).
        """
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        hw = x.shape[1:3]
        x = x + _resize(prev_embedding, hw)
        a = nn.relu(_conv1x1(self.mlp_dim, "net_0", **kw)(x))
        a = torch_softplus(_conv1x1(self.n_attractors, "net_2", **kw)(a))
        b = _resize(b_prev, hw)
        # [B, h, w, A, 1] - [B, h, w, 1, n_bins] -> mean over the attractors.
        delta = jnp.mean(inv_attractor(a[..., :, None] - b[..., None, :]), axis=-2)
        return b + delta


class ConditionalLogBinomial(nn.Module):
    """Per-pixel log-binomial distribution over the bins, with predicted temperature.

    Attributes:
      n_classes: number of bins.
      min_temp, max_temp: temperature range.
      bottleneck_factor: hidden width = (in + condition channels) // factor.
      p_eps: added to the softplus outputs before the linear normalisation.
    """

    n_classes: int
    min_temp: float = 0.0212
    max_temp: float = 50.0
    bottleneck_factor: int = 2
    p_eps: float = 1e-4
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, cond: jnp.ndarray) -> jnp.ndarray:
        """Bin probabilities [B, H, W, n_classes] (sum to 1) from x [B, H, W, C], cond [.., E]."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = jnp.concatenate([x, cond], axis=-1)
        h = _conv1x1(h.shape[-1] // self.bottleneck_factor, "mlp_0", **kw)(h)
        h = nn.gelu(h, approximate=False)
        pt = torch_softplus(_conv1x1(4, "mlp_2", **kw)(h)).astype(jnp.float32)
        p = pt[..., 0:2] + self.p_eps
        p = p[..., 0] / (p[..., 0] + p[..., 1])
        t = pt[..., 2:4] + self.p_eps
        t = t[..., 0] / (t[..., 0] + t[..., 1])
        t = (self.max_temp - self.min_temp) * t[..., None] + self.min_temp
        # LogBinomial(n_classes): K - 1 stored as a float tensor, k as an integer arange.
        k = np.arange(self.n_classes, dtype=np.float32)
        k_minus_1 = np.float32(self.n_classes - 1)
        eps = 1e-4
        one_minus_p = jnp.clip(1 - p, eps, 1)[..., None]
        p = jnp.clip(p, eps, 1)[..., None]
        binom = jnp.asarray(log_binom(k_minus_1, k))
        y = binom + k * jnp.log(p) + (k_minus_1 - k) * jnp.log(one_minus_p)
        return nn.softmax(y / t, axis=-1)


class ZoeDepthMetric(nn.Module):
    """Depth Anything V1 (relative) core + ZoeDepth metric bins head.

    Parameter tree: `core` (a `DepthAnything`: `pretrained`, `depth_head`), `conv2`,
    `seed_bin_regressor`, `seed_projector`, `projectors_{0..3}`, `attractors_{0..3}`,
    `conditional_log_binomial` (official names with `.{i}` written `_{i}`; each `_net.{i}` /
    `mlp.{i}` conv is `net_{i}` / `mlp_{i}`).

    Input in the reference: `ZoeDepth.forward` takes [0, 1] RGB; `DepthAnythingCore.prep`
    resizes it bilinearly (align_corners=True) to the network size — (392, 518) from `img_size`
    in the official config, or a "minimal", aspect-keeping size rounded to multiples of 14 when
    `force_keep_ar` — then ImageNet-normalises it, and the metric map comes out at that network
    size. This module takes the resized, normalised input (`prep_for_core` does both) and
    returns depth at the same H x W. Resizing back to the image size (and the flip/padding
    test-time augmentation of `DepthModel.infer`) is left to the caller.

    Attributes:
      config: the core's architecture (`ModelConfig`, version 'v1', relative head).
      n_bins: bins per pixel (64 in the released models).
      bin_embedding_dim: bin embedding width (128).
      n_attractors: attractors per decoder level (16, 8, 4, 1).
      min_temp, max_temp: log-binomial temperature range (0.0212, 50).
      min_depth, max_depth: metres; informational for the softplus head (not used in the
        graph): the evaluation range (1e-3..10 NYU, 1e-3..80 KITTI).
      seed_mlp_dim: hidden width of ZoeDepth's seed-bin regressor (256).
      mlp_dim: hidden width of projectors and attractors (128).
    """

    config: ModelConfig
    n_bins: int = 64
    bin_embedding_dim: int = 128
    n_attractors: tuple[int, ...] = (16, 8, 4, 1)
    min_temp: float = 0.0212
    max_temp: float = 50.0
    min_depth: float = 1e-3
    max_depth: float = 10.0
    seed_mlp_dim: int = 256
    mlp_dim: int = 128
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        c = self.config
        self.core = DepthAnything(c, **kw)
        self.conv2 = _conv1x1(c.features, None, **kw)
        self.seed_bin_regressor = ConvMLP(self.seed_mlp_dim, self.n_bins, "softplus", **kw)
        self.seed_projector = ConvMLP(self.mlp_dim, self.bin_embedding_dim, **kw)
        self.projectors = [
            ConvMLP(self.mlp_dim, self.bin_embedding_dim, **kw) for _ in self.n_attractors
        ]
        self.attractors = [AttractorLayerUnnormed(n, self.mlp_dim, **kw) for n in self.n_attractors]
        self.conditional_log_binomial = ConditionalLogBinomial(
            self.n_bins, self.min_temp, self.max_temp, **kw
        )

    def __call__(self, x: jnp.ndarray, return_relative: bool = False):
        """Predicts metric depth.

        Args:
          x: [B, H, W, 3] float32 ImageNet-normalised RGB at the network size, H and W
            multiples of 14.
          return_relative: also return the core's relative (disparity-like) output.

        Returns:
          metric depth [B, H, W] float32, metres. With `return_relative`, a tuple
          (metric depth, relative depth [B, H, W] float32).
        """
        c = self.config
        h, w = x.shape[1:3]
        grid = (h // PATCH_SIZE, w // PATCH_SIZE)
        outs = self.core.pretrained(x.astype(self.dtype), tuple(c.layers))
        rel, feats = self.core.depth_head([t for t, _ in outs[:4]], grid, return_features=True)
        # DPT_DINOv2.forward: resize to the input size (align_corners=True), then ReLU.
        rel = nn.relu(resize_bilinear(rel, (h, w), align_corners=True))
        feats = {k: v.astype(jnp.float32) for k, v in feats.items()}
        rel = rel.astype(jnp.float32)

        btlnck = self.conv2(feats["l4_rn"])
        b_prev = self.seed_bin_regressor(btlnck)
        prev_emb = self.seed_projector(btlnck)
        for projector, attractor, name in zip(
            self.projectors, self.attractors, CORE_LAYER_NAMES[2:], strict=True
        ):
            emb = projector(feats[name])
            b_prev = attractor(emb, b_prev, prev_emb)
            prev_emb = emb

        last = feats["out_conv"]
        size = last.shape[1:3]
        rel_cond = _resize(rel[..., None], size)
        last = jnp.concatenate([last, rel_cond], axis=-1)
        probs = self.conditional_log_binomial(last, _resize(prev_emb, size))
        centers = _resize(b_prev, probs.shape[1:3])
        depth = jnp.sum(probs * centers, axis=-1).astype(jnp.float32)
        if return_relative:
            return depth, rel
        return depth


def prep_size(
    height: int,
    width: int,
    img_size: tuple[int, int] = (392, 518),
    keep_aspect_ratio: bool = False,
    multiple: int = PATCH_SIZE,
) -> tuple[int, int]:
    """Network (H, W) chosen by the reference's `PrepForMidas` ('minimal' resize method).

    Without `keep_aspect_ratio` (training/evaluation default) this is `img_size` rounded to
    multiples of 14; with it (`force_keep_ar`), the single scale closest to 1 that fits one
    side of `img_size`, each side then rounded (`np.round`) to a multiple of 14.
    """
    net_h, net_w = img_size
    sh, sw = net_h / height, net_w / width
    if keep_aspect_ratio:
        if abs(1 - sw) < abs(1 - sh):
            sh = sw
        else:
            sw = sh

    def constrain(v: float) -> int:
        return int(np.round(v / multiple) * multiple)

    return constrain(sh * height), constrain(sw * width)


def prep_for_core(
    x: jnp.ndarray, img_size: tuple[int, int] = (392, 518), keep_aspect_ratio: bool = False
) -> jnp.ndarray:
    """The reference's `DepthAnythingCore.prep`: resize, then ImageNet-normalise.

    Args:
      x: [B, H, W, 3] float32 RGB in [0, 1] (what the reference's `ZoeDepth.forward` takes).
      img_size, keep_aspect_ratio: see `prep_size`.

    Returns:
      [B, h', w', 3] float32, bilinear (align_corners=True) to `prep_size(H, W, ...)`, then
      `(x - mean) / std` with the ImageNet statistics: the input of `ZoeDepthMetric`.
    """
    size = prep_size(x.shape[1], x.shape[2], img_size, keep_aspect_ratio)
    x = resize_bilinear(x.astype(jnp.float32), size, align_corners=True)
    return imagenet_normalize(x)
