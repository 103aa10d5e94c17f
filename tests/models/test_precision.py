"""bfloat16 compute on CPUs: every matmul and convolution takes bf16 inputs with a float32
result (XLA:CPU's fast path), float32 stays as it was, and the accuracy cost is bounded."""

import jax
import jax.numpy as jnp
import pytest
from hf_oracle import tiny_config
from jaxprs import equations

from dajax.models import DepthAnything, init_params
from dajax.models.kernels import precision


def _forward(dtype, config, x):
    params = init_params(DepthAnything(config), jax.random.key(3))
    return DepthAnything(config, dtype=dtype).apply({"params": params}, x)


@pytest.mark.parametrize(
    "dtype, backend, want",
    [
        (jnp.bfloat16, "cpu", jnp.float32),
        (jnp.float16, "cpu", jnp.float32),
        (jnp.float32, "cpu", None),
        (jnp.bfloat16, "gpu", None),  # GPU and TPU matmuls accumulate in float32 inside
        (jnp.bfloat16, "tpu", None),
    ],
)
def test_result_dtype_is_float32_for_half_precision_on_cpus_only(monkeypatch, dtype, backend, want):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    assert precision.result_dtype(dtype) == want


def test_bfloat16_forward_runs_every_product_in_bfloat16_with_float32_results():
    # Encoder matmuls, attention, convolutions (3x3, strided, patch embedding, 1x1) and the
    # DPT upsampling: a bf16 result would make XLA:CPU convert the product to float32.
    config = tiny_config()
    x = jax.random.normal(jax.random.key(4), (1, 70, 70, 3))
    model = DepthAnything(config, dtype=jnp.bfloat16)
    params = init_params(DepthAnything(config), jax.random.key(3))
    params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    jaxpr = jax.make_jaxpr(lambda p, x: model.apply({"params": p}, x))(params, x).jaxpr
    products = list(equations(jaxpr, ("dot_general", "conv_general_dilated")))
    half = [e for e in products if e.invars[0].aval.dtype == jnp.bfloat16]
    assert {e.primitive.name for e in half} == {"dot_general", "conv_general_dilated"}
    assert len(half) > 30
    for eqn in half:
        assert [v.aval.dtype for v in eqn.invars] == [jnp.bfloat16] * 2, eqn
        assert eqn.outvars[0].aval.dtype == jnp.float32, eqn
    # What is left in float32 is the position-embedding resampling, done in float32 on purpose.
    assert all(e.outvars[0].aval.dtype == jnp.float32 for e in products)


def test_bfloat16_error_relative_to_the_output_max_is_bounded():
    # The accuracy cost of bf16 compute (docs/cpu_inference.md): ViT-S at 518² measured 1.2e-2
    # of the output's max against transformers' float32 (transformers' own bf16: 1.0e-2); this
    # tiny random network 2.5e-2 (3.0e-2 when each product was rounded to bf16 before its
    # bias was added).
    config = tiny_config()
    x = jax.random.normal(jax.random.key(4), (1, 70, 70, 3))
    ref, out = _forward(jnp.float32, config, x), _forward(jnp.bfloat16, config, x)
    assert out.dtype == jnp.float32
    rel = float(jnp.abs(out - ref).max() / jnp.abs(ref).max())
    assert 0 < rel < 3e-2, rel
