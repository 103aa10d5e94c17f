"""`kernels.materialize_gradient`: an identity whose CPU backward is one unfusable conditional."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dajax.models.kernels.gradient_fence import materialize_gradient


@pytest.mark.perf
def test_materialize_gradient_is_an_identity_behind_a_cpu_fence():
    x = jax.random.normal(jax.random.key(0), (2, 5, 4))
    grad = jax.random.normal(jax.random.key(1), x.shape)
    backward = jax.jit(lambda x, g: jax.vjp(materialize_gradient, x)[1](g)[0])
    np.testing.assert_array_equal(materialize_gradient(x), x)
    for g in (grad, grad.at[0, 0, 0].set(jnp.nan)):  # the NaN takes the other branch
        np.testing.assert_array_equal(backward(x, g), g)
    # The fence XLA:CPU cannot fuse through: one conditional in the compiled backward.
    hlo = backward.lower(x, grad).compile().as_text()
    assert hlo.count(" conditional(") == 1
