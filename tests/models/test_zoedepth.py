"""Parity of `ZoeDepthMetric` with a torch oracle of the official V1 metric model (random weights).

Oracle: the official `ZoeDepth` graph assembled from transformers modules —
- core: transformers' `DepthAnythingForDepthEstimation` (tiny, `hf_oracle`), with forward hooks
  on the activations that the official `DepthAnythingCore` hooks ('out_conv' = the ReLU after
  the head's second conv, 'l4_rn' = `neck.convs[3]`, 'r4'..'r1' = `neck.fusion_stage.layers`);
- head: transformers' `ZoeDepthMetricDepthEstimationHead` (seed regressor, projectors,
  unnormed attractors, conditional log-binomial), configured like `config_zoedepth.json`.
  Its module graph equals the official one when `bin_embedding_dim` is 128 (transformers sizes
  the attractor MLP by it; the official code fixes it at 128). Its attractors sum in a loop
  (`memory_efficient=True`) where the official code takes `torch.mean`: equal up to rounding.
The oracle's weights are written as an official `.pt` (`{"model": state_dict}`, official names
incl. the log-binomial buffers) and read back through `load_zoedepth_metric`.
"""

import re

import jax
import numpy as np
import pytest
import torch
from hf_oracle import hf_state_dict, tiny_config, tiny_depth_anything
from transformers import ZoeDepthConfig
from transformers.models.zoedepth.modeling_zoedepth import ZoeDepthMetricDepthEstimationHead

from dajax.models.zoedepth import prep_for_core, prep_size
from dajax.weights import depth_anything_keys as da_keys
from dajax.weights.zoedepth_keys import (
    CheckpointKeyError,
    flax_to_zoedepth,
    load_zoedepth_metric,
)

N_BINS = 16
RTOL = 1e-4
_HEAD_RENAMES = (
    (r"^(seed_bin_regressor|seed_projector|projectors\.\d|attractors\.\d)\.conv1\.", r"\1._net.0."),
    (r"^(seed_bin_regressor|seed_projector|projectors\.\d|attractors\.\d)\.conv2\.", r"\1._net.2."),
)


