"""`kernels.attention`: which kernel 'auto' picks on each platform."""

import jax
import jax.numpy as jnp
import pytest

from dajax.models.kernels.attention import resolve_attention


class _FakeGpu:
    def __init__(self, compute_capability):
        self.compute_capability = compute_capability


@pytest.mark.parametrize(
    "backend, capability, dtype, head_dim, want",
    [
        ("cpu", None, jnp.float32, 64, "chunked"),
        ("gpu", "9.0", jnp.bfloat16, 64, "cudnn"),  # H100, half precision
        ("gpu", "8.0", jnp.float16, 128, "cudnn"),  # A100
        ("gpu", "9.0", jnp.float32, 64, "xla"),  # cuDNN's kernel takes half precision only
        ("gpu", "7.0", jnp.bfloat16, 64, "xla"),  # V100: no fused kernel
        ("gpu", "9.0", jnp.bfloat16, 160, "xla"),  # head dim over 128
        ("gpu", "gfx90a", jnp.bfloat16, 64, "xla"),  # ROCm
    ],
)
def test_auto_attention_picks_cudnn_only_where_it_runs(
    monkeypatch, backend, capability, dtype, head_dim, want
):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    monkeypatch.setattr(jax, "devices", lambda: [_FakeGpu(capability)])
    assert resolve_attention("auto", dtype, head_dim) == want
    assert resolve_attention("xla", dtype, head_dim) == "xla"  # explicit choices stand
    with pytest.raises(ValueError, match="attention impl must be one of"):
        resolve_attention("flash9", dtype, head_dim)
