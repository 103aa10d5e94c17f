"""Classification study: MLP head, splits, image folders, depth cache, an end-to-end demo run."""

import json
import os

import cv2
import numpy as np
import pytest

from configs import classify as classify_config
from dajax.inference import DepthEstimator
from dajax.models import ModelConfig
from dajax.projects.classify import data, depth_cache, mlp

TINY_DEPTH = ModelConfig(
    encoder="custom",
    dim=32,
    depth=2,
    heads=2,
    layers=(0, 1, 1, 1),
    features=16,
    out_channels=(8, 16, 32, 32),
)


def _head_cfg(epochs):
    cfg = classify_config.get_config("demo").head
    cfg.epochs = epochs
    return cfg


def test_mlp_separates_linearly_separable_features():
    rng = np.random.default_rng(0)
    w = rng.normal(size=16)
    x = rng.normal(size=(800, 16)).astype(np.float32)
    margin = x @ w / np.linalg.norm(w)
    x, y = x[np.abs(margin) > 0.5], (margin[np.abs(margin) > 0.5] > 0).astype(np.int32)
    n = len(x) * 3 // 4
    history = mlp.train_head(x[:n], y[:n], x[n:], y[n:], _head_cfg(15), seed=0)
    assert len(history["val_acc"]) == 15
    assert history["val_acc"][-1] >= 0.99
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_stratified_split_is_seeded_disjoint_complete_and_proportional():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, val = data.stratified_split(labels, 0.2, seed=3)
    again = data.stratified_split(labels, 0.2, seed=3)
    other = data.stratified_split(labels, 0.2, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip((train, val), again, strict=True))
    assert not np.array_equal(val, other[1])
    assert not set(train) & set(val)
    assert sorted(np.concatenate([train, val])) == list(range(len(labels)))
    assert np.bincount(labels[val]).tolist() == [10, 6, 4]


def test_image_folder_errors_on_empty_class_and_reads_records(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "cat" / f"{i}.png"), np.full((8, 10, 3), i, np.uint8))
    with pytest.raises(ValueError, match="dog"):
        data.image_folder_splits(str(tmp_path), 0.34, seed=0)
    cv2.imwrite(str(tmp_path / "dog" / "a.png"), np.zeros((8, 10, 3), np.uint8))
    (tmp_path / "dog" / "bad.png").write_bytes(b"not an image")
    train, val = data.image_folder_splits(str(tmp_path), 0.34, seed=0)
    assert len(train) + len(val) == 5 and train.classes == ("cat", "dog")
    record = train[0]
    assert record["image"].shape == (8, 10, 3) and record["image"].dtype == np.uint8
    assert record["label"] == 0 and record["path"].endswith(".png")
    bad = [s for s in (train, val) if any(p.endswith("bad.png") for p in s.split.paths)][0]
    index = [i for i, p in enumerate(bad.split.paths) if p.endswith("bad.png")][0]
    with pytest.raises(ValueError, match="dog"):
        bad[index]


def test_depth_cache_is_resumable(tmp_path):
    estimator = DepthEstimator.random(TINY_DEPTH, input_size=28)
    images = np.random.default_rng(0).integers(0, 255, (5, 30, 26, 3), np.uint8)
    source = data.ArraySource(images, np.zeros(5), [f"img/{i}.png" for i in range(5)], ("a",))
    cache = str(tmp_path / "depth")
    assert depth_cache.cache_depth_maps(estimator, source, cache, batch_size=2) == 5
    os.remove(depth_cache.depth_file(cache, "img/3.png"))
    assert depth_cache.cache_depth_maps(estimator, source, cache, batch_size=2) == 1
    assert depth_cache.cache_depth_maps(estimator, source, cache, batch_size=2) == 0
    depth = depth_cache.load_depth(cache, "img/3.png")
    assert depth.shape == (30, 26) and depth.dtype == np.float32
    rendered = depth_cache.depth_to_image(depth)
    assert rendered.shape == (30, 26, 3) and rendered.dtype == np.uint8
    assert (rendered[..., 0] == rendered[..., 2]).all()


def test_depth_to_image_min_max():
    out = depth_cache.depth_to_image(np.array([[1.0, 2.0], [3.0, np.inf]]))
    assert out[..., 0].tolist() == [[0, 127], [255, 0]]
    assert depth_cache.depth_to_image(np.ones((2, 2))).max() == 0


def test_camouflage_dataset_is_deterministic_and_depth_reveals_shape():
    a = data.camouflage_dataset(2, ("disc", "ring"), 32, seed=1)
    b = data.camouflage_dataset(2, ("disc", "ring"), 32, seed=1)
    assert a["images"].shape == (4, 32, 32, 3) and a["depths"].shape == (4, 32, 32)
    assert np.array_equal(a["images"], b["images"]) and a["labels"].tolist() == [0, 0, 1, 1]
    # A slanted background (many depths) behind a fronto-parallel plate.
    assert len(np.unique(np.round(a["depths"][0], 2))) > 2


@pytest.mark.slow
def test_study_end_to_end(tmp_path):
    pytest.importorskip("dajax.projects.classify.resnet")
    from dajax.projects.classify import study

    config = classify_config.get_config("demo,depth=estimator")
    config.data.update(n_per_class=4, classes=("disc", "square"), size=32)
    config.depth.input_size = 28
    config.backbone.update(image_size=32, batch_size=8)
    config.head.update(epochs=2, batch_size=4)
    results = study.run(config, str(tmp_path))
    with open(tmp_path / "results.json") as f:
        saved = json.load(f)
    assert set(saved["experiments"]) == {"depth", "rgb", "rgb+depth"}
    for name, r in saved["experiments"].items():
        assert 0.0 <= r["train_acc"] <= 1.0 and 0.0 <= r["val_acc"] <= 1.0, name
        assert len(r["history"]["val_loss"]) == 2
    assert saved["experiments"]["rgb+depth"]["feature_dim"] == 2000
    assert results["n_train"] + results["n_val"] == 8
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert os.listdir(tmp_path / "depth_cache")
