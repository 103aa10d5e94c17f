"""The plain reference model and the fast model are one network: the same parameter tree, the
same outputs, and the same gradients of the teacher and student training losses."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import student as student_config
from dajax.inference import DepthEstimator
from dajax.models import (
    DepthAnything,
    ModelConfig,
    ReferenceDepthAnything,
    build_model,
    init_params,
    param_shapes,
)
from dajax.training import setup, student, teacher

TINY = dict(encoder="custom", dim=32, heads=2, features=8, out_channels=(4, 8, 16, 32))
CONFIGS = {
    # V1: the last four blocks feed the head; official position-embedding rule.
    "v1": ModelConfig(version="v1", depth=4, layers=(0, 1, 2, 3), pretrain_grid=4, **TINY),
    # V2 metric, SwiGLU, `transformers`' position-embedding rule, the last block not in the
    # head's layers (return_features adds it).
    "v2_metric": ModelConfig(
        depth=5,
        layers=(0, 1, 3, 2),
        ffn="swiglu",
        head="metric",
        max_depth=20.0,
        pos_embed="hf",
        pretrain_grid=3,
        **TINY,
    ),
}
H, W = 28, 42  # a non-square 2 x 3 patch grid


def _perturbed(params, seed, scale):
    """params + scale * N(0, 1) noise, leaf by leaf."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noise = [scale * jax.random.normal(k, p.shape) for k, p in zip(keys, leaves, strict=True)]
    return jax.tree.unflatten(tree, [p + n for p, n in zip(leaves, noise, strict=True)])


@functools.cache
def _models(name):
    config = CONFIGS[name]
    fast = DepthAnything(config)
    params = init_params(fast, jax.random.key(0))
    # Non-trivial LayerScales, LayerNorm affines and biases, so each parameter's role shows.
    params = _perturbed(params, seed=1, scale=0.1)
    # A positive final bias keeps most pixels of a relative head above its ReLU, so the losses'
    # gradients reach every parameter (at init ~95% of them are clipped to 0).
    params["depth_head"]["output_conv2_2"]["bias"] += 2.0
    return fast, ReferenceDepthAnything(config), params


def _images(seed, n=2):
    return jax.random.normal(jax.random.key(seed), (n, H, W, 3))


def _assert_close(got, want, rtol=1e-4):
    """Every leaf agrees to `rtol` of its largest magnitude."""
    for path, g, w in zip(
        jax.tree_util.tree_leaves_with_path(got),
        jax.tree.leaves(got),
        jax.tree.leaves(want),
        strict=True,
    ):
        scale = float(jnp.abs(w).max()) or 1.0
        err = float(jnp.abs(g - w).max())
        assert err <= rtol * scale, f"{jax.tree_util.keystr(path[0])}: {err} vs scale {scale}"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_same_parameter_tree(name):
    config = CONFIGS[name]
    assert jax.tree.map(lambda s: (s.shape, s.dtype), param_shapes(DepthAnything(config))) == (
        jax.tree.map(lambda s: (s.shape, s.dtype), param_shapes(ReferenceDepthAnything(config)))
    )


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.slow
def test_same_outputs_and_features(name):
    fast, ref, params = _models(name)
    x = _images(2)
    run = lambda m: jax.jit(lambda p: m.apply({"params": p}, x, return_features=True))  # noqa: E731
    depth, feats = run(ref)(params)
    assert depth.shape == (2, H, W) and feats.shape == (2, 6, 32)
    _assert_close((depth, feats), run(fast)(params))


def _teacher_batch():
    rng = np.random.default_rng(0)
    return {
        "image": rng.integers(0, 256, (2, H, W, 3), np.uint8),
        "target": rng.uniform(0.1, 1, (2, H, W)).astype(np.float32),
        "mask": rng.uniform(size=(2, H, W)) > 0.2,
    }


@pytest.mark.slow
def test_same_teacher_loss_gradient():
    """The V1 relative model (the V2 metric one is checked through the student's loss)."""
    fast, ref, params = _models("v1")
    batch = _teacher_batch()
    grad = lambda m: jax.jit(jax.grad(lambda p: teacher.make_loss_fn(m)(p, batch, {}, None)[0]))  # noqa: E731
    _assert_close(grad(ref)(params), grad(fast)(params))


def _student_config():
    config = student_config.get_config("demo")
    config.loss.update(unlabeled=True, feature=True, color_blur=True, cutmix=True)
    return config


@pytest.mark.slow
def test_same_student_loss_gradient():
    """L_labeled + L_unlabeled (CutMix, perturbed) + L_feat against a different frozen encoder."""
    fast, ref, params = _models("v2_metric")
    rng = np.random.default_rng(1)
    batch = {
        "l_image": rng.integers(0, 256, (2, H, W, 3), np.uint8),
        "l_target": rng.uniform(0.1, 1, (2, H, W)).astype(np.float32),
        "l_mask": np.ones((2, H, W), bool),
        "u_image": rng.integers(0, 256, (4, H, W, 3), np.uint8),
        "u_pseudo": rng.uniform(0.1, 1, (4, H, W)).astype(np.float32),
    }
    frozen = {"dinov2": _perturbed(params["pretrained"], seed=2, scale=1.0)}
    config = _student_config()
    outs = []
    for model in (fast, ref):
        loss_fn = student.make_loss_fn(model, config, batch_shards=1)
        f = lambda p, loss_fn=loss_fn: loss_fn(p, batch, frozen, jax.random.key(3))  # noqa: E731
        outs.append(jax.jit(jax.value_and_grad(f, has_aux=True))(params))
    (_, want_metrics), want_grad = outs[0]
    (_, metrics), grad = outs[1]
    want_keys = {"loss_labeled", "loss_unlabeled", "loss_feature", "feature_within_margin"}
    assert set(metrics) == want_keys
    assert float(metrics["loss_feature"]) > 0  # the feature term contributes a gradient
    _assert_close(metrics, want_metrics)
    _assert_close(grad, want_grad)


def test_model_from_config_switch():
    model_cfg = ml_collections.ConfigDict(_student_config().model.to_dict())
    assert isinstance(setup.model_from_config(model_cfg)[0], DepthAnything)
    model_cfg.update(impl="reference", dtype="float32")  # the reference computes in float32
    assert isinstance(setup.model_from_config(model_cfg)[0], ReferenceDepthAnything)
    model_cfg.remat = "full"  # a kernel option the reference does not have
    with pytest.raises(ValueError, match="config.model: the reference model has no kernel"):
        setup.model_from_config(model_cfg)
    model_cfg.impl = "slow"
    with pytest.raises(ValueError, match="impl must be one of"):
        setup.model_from_config(model_cfg)


def test_build_model_reference_is_float32_only():
    config = CONFIGS["v1"]
    assert isinstance(build_model(config, "reference"), ReferenceDepthAnything)
    assert isinstance(build_model(config, "fast", jnp.bfloat16), DepthAnything)
    with pytest.raises(ValueError, match="computes in float32, got dtype bfloat16"):
        build_model(config, "reference", jnp.bfloat16)


def test_depth_estimator_runs_either_implementation():
    fast, _, params = _models("v1")
    x = _images(seed=9, n=1)
    est = {
        impl: DepthEstimator(CONFIGS["v1"], params, input_size=28, impl=impl)
        for impl in ("fast", "reference")
    }
    assert isinstance(est["reference"].model, ReferenceDepthAnything)
    _assert_close(est["reference"].forward(x), est["fast"].forward(x))
