"""Parameter groups by regex, weight-decay mask, schedules."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from dajax.training.optimizer import build_optimizer, decay_mask, schedule


def _optim(**kw):
    base = dict(
        base_lr=5e-6,
        lr_mults=(("^depth_head/", 10.0), (".*", 1.0)),
        no_decay=(r"(bias|scale|pos_embed|cls_token|mask_token|gamma)$",),
        weight_decay=0.01,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        warmup_steps=0,
        schedule="linear",
        poly_power=0.9,
        grad_clip=1.0,
    )
    return ml_collections.ConfigDict({**base, **kw})


PARAMS = {
    "pretrained": {
        "pos_embed": jnp.ones((1, 5, 4)),
        "blocks_0": {
            "attn": {"qkv": {"kernel": jnp.ones((4, 12)), "bias": jnp.ones(12)}},
            "ls1": {"gamma": jnp.ones(4)},
            "norm1": {"scale": jnp.ones(4)},
        },
    },
    "depth_head": {"projects_0": {"kernel": jnp.ones((1, 1, 4, 3)), "bias": jnp.ones(3)}},
}


def test_decoder_learns_ten_times_faster():
    tx, lrs = build_optimizer(_optim(weight_decay=0.0, grad_clip=0.0), PARAMS, total_steps=100)
    grads = jax_tree_ones(PARAMS)
    updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
    enc = float(jnp.abs(updates["pretrained"]["blocks_0"]["attn"]["qkv"]["kernel"]).mean())
    dec = float(jnp.abs(updates["depth_head"]["projects_0"]["kernel"]).mean())
    assert enc == pytest.approx(5e-6, rel=1e-3)  # Adam's first step moves by ~lr
    assert dec == pytest.approx(10 * enc, rel=1e-3)
    assert lrs(0) == pytest.approx({"lr/depth_head": 5e-5, "lr/rest": 5e-6})


def jax_tree_ones(tree):
    return {
        k: jax_tree_ones(v) if isinstance(v, dict) else jnp.ones_like(v) for k, v in tree.items()
    }


def test_weight_decay_mask():
    mask = decay_mask(PARAMS, _optim().no_decay)
    assert mask["pretrained"]["blocks_0"]["attn"]["qkv"]["kernel"]
    assert not mask["pretrained"]["blocks_0"]["attn"]["qkv"]["bias"]
    assert not mask["pretrained"]["pos_embed"]
    assert not mask["pretrained"]["blocks_0"]["ls1"]["gamma"]
    assert not mask["pretrained"]["blocks_0"]["norm1"]["scale"]


def test_schedules():
    lin = schedule(_optim(warmup_steps=10), total_steps=110, multiplier=1.0)
    assert float(lin(0)) == 0.0 and float(lin(10)) == pytest.approx(5e-6)
    assert float(lin(60)) == pytest.approx(2.5e-6) and float(lin(110)) == 0.0
    poly = schedule(_optim(schedule="poly"), total_steps=100, multiplier=1.0)
    assert float(poly(50)) == pytest.approx(5e-6 * 0.5**0.9, rel=1e-5)


def test_frozen_group_and_unmatched_path():
    tx, _ = build_optimizer(_optim(lr_mults=(("^pretrained/", 0.0), (".*", 1.0))), PARAMS, 10)
    updates, _ = tx.update(jax_tree_ones(PARAMS), tx.init(PARAMS), PARAMS)
    assert not np.asarray(updates["pretrained"]["pos_embed"]).any()
    with pytest.raises(ValueError, match="'depth_head/projects_0/"):
        build_optimizer(_optim(lr_mults=(("^pretrained/", 1.0),)), PARAMS, 10)


def test_gradient_clipping():
    tx, _ = build_optimizer(_optim(grad_clip=1.0, weight_decay=0.0), PARAMS, 10)
    big = jax_tree_ones(PARAMS)
    clipped = optax.clip_by_global_norm(1.0).update(big, None)[0]
    assert float(optax.global_norm(clipped)) == pytest.approx(1.0, rel=1e-5)
    updates, _ = tx.update(big, tx.init(PARAMS), PARAMS)
    assert bool(jnp.isfinite(updates["pretrained"]["pos_embed"]).all())


def test_empty_no_decay_decays_every_parameter():
    """With zero gradients Adam's step is 0, so an update is exactly -lr * weight_decay * param:
    biases, norm scales, tokens and gammas decay too (V2's metric recipe)."""
    tx, _ = build_optimizer(_optim(no_decay=()), PARAMS, total_steps=100)
    zeros = jax.tree.map(jnp.zeros_like, PARAMS)
    updates, _ = tx.update(zeros, tx.init(PARAMS), PARAMS)
    assert all(jax.tree.leaves(decay_mask(PARAMS, ())))
    for path, update in jax.tree_util.tree_flatten_with_path(updates)[0]:
        lr = 5e-5 if path[0].key == "depth_head" else 5e-6
        np.testing.assert_allclose(update, -lr * 0.01, rtol=1e-5, err_msg=str(path))
    default, _ = build_optimizer(_optim(), PARAMS, total_steps=100)
    kept, _ = default.update(zeros, default.init(PARAMS), PARAMS)
    assert not np.asarray(kept["pretrained"]["blocks_0"]["norm1"]["scale"]).any()
