"""Architecture facts of the fast Flax Depth Anything model."""

import collections
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hf_oracle import tiny_config

from dajax.models import DepthAnything, ModelConfig, init_params, param_shapes


def _count(config):
    return sum(x.size for x in jax.tree.leaves(param_shapes(DepthAnything(config))))


@pytest.mark.parametrize(
    "encoder, millions", [("vits", 24.8), ("vitb", 97.5), ("vitl", 335.3), ("vitg", 1258.1)]
)
def test_parameter_counts_match_the_reference(encoder, millions):
    config = ModelConfig.from_variant(encoder, "v2")
    f = config.features
    unused = 2 * (9 * f * f + f)  # refinenet4.resConfUnit1 is in the .pth but never used
    assert round((_count(config) + unused) / 1e6, 1) == millions


def test_v1_uses_last_four_blocks_and_v2_fixed_indices():
    assert ModelConfig.from_variant("vitl", "v1").layers == (20, 21, 22, 23)
    assert ModelConfig.from_variant("vitl", "v2").layers == (4, 11, 17, 23)
    assert ModelConfig.from_variant("vitg", "v2").layers == (9, 19, 29, 39)
    with pytest.raises(ValueError, match="V1 has no vitg"):
        ModelConfig.from_variant("vitg", "v1")


def test_output_shape_dtype_and_features():
    config = tiny_config()
    model = DepthAnything(config)
    params = init_params(model, jax.random.key(0))
    x = jnp.ones((2, 56, 84, 3))
    depth, feats = model.apply({"params": params}, x, return_features=True)
    assert depth.shape == (2, 56, 84) and depth.dtype == jnp.float32
    assert feats.shape == (2, 4 * 6, config.dim)
    assert float(depth.min()) >= 0.0  # relative head ends in ReLU
    np.testing.assert_allclose(
        feats, model.apply({"params": params}, x, method="encode"), rtol=1e-6, atol=1e-6
    )


def test_metric_head_is_bounded_by_max_depth():
    config = tiny_config(head="metric", max_depth=10.0)
    model = DepthAnything(config)
    params = init_params(model, jax.random.key(1))
    depth = model.apply({"params": params}, jax.random.normal(jax.random.key(2), (1, 42, 42, 3)))
    assert float(depth.min()) > 0.0 and float(depth.max()) < 10.0


@pytest.mark.slow
def test_bfloat16_compute_tracks_float32():
    config = tiny_config(head="metric", max_depth=10.0)
    params = init_params(DepthAnything(config), jax.random.key(3))
    x = jax.random.normal(jax.random.key(4), (1, 70, 70, 3))
    ref = DepthAnything(config).apply({"params": params}, x)
    out = DepthAnything(config, dtype=jnp.bfloat16).apply({"params": params}, x)
    assert out.dtype == jnp.float32
    assert float(jnp.abs(out - ref).max()) < 0.05 * 10.0


def test_input_not_multiple_of_patch_is_a_clear_error():
    model = DepthAnything(tiny_config())
    with pytest.raises(ValueError, match="multiples of 14"):
        model.init(jax.random.key(0), jnp.ones((1, 50, 56, 3)))


def test_config_validation_and_json_round_trip():
    config = ModelConfig.from_variant("vitb", "v1")
    assert ModelConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ValueError, match="max_depth"):
        ModelConfig.from_variant("vits", "v2", head="metric")
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({"encoder": "vits", "bogus": 1})


@pytest.mark.parametrize("remat, blocks", [("full", 0), ("dots", 0), ("dots_no_batch", 1)])
@pytest.mark.slow
def test_remat_policies_leave_gradients_unchanged(remat, blocks):
    config = tiny_config()
    params = init_params(DepthAnything(config), jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (1, 28, 42, 3))

    def grads(model):
        return jax.grad(lambda p: model.apply({"params": p}, x).mean())(params)

    want = grads(DepthAnything(config))
    got = grads(DepthAnything(config, remat=remat, remat_blocks=blocks))
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="remat must be one of"):
        DepthAnything(config, remat="some").apply({"params": params}, x)


@pytest.mark.perf
def test_full_remat_keeps_block_inputs_and_folded_weights_only(capsys):
    """`remat='full'`: of the encoder's residuals only each block's input is activation-sized;
    the rest are the folded weights, saved so the backward pass does not recompute them."""
    config = tiny_config()
    params = init_params(DepthAnything(config), jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (1, 28, 42, 3))
    model = DepthAnything(config, remat="full")
    jax.ad_checkpoint.print_saved_residuals(lambda p: model.apply({"params": p}, x).mean(), params)
    sources = ("models/dinov2.py", "kernels/folded_dense.py")  # the blocks, their folds
    lines = capsys.readouterr().out.splitlines()
    encoder = [line for line in lines if any(source in line for source in sources)]
    folded = [line for line in encoder if "named 'folded_weights'" in line]
    assert len(folded) >= 6 * config.depth  # q, k, v, proj, fc1 and fc2 kernels at least
    others = collections.Counter(line.split()[0] for line in encoder if line not in folded)
    assert others == {f"f32[1,{1 + 2 * 3},{config.dim}]": config.depth + 1}  # + last output


def test_attention_kernel_choice_reaches_every_block():
    config = tiny_config()
    params = init_params(DepthAnything(config), jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (1, 28, 28, 3))
    chunked = DepthAnything(config, attention="chunked").apply({"params": params}, x)
    xla = DepthAnything(config, attention="xla").apply({"params": params}, x)
    np.testing.assert_allclose(chunked, xla, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="attention impl must be one of"):
        DepthAnything(config, attention="flash9").apply({"params": params}, x)
