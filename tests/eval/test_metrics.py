"""Metric-depth metrics, evaluation masks/crops and resizing (`dajax.eval.metrics`)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dajax.eval.metrics import (
    METRIC_KEYS,
    clip_prediction,
    crop_mask,
    depth_metrics,
    eval_mask,
    per_image_metrics,
    resize_to,
)


def reference_errors(gt: np.ndarray, pred: np.ndarray) -> dict:
    """The official `compute_errors`, transcribed in float64 numpy on valid pixels."""
    thresh = np.maximum(gt / pred, pred / gt)
    err = np.log(pred) - np.log(gt)
    return {
        "a1": (thresh < 1.25).mean(),
        "a2": (thresh < 1.25**2).mean(),
        "a3": (thresh < 1.25**3).mean(),
        "abs_rel": np.mean(np.abs(gt - pred) / gt),
        "sq_rel": np.mean((gt - pred) ** 2 / gt),
        "rmse": np.sqrt(np.mean((gt - pred) ** 2)),
        "rmse_log": np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2)),
        "log_10": np.mean(np.abs(np.log10(gt) - np.log10(pred))),
        "silog": np.sqrt(np.mean(err**2) - np.mean(err) ** 2) * 100,
    }


def reference_metrics(pred, gt, mask) -> dict:
    """Per-image `reference_errors`, averaged over images with a valid pixel."""
    per_image = [
        reference_errors(g[m].astype(np.float64), p[m].astype(np.float64))
        for p, g, m in zip(pred, gt, mask, strict=True)
        if m.any()
    ]
    return {k: np.mean([e[k] for e in per_image]) for k in METRIC_KEYS}


def random_batch(seed: int, shape=(4, 12, 16), dtype=np.float32):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.5, 10.0, shape).astype(dtype)
    pred = (gt * rng.uniform(0.6, 1.6, shape)).astype(dtype)
    mask = rng.random(shape) < 0.7
    return pred, gt, mask


def test_hand_computed_2x2():
    gt = np.array([[1.0, 2.0], [4.0, 8.0]], np.float32)
    pred = np.array([[1.0, 2.4], [3.0, 8.0]], np.float32)
    out = depth_metrics(pred, gt)
    l1, l2 = math.log(1.2), math.log(0.75)  # the two nonzero log errors
    expected = {
        "a1": 0.75,  # thresh = 1, 1.2, 4/3, 1
        "a2": 1.0,
        "a3": 1.0,
        "abs_rel": (0.4 / 2 + 1.0 / 4) / 4,
        "sq_rel": (0.16 / 2 + 1.0 / 4) / 4,
        "rmse": math.sqrt((0.16 + 1.0) / 4),
        "rmse_log": math.sqrt((l1**2 + l2**2) / 4),
        "log_10": (abs(math.log10(1.2)) + abs(math.log10(0.75))) / 4,
        "silog": 100 * math.sqrt((l1**2 + l2**2) / 4 - ((l1 + l2) / 4) ** 2),
    }
    assert set(out) == set(METRIC_KEYS)
    for k, v in expected.items():
        assert out[k] == pytest.approx(v, rel=1e-6), k


def test_masked_pixels_are_ignored():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]], np.float32)
    pred = np.array([[1.0, 2.4], [3.0, 0.0]], np.float32)
    out = depth_metrics(pred, gt)  # default mask gt > 0 drops the (0, 0) pixel
    expected = reference_metrics(pred[None], gt[None], (gt > 0)[None])
    for k in METRIC_KEYS:
        assert np.isfinite(out[k]), k
        assert out[k] == pytest.approx(expected[k], rel=1e-6), k


@pytest.mark.parametrize(
    ("seed", "dtype"), [(0, np.float64), (1, np.float64), (2, np.float64), (3, np.float32)]
)
def test_matches_numpy_transcription(seed, dtype):
    pred, gt, mask = random_batch(seed, dtype=dtype)
    with jax.enable_x64(dtype == np.float64):
        out = depth_metrics(pred, gt, mask)
    expected = reference_metrics(pred, gt, mask)
    for k in METRIC_KEYS:
        assert out[k] == pytest.approx(expected[k], rel=1e-6), k


def test_per_image_metrics_shapes_and_counts():
    pred, gt, mask = random_batch(4)
    out = per_image_metrics(pred, gt, mask)
    assert set(out) == {*METRIC_KEYS, "valid"}
    for k, v in out.items():
        assert v.shape == (4,), k
    np.testing.assert_array_equal(out["valid"], mask.sum((1, 2)))


def test_empty_image_is_excluded():
    pred, gt, mask = random_batch(5)
    mask[1] = False
    pred[1] = -1.0  # garbage on the empty image must not leak into the mean
    out = depth_metrics(pred, gt, mask)
    keep = [0, 2, 3]
    expected = reference_metrics(pred[keep], gt[keep], mask[keep])
    for k in METRIC_KEYS:
        assert out[k] == pytest.approx(expected[k], rel=1e-6), k


def test_all_empty_raises():
    pred, gt, _ = random_batch(6)
    with pytest.raises(ValueError, match="no image"):
        depth_metrics(pred, gt, np.zeros(gt.shape, bool))
    with pytest.raises(ValueError, match="no image"):
        depth_metrics(pred, np.zeros_like(gt))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="differ"):
        per_image_metrics(np.ones((2, 3)), np.ones((3, 2)), np.ones((3, 2), bool))


def test_nyu_eigen_crop_and_caps():
    # gt = column / 32 m: valid (1e-3, 10) for columns 1..319 (column 320 is exactly 10 m).
    gt = np.broadcast_to(np.arange(640, dtype=np.float32) / 32, (480, 640))
    assert int(eval_mask(gt, "nyu", crop="none").sum()) == 480 * 319
    # Eigen crop: rows 45..470 (426), columns 41..600 → columns 41..319 (279) survive.
    assert int(eval_mask(gt, "nyu").sum()) == 426 * 279
    assert int(eval_mask(np.full((480, 640), 5.0), "nyu").sum()) == 426 * 560
    assert not bool(eval_mask(np.full((480, 640), 10.0), "nyu").any())
    assert not bool(eval_mask(np.full((480, 640), 1e-3), "nyu").any())


def test_kitti_garg_crop_and_caps():
    h, w = 375, 1242
    # rows int(153.04)..int(371.96) = 153..370 (218); cols int(44.65)..int(1197.35) = 44..1196.
    rows, cols = 371 - 153, 1197 - 44
    assert int(eval_mask(np.full((h, w), 50.0), "kitti").sum()) == rows * cols
    assert not bool(eval_mask(np.full((h, w), 80.0), "kitti").any())
    assert int(eval_mask(np.full((h, w), 80.0), "kitti", max_depth=81).sum()) == rows * cols
    assert int(eval_mask(np.full((2, h, w), 50.0), "kitti", crop="none").sum()) == 2 * h * w


def test_crop_box_edges():
    box = crop_mask(480, 640, "eigen")
    assert box[45, 41] and box[470, 600]
    assert not (box[44, 41] or box[45, 40] or box[471, 600] or box[470, 601])
    assert crop_mask(7, 9, "none").all()


def test_mask_argument_errors():
    gt = np.ones((480, 640), np.float32)
    with pytest.raises(ValueError, match="eigen crop"):
        eval_mask(gt[:100], "nyu")
    with pytest.raises(ValueError, match="unknown dataset"):
        eval_mask(gt, "NYU")
    with pytest.raises(ValueError, match="unknown crop"):
        eval_mask(gt, "nyu", crop="center")
    with pytest.raises(ValueError, match="min_depth and max_depth"):
        eval_mask(gt, None, max_depth=10)
    assert bool(eval_mask(gt, None, min_depth=0.5, max_depth=2).all())


def test_clip_prediction():
    pred = np.array([0.0, -1.0, 5.0, 12.0, np.inf, -np.inf, np.nan], np.float32)
    out = np.asarray(clip_prediction(pred, "nyu"))
    np.testing.assert_allclose(out, [1e-3, 1e-3, 5.0, 10.0, 10.0, 1e-3, 1e-3])


def reference_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """torch `F.interpolate(mode='bilinear', align_corners=False)` on [H, W], in numpy."""

    def taps(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    r0, r1, fr = taps(x.shape[0], out_h)
    c0, c1, fc = taps(x.shape[1], out_w)
    rows = x[r0] * (1 - fr)[:, None] + x[r1] * fr[:, None]
    return rows[:, c0] * (1 - fc) + rows[:, c1] * fc


@pytest.mark.parametrize("shape", [(17, 23), (5, 7), (9, 31)])
def test_resize_to_matches_torch_bilinear(shape):
    x = np.random.default_rng(7).uniform(0.5, 10.0, (2, 10, 14)).astype(np.float32)
    out = np.asarray(resize_to(x, shape))
    assert out.shape == (2, *shape)
    for b in range(2):
        np.testing.assert_allclose(out[b], reference_bilinear(x[b], *shape), rtol=1e-5)
    assert resize_to(x[0], shape).shape == shape


def test_jit():
    pred, gt, _ = random_batch(8, shape=(2, 480, 640))
    low = pred[:, ::2, ::2]

    @jax.jit
    def evaluate(low_pred, gt):
        pred = clip_prediction(resize_to(low_pred, gt.shape[-2:]), "nyu")
        return per_image_metrics(pred, gt, eval_mask(gt, "nyu"))

    out = evaluate(low, gt)
    mask = np.asarray(eval_mask(gt, "nyu"))
    expected = reference_metrics(
        np.clip(np.asarray(resize_to(low, (480, 640))), 1e-3, 10), gt, mask
    )
    assert isinstance(out["a1"], jnp.ndarray)
    for k in METRIC_KEYS:
        assert float(out[k].mean()) == pytest.approx(expected[k], rel=1e-5), k
