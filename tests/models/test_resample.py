"""Resampling and position-embedding interpolation against `torch.nn.functional.interpolate`."""

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dajax.models.resample import (
    interpolate_pos_embed,
    resample_axis,
    resize_bicubic_by_scale,
    resize_bicubic_to_size,
    resize_bilinear,
)

GRIDS = [(24, 40), (37, 37), (50, 20), (74, 74), (36, 49), (1, 3)]


def _torch(x_nhwc, **kwargs):
    t = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2)
    return F.interpolate(t, **kwargs).permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def grid37():
    return np.random.RandomState(0).randn(1, 37, 37, 6).astype(np.float32)


@pytest.mark.parametrize("hw", GRIDS)
def test_bicubic_scale_factor_matches_torch(grid37, hw):
    scale = ((hw[0] + 0.1) / 37, (hw[1] + 0.1) / 37)
    ref = _torch(grid37, scale_factor=scale, mode="bicubic", align_corners=False)
    out = np.asarray(resize_bicubic_by_scale(grid37, scale))
    assert out.shape == ref.shape == (1, *hw, 6)
    np.testing.assert_allclose(out, ref, atol=3e-5)


@pytest.mark.parametrize("hw", GRIDS)
def test_bicubic_size_matches_torch(grid37, hw):
    ref = _torch(grid37, size=hw, mode="bicubic", align_corners=False)
    np.testing.assert_allclose(np.asarray(resize_bicubic_to_size(grid37, hw)), ref, atol=3e-5)


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("hw", GRIDS + [(518, 700)])
def test_bilinear_matches_torch(grid37, hw, align_corners):
    ref = _torch(grid37, size=hw, mode="bilinear", align_corners=align_corners)
    out = np.asarray(resize_bilinear(grid37, hw, align_corners=align_corners))
    np.testing.assert_allclose(out, ref, atol=1e-5)


def _resize_gradient(hw, mode: str, align_corners: bool):
    """The jitted `(x, cotangent) -> x's cotangent` of resizing [1, H, W, C] to `hw`."""
    method = "linear" if mode == "bilinear" else "cubic"

    def resize(x):
        x = resample_axis(x, 1, hw[0], method=method, align_corners=align_corners)
        return resample_axis(x, 2, hw[1], method=method, align_corners=align_corners)

    return jax.jit(lambda x, c: jax.vjp(resize, x)[1](c)[0])


@pytest.mark.parametrize(
    "hw, mode, align_corners",
    [((74, 74), "bilinear", True), ((518, 300), "bilinear", True), ((20, 50), "bilinear", False)]
    + [((24, 40), "bicubic", False), ((74, 31), "bicubic", False)],
)
def test_resize_gradient_matches_torch(grid37, hw, mode, align_corners):
    """The custom backward (a gather over the transposed taps) is autograd's gradient of
    `interpolate`."""
    cotangent = np.random.RandomState(1).randn(1, *hw, 6).astype(np.float32)
    t = torch.from_numpy(grid37).permute(0, 3, 1, 2).requires_grad_()
    out = F.interpolate(t, size=hw, mode=mode, align_corners=align_corners)
    out.backward(torch.from_numpy(cotangent).permute(0, 3, 1, 2))
    want = t.grad.permute(0, 2, 3, 1).numpy()
    grad = _resize_gradient(hw, mode, align_corners)
    np.testing.assert_allclose(grad(grid37, cotangent), want, rtol=1e-5, atol=1e-4)


@pytest.mark.perf
@pytest.mark.parametrize("hw, mode", [((74, 74), "bilinear"), ((24, 40), "bicubic")])
def test_resize_gradient_gathers_only(grid37, hw, mode):
    """The compiled gradient has no scatter (GPUs run scatter-add with atomics)."""
    cotangent = np.zeros((1, *hw, 6), np.float32)
    grad = _resize_gradient(hw, mode, align_corners=False)
    assert "scatter" not in grad.lower(grid37, cotangent).compile().as_text()


def test_official_and_hf_rules_differ_off_the_pretraining_grid():
    """The 0.1 offset / scale_factor rule is not transformers' size rule."""
    pos = np.random.RandomState(1).randn(1, 1 + 37 * 37, 8).astype(np.float32)
    official = np.asarray(interpolate_pos_embed(pos, (24, 40), 37, "official"))
    hf = np.asarray(interpolate_pos_embed(pos, (24, 40), 37, "hf"))
    assert official.shape == hf.shape == (1, 1 + 24 * 40, 8)
    np.testing.assert_array_equal(official[:, 0], pos[:, 0])  # cls position untouched
    assert np.abs(official - hf).max() > 1e-2
    for mode in ("official", "hf"):  # 518 x 518 uses the table unchanged
        np.testing.assert_array_equal(
            np.asarray(interpolate_pos_embed(pos, (37, 37), 37, mode)), pos
        )


@pytest.mark.parametrize("hw", [(24, 40), (49, 37), (74, 74)])
def test_official_pos_embed_matches_dinov2_rule(hw):
    """DINOv2: interpolate(scale_factor=((h + 0.1) / 37, (w + 0.1) / 37), mode='bicubic')."""
    pos = np.random.RandomState(2).randn(1, 1 + 37 * 37, 8).astype(np.float32)
    grid = torch.from_numpy(pos[:, 1:]).reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    scale = ((hw[0] + 0.1) / 37, (hw[1] + 0.1) / 37)
    ref = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
    ref = ref.permute(0, 2, 3, 1).reshape(1, -1, 8).numpy()
    out = np.asarray(interpolate_pos_embed(pos, hw, 37, "official"))
    np.testing.assert_allclose(out[:, 1:], ref, atol=3e-5)
