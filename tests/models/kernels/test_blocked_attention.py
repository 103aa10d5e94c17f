"""The CPU attention kernel (`blocked_attention`): exact values, the hand-written backward
against autodiff, no [N, N] matrix kept for the backward, and sharded batches stay local."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from dajax.models.kernels import blocked_attention as ba
from dajax.models.kernels.attention import dot_product_attention


def _qkv_and_cotangent(shape, dtype=jnp.float32):
    q, k, v, g = jax.random.normal(jax.random.key(0), (4, *shape))
    return tuple(a.astype(dtype) for a in (q, k, v)), g.astype(dtype)


def _value_and_grads(attend, qkv, cotangent):
    out, vjp = jax.vjp(attend, *qkv)
    return out, vjp(cotangent)


def test_blocking_covers_the_queries_with_least_padding():
    assert ba._blocking(1370) == (11, 125)
    assert ba._blocking(129) == (2, 65)
    assert ba._blocking(256) == (2, 128)


@pytest.mark.parametrize("devices", [8, 1])  # vectorised images / the one-device loop
@pytest.mark.parametrize("n", [300, 257])  # several query blocks, padded last block
def test_values_and_gradients_match_autodiff_of_dense_attention(monkeypatch, devices, n):
    qkv, cotangent = _qkv_and_cotangent((2, 3, n, 16))
    monkeypatch.setattr(jax, "device_count", lambda: devices)
    want_out, want_grads = _value_and_grads(ba.dense_attention, qkv, cotangent)
    got_out, got_grads = jax.jit(lambda *a: _value_and_grads(ba.blocked_attention, *a))(
        qkv, cotangent
    )
    np.testing.assert_allclose(got_out, want_out, rtol=1e-5, atol=1e-6)
    for got, want in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_bfloat16_gradients_track_float32():
    qkv, cotangent = _qkv_and_cotangent((1, 2, 200, 32))
    _, want = _value_and_grads(ba.blocked_attention, qkv, cotangent)
    low = tuple(a.astype(jnp.bfloat16) for a in qkv)
    out, got = _value_and_grads(ba.blocked_attention, low, cotangent.astype(jnp.bfloat16))
    assert out.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in got)
    for g, w in zip(got, want, strict=True):
        scale = float(jnp.abs(w).max())
        np.testing.assert_allclose(np.float32(g), w, atol=0.02 * scale)


def test_backward_keeps_no_score_matrix():
    # One head's [N, N] float32 scores are 4 MB; the blocked step's temporaries stay well
    # below that (autodiff of the blocked forward would save every block's probabilities).
    shape = (1, 1, 1000, 16)
    qkv, cotangent = _qkv_and_cotangent(shape)
    spec = jax.ShapeDtypeStruct(shape, jnp.float32)

    def temps(attend):
        grads = jax.jit(lambda *a: _value_and_grads(attend, *a)[1])
        return grads.lower((spec,) * 3, spec).compile().memory_analysis().temp_size_in_bytes

    scores = 1000 * 1000 * 4
    assert temps(ba.dense_attention) > scores
    assert temps(ba.blocked_attention) < scores / 2


@pytest.mark.perf
def test_sharded_batch_needs_no_collective():
    # Data parallel over the 8 test devices: each device attends over its own images only,
    # forward and backward (a loop over the batch would gather every image onto every device).
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    spec = jax.ShapeDtypeStruct(
        (8, 2, 300, 16), jnp.float32, sharding=jax.sharding.NamedSharding(mesh, P("data"))
    )
    attend = lambda q, k, v: dot_product_attention(q, k, v, "chunked")  # noqa: E731
    grads = jax.jit(lambda *a: _value_and_grads(attend, *a))
    hlo = grads.lower((spec,) * 3, spec).compile().as_text()
    assert not any(op in hlo for op in ("all-gather", "all-to-all", "all-reduce"))


def _textbook(q, k, v):
    """softmax(q kᵀ / √d) v in float32, written out."""
    q, k, v = (a.astype(jnp.float32) for a in (q, k, v))
    scores = jnp.einsum("bhqd,bhkd->bhqk", q, k, precision="highest") / q.shape[-1] ** 0.5
    return jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(scores, axis=-1), v, precision="highest")


@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-6), (jnp.bfloat16, 1e-2)])
def test_blocked_values_match_the_textbook_form(dtype, tol):
    # float32: exact up to rounding; bfloat16 (same bf16 inputs): the probabilities are rounded
    # to bf16 for the second matmul, a relative error of at most ~2^-8 per term.
    qkv, _ = _qkv_and_cotangent((1, 2, 300, 64), dtype)
    got = jax.jit(ba.blocked_attention)(*qkv)
    want = _textbook(*qkv)
    assert got.dtype == dtype
    np.testing.assert_allclose(np.float32(got), want, atol=tol * float(jnp.abs(want).max()))