class Oracle(torch.nn.Module):
    """The official `ZoeDepth.forward` graph on a tiny transformers Depth Anything core."""

    def __init__(self, seed=0):
        super().__init__()
        self.core = tiny_depth_anything(seed=seed)
        torch.manual_seed(seed + 1)
        config = ZoeDepthConfig(
            bin_configurations=[dict(n_bins=N_BINS, min_depth=1e-3, max_depth=10.0)],
            bin_centers_type="softplus",
            bin_embedding_dim=128,
            num_attractors=[16, 8, 4, 1],
            attractor_alpha=1000,
            attractor_gamma=2,
            attractor_kind="mean",
            min_temp=0.0212,
            max_temp=50.0,
            bottleneck_features=32,
            fusion_hidden_size=32,
            num_relative_features=32,
        )
        self.head = ZoeDepthMetricDepthEstimationHead(config).eval()
        # Wider than PyTorch's default init, so that bins, attractors and temperatures vary
        # across pixels (the default gives a nearly constant output).
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in self.head.parameters():
                fan_in = p[0].numel() if p.ndim > 1 else 1
                std = 1.5 / np.sqrt(fan_in) if p.ndim > 1 else 0.5
                p.copy_(torch.randn(p.shape, generator=gen) * std)
            # Temperatures of a few units rather than ~25: sharper, pixel-dependent bins.
            self.head.conditional_log_binomial.mlp[2].bias[2:].copy_(torch.tensor([-2.0, 2.0]))
        self.feats = {}
        neck = self.core.neck
        hooks = {"out_conv": self.core.head.activation1, "l4_rn": neck.convs[3]}
        hooks.update({f"r{4 - i}": neck.fusion_stage.layers[i] for i in range(4)})
        for name, module in hooks.items():
            module.register_forward_hook(self._store(name))

    def _store(self, name):
        def hook(_module, _inputs, output):
            self.feats[name] = output

        return hook

    @torch.no_grad()
    def forward(self, images_nhwc: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
        rel = self.core(pixel_values=x).predicted_depth  # [B, H, W], ReLU disparity
        f = self.feats
        metric, _ = self.head(
            outconv_activation=f["out_conv"],
            bottleneck=f["l4_rn"],
            feature_blocks=[f["r4"], f["r3"], f["r2"], f["r1"]],
            relative_depth=rel,
        )
        return metric[:, 0].numpy()

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors under the official `ZoeDepth` names."""
        core = da_keys.to_official(hf_state_dict(self.core))
        out = {f"core.core.{k}": torch.from_numpy(v) for k, v in core.items()}
        for key, value in self.head.state_dict().items():
            for pattern, repl in _HEAD_RENAMES:
                key = re.sub(pattern, repl, key)
            out[key] = value.detach().clone()
        lb = "conditional_log_binomial.log_binomial_transform."
        out[lb + "k_idx"] = torch.arange(0, N_BINS).view(1, -1, 1, 1)
        out[lb + "K_minus_1"] = torch.Tensor([N_BINS - 1]).view(1, -1, 1, 1)
        return out


@pytest.fixture(scope="module")
def oracle():
    return Oracle()


@pytest.fixture(scope="module")
def checkpoint(oracle, tmp_path_factory):
    path = tmp_path_factory.mktemp("zoe") / "depth_anything_metric_depth_indoor.pt"
    torch.save({"model": oracle.official_state_dict(), "epoch": 3}, path)
    return path


def _images(h, w, n=2, seed=0):
    return np.random.RandomState(seed).randn(n, h, w, 3).astype(np.float32)


def test_zoedepth_matches_torch_oracle(oracle, checkpoint):
    # A non-square 5x8 patch grid: every resize in the head is exercised (odd bottleneck
    # ceil(5/2) = 3). transformers' DINOv2 interpolates position embeddings with its own size
    # rule (SPEC §1), so the core is built with `pos_embed='hf'` here; the official rule is
    # covered by the Depth Anything tests.
    size = (70, 112)
    module, params = load_zoedepth_metric(
        checkpoint, max_depth=10.0, config=tiny_config(pos_embed="hf")
    )
    assert (module.n_bins, module.n_attractors, module.seed_mlp_dim) == (16, (16, 8, 4, 1), 256)
    x = _images(*size)
    ref = oracle(x)
    out = np.asarray(jax.jit(module.apply)({"params": params}, x))
    assert out.shape == ref.shape == (2, *size) and out.dtype == np.float32
    assert np.ptp(ref) > 1e-2 and ref.min() > 0, "degenerate oracle output"
    rel_err = np.abs(out - ref) / np.abs(ref)
    print(f"{size}: depth {ref.min():.3f}..{ref.max():.3f} m, max rel err {rel_err.max():.2e}")
    assert rel_err.max() <= RTOL, f"max relative error {rel_err.max():.2e}"


def test_round_trip_names(oracle, checkpoint):
    _, params = load_zoedepth_metric(checkpoint, config=tiny_config())
    official = oracle.official_state_dict()
    back = flax_to_zoedepth(params)
    buffers = {k for k in official if "log_binomial_transform" in k}
    unused = {k for k in official if da_keys.UNUSED_OFFICIAL_KEYS.match(k[len("core.core.") :])}
    assert set(back) == set(official) - buffers - unused
    for k, v in back.items():
        np.testing.assert_array_equal(v, official[k].numpy(), err_msg=k)


def test_missing_and_unexpected_keys_are_named(oracle, tmp_path):
    state = oracle.official_state_dict()
    del state["attractors.2._net.0.bias"]
    del state["core.core.depth_head.scratch.layer4_rn.weight"]
    state["attractors.9.extra"] = torch.zeros(3)
    path = tmp_path / "broken.pt"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointKeyError) as e:
        load_zoedepth_metric(path, config=tiny_config())
    msg = str(e.value)
    assert str(path) in msg
    assert "attractors.2._net.0.bias" in msg
    assert "layer4_rn" in msg
    assert "attractors.9.extra" in msg


def test_prep_matches_reference_resize_and_normalise():
    img = np.random.RandomState(1).rand(1, 50, 61, 3).astype(np.float32)
    assert prep_size(50, 61, (56, 70)) == (56, 70)
    assert prep_size(480, 640, (392, 518), keep_aspect_ratio=True) == (392, 518)
    t = torch.nn.functional.interpolate(
        torch.from_numpy(img.transpose(0, 3, 1, 2)), (56, 70), mode="bilinear", align_corners=True
    )
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ref = ((t - mean) / std).numpy().transpose(0, 2, 3, 1)
    out = np.asarray(prep_for_core(img, (56, 70)))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_estimator_resizes_like_the_reference_evaluator(checkpoint):
    from dajax.inference import ZoeDepthEstimator, is_zoedepth_checkpoint
    from dajax.models.resample import resize_bilinear
    from dajax.models.zoedepth import prep_for_core

    assert is_zoedepth_checkpoint(checkpoint)
    est = ZoeDepthEstimator.from_pretrained(checkpoint, config=tiny_config(), img_size=(42, 56))
    assert est.config.head == "metric" and est.config.max_depth == 10.0
    image = np.random.RandomState(3).randint(0, 256, (30, 50, 3)).astype(np.uint8)
    (depth,) = est.batch([image])
    x = prep_for_core(image[None].astype(np.float32) / 255.0, (42, 56))
    want = est.module.apply({"params": est.params}, x)
    want = resize_bilinear(want, (30, 50), align_corners=True)[0]
    assert depth.shape == (30, 50) and (depth > 0).all()
    np.testing.assert_allclose(depth, want, rtol=1e-5)
