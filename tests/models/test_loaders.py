"""One loader, every entry point (issue 30 §2): a training run's workdir loads wherever a
checkpoint does (its `export/`, else its newest step), and predict, app, convert, serving and
the eval config share one set of loader options (`dajax.weights.options`)."""

import shutil

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from configs import eval as eval_config
from dajax import app, checkpoints, convert, predict, serving
from dajax.inference import DepthEstimator, load_estimator
from dajax.models import DepthAnything, param_shapes
from dajax.weights.depth_anything_keys import flax_to_official
from dajax.weights.options import NAMES, OPTIONS, loader_kwargs
from tests.tiny_models import TINY_V2

IMAGE = np.random.RandomState(0).randint(0, 256, (30, 44, 3), np.uint8)


def _params(seed: int) -> dict:
    """Random float32 params of TINY_V2 (std 0.1: the depth map is not flat)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: rng.normal(0, 0.1, s.shape).astype(np.float32),
        param_shapes(DepthAnything(TINY_V2)),
    )


def _depth(weights, **load) -> np.ndarray:
    return DepthEstimator.from_pretrained(weights, input_size=28, **load)(IMAGE)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A training workdir as training leaves it: model_config.json and checkpoint steps 1 and
    2 (different params), without an export/."""
    workdir = tmp_path_factory.mktemp("runs") / "t2"
    ckpt = checkpoints.TrainCheckpointer(workdir / "checkpoints", save_every=1)
    for step in (1, 2):
        params = jax.tree.map(jnp.asarray, _params(step))
        state = {"params": params, "step": jnp.int32(step)}
        assert ckpt.save(step, state, force=True)
    ckpt.close()
    (workdir / checkpoints.CONFIG_FILE).write_text(TINY_V2.to_json())
    return workdir


@pytest.mark.slow
def test_a_run_folder_loads_its_newest_step_then_its_export(run, tmp_path):
    newest, first = tmp_path / "newest", tmp_path / "first"
    assert checkpoints.export_run(run, newest) == 2
    assert checkpoints.export_run(run, first, step=1) == 1
    depth = _depth(run)
    assert np.ptp(depth) > 0
    np.testing.assert_array_equal(depth, _depth(newest))
    assert not np.array_equal(depth, _depth(first))
    # A finished run's export/ wins over its steps (here an older step, to tell them apart).
    with_export = tmp_path / "finished"
    shutil.copytree(run, with_export)
    checkpoints.export_run(run, with_export / checkpoints.EXPORT_DIR, step=1)
    np.testing.assert_array_equal(_depth(with_export), _depth(first))
    with pytest.raises(ValueError, match="contradicts the options: version='v1'"):
        _depth(run, version="v1")


@pytest.mark.slow
def test_predict_and_app_take_a_run_folder(run, tmp_path, monkeypatch):
    cv2.imwrite(str(tmp_path / "x.png"), IMAGE[:, :, ::-1])  # BGR on disk
    argv = ["--weights", str(run), "--input", str(tmp_path / "x.png"), "--outdir"]
    assert predict.main([*argv, str(tmp_path / "o"), "--input-size", "28", "--save-npy"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "o" / "x.npy"), _depth(run), rtol=1e-6)
    import gradio as gr

    served = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: served.append(kw))
    assert app.main(["--weights", str(run), "--input-size", "28", "--port", "7861"]) == 0
    assert served and served[0]["server_port"] == 7861


def test_run_folders_that_cannot_load_say_what_to_pass(tmp_path, capsys):
    fresh = tmp_path / "fresh"  # training started, nothing saved yet
    (fresh / "checkpoints").mkdir(parents=True)
    (fresh / checkpoints.CONFIG_FILE).write_text(TINY_V2.to_json())
    config_only = tmp_path / "config_only"  # a model_config.json without params
    config_only.mkdir()
    (config_only / checkpoints.CONFIG_FILE).write_text(TINY_V2.to_json())
    cv2.imwrite(str(tmp_path / "x.png"), IMAGE[:, :, ::-1])  # BGR on disk
    for folder, expect in [(fresh, "no saved step yet"), (config_only, "no params/")]:
        argv = ["--weights", str(folder), "--input", str(tmp_path / "x.png"), "--outdir"]
        assert predict.main([*argv, str(tmp_path / f"out_{folder.name}")]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and expect in err and "Traceback" not in err, err


def _v1_pth(path) -> str:
    """TINY_V2's tensors as an official-layout `.pth` whose name does not tell V1 from V2."""
    state = flax_to_official(_params(3))
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, path)
    return str(path)


def test_v1_weights_in_the_app_with_the_version_its_error_suggests(tmp_path, capsys):
    weights = _v1_pth(tmp_path / "v1_vits.pth")
    assert app.main(["--weights", weights]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--version v1" in err, err
    estimator = app.load(app.build_parser().parse_args(["--weights", weights, "--version", "v1"]))
    assert estimator.config.version == "v1"
    assert estimator.config == TINY_V2.replace(version="v1")


PARSERS = {
    "predict": (predict.build_parser, ["--outdir", "o"]),
    "app": (app.build_parser, []),
    "convert": (convert.build_parser, ["src", "out"]),
    "serving": (serving.build_parser, ["--weights", "w", "--out", "o"]),
}


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_command_has_the_same_loader_options(command):
    build, required = PARSERS[command]
    parser = build()
    flags = {s for a in parser._actions for s in a.option_strings}
    assert {option.flag for option in OPTIONS} <= flags
    help_text = parser.format_help()
    for option in OPTIONS:
        assert option.flag in help_text
    args = parser.parse_args(
        [*required, "--arch", "vits", "--version", "v1", "--head", "metric", "--max-depth", "20"]
        + ["--pos-embed", "hf"]
    )
    assert loader_kwargs(args) == {
        "arch": "vits",
        "version": "v1",
        "head": "metric",
        "max_depth": 20.0,
        "pos_embed": "hf",
    }
    with pytest.raises(ValueError, match="--max-depth nan: not a finite number"):
        loader_kwargs(parser.parse_args([*required, "--max-depth", "nan"]))


def test_the_eval_config_takes_the_same_options(run):
    config = eval_config.get_config(f"weights={run},input_size=28,pos_embed=hf")
    estimator = load_estimator(
        config.weights, config.input_size, config.dtype, **loader_kwargs(config.load)
    )  # as dajax.eval.evaluate.run loads it
    assert estimator.config == TINY_V2.replace(pos_embed="hf")
    config = eval_config.get_config("weights=runs/t2,version=v1,max_depth=20")
    assert set(config.load) == set(NAMES)
    assert loader_kwargs(config.load) == {
        "arch": None,
        "version": "v1",
        "head": None,
        "max_depth": 20.0,
        "pos_embed": None,
    }
    with pytest.raises(ValueError, match="version 'v3': expected one of v1, v2"):
        loader_kwargs(eval_config.get_config("version=v3").load)
    assert loader_kwargs(eval_config.get_config().load) == dict.fromkeys(NAMES)
