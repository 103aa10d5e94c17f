"""`DepthEstimator` and the official preprocessing / post-processing rules (SPEC §4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hf_oracle import tiny_config

from dajax.inference import DepthEstimator, batch_buckets
from dajax.models import DepthAnything, init_params
from dajax.preprocess import network_size, preprocess
from dajax.preprocess_jnp import preprocess_jnp


@pytest.mark.parametrize(
    "hw, expect",
    [
        ((480, 640), (518, 686)),  # height reaches 518, width keeps the aspect: 690.7 -> 686
        ((1000, 500), (1036, 518)),
        ((518, 518), (518, 518)),
        ((100, 3000), (518, 15540)),
        ((375, 1242), (518, 1722)),  # KITTI: 1715.6 rounds to 1722 (123 x 14)
    ],
)
def test_network_size_lower_bound_multiple_of_14(hw, expect):
    assert network_size(*hw) == expect


def test_rounding_never_drops_below_the_bound():
    # 519 / 14 = 37.07 rounds to 37 * 14 = 518 (< 519): the official rule takes ceil instead.
    assert network_size(519, 519, input_size=519) == (532, 532)


def test_preprocess_normalises_with_imagenet_statistics():
    image = np.full((20, 30, 3), (124, 116, 104), np.uint8)  # ~ the ImageNet mean
    x = preprocess(image, input_size=28)
    assert x.shape == (28, 42, 3) and x.dtype == np.float32
    expect = (np.array([124, 116, 104]) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(x, np.broadcast_to(expect, x.shape), atol=1e-5)


@pytest.fixture(scope="module")
def estimators():
    out = {}
    for version in ("v1", "v2"):
        config = tiny_config(version=version)
        params = init_params(DepthAnything(config), jax.random.key(0))
        params["depth_head"]["output_conv2_2"]["bias"] = np.ones(1, np.float32)
        out[version] = DepthEstimator(config, params, input_size=56)
    return out


@pytest.mark.parametrize("version, align_corners", [("v1", False), ("v2", True)])
def test_output_is_resized_back_as_each_reference_does(estimators, version, align_corners):
    est = estimators[version]
    image = np.random.RandomState(0).randint(0, 256, (45, 61, 3), np.uint8)
    depth = est(image)
    assert depth.shape == (45, 61) and depth.dtype == np.float32
    net = np.array(est.forward(preprocess(image, 56)[None]))
    ref = F.interpolate(
        torch.from_numpy(net)[:, None], (45, 61), mode="bilinear", align_corners=align_corners
    )[0, 0].numpy()
    np.testing.assert_allclose(depth, ref, atol=1e-5 * max(1.0, np.abs(ref).max()))


def test_batch_of_mixed_sizes_equals_single_calls(estimators):
    est = estimators["v2"]
    rng = np.random.RandomState(1)
    images = [rng.randint(0, 256, hw + (3,), np.uint8) for hw in [(30, 40), (50, 20), (30, 40)]]
    batch = est.batch(images, batch_size=2)
    assert [d.shape for d in batch] == [(30, 40), (50, 20), (30, 40)]
    for image, depth in zip(images, batch, strict=True):
        np.testing.assert_allclose(depth, est(image), rtol=1e-5, atol=1e-6)


def test_any_number_of_images_runs_at_a_few_fixed_batch_sizes(estimators, monkeypatch):
    """1..7 images of one shape compile at most 4 batch sizes (1, 2, 4, 8), and padding
    changes no image's depth."""
    est = estimators["v2"]
    seen, apply = set(), est._apply

    def recording(params, x):
        seen.add(x.shape[0])
        return apply(params, x)

    monkeypatch.setattr(est, "_apply", recording)
    rng = np.random.RandomState(2)
    images = [rng.randint(0, 256, (28, 28, 3), np.uint8) for _ in range(7)]
    singles = [est(image) for image in images]
    for n in range(1, 8):
        for depth, single in zip(est.batch(images[:n], batch_size=8), singles, strict=False):
            np.testing.assert_allclose(depth, single, rtol=1e-5, atol=1e-6)
    assert seen == {1, 2, 4, 8}
    assert batch_buckets(8) == (1, 2, 4, 8) and batch_buckets(6) == (1, 2, 4, 6)
    assert batch_buckets(1) == (1,)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((0, 10, 3), np.uint8),
        [[1, 2, 3]],
    ],
)
def test_bad_images_are_clear_errors(estimators, bad):
    with pytest.raises(ValueError, match="RGB uint8|numpy array|non-empty"):
        estimators["v2"](bad)


