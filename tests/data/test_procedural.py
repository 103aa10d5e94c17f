"""Procedural RGB-D scenes: exact geometry, determinism, validity masks."""

import dataclasses

import numpy as np
import pytest

from dajax.data.procedural import ProceduralScenes, render, render_scene, sample_scene


def test_floor_depth_matches_the_closed_form():
    """Camera at height h pitched by p: a pixel whose ray (u, v, 1) hits the floor has camera
    z-depth t with h + t * (cos(p) v + sin(p)) = 0 (p negative looks down)."""
    spec = sample_scene(np.random.default_rng(0), "outdoor")
    spec = dataclasses.replace(spec, objects=(), pitch_deg=-10.0, camera_height=1.5, fov_deg=60.0)
    h, w = 64, 80
    out = render(spec, h, w)
    f = 0.5 * w / np.tan(np.radians(30))
    v = (h / 2 - np.arange(h) - 0.5) / f
    p = np.radians(-10.0)
    dy = np.cos(p) * v + np.sin(p)
    expect = np.broadcast_to(
        np.where(dy < 0, -1.5 / np.where(dy < 0, dy, -1), np.inf)[:, None], (h, w)
    )
    valid = out["mask"]
    assert valid.any() and not valid[0].any()  # top row is sky
    np.testing.assert_allclose(out["depth"][valid], expect[valid], rtol=1e-5)
    assert np.isinf(out["depth"][~np.isfinite(expect)]).all()


def test_scenes_are_deterministic_and_distinct():
    a = render_scene(3, 40, 48, "indoor", seed=1)
    b = render_scene(3, 40, 48, "indoor", seed=1)
    c = render_scene(4, 40, 48, "indoor", seed=1)
    for k in ("image", "depth", "mask"):
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["image"], c["image"])


def test_record_schema_and_invalid_pixels():
    r = render_scene(0, 32, 40, "outdoor")
    assert r["image"].shape == (32, 40, 3) and r["image"].dtype == np.uint8
    assert r["depth"].dtype == np.float32 and r["mask"].dtype == bool
    assert (r["depth"][~r["mask"]] == 0).all() and (r["depth"][r["mask"]] > 0).all()
    indoor = render_scene(1, 32, 40, "indoor")
    assert indoor["mask"].all()  # a closed room has no sky
    assert indoor["depth"].max() < 20.0


def test_source_and_unlabeled_view():
    source = ProceduralScenes(5, 24, 32, seed=2)
    assert len(source) == 5 and source[1]["source"] == "procedural_outdoor"
    unlabeled = ProceduralScenes(5, 24, 32, seed=2, images_only=True)
    assert set(unlabeled[0]) == {"image", "source"}
    np.testing.assert_array_equal(unlabeled[0]["image"], source[0]["image"])
    with pytest.raises(IndexError):
        source[5]
