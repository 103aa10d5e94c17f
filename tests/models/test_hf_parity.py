"""Parity of the Flax model with transformers' Depth Anything / DINOv2 (random weights).

Weights go through the Hugging Face safetensors path (`save_pretrained` + config.json), and the
model runs with transformers' position-embedding rule (`pos_embed='hf'`) on square and
non-square inputs. Tolerance: 1e-4 of the reference output range, float32.
"""

import numpy as np
import pytest
import torch
from hf_oracle import hf_depth, tiny_config, tiny_depth_anything, tiny_dinov2

from dajax.models import DepthAnything
from dajax.weights.pretrained import load_depth_anything, load_dinov2_encoder

SIZES = [(98, 98), (70, 112), (126, 56)]


def _images(h, w, n=2, seed=0):
    return np.random.RandomState(seed).randn(n, h, w, 3).astype(np.float32)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),  # V1-style: the last four blocks, GELU MLP, relative
        dict(depth=6, out_indices=(2, 3, 5, 6)),  # V2-style fixed indices
        dict(swiglu=True, metric=True, max_depth=20),  # ViT-G FFN, metric head
    ],
    ids=["v1-relative", "v2-layers", "swiglu-metric"],
)
@pytest.mark.slow
def test_depth_anything_matches_transformers(tmp_path, kwargs):
    hf = tiny_depth_anything(**kwargs)
    hf.save_pretrained(tmp_path)
    config, params = load_depth_anything(tmp_path / "model.safetensors", pos_embed="hf")
    assert config.head == ("metric" if kwargs.get("metric") else "relative")
    model = DepthAnything(config)
    for h, w in SIZES:
        x = _images(h, w)
        ref = hf_depth(hf, x)
        out = np.asarray(model.apply({"params": params}, x))
        assert out.shape == ref.shape == (2, h, w)
        assert np.ptp(ref) > 1e-3, "degenerate oracle output"
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.ptp(ref))


def test_dinov2_encoder_matches_transformers(tmp_path):
    hf = tiny_dinov2()
    hf.save_pretrained(tmp_path)
    config = tiny_config(pos_embed="hf")
    encoder = load_dinov2_encoder(tmp_path / "model.safetensors", config)
    model = DepthAnything(config)
    x = _images(70, 112)
    with torch.no_grad():
        ref = hf(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2))).last_hidden_state
    ref = ref.numpy()[:, 1:]  # patch tokens after the final LayerNorm
    out = model.apply({"params": {"pretrained": encoder}}, x, method="encode")
    np.testing.assert_allclose(np.asarray(out), ref, rtol=0, atol=1e-4 * np.ptp(ref))
