"""`kernels.exact_gelu`: PyTorch's erf GELU value and gradient, float32 and bfloat16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from dajax.models.kernels.gelu import exact_gelu


@pytest.mark.parametrize("dtype, rtol", [(jnp.float32, 1e-6), (jnp.bfloat16, 1e-2)])
def test_exact_gelu_matches_torch_value_and_gradient(dtype, rtol):
    x = np.linspace(-6, 6, 1001, dtype=np.float32)
    cotangent = np.random.RandomState(0).randn(x.size).astype(np.float32)
    t = torch.from_numpy(x).requires_grad_()
    torch.nn.functional.gelu(t).backward(torch.from_numpy(cotangent))
    xj, cj = jnp.asarray(x, dtype), jnp.asarray(cotangent, dtype)
    value, vjp = jax.vjp(exact_gelu, xj)
    assert value.dtype == vjp(cj)[0].dtype == dtype
    # PyTorch's value of the same (rounded) input: both evaluate 0.5·x·(1 + erf(x/√2)) in
    # float32 and round once to the input dtype (bfloat16: one rounding step apart at most).
    rounded = torch.tensor(np.float32(xj)).to(torch.bfloat16 if dtype == jnp.bfloat16 else None)
    want_value = torch.nn.functional.gelu(rounded).float().numpy()
    np.testing.assert_allclose(np.float32(value), want_value, rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(np.float32(vjp(cj)[0]), t.grad.numpy(), rtol=rtol, atol=rtol)
