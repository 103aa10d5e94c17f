"""Back-projection and PLY files: geometry round trips and format checks."""

import numpy as np
import pytest

from dajax.io.pointcloud import Intrinsics, depth_to_points, read_ply, write_ply


def test_points_project_back_onto_their_pixels():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 10.0, (12, 16)).astype(np.float32)
    depth[3, 4] = 0.0  # invalid
    depth[5, 6] = np.nan
    k = Intrinsics(fx=20.0, fy=25.0, cx=7.5, cy=5.5)
    mask = np.ones_like(depth, bool)
    mask[0] = False
    points, pixels = depth_to_points(depth, k, mask)
    assert len(points) == 12 * 16 - 16 - 2
    rows, cols = np.divmod(pixels, 16)
    np.testing.assert_allclose(k.fx * points[:, 0] / points[:, 2] + k.cx, cols, atol=1e-4)
    np.testing.assert_allclose(k.fy * points[:, 1] / points[:, 2] + k.cy, rows, atol=1e-4)
    np.testing.assert_array_equal(points[:, 2], depth[rows, cols])


def test_intrinsics_from_field_of_view_and_focal():
    k = Intrinsics.from_fov(640, 480, 90.0)
    assert k.fx == pytest.approx(320.0) and k.fy == k.fx
    assert (k.cx, k.cy) == (319.5, 239.5)
    assert Intrinsics.from_focal(10, 8, 5.0, 6.0) == Intrinsics(5.0, 6.0, 4.5, 3.5)
    with pytest.raises(ValueError, match="field of view"):
        Intrinsics.from_fov(10, 10, 180.0)
    with pytest.raises(ValueError, match="focal"):
        Intrinsics.from_focal(10, 10, 0.0)


def test_ply_round_trip_and_header(tmp_path):
    rng = np.random.default_rng(1)
    points = rng.normal(size=(50, 3)).astype(np.float32)
    colors = rng.integers(0, 256, (50, 3), dtype=np.uint8)
    write_ply(tmp_path / "c.ply", points, colors)
    header = (tmp_path / "c.ply").read_bytes().split(b"end_header")[0].decode()
    assert "element vertex 50" in header and "property uchar red" in header
    got_points, got_colors = read_ply(tmp_path / "c.ply")
    np.testing.assert_array_equal(got_points, points)
    np.testing.assert_array_equal(got_colors, colors)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"points must be \[N, 3\]"):
        write_ply("unused.ply", np.zeros((4, 2)))
    with pytest.raises(ValueError, match="uint8"):
        write_ply("unused.ply", np.zeros((4, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"depth must be \[H, W\]"):
        depth_to_points(np.zeros((2, 3, 1)), Intrinsics(1, 1, 0, 0))


def test_truncated_ply_is_refused(tmp_path):
    write_ply(tmp_path / "t.ply", np.zeros((3, 3), np.float32))
    data = (tmp_path / "t.ply").read_bytes()
    (tmp_path / "t.ply").write_bytes(data[:-2])
    with pytest.raises(ValueError, match="t.ply: 3 vertices need"):
        read_ply(tmp_path / "t.ply")
