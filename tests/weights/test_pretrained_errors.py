"""Loading whole models: one-line errors for incomplete or corrupt checkpoints (issue 22 #7,
#8), transformers `save_pretrained` folders and option clashes with converted folders (issue
21 #6, #7), `hf:` sources without a network (issue 21 #3) and documented CLI defaults (#8)."""

import os
import socket
import time

import numpy as np
import pytest

from dajax import convert, serving
from dajax.models import DepthAnything, param_shapes
from dajax.weights.depth_anything_keys import flax_to_official
from dajax.weights.pretrained import load_depth_anything
from dajax.weights.safetensors_io import save_safetensors
from tests.tiny_models import TINY_V2


def _official_state(seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = param_shapes(DepthAnything(TINY_V2))

    def fill(tree):
        return {
            k: fill(v) if isinstance(v, dict) else rng.normal(0, 0.02, v.shape).astype(np.float32)
            for k, v in tree.items()
        }

    return flax_to_official(fill(shapes))


def _convert_error(tmp_path, capsys, state) -> str:
    path = tmp_path / "depth_anything_v2_tiny.safetensors"
    save_safetensors(path, state)
    assert convert.main([str(path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err, err
    assert not (tmp_path / "out").exists()
    return err


@pytest.mark.parametrize(
    "drop", ["pretrained.cls_token", "depth_head.scratch.layer1_rn.weight", "pretrained.pos_embed"]
)
def test_missing_shape_tensor_is_one_line_naming_it(tmp_path, capsys, drop):
    state = _official_state()
    del state[drop]
    err = _convert_error(tmp_path, capsys, state)
    assert "not a complete Depth Anything checkpoint" in err and drop in err


def test_no_encoder_blocks_says_so(tmp_path, capsys):
    state = {k: v for k, v in _official_state().items() if ".blocks." not in k}
    err = _convert_error(tmp_path, capsys, state)
    assert "no encoder blocks" in err and "max() arg" not in err


def test_gappy_block_numbers_are_refused(tmp_path, capsys):
    state = _official_state()
    state["pretrained.blocks.999999.norm1.weight"] = np.ones(128, np.float32)
    assert "not numbered 0..4" in _convert_error(tmp_path, capsys, state)


def test_wrong_rank_is_one_line(tmp_path, capsys):
    state = _official_state()
    state["pretrained.cls_token"] = np.zeros(128, np.float32)
    assert "wrong rank" in _convert_error(tmp_path, capsys, state)


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, capsys):
    state = _official_state()
    state["depth_head.scratch.output_conv2.2.bias"][:] = np.nan
    err = _convert_error(tmp_path, capsys, state)
    assert "depth_head.scratch.output_conv2.2.bias" in err and "NaN/inf" in err


def test_converted_folder_refuses_contradicting_options(tmp_path, capsys):
    path = tmp_path / "depth_anything_v2_tiny.safetensors"
    save_safetensors(path, _official_state())
    assert convert.main([str(path), str(tmp_path / "out")]) == 0
    config, _ = load_depth_anything(tmp_path / "out", version="v2")
    assert config == TINY_V2
    with pytest.raises(ValueError, match=r"out: .*version='v1' but it holds 'v2'"):
        load_depth_anything(tmp_path / "out", version="v1")
    with pytest.raises(ValueError, match="head='metric' but it holds 'relative'"):
        load_depth_anything(tmp_path / "out", head="metric", max_depth=20.0)
    hf_rule, _ = load_depth_anything(tmp_path / "out", pos_embed="hf")
    assert hf_rule.pos_embed == "hf"  # an interpolation rule, not a weight: it may change


def _tiny_transformers_model():
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(0)
    backbone = Dinov2Config(
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=2,
        image_size=98,
        patch_size=14,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
        apply_layernorm=True,
        layerscale_value=1.0,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=128,
        patch_size=14,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[16, 32, 64, 64],
        fusion_hidden_size=32,
        head_hidden_size=32,
    )
    return DepthAnythingForDepthEstimation(config).eval()


def test_transformers_save_pretrained_folders_load(tmp_path):
    model = _tiny_transformers_model()
    model.save_pretrained(tmp_path / "single")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="300KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    ref_config, ref = load_depth_anything(tmp_path / "single" / "model.safetensors")
    for folder in ("single", "sharded"):
        config, params = load_depth_anything(tmp_path / folder)
        assert config == ref_config and config.layers == (0, 1, 2, 3)
        for a, b in zip(_leaves(params), _leaves(ref), strict=True):
            np.testing.assert_array_equal(a, b)


def _leaves(tree):
    for k in sorted(tree):
        yield from _leaves(tree[k]) if isinstance(tree[k], dict) else [np.asarray(tree[k])]


def test_folder_that_is_neither_kind_names_both(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a dajax checkpoint .* save_pretrained"):
        load_depth_anything(tmp_path)


def test_unreadable_converted_folder_is_one_line(tmp_path):
    (tmp_path / "model_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"model_config.json: invalid JSON \(JSONDecodeError"):
        load_depth_anything(tmp_path)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("offline", [True, False])
def test_hf_source_without_network_fails_fast_in_one_line(tmp_path, capsys, monkeypatch, offline):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # nothing cached
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    spec = "hf:dajax-tests/no-such-repo/depth_anything_v2_vits.pth"
    start = time.perf_counter()
    assert convert.main([spec, str(tmp_path / "out")]) == 2
    assert time.perf_counter() - start < 10
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and err.startswith(f"error: {spec}: "), err
    assert ("HF_HUB_OFFLINE" if offline else "cannot reach") in err


@pytest.mark.parametrize("cli", [convert, serving], ids=lambda m: m.__name__)
def test_every_option_documents_its_default(cli):
    for action in cli.build_parser()._actions:
        if action.dest != "help":
            assert "default" in (action.help or "") or "required" in (action.help or ""), (
                f"{cli.__name__} {action.option_strings or action.dest}: {action.help!r}"
            )


def test_integer_weights_are_refused_not_cast(tmp_path, capsys):
    """Issue 31 #5: an int64 tensor where the model has floats was cast silently."""
    state = _official_state()
    state["pretrained.norm.weight"] = np.ones(128, np.int64)
    err = _convert_error(tmp_path, capsys, state)
    assert "pretrained.norm.weight: int64 values where the model has floats" in err


def _converted(tmp_path) -> str:
    path = tmp_path / "depth_anything_v2_tiny.safetensors"
    save_safetensors(path, _official_state())
    assert convert.main([str(path), str(tmp_path / "ckpt")]) == 0
    return str(tmp_path / "ckpt")


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("depth", 1_000_000, "depth must be an int in [1, 128], got 1000000"),
        ("heads", 0, "heads must be an int in [1, 256], got 0"),
        ("dim", 10**9, "dim must be an int in [1, 8192]"),
        ("mlp_ratio", 1e12, "mlp_ratio must be a number in (0, 16.0]"),
        ("features", 0, "features must be an int in [1, 4096]"),
    ],
)
def test_absurd_model_config_fields_are_one_line_before_any_model(
    tmp_path, capsys, field, value, needle
):
    """Issue 31 #2: `depth: 1000000` traced the model without end, `heads: 0` was a
    ZeroDivisionError traceback, absurd widths printed thousands of asyncio lines."""
    import json

    folder = _converted(tmp_path)
    config_file = os.path.join(folder, "model_config.json")
    with open(config_file) as f:
        config = json.load(f)
    with open(config_file, "w") as f:
        json.dump({**config, field: value}, f)
    start = time.perf_counter()
    assert convert.main([folder, str(tmp_path / "again")]) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {config_file}: {needle}") and "\n" not in err, err


@pytest.mark.parametrize("literal", ["NaN", "Infinity"])
def test_non_finite_max_depth_is_refused_in_config_json_and_on_the_command_line(
    tmp_path, capsys, literal
):
    """Issue 31 #2: NaN or Infinity as a metric max_depth gave all-NaN maps with exit 0."""
    import json

    _tiny_transformers_model().save_pretrained(tmp_path / "hf")
    config_file = tmp_path / "hf" / "config.json"
    config = {**json.loads(config_file.read_text()), "depth_estimation_type": "metric"}
    config_file.write_text(json.dumps({**config, "max_depth": "X"}).replace('"X"', literal))
    capsys.readouterr()  # transformers' progress bars
    assert convert.main([str(tmp_path / "hf"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {config_file}: max_depth is not a finite number >= 0 (metres)"
    args = [str(tmp_path / "hf" / "model.safetensors"), str(tmp_path / "o2"), "--head", "metric"]
    assert convert.main([*args, "--max-depth", literal.lower()]) == 2
    assert "--max-depth" in capsys.readouterr().err and not (tmp_path / "o2").exists()


def test_hf_specs_with_dot_segments_name_the_spec(capsys):
    """Issue 31 #5: `hf:a/b/../x` was huggingface_hub's ValueError without the spec."""
    spec = "hf:owner/repo/../../etc/passwd"
    assert convert.main([spec, "unused-out"]) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {spec}: ")
