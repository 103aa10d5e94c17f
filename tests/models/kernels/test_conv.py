"""`dajax.models.kernels.conv`: the convolution with its own kernel gradient on CPUs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dajax.models.kernels import conv


def _reference(x, kernel, strides, padding):
    return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=conv._NHWC)


@pytest.mark.parametrize(
    "x_shape, kernel_shape, strides, padding",
    [
        ((2, 13, 11, 4), (3, 3, 4, 5), (1, 1), ((1, 1), (1, 1))),  # DPT 3x3
        ((2, 9, 10, 6), (3, 3, 6, 3), (2, 2), ((1, 1), (1, 1))),  # resize_layers_3, odd sizes
        ((1, 28, 42, 3), (14, 14, 3, 8), (14, 14), "VALID"),  # patch embedding
        ((2, 5, 7, 6), (1, 1, 6, 2), (1, 1), ((0, 0), (0, 0))),  # 1x1 projections
        ((1, 8, 8, 2), (2, 3, 2, 4), (1, 2), ((0, 1), (2, 0))),  # uneven everything
    ],
)
@pytest.mark.slow
def test_values_and_gradients_match_lax(x_shape, kernel_shape, strides, padding):
    x = jax.random.normal(jax.random.key(0), x_shape)
    kernel = jax.random.normal(jax.random.key(1), kernel_shape)
    pads = padding
    if isinstance(padding, str):
        pads = lax.padtype_to_pads(x_shape[1:3], kernel_shape[:2], strides, padding)
    want, want_vjp = jax.vjp(lambda x, k: _reference(x, k, strides, pads), x, kernel)
    fast = lambda x, k: conv.conv_general_dilated(x, k, strides, padding)  # noqa: E731
    got, got_vjp = jax.vjp(fast, x, kernel)
    if kernel_shape[:2] == (1, 1):  # a matmul: equal up to summation order
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)
    d_out = jax.random.normal(jax.random.key(2), want.shape)
    for g, w in zip(got_vjp(d_out), want_vjp(d_out), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.perf
@pytest.mark.parametrize("size, convolutions", [(16, 2), (232, 1)])
def test_cpu_kernel_gradient_is_one_convolution_on_small_maps_else_matmuls(size, convolutions):
    # Up to CONV_FORM_PIXELS output pixels: the forward and the kernel gradient as a forward
    # convolution (kernel_grad_by_conv); above: the forward only, and the taps' matmuls.
    x = jax.ShapeDtypeStruct((2, size, size, 8), jnp.float32)
    kernel = jax.ShapeDtypeStruct((3, 3, 8, 8), jnp.float32)
    loss = lambda k, x: jnp.sum(conv.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1))) ** 2)  # noqa: E731
    hlo = jax.jit(jax.grad(loss)).lower(kernel, x).compile().as_text()
    assert hlo.count(" convolution(") == convolutions
    assert (" dot(" in hlo) == (convolutions == 1)


@pytest.mark.perf
def test_one_by_one_convolution_is_a_matmul_forward_and_backward():
    # XLA:CPU's convolution took ~50 ms for the DPT head's 32 -> 1 channel 1x1 conv at 518²,
    # the matmul ~2 ms.
    x = jax.ShapeDtypeStruct((1, 37, 37, 32), jnp.float32)
    kernel = jax.ShapeDtypeStruct((1, 1, 32, 1), jnp.float32)
    loss = lambda k, x: jnp.sum(conv.conv_general_dilated(x, k, (1, 1), ((0, 0), (0, 0))) ** 2)  # noqa: E731
    hlo = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(kernel, x).compile().as_text()
    assert " convolution(" not in hlo and " dot(" in hlo


def test_bfloat16_kernel_gradient_keeps_its_dtype_and_tracks_float32():
    x = jax.random.normal(jax.random.key(0), (2, 12, 12, 8))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 8, 8))

    def kernel_grad(dtype):
        loss = lambda k: jnp.sum(  # noqa: E731
            conv.conv_general_dilated(x.astype(dtype), k, (1, 1), ((1, 1), (1, 1))) ** 2
        )
        return jax.grad(loss)(kernel.astype(dtype))

    low, high = kernel_grad(jnp.bfloat16), kernel_grad(jnp.float32)
    assert low.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.float32(low), high, atol=0.02 * float(jnp.abs(high).max()))


def test_flax_conv_takes_it_with_unchanged_parameters():
    x = jax.random.normal(jax.random.key(0), (1, 6, 6, 3))
    plain = nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)))
    fast = plain.clone(conv_general_dilated=conv.conv_general_dilated)
    params = plain.init(jax.random.key(1), x)
    assert jax.tree.all(jax.tree.map(jnp.array_equal, params, fast.init(jax.random.key(1), x)))
    np.testing.assert_array_equal(fast.apply(params, x), plain.apply(params, x))


def test_dilated_or_grouped_convolutions_are_refused():
    x, kernel = jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 2, 4))
    with pytest.raises(ValueError, match="feature_group_count=2"):
        conv.conv_general_dilated(x, kernel, (1, 1), "SAME", feature_group_count=2)
    with pytest.raises(ValueError, match="rhs_dilation"):
        conv.conv_general_dilated(x, jnp.ones((3, 3, 4, 4)), (1, 1), "SAME", rhs_dilation=(2, 2))
