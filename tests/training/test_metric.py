"""Metric-depth fine-tuning: depth targets, initialisation from checkpoints (and the loaded
head's max_depth), the per-dataset presets, a tiny run."""

import logging

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_configs import TINY_MODEL

from configs import metric as metric_config
from dajax import checkpoints
from dajax.data.registry import build_source
from dajax.data.transforms import LabeledTrainTransform
from dajax.models import DepthAnything
from dajax.training import metric, setup
from dajax.training.metrics_log import read_metrics
from dajax.weights.depth_anything_keys import flax_to_official
from dajax.weights.safetensors_io import save_safetensors


def tiny_metric(steps: int = 2):
    config = metric_config.get_config(f"demo,steps={steps}")
    config.update(log_every=1, checkpoint_every=2, image_every=0)
    config.model.custom = TINY_MODEL
    config.data.update(crop=28, labeled_batch=8)
    config.data.labeled[0][0].update(num_scenes=16, height=32, width=36)
    config.mesh.update(fsdp=2, fsdp_min_size=1024)  # the sharded path, as in tiny_configs
    return config


def test_depth_targets_are_metres_where_valid():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 9.0, (40, 40)).astype(np.float32)
    mask = depth < 8.0
    record = {"image": np.zeros((40, 40, 3), np.uint8), "depth": depth, "mask": mask}
    out = LabeledTrainTransform(40, flip=False, target="depth").random_map(record, rng)
    np.testing.assert_array_equal(out["target"], np.where(mask, depth, 0))
    with pytest.raises(ValueError, match="target must be one of"):
        LabeledTrainTransform(40, target="metres")


def _saved_model(tmp_path, seed, **saved_changes):
    """The tiny metric run's config (10 m), its ModelConfig, and the params saved as a dajax
    checkpoint `tmp_path/m<seed>` whose config has `saved_changes`."""
    config = tiny_metric()
    model_config = setup.model_config(config.model)
    params = setup.initial_params(model_config, "", seed)
    saved_config = model_config.replace(**saved_changes)
    checkpoints.save_inference_params(tmp_path / f"m{seed}", params, saved_config)
    return config, model_config, params


def _same(a, b) -> bool:
    return all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.mark.parametrize("load", ["encoder", "all"])
@pytest.mark.slow
def test_initialisation_takes_the_encoder_or_everything(tmp_path, load):
    config, model_config, saved = _saved_model(tmp_path, seed=7)
    config.init.update(weights=str(tmp_path / "m7"), load=load)
    params = metric.initial_params(model_config, config.init, seed=0)
    fresh = setup.initial_params(model_config, "", 0)
    assert _same(params["pretrained"], saved["pretrained"])
    head = saved["depth_head"] if load == "all" else fresh["depth_head"]
    assert _same(params["depth_head"], head)


def test_initialisation_refuses_a_different_encoder(tmp_path):
    config, _, _ = _saved_model(tmp_path, seed=1)
    config.init.weights = str(tmp_path / "m1")
    wider = setup.model_config(config.model).replace(dim=128, heads=2)
    with pytest.raises(ValueError, match="m1: a 64-wide 4-block encoder does not fit"):
        metric.initial_params(wider, config.init, seed=0)


def test_a_head_trained_with_another_max_depth_is_refused(tmp_path):
    config, model_config, _ = _saved_model(tmp_path, seed=7)  # saved with max_depth 10 m
    config.init.update(weights=str(tmp_path / "m7"), load="all")
    run_20 = model_config.replace(max_depth=20.0)
    with pytest.raises(
        ValueError,
        match=r"m7: its metric head was trained with max_depth 10 m but config.model.max_depth "
        r"is 20 m; set --config.model.max_depth=10 .* --config.init.rescale_max_depth=True .*"
        r"scaled by 2 at step 0",
    ):
        metric.initial_params(run_20, config.init, seed=0)
    config.init.load = "encoder"  # the encoder alone carries no depth scale
    metric.initial_params(run_20, config.init, seed=0)


def test_an_official_hypersim_file_into_a_10_m_run_is_refused(tmp_path):
    """The 20 m cap comes from the official file name, as for the released checkpoints."""
    config, model_config, params = _saved_model(tmp_path, seed=2)
    path = tmp_path / "depth_anything_v2_metric_hypersim_tiny.safetensors"
    save_safetensors(path, flax_to_official(params))
    config.init.update(weights=str(path), load="all")
    with pytest.raises(ValueError, match="trained with max_depth 20 m but .* is 10 m"):
        metric.initial_params(model_config, config.init, seed=0)


