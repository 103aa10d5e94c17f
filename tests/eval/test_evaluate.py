"""The evaluation stage's protocols on synthetic records with known answers."""

import types

import numpy as np
import pytest

from configs import eval as eval_config
from dajax.eval.baselines import ConstantDisparity, VerticalRamp
from dajax.eval.evaluate import Bench, evaluate, predict, resolve_protocol


class FakeEstimator:
    """Returns `outputs[id]` for the image whose id is in its first pixel (mirrored for a
    mirrored image), plus `bias` (a model's left-right asymmetry, not mirrored)."""

    def __init__(self, outputs, head="relative", bias=0.0):
        self.outputs = outputs  # image id -> prediction
        self.bias = bias
        self.config = types.SimpleNamespace(head=head)
        self.calls = []

    def batch(self, images, batch_size):
        self.calls.append(len(images))
        out = []
        for im in images:
            key = int(im[0, 0, 0]) if im[0, 0, 1] == 0 else int(im[0, -1, 0])
            pred = self.outputs[key]
            out.append((pred if im[0, 0, 1] == 0 else pred[:, ::-1]) + self.bias)
        return out


def _records(gts):
    recs = []
    for i, gt in enumerate(gts):
        image = np.zeros(gt.shape + (3,), np.uint8)
        image[0, 0, 0] = i  # id readable from the image and, mirrored, from its last column
        image[0, -1, 1] = 1
        recs.append({"image": image, "depth": gt, "mask": gt > 0})
    return recs


def _gts(shape=(24, 32), n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.5, 8.0, shape).astype(np.float32) for _ in range(n)]


def test_relative_protocol_recovers_an_affine_disparity_exactly():
    gts = _gts()
    outputs = {i: (3.0 / gt + 0.25 * (i + 1)).astype(np.float32) for i, gt in enumerate(gts)}
    scores = evaluate(FakeEstimator(outputs), _records(gts), Bench(1e-3, 10.0), "relative", 2)
    assert scores["images"] == 3
    assert scores["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    assert scores["a1"] == 1.0


def test_trivial_baselines_known_values():
    # A floor whose disparity grows linearly down the image: the ramp is exact after
    # alignment, the constant scores as the mean disparity (closed form below).
    rows = np.arange(24, dtype=np.float32)[:, None].repeat(32, axis=1)
    gt = 1.0 / (0.1 + 0.05 * rows)
    records, bench = _records([gt]), Bench(1e-3, 100.0)
    ramp = evaluate(VerticalRamp(), records, bench, "relative")
    assert ramp["abs_rel"] == pytest.approx(0.0, abs=1e-4) and ramp["a1"] == 1.0
    constant = evaluate(ConstantDisparity(), records, bench, "relative")
    mean_disparity = (1.0 / gt).mean()
    expect = np.mean(np.abs(1.0 / mean_disparity - gt) / gt)
    assert constant["abs_rel"] == pytest.approx(expect, rel=1e-4) and expect > 0.3


def test_metric_protocol_known_values_and_depth_cap():
    gts = _gts()
    gts[0][:, :4] = 20.0  # beyond the 10 m cap: not scored even though the prediction is bad
    outputs = {i: np.where(gt > 10, 1.0, 1.1 * gt).astype(np.float32) for i, gt in enumerate(gts)}
    est = FakeEstimator(outputs, head="metric")
    scores = evaluate(est, _records(gts), Bench(1e-3, 10.0, "none", "metric"), "metric", 4)
    assert scores["abs_rel"] == pytest.approx(0.1, rel=1e-5)
    assert scores["a1"] == 1.0
    assert scores["silog"] == pytest.approx(0.0, abs=1e-3)  # a pure scale error


def test_eigen_crop_ignores_errors_outside_the_box():
    gt = np.full((480, 640), 2.0, np.float32)
    pred = gt.copy()
    pred[:45] = 9.0  # rows above the Eigen crop
    pred[:, 601:] = 9.0  # columns right of it
    est = FakeEstimator({0: pred}, head="metric")
    scores = evaluate(est, _records([gt]), Bench(1e-3, 10.0, "eigen", "metric"), "metric")
    assert scores["abs_rel"] == pytest.approx(0.0, abs=1e-7)
    uncropped = evaluate(est, _records([gt]), Bench(1e-3, 10.0, "none", "metric"), "metric")
    assert uncropped["abs_rel"] > 0.1


def test_flip_averages_with_the_mirrored_prediction():
    gt = _gts(n=1)[0]
    ramp = np.linspace(1.0, 2.0, gt.shape[1], dtype=np.float32)[None].repeat(24, 0)
    est = FakeEstimator({0: 1.0 / gt}, bias=ramp)
    record = _records([gt])[0]
    plain = predict(est, [record["image"]], 1, flip=False)[0]
    flipped = predict(est, [record["image"]], 1, flip=True)[0]
    np.testing.assert_allclose(plain, 1.0 / gt + ramp, rtol=1e-6)
    np.testing.assert_allclose(flipped, 1.0 / gt + 1.5, rtol=1e-6)  # the asymmetry averages out
    assert est.calls == [1, 1, 1]


def test_protocol_choice_and_refusals():
    assert resolve_protocol("auto", "metric") == "metric"
    assert resolve_protocol("relative", "metric") == "relative"
    with pytest.raises(ValueError, match="needs a metric model"):
        resolve_protocol("metric", "relative")
    with pytest.raises(ValueError, match="protocol must be one of"):
        resolve_protocol("scale", "relative")


def test_no_valid_pixel_is_an_error_not_nan():
    gt = np.full((16, 16), 50.0, np.float32)  # everything beyond the cap
    est = FakeEstimator({0: gt})
    with pytest.raises(ValueError, match="no image has a valid"):
        evaluate(est, _records([gt]), Bench(1e-3, 10.0), "relative")


def test_eval_config_reads_each_benchmark_from_its_root():
    config = eval_config.get_config("dataset=all,root=/data,weights=w.pth")
    assert config.datasets == eval_config.ZERO_SHOT
    assert config.benchmarks.kitti.crop_region == "garg"
    assert config.benchmarks.nyu.crop_region == "eigen"
    assert config.benchmarks.sintel.data.path == "/data/sintel"
    single = eval_config.get_config("dataset=nyu,root=/x,weights=w.pth")
    assert single.benchmarks.nyu.data.path == "/x/nyu_depth_v2_labeled.mat"
    assert single.reference.relative.vits.nyu.abs_rel == 0.053
    with pytest.raises(ValueError, match="unknown dataset 'kitty'"):
        eval_config.get_config("dataset=kitty")


def test_evaluation_shows_a_progress_bar_named_after_the_dataset(capsys):
    gts = _gts(n=5)
    outputs = {i: (1.0 / gt).astype(np.float32) for i, gt in enumerate(gts)}
    evaluate(
        FakeEstimator(outputs), _records(gts), Bench(1e-3, 10.0), "relative", 2, progress="nyu"
    )
    err = capsys.readouterr().err
    assert "nyu:" in err and "/5 [" in err
    evaluate(FakeEstimator(outputs), _records(gts), Bench(1e-3, 10.0), "relative", 2)
    assert capsys.readouterr().err == ""  # no label, no bar
