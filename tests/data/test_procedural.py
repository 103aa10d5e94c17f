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
    assert set(unlabeled[0]) == {"image", "sky", "source"}
    np.testing.assert_array_equal(unlabeled[0]["image"], source[0]["image"])
    with pytest.raises(IndexError):
        source[5]


def test_cached_scenes_equal_fresh_renders_within_the_byte_budget():
    """The render cache changes no value, hands out arrays nobody can write into, and keeps
    only as many scenes as its byte budget holds (9 bytes per pixel of a labeled record)."""
    per_scene = 24 * 32 * (3 + 4 + 1 + 1)
    cached = ProceduralScenes(4, 24, 32, seed=2, cache_bytes=2 * per_scene)
    fresh = ProceduralScenes(4, 24, 32, seed=2, cache_bytes=0)
    for _ in range(2):
        for i in range(4):
            a, b = cached[i], fresh[i]
            assert a.keys() == b.keys()
            for key in ("image", "depth", "mask", "sky"):
                np.testing.assert_array_equal(a[key], b[key])
    assert sorted(cached._cache) == [0, 1] and not fresh._cache
    with pytest.raises(ValueError, match="read-only"):
        cached[0]["image"][0, 0] = 0
    cached[0]["image"] = None  # the record is the caller's own dict
    assert cached[0]["image"] is not None


def test_roll_tilts_the_horizon_and_keeps_depth_along_the_optical_axis():
    """Rolling the camera about its optical axis rotates the image: the sky/ground boundary of
    an empty outdoor scene leans (the floor reaches higher on one side), and the depth of the
    centre pixel, which lies on the axis, does not change."""
    spec = sample_scene(np.random.default_rng(0), "outdoor")
    level = dataclasses.replace(spec, objects=(), pitch_deg=-10.0, roll_deg=0.0)
    rolled = dataclasses.replace(level, roll_deg=15.0)
    h = w = 65
    a, b = render(level, h, w), render(rolled, h, w)
    sky_a, sky_b = ~a["mask"], ~b["mask"]
    np.testing.assert_array_equal(sky_a[:, 0].sum(), sky_a[:, -1].sum())
    assert abs(int(sky_b[:, 0].sum()) - int(sky_b[:, -1].sum())) > 10
    np.testing.assert_allclose(a["depth"][h // 2, w // 2], b["depth"][h // 2, w // 2], rtol=1e-5)


def test_camera_ranges_bound_the_drawn_cameras_and_default_to_the_level_family():
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    default = sample_scene(rng(), "indoor")
    assert default.roll_deg == 0.0 and -20.0 <= default.pitch_deg <= -3.0
    # the roll is drawn last: asking for one changes nothing else about the scene
    rolled = sample_scene(rng(), "indoor", roll_range=(-20.0, 20.0))
    assert rolled.roll_deg != 0.0 and dataclasses.replace(rolled, roll_deg=0.0) == default
    broad = [
        sample_scene(np.random.default_rng(i), "indoor", pitch_range=(-30, 5), roll_range=(-20, 20))
        for i in range(50)
    ]
    assert all(-30 <= s.pitch_deg <= 5 and -20 <= s.roll_deg <= 20 for s in broad)
    assert max(abs(s.roll_deg) for s in broad) > 10
    source = ProceduralScenes(2, 24, 24, roll_range=(-20, 20))
    assert source[0]["image"].shape == (24, 24, 3)
    with pytest.raises(ValueError, match="roll_range"):
        ProceduralScenes(2, 24, 24, roll_range=(20, -20))