def test_forward_rejects_wrong_layout(estimators):
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        estimators["v2"].forward(np.zeros((1, 3, 56, 56), np.float32))


def test_paths_pil_images_and_arrays_give_one_depth(estimators, tmp_path):
    from PIL import Image

    from dajax.visualize import depth_picture

    est = estimators["v2"]
    image = np.random.RandomState(2).randint(0, 256, (30, 44, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")
    expect = est(image)
    np.testing.assert_array_equal(est(tmp_path / "x.png"), expect)
    np.testing.assert_array_equal(est(str(tmp_path / "x.png")), expect)
    np.testing.assert_array_equal(est(Image.open(tmp_path / "x.png")), expect)
    batch = est.batch([str(tmp_path / "x.png"), Image.fromarray(image), image], batch_size=2)
    for depth in batch:
        np.testing.assert_allclose(depth, expect, rtol=1e-5, atol=1e-6)
    depth, picture = est.infer_image(tmp_path / "x.png")
    np.testing.assert_array_equal(depth, expect)
    assert isinstance(picture, Image.Image) and picture.size == (44, 30)
    np.testing.assert_array_equal(np.asarray(picture), depth_picture(depth, False, "spectral_r"))


def test_extreme_aspect_ratios_are_capped(estimators):
    est = estimators["v2"]  # input_size 56: a 300x1 image would need 16800x56
    assert est.network_shape(300, 1) == (448, 14) and est.max_side == 8 * 56
    assert est.network_shape(1, 4000) == (14, 448)
    assert est.network_shape(45, 61) == network_size(45, 61, 56)  # ordinary images: official
    depth = est(np.full((300, 1, 3), 128, np.uint8))
    assert depth.shape == (300, 1) and np.isfinite(depth).all()


@pytest.mark.parametrize("hw, input_size", [((30, 40), 28), ((600, 800), 518), ((37, 500), 28)])
def test_jnp_preprocessing_matches_the_opencv_one(hw, input_size):
    """Up-, down- and mixed-scale resizes: within 5e-4 of the normalised input, a thirtieth
    of one 8-bit grey level (1 / 255 / 0.225)."""
    image = np.random.default_rng(3).integers(0, 256, hw + (3,), np.uint8)
    want = preprocess(image, input_size)
    got = np.asarray(jax.jit(preprocess_jnp, static_argnums=1)(image, want.shape[:2]))
    np.testing.assert_allclose(got, want, atol=5e-4)


@pytest.mark.slow
def test_jax_users_get_a_plain_flax_module_and_a_jittable_image_to_depth_function(estimators):
    est = estimators["v2"]
    images = np.random.default_rng(4).integers(0, 256, (2, 45, 61, 3), np.uint8)
    module, variables = est.flax_module()
    assert set(variables) == {"params"}
    x = jnp.asarray(np.stack([preprocess(image, 56) for image in images]))
    out = est.forward(x)
    assert isinstance(out, jax.Array)  # forward takes and gives jax arrays
    np.testing.assert_allclose(module.apply(variables, x), out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(est.model.apply(est.variables, x), out, rtol=1e-5, atol=1e-6)

    depth = est.depth_function(45, 61)
    batched = jax.jit(depth)(est.params, images)
    for image, got in zip(images, np.asarray(batched), strict=True):
        np.testing.assert_allclose(got, est(image), rtol=1e-4, atol=1e-4)
    mapped = jax.jit(jax.vmap(depth, in_axes=(None, 0)))(est.params, images[:, None])
    np.testing.assert_allclose(mapped[:, 0], batched, rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda img: depth(est.params, img).mean())(images.astype(np.float32))
    assert grad.shape == images.shape and np.isfinite(grad).all() and np.abs(grad).max() > 0
