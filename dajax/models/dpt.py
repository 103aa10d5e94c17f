"""DPT depth head of Depth Anything (identical module graph in V1 and V2; BatchNorm off).

Names follow the official `dpt.py` (`projects.{i}`, `resize_layers.{i}`,
`scratch.layer{i}_rn`, `scratch.refinenet{i}.resConfUnit{1,2}.conv{1,2}`, `out_conv`,
`scratch.output_conv1`, `scratch.output_conv2.{0,2}`), with `scratch.` dropped and list indices
written as `_{i}`. All tensors are NHWC. The fast implementation: its convolutions and
upsamplers are `dajax.models.kernels`' (the plain one is `dajax.models.reference.DPTHead`).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dajax.models import kernels
from dajax.models.resample import resize_bilinear
from dajax.models.variants import PATCH_SIZE

Dtype = jnp.dtype | type


def _conv(features: int, kernel: int, name: str, dtype, param_dtype, *, bias=True, stride=1):
    pad = (kernel - 1) // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=stride,
        # Explicit symmetric padding: 'SAME' pads (0, 1) for stride 2 on even sizes.
        padding=((pad, pad), (pad, pad)),
        use_bias=bias,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
        conv_general_dilated=kernels.conv_general_dilated,
    )


class PatchUpsample(nn.Module):
    """PyTorch `ConvTranspose2d(c, c, kernel_size=k, stride=k)`: every pixel -> a k x k block,
    as one matmul (`kernels.patch_upsample`). `kernel` is stored [k, k, in, out] (PyTorch:
    [in, out, k, k])."""

    features: int
    factor: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """[B, H, W, C] -> [B, H*k, W*k, features] `dtype`."""
        k, cin = self.factor, x.shape[-1]
        kernel = self.param(
            "kernel",
            nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform", in_axis=2, out_axis=3),
            (k, k, cin, self.features),
            self.param_dtype,
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        return kernels.patch_upsample(*nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype))


class ResidualConvUnit(nn.Module):
    """`x + conv2(relu(conv1(relu(x))))`, 3x3 convs with bias."""

    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = _conv(self.features, 3, "conv1", **kw)(nn.relu(x))
        h = _conv(self.features, 3, "conv2", **kw)(nn.relu(h))
        return x + h


class FeatureFusionBlock(nn.Module):
    """Adds an RCU-refined skip, refines, upsamples (align_corners=True), projects 1x1."""

    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, skip: jnp.ndarray | None, size: tuple[int, int] | None
    ) -> jnp.ndarray:
        """x, skip: [B, h, w, F]; size: output (H, W), or None for x2 (PyTorch floor)."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if skip is not None:
            x = x + ResidualConvUnit(self.features, name="resConfUnit1", **kw)(skip)
        x = ResidualConvUnit(self.features, name="resConfUnit2", **kw)(x)
        if size is None:
            size = (2 * x.shape[1], 2 * x.shape[2])
        x = resize_bilinear(x, size, align_corners=True)
        return _conv(self.features, 1, "out_conv", **kw)(x)


class DPTHead(nn.Module):
    """Depth Anything's DPT decoder.

    Attributes:
      features: fusion width.
      out_channels: per-level projection widths (levels at 4x, 2x, 1x, 1/2x the patch grid).
      head: 'relative' (final ReLU) or 'metric' (final sigmoid; the caller scales by max_depth).
    """

    features: int
    out_channels: Sequence[int]
    head: str = "relative"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        tokens: Sequence[jnp.ndarray],
        grid_hw: tuple[int, int],
        return_features: bool = False,
    ):
        """Decodes four token maps.

        Args:
          tokens: four [B, h*w, C] patch-token arrays (cls tokens are not used).
          grid_hw: the patch grid (h, w).
          return_features: also return the intermediate activations that ZoeDepth's
            `DepthAnythingCore` hooks (see below).

        Returns:
          [B, 14h, 14w] float: ReLU disparity, or sigmoid output in (0, 1) for metric heads.
          With `return_features`, a tuple (depth, features) where features is a dict of NHWC
          maps: 'out_conv' [B, 14h, 14w, 32] (ReLU after `output_conv2.0`), 'l4_rn'
          [B, ceil(h/2), ceil(w/2), F], 'r4' [B, h, w, F], 'r3' [B, 2h, 2w, F], 'r2'
          [B, 4h, 4w, F], 'r1' [B, 8h, 8w, F] (refinenet outputs).
        """
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        gh, gw = grid_hw
        levels = []
        for i, (t, ch) in enumerate(zip(tokens, self.out_channels, strict=True)):
            x = t.reshape(t.shape[0], gh, gw, t.shape[-1])
            x = _conv(ch, 1, f"projects_{i}", **kw)(x)
            if i == 0:
                x = PatchUpsample(ch, 4, name="resize_layers_0", **kw)(x)
            elif i == 1:
                x = PatchUpsample(ch, 2, name="resize_layers_1", **kw)(x)
            elif i == 3:
                x = _conv(ch, 3, "resize_layers_3", stride=2, **kw)(x)
            levels.append(_conv(self.features, 3, f"layer{i + 1}_rn", bias=False, **kw)(x))
        l1, l2, l3, l4 = levels
        fuse = [FeatureFusionBlock(self.features, name=f"refinenet{i}", **kw) for i in (1, 2, 3, 4)]
        r4 = fuse[3](l4, None, l3.shape[1:3])
        r3 = fuse[2](r4, l3, l2.shape[1:3])
        r2 = fuse[1](r3, l2, l1.shape[1:3])
        path = fuse[0](r2, l1, None)
        out = _conv(self.features // 2, 3, "output_conv1", **kw)(path)
        out = resize_bilinear(out, (gh * PATCH_SIZE, gw * PATCH_SIZE), align_corners=True)
        out_conv = nn.relu(_conv(32, 3, "output_conv2_0", **kw)(out))
        out = _conv(1, 1, "output_conv2_2", **kw)(out_conv)[..., 0]
        depth = nn.sigmoid(out) if self.head == "metric" else nn.relu(out)
        if return_features:
            features = dict(out_conv=out_conv, l4_rn=l4, r4=r4, r3=r3, r2=r2, r1=path)
            return depth, features
        return depth
