"""TensorBoard depth previews: the image beside its colour-mapped prediction."""

import types

import numpy as np

from dajax import visualize
from dajax.models.normalization import imagenet_normalize
from dajax.training import setup


class _MeanModel:
    """Stands in for DepthAnything: 'disparity' = mean normalised channel value x params."""

    def apply(self, variables, x):
        return x.mean(-1) * variables["params"]["w"]


class _Images:
    active = True

    def __init__(self):
        self.logged = []

    def image(self, step, name, rgb):
        self.logged.append((step, name, rgb))


def test_preview_logs_image_beside_its_depth_every_n_steps_without_waiting():
    images = np.random.default_rng(0).integers(0, 256, (2, 14, 28, 3), np.uint8)
    hook = setup.depth_preview(_MeanModel(), images, every=5)
    log = _Images()
    state = types.SimpleNamespace(params={"w": np.float32(2.0)})
    for step in range(1, 11):
        hook(step, state, log)
        if step == 5:  # queued behind its step, written at the next log step
            assert log.logged == []
    hook.close(log)
    assert [(s, n) for s, n, _ in log.logged] == [
        (5, "preview/0"),
        (5, "preview/1"),
        (10, "preview/0"),
        (10, "preview/1"),
    ]
    rgb = log.logged[1][2]
    assert rgb.shape == (14, 28 * 2 + 4, 3)
    np.testing.assert_array_equal(rgb[:, :28], images[1])
    disparity = np.asarray(imagenet_normalize(images[1:])).mean(-1)[0]
    want = visualize.colorize(visualize.normalize_depth(disparity), "spectral_r")
    np.testing.assert_array_equal(rgb[:, 32:], want)


def test_preview_is_off_for_non_positive_intervals():
    assert setup.depth_preview(_MeanModel(), np.zeros((1, 14, 14, 3), np.uint8), 0) is None
