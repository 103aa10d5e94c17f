"""Loading official / DINOv2 hub / Hugging Face checkpoints: architecture inference, layouts,
errors, and the Orbax round trip through `python -m dajax.convert`."""

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from hf_oracle import hf_depth, hf_state_dict, tiny_config, tiny_depth_anything

from dajax import convert
from dajax.models import DepthAnything, ModelConfig, param_shapes
from dajax.weights.depth_anything_keys import (
    CheckpointKeyError,
    flax_to_official,
    official_to_flax,
    to_official,
)
from dajax.weights.pretrained import infer_config, load_depth_anything, load_dinov2_encoder


def _save_pth(path, state):
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, path)
    return path


def _official_zeros(config):
    """Official-layout tensors of the right shapes (zeros are free: calloc)."""
    return flax_to_official(_tree_zeros(param_shapes(DepthAnything(config))))


def _tree_zeros(tree):
    return {
        k: _tree_zeros(v) if isinstance(v, dict) else np.zeros(v.shape, np.float32)
        for k, v in tree.items()
    }


@pytest.mark.parametrize(
    "name, expect",
    [
        ("depth_anything_v2_vits.pth", ModelConfig.from_variant("vits", "v2")),
        ("depth_anything_vits14.pth", ModelConfig.from_variant("vits", "v1")),
        (
            "depth_anything_v2_metric_hypersim_vits.pth",
            ModelConfig.from_variant("vits", "v2", head="metric", max_depth=20.0),
        ),
        (
            "depth_anything_v2_metric_vkitti_vits.pth",
            ModelConfig.from_variant("vits", "v2", head="metric", max_depth=80.0),
        ),
    ],
)
def test_architecture_inferred_from_shapes_and_file_name(name, expect):
    state = _official_zeros(ModelConfig.from_variant("vits", "v2"))
    kw = dict(arch=None, version=None, head=None, max_depth=None, pos_embed="official")
    assert infer_config(state, name, None, **kw) == expect


def test_vitg_is_v2_and_ambiguous_files_ask_for_version():
    state = _official_zeros(ModelConfig.from_variant("vitb", "v1"))
    kw = dict(arch=None, head=None, max_depth=None, pos_embed="official")
    with pytest.raises(ValueError, match="version='v1' or version='v2'"):
        infer_config(state, "model.pth", None, version=None, **kw)
    assert infer_config(state, "model.pth", None, version="v1", **kw).layers == (8, 9, 10, 11)
    with pytest.raises(ValueError, match="arch='vitl' was given but the tensors are vitb"):
        infer_config(state, "model.pth", None, version="v1", **{**kw, "arch": "vitl"})


def test_official_pth_loads_and_matches_reference(tmp_path):
    """Official layout written by torch.save; on the square pretraining grid the official and
    transformers position-embedding rules coincide, so transformers is the oracle there."""
    hf = tiny_depth_anything(seed=3)
    official = to_official(hf_state_dict(hf))
    path = _save_pth(tmp_path / "depth_anything_tiny.pth", official)
    config, params = load_depth_anything(path, version="v1")
    assert config == tiny_config()
    x = np.random.RandomState(0).randn(1, 98, 98, 3).astype(np.float32)
    ref = hf_depth(hf, x)
    out = np.asarray(DepthAnything(config).apply({"params": params}, x))
    np.testing.assert_allclose(out, ref, atol=1e-4 * np.ptp(ref))


def test_flax_to_official_inverts_the_conversion():
    official = to_official(hf_state_dict(tiny_depth_anything(seed=4)))
    params = official_to_flax(official, param_shapes(DepthAnything(tiny_config())))
    back = flax_to_official(params)
    unused = {k for k in official if k.startswith("depth_head.scratch.refinenet4.resConfUnit1")}
    assert set(back) == set(official) - unused
    for k, v in back.items():
        np.testing.assert_array_equal(v, official[k])


def test_dinov2_hub_layout_plain_and_chunked(tmp_path):
    official = to_official(hf_state_dict(tiny_depth_anything(seed=5)))
    hub = {k[len("pretrained.") :]: v for k, v in official.items() if k.startswith("pretrained.")}
    chunked = {
        k.replace("blocks.", "blocks.0.", 1) if k.startswith("blocks.") else k: v
        for k, v in hub.items()
    }
    for name, state in [("dinov2_tiny_pretrain.pth", hub), ("chunked.pth", chunked)]:
        encoder = load_dinov2_encoder(_save_pth(tmp_path / name, state), tiny_config())
        np.testing.assert_array_equal(
            encoder["blocks_2"]["attn"]["qkv"]["kernel"],
            official["pretrained.blocks.2.attn.qkv.weight"].T,
        )
    with pytest.raises(ValueError, match="encoder-only"):
        load_depth_anything(tmp_path / "chunked.pth", version="v1")


def test_bad_keys_are_listed_in_one_error(tmp_path):
    official = to_official(hf_state_dict(tiny_depth_anything()))
    official["depth_head.extra.weight"] = np.zeros(3, np.float32)
    del official["pretrained.norm.bias"]
    official["pretrained.blocks.1.ls1.gamma"] = np.zeros(7, np.float32)
    path = _save_pth(tmp_path / "broken.pth", official)
    with pytest.raises(CheckpointKeyError) as err:
        load_depth_anything(path, version="v1")
    msg = str(err.value)
    assert "broken.pth" in msg
    assert "depth_head.extra.weight" in msg  # unknown
    assert "pretrained/norm/bias" in msg  # missing
    assert "pretrained.blocks.1.ls1.gamma" in msg  # mis-shaped


def test_pickled_code_is_refused_end_to_end(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "depth_anything_v2_vits.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(Exploit(), protocol=2))
    with pytest.raises(ValueError, match="system"):
        load_depth_anything(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_convert_cli_round_trip(tmp_path, capsys):
    hf = tiny_depth_anything(metric=True, max_depth=20, swiglu=True)
    hf.save_pretrained(tmp_path / "hf")
    src = tmp_path / "hf" / "model.safetensors"
    assert convert.main([str(src), str(tmp_path / "out"), "--pos-embed", "hf"]) == 0
    assert "wrote" in capsys.readouterr().out
    config, params = load_depth_anything(tmp_path / "out")
    ref_config, ref_params = load_depth_anything(src, pos_embed="hf")
    assert config == ref_config and config.head == "metric" and config.max_depth == 20.0
    x = np.random.RandomState(1).randn(1, 56, 84, 3).astype(np.float32)
    model = DepthAnything(config)
    np.testing.assert_array_equal(
        np.asarray(model.apply({"params": params}, x)),
        np.asarray(model.apply({"params": ref_params}, x)),
    )
    assert convert.main([str(src), str(tmp_path / "out")]) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err
    assert convert.main([str(src), str(tmp_path / "out2"), "--step", "3"]) == 2
    assert "--step needs a training workdir" in capsys.readouterr().err
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert convert.main([str(tmp_path / "run"), str(tmp_path / "out2"), "--version", "v1"]) == 2
    assert "drop --version (options for checkpoint files)" in capsys.readouterr().err
    assert convert.main([str(tmp_path / "run"), str(tmp_path / "out2")]) == 2
    assert "model_config.json: missing" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()
