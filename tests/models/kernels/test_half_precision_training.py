"""The CPU kernels of bf16 training: `precision.dot`'s backward keeps bf16 operands,
`convolution_dtype` keeps the DPT head in float32, the kernel gradient as one convolution
equals autodiff's, and short sequences' attention is vectorised with the hand-written
backward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxprs import equations
from tiny_models import TINY_V2

from dajax.models import DepthAnything, init_params
from dajax.models.kernels import blocked_attention as ba
from dajax.models.kernels import conv, precision


def test_dot_backward_takes_bfloat16_operands_and_tracks_float32():
    x = jax.random.normal(jax.random.key(0), (3, 5, 16))
    w = jax.random.normal(jax.random.key(1), (16, 24)) * 0.2
    g = jax.random.normal(jax.random.key(2), (3, 5, 24))
    low = [a.astype(jnp.bfloat16) for a in (x, w)]
    out, vjp = jax.vjp(precision.dot, *low)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, jnp.dot(*low, preferred_element_type=jnp.float32))
    grads = vjp(g)
    assert [d.dtype for d in grads] == [jnp.bfloat16] * 2
    for got, want in zip(grads, jax.vjp(jnp.dot, x, w)[1](g), strict=True):
        np.testing.assert_allclose(np.float32(got), want, atol=0.02 * float(jnp.abs(want).max()))
    backward = jax.make_jaxpr(vjp)(g).jaxpr
    operands = [[v.aval.dtype for v in e.invars] for e in equations(backward, ("dot_general",))]
    assert operands == [[jnp.bfloat16] * 2] * 2


def test_float32_dot_is_jnp_dot():
    x, w = jnp.ones((4, 3)), jnp.ones((3, 2))
    assert jax.make_jaxpr(precision.dot)(x, w).eqns[0].primitive.name == "dot_general"
    np.testing.assert_array_equal(precision.dot(x, w), jnp.dot(x, w))


@pytest.mark.parametrize(
    "dtype, backend, want",
    [
        (jnp.bfloat16, "cpu", jnp.float32),  # XLA:CPU has no bf16 convolution
        (jnp.float32, "cpu", jnp.float32),
        (jnp.bfloat16, "gpu", jnp.bfloat16),
        (jnp.bfloat16, "tpu", jnp.bfloat16),
    ],
)
def test_convolution_dtype_is_float32_on_cpus(monkeypatch, dtype, backend, want):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    assert precision.convolution_dtype(dtype) == want


def test_bfloat16_model_gradient_has_no_mixed_precision_matmul():
    # A float32 x bf16 matmul XLA:CPU runs in float32 after converting the bf16 operand: the
    # bf16 train step's backward ran every matmul that way before `precision.dot`. The
    # encoder's products forward and backward are bf16 x bf16; the head's are float32.
    params = init_params(DepthAnything(TINY_V2), jax.random.key(3))
    model = DepthAnything(TINY_V2, dtype=jnp.bfloat16)
    x = jax.random.normal(jax.random.key(4), (2, 42, 42, 3))
    loss = lambda p: jnp.sum(model.apply({"params": p}, x) ** 2)  # noqa: E731
    gradient = jax.make_jaxpr(jax.grad(loss))(params).jaxpr
    operands = [{v.aval.dtype for v in e.invars} for e in equations(gradient, ("dot_general",))]
    assert all(len(kinds) == 1 for kinds in operands), operands
    assert {jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)} == {k for (k,) in operands}


@pytest.mark.parametrize(
    "x_shape, kernel_shape, padding",
    [
        ((2, 13, 11, 6), (3, 3, 6, 5), ((1, 1), (1, 1))),  # Cin >= Cout: x as the image
        ((2, 13, 11, 4), (3, 3, 4, 5), ((1, 1), (1, 1))),  # Cin < Cout: dY as the image
        ((1, 8, 9, 5), (2, 3, 5, 3), ((0, 1), (2, 0))),
        ((1, 8, 8, 2), (2, 3, 2, 4), ((0, 1), (2, 0))),
    ],
)
def test_kernel_gradient_as_a_convolution_equals_autodiff(x_shape, kernel_shape, padding):
    x = jax.random.normal(jax.random.key(0), x_shape)
    kernel = jax.random.normal(jax.random.key(1), kernel_shape)
    plain = lambda k: jax.lax.conv_general_dilated(  # noqa: E731
        x, k, (1, 1), padding, dimension_numbers=conv._NHWC
    )
    out, vjp = jax.vjp(plain, kernel)
    d_out = jax.random.normal(jax.random.key(2), out.shape)
    got = conv.kernel_grad_by_conv(x, d_out, kernel_shape, padding)
    np.testing.assert_allclose(got, vjp(d_out)[0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype, rtol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_short_sequences_match_autodiff_of_dense_attention_without_a_loop(dtype, rtol):
    # 37 tokens (the demo's 6 x 6 patches and the cls token): one query block, every image
    # and head at once, the hand-written backward (no [N, N] probabilities saved).
    q, k, v, g = jax.random.normal(jax.random.key(0), (4, 8, 3, 37, 64)).astype(dtype)
    want, want_vjp = jax.vjp(ba.dense_attention, q, k, v)
    got, got_vjp = jax.vjp(ba.blocked_attention, q, k, v)
    scale = lambda a: float(jnp.abs(a.astype(jnp.float32)).max())  # noqa: E731
    np.testing.assert_allclose(np.float32(got), np.float32(want), atol=rtol * scale(want))
    for a, b in zip(got_vjp(g), want_vjp(g), strict=True):
        assert a.dtype == dtype
        np.testing.assert_allclose(np.float32(a), np.float32(b), atol=rtol * scale(b))
    grads = jax.make_jaxpr(lambda *a: jax.vjp(ba.blocked_attention, *a)[1](g))(q, k, v)
    assert "while" not in str(grads)
