"""`kernels.tpu_attention`: the Pallas TPU flash kernel, run in Pallas' interpret mode on
the CPU, against XLA's plain attention, at a token count that is not a whole block."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu
from jax.sharding import AxisType

from dajax import sharding
from dajax.models.kernels import tpu_attention
from dajax.models.kernels.attention import xla_attention


def _qkv(batch: int, heads: int, tokens: int):
    keys = jax.random.split(jax.random.key(0), 3)
    return [jax.random.normal(k, (batch, heads, tokens, 64), jnp.float32) for k in keys]


def _loss(attention):
    # Weights per output element, so the gradient checks more than a sum of outputs would.
    w = jnp.cos(jnp.arange(64.0))
    return lambda q, k, v: (attention(q, k, v) * w).sum()


@pytest.mark.slow
def test_padded_tokens_are_masked_forward_and_backward():
    # 130 tokens (1 + an odd grid, as ViT's 1370) pad to two blocks of 128: 126 padded keys,
    # whose zero scores would take softmax weight if the mask failed.
    q, k, v = _qkv(1, 2, 130)
    with pltpu.force_tpu_interpret_mode():
        out = jax.jit(tpu_attention.flash_attention)(q, k, v)
        grads = jax.jit(jax.grad(_loss(tpu_attention.flash_attention), argnums=(0, 1, 2)))(q, k, v)
    assert out.shape == q.shape
    np.testing.assert_allclose(out, xla_attention(q, k, v), atol=2e-5)
    want = jax.grad(_loss(xla_attention), argnums=(0, 1, 2))(q, k, v)
    for got, ref in zip(grads, want, strict=True):
        np.testing.assert_allclose(got, ref, atol=2e-5)


@pytest.mark.perf
def test_kernel_runs_per_device_under_the_mesh():
    mesh = sharding.make_mesh(2, jax.devices()[:4])  # slice 1 x data 2 x fsdp 2
    q, k, v = _qkv(2, 2, 130)
    fn = jax.jit(tpu_attention.flash_attention)
    with pltpu.force_tpu_interpret_mode(), jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        text = fn.lower(q, k, v).as_text()
    with pltpu.force_tpu_interpret_mode(), jax.set_mesh(mesh):
        out = fn(q, k, v)
    # A manual (shard_map) region: XLA cannot partition the kernel itself.
    assert "manual" in text
    np.testing.assert_allclose(out, xla_attention(q, k, v), atol=2e-5)


def test_mesh_axes_split_the_batch_then_the_heads():
    mesh = jax.make_mesh(
        (1, 2, 2), sharding.BATCH_AXES, axis_types=(AxisType.Auto,) * 3, devices=jax.devices()[:4]
    )
    assert tpu_attention._split_axes(mesh, [4, 16]) == [("slice", "data", "fsdp"), ()]
    assert tpu_attention._split_axes(mesh, [2, 16]) == [("slice", "data"), ("fsdp",)]
    assert tpu_attention._split_axes(mesh, [1, 3]) == [("slice",), ()]  # the rest replicated


def test_partitionable_only_on_one_device_or_under_a_mesh():
    assert jax.device_count() == 8 and not tpu_attention.partitionable()
    with jax.sharding.use_abstract_mesh(sharding.make_mesh().abstract_mesh):
        assert tpu_attention.partitionable()
