"""Metric-depth fine-tuning: depth targets, initialisation from checkpoints, a tiny run."""

import jax
import numpy as np
import pytest
from tiny_configs import TINY_MODEL

from configs import metric as metric_config
from dajax import checkpoints
from dajax.data.transforms import LabeledTrainTransform
from dajax.training import metric, setup
from dajax.training.metrics_log import read_metrics


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


def _saved_model(tmp_path, seed):
    config = tiny_metric()
    model_config = setup.model_config(config.model)
    params = setup.initial_params(model_config, "", seed)
    checkpoints.save_inference_params(tmp_path / f"m{seed}", params, model_config)
    return config, model_config, params


@pytest.mark.parametrize("load", ["encoder", "all"])
def test_initialisation_takes_the_encoder_or_everything(tmp_path, load):
    config, model_config, saved = _saved_model(tmp_path, seed=7)
    config.init.update(weights=str(tmp_path / "m7"), load=load)
    params = metric.initial_params(model_config, config.init, seed=0)
    fresh = setup.initial_params(model_config, "", 0)
    same = lambda a, b: all(  # noqa: E731
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
    assert same(params["pretrained"], saved["pretrained"])
    assert same(params["depth_head"], saved["depth_head"] if load == "all" else fresh["depth_head"])


def test_initialisation_refuses_a_different_encoder(tmp_path):
    config, _, _ = _saved_model(tmp_path, seed=1)
    config.init.weights = str(tmp_path / "m1")
    wider = setup.model_config(config.model).replace(dim=128, heads=2)
    with pytest.raises(ValueError, match="m1: a 64-wide 4-block encoder does not fit"):
        metric.initial_params(wider, config.init, seed=0)


def test_tiny_fine_tuning_run_exports_a_metric_model(tmp_path):
    config = tiny_metric()
    exported = metric.run(config, str(tmp_path))
    logged = read_metrics(str(tmp_path))
    assert [m["step"] for m in logged] == [1, 2]
    assert all(np.isfinite(m["loss_silog"]) and m["loss_silog"] > 0 for m in logged)
    model_config, _ = checkpoints.load_inference_params(exported)
    assert model_config.head == "metric" and model_config.max_depth == 10.0


def test_metric_config_caps_per_dataset():
    assert metric_config.get_config("dataset=kitti").model.max_depth == 80.0
    nyu = metric_config.get_config("dataset=nyu")
    assert nyu.model.max_depth == 10.0 and nyu.optim.schedule == "poly"
    assert nyu.optim.base_lr == 5e-6 and nyu.optim.lr_mults[0] == ("^depth_head/", 10.0)
    with pytest.raises(ValueError, match="unknown dataset 'sun'"):
        metric_config.get_config("dataset=sun")