@pytest.mark.slow
def test_rescale_max_depth_keeps_the_head_so_predictions_scale(tmp_path, caplog):
    config, model_config, saved = _saved_model(tmp_path, seed=7)
    config.init.update(weights=str(tmp_path / "m7"), load="all", rescale_max_depth=True)
    run_20 = model_config.replace(max_depth=20.0)
    caplog.set_level(logging.WARNING, logger="dajax")
    params = metric.initial_params(run_20, config.init, seed=0)
    assert _same(params, saved)
    assert "prediction is scaled by 2 at step 0" in caplog.text
    image = jax.random.normal(jax.random.key(0), (1, 28, 28, 3))
    before = DepthAnything(model_config).apply({"params": saved}, image)
    after = DepthAnything(run_20).apply({"params": params}, image)
    np.testing.assert_allclose(after, 2 * before, rtol=1e-6)
    assert float(jnp.max(after)) > 0


def test_a_relative_head_is_refused_for_load_all(tmp_path):
    config, model_config, saved = _saved_model(tmp_path, seed=5, head="relative", max_depth=0.0)
    config.init.update(weights=str(tmp_path / "m5"), load="all")
    with pytest.raises(
        ValueError,
        match=r"m5: init.load='all' needs a metric checkpoint, but its head is relative .*"
        r"--config.init.load=encoder .* python -m dajax.convert .* --head metric",
    ):
        metric.initial_params(model_config, config.init, seed=0)
    config.init.load = "encoder"
    params = metric.initial_params(model_config, config.init, seed=0)
    assert _same(params["pretrained"], saved["pretrained"])


@pytest.mark.slow
def test_tiny_fine_tuning_run_exports_a_metric_model(tmp_path):
    config = tiny_metric()
    exported = metric.run(config, str(tmp_path))
    logged = read_metrics(str(tmp_path))
    assert [m["step"] for m in logged] == [1, 2]
    assert all(np.isfinite(m["loss_silog"]) and m["loss_silog"] > 0 for m in logged)
    model_config, _ = checkpoints.load_inference_params(exported)
    assert model_config.head == "metric" and model_config.max_depth == 10.0


@pytest.mark.parametrize(
    "dataset, max_depth, kind",
    [
        ("nyu", 10.0, "nyu_h5"),
        ("kitti", 80.0, "kitti"),
        ("hypersim", 20.0, "hypersim"),
        ("vkitti", 80.0, "vkitti2"),
    ],
)
def test_metric_config_caps_per_dataset(dataset, max_depth, kind):
    config = metric_config.get_config(f"dataset={dataset}")
    assert config.model.max_depth == max_depth and config.data.labeled[0][0].kind == kind
    assert config.optim.schedule == "poly" and config.min_depth == 1e-3
    assert config.optim.base_lr == 5e-6 and config.optim.lr_mults[0] == ("^depth_head/", 10.0)


def test_metric_config_is_v2s_batch_and_weight_decay():
    config = metric_config.get_config("dataset=hypersim")
    assert config.data.labeled_batch == 32  # 4 per GPU x 8 GPUs
    assert config.optim.weight_decay == 0.01 and config.optim.no_decay == ()
    assert metric_config.get_config("demo").data.labeled_batch == 8
    with pytest.raises(ValueError, match="unknown dataset 'sun'"):
        metric_config.get_config("dataset=sun")


def test_vkitti_preset_reads_v2s_split_list_under_root(tmp_path):
    (tmp_path / "rgb").mkdir(), (tmp_path / "depth").mkdir()
    cv2.imwrite(str(tmp_path / "rgb" / "rgb_00000.png"), np.zeros((4, 6, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "depth" / "depth_00000.png"), np.full((4, 6), 1234, np.uint16))
    (tmp_path / "train.txt").write_text("rgb/rgb_00000.png depth/depth_00000.png\n")
    spec = metric_config.get_config(f"dataset=vkitti,root={tmp_path}").data.labeled[0][0]
    np.testing.assert_allclose(build_source(spec)[0]["depth"], 12.34, rtol=1e-6)
