"""Resampling that reproduces `torch.nn.functional.interpolate` exactly.

`jax.image.resize` differs from PyTorch in three ways that matter for Depth Anything parity:
its cubic kernel uses a = -0.5 (PyTorch: -0.75), it antialiases when downsampling, and it has
no `align_corners=True` mode. Here every resize is expressed as per-axis *taps*: for each output
index, a few input indices and weights computed once in NumPy (in float32, as PyTorch does)
from PyTorch's coordinate rules. Applying taps is a gather and a weighted sum, so it jits with
static shapes and costs O(taps) per output element.

Coordinate rules (PyTorch `area_pixel_compute_scale` / `..._source_index`):
- `align_corners=False`: `src = ratio * (dst + 0.5) - 0.5`, where `ratio = 1 / scale_factor`
  when a scale factor is passed, else `in_size / out_size`. Linear clamps `src` at 0; cubic
  does not (indices are clamped to the border instead).
- `align_corners=True`: `src = dst * (in_size - 1) / (out_size - 1)` (0 when out_size == 1);
  a passed scale factor only sets the output size.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

from dajax.models import kernels

TORCH_CUBIC_A = -0.75


@functools.lru_cache(maxsize=256)
def _taps(
    method: str, in_size: int, out_size: int, align_corners: bool, scale: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Input indices [out, k] int32 and weights [out, k] float32 for one axis.

    Coordinates are computed in float32 as PyTorch's CPU kernels do (`opmath_t` is float for
    float inputs); float64 coordinates would differ from PyTorch by ~1e-6 relative.
    """
    f32 = np.float32
    dst = np.arange(out_size, dtype=f32)
    if align_corners:
        ratio = f32(in_size - 1) / f32(out_size - 1) if out_size > 1 else f32(0.0)
        src = dst * ratio
    else:
        ratio = f32(1.0 / scale) if scale else f32(in_size) / f32(out_size)
        src = ratio * (dst + f32(0.5)) - f32(0.5)
    if method == "linear":
        if not align_corners:
            src = np.maximum(src, f32(0.0))
        i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
        t = np.clip(src - i0.astype(f32), f32(0.0), f32(1.0))
        idx = np.stack([i0, np.minimum(i0 + 1, in_size - 1)], axis=1)
        w = np.stack([f32(1.0) - t, t], axis=1)
    elif method == "cubic":
        i0 = np.floor(src).astype(np.int64)
        t = src - i0.astype(f32)
        one = f32(1.0)
        idx = np.clip(np.stack([i0 - 1, i0, i0 + 1, i0 + 2], axis=1), 0, in_size - 1)
        w = np.stack(
            [_cubic_far(t + one), _cubic_near(t), _cubic_near(one - t), _cubic_far(f32(2.0) - t)],
            axis=1,
        )
    else:
        raise ValueError(f"unknown resample method {method!r}; expected 'linear' or 'cubic'")
    return idx.astype(np.int32), w.astype(f32)


def _cubic_near(x: np.ndarray) -> np.ndarray:
    """Keys cubic kernel for |x| <= 1, float32 like PyTorch's `cubic_convolution1`."""
    a = np.float32(TORCH_CUBIC_A)
    return ((a + 2) * x - (a + 3)) * x * x + 1


def _cubic_far(x: np.ndarray) -> np.ndarray:
    """Keys cubic kernel for 1 < |x| < 2, float32 like PyTorch's `cubic_convolution2`."""
    a = np.float32(TORCH_CUBIC_A)
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a


def resample_axis(
    x: jnp.ndarray,
    axis: int,
    out_size: int,
    *,
    method: str,
    align_corners: bool = False,
    scale: float | None = None,
) -> jnp.ndarray:
    """Resamples one axis of `x` as PyTorch's 1-D pass of `interpolate` would.

    Args:
      x: any array; the weights are cast to its dtype.
      axis: the axis to resample.
      out_size: output length along `axis`.
      method: 'linear' (bilinear per axis) or 'cubic' (bicubic, a = -0.75).
      align_corners: PyTorch's flag of the same name.
      scale: the `scale_factor` passed to PyTorch for this axis, or None when PyTorch was given
        an output `size` (then the ratio is in/out).

    Returns:
      `x` with `axis` of length `out_size`. Its gradient is the exact transpose, computed by
      gathering (`kernels.gather_resample`).
    """
    axis = axis % x.ndim
    in_size = x.shape[axis]
    if in_size == out_size and scale is None and (method == "linear" or not align_corners):
        return x
    return kernels.gather_resample(x, axis, *_taps(method, in_size, out_size, align_corners, scale))


def resize_bilinear(
    x: jnp.ndarray, size: tuple[int, int], *, align_corners: bool, spatial_axes=(1, 2)
) -> jnp.ndarray:
    """Bilinear resize of two spatial axes, as `interpolate(mode='bilinear', size=size)`.

    Args:
      x: e.g. [B, H, W, C] (default `spatial_axes=(1, 2)`) or [B, H, W] with axes (1, 2).
      size: (out_h, out_w).
      align_corners: PyTorch's flag.
      spatial_axes: the (height, width) axes of `x`.

    Returns:
      `x` resized to `size` along `spatial_axes`.
    """
    ah, aw = spatial_axes
    x = resample_axis(x, ah, size[0], method="linear", align_corners=align_corners)
    return resample_axis(x, aw, size[1], method="linear", align_corners=align_corners)


def resize_bicubic_by_scale(
    x: jnp.ndarray, scale: tuple[float, float], spatial_axes=(1, 2)
) -> jnp.ndarray:
    """Bicubic resize as `interpolate(scale_factor=scale, mode='bicubic', align_corners=False)`.

    The output size is floor(in * scale) per axis (PyTorch computes it in double precision) and
    source coordinates use 1/scale, not in/out: this is the official DINOv2 rule.
    """
    for axis, s in zip(spatial_axes, scale, strict=True):
        out = int(math.floor(x.shape[axis] * s))
        x = resample_axis(x, axis, out, method="cubic", scale=s)
    return x


def resize_bicubic_to_size(
    x: jnp.ndarray, size: tuple[int, int], spatial_axes=(1, 2)
) -> jnp.ndarray:
    """Bicubic resize as `interpolate(size=size, mode='bicubic', align_corners=False)`."""
    for axis, out in zip(spatial_axes, size, strict=True):
        x = resample_axis(x, axis, out, method="cubic")
    return x


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
        grid = resize_bicubic_by_scale(grid, scale)
    else:
        grid = resize_bicubic_to_size(grid, (h, w))
    return jnp.concatenate([cls_pos, grid.reshape(1, h * w, -1)], axis=1)
