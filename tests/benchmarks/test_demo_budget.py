"""`benchmarks/demo_budget.py`: the token-grid oracle (per-cell mean disparity, interpolated
back) and its table."""

import numpy as np

from benchmarks.demo_budget import grid_oracle, markdown
from dajax.eval.align import relative_depth_metrics


def test_oracle_is_exact_on_a_plane_between_cell_centres():
    """A floor's disparity is affine in the pixel coordinates: its cell means are its values at
    the cell centres, and bilinear interpolation between them gives it back exactly."""
    rows, cols = np.mgrid[0:24, 0:24].astype(np.float32) + 0.5
    disparity = 0.3 + 0.02 * rows + 0.01 * cols
    depth, mask = 1.0 / disparity, np.ones((24, 24), bool)
    oracle = grid_oracle(depth, mask, 4)  # cells of 6 pixels, centres at 3, 9, 15, 21
    np.testing.assert_allclose(oracle[3:21, 3:21], disparity[3:21, 3:21], rtol=1e-5)
    full = grid_oracle(depth, mask, 24)  # one cell per pixel: the ground truth itself
    scores = relative_depth_metrics(full[None], depth[None], mask[None], 80.0)
    assert float(scores["abs_rel"][0]) < 1e-5


def test_oracle_counts_invalid_pixels_as_infinitely_far():
    depth = np.full((4, 4), 2.0, np.float32)
    mask = np.zeros((4, 4), bool)
    mask[:, :2] = True  # the right half is sky
    np.testing.assert_allclose(grid_oracle(depth, mask, 1), np.full((4, 4), 0.25))
    np.testing.assert_array_equal(grid_oracle(depth, np.zeros_like(mask), 2), 0.0)


def test_table_gives_training_rows_their_budget():
    results = {
        "teacher, 150 steps": {"abs_rel": 0.17, "a1": 0.7},
        "oracle: ground truth on a 6x6 grid": {"abs_rel": 0.08, "a1": 0.9},
    }
    runs = {"teacher, 150 steps": {"steps": 150, "images": 1200, "minutes": 1.25}}
    table = markdown(results, runs).splitlines()
    assert table[2] == "| teacher, 150 steps | 150 | 1200 | 1.2 | 0.1700 | 0.7000 |"
    assert table[3] == "| oracle: ground truth on a 6x6 grid |  |  |  | 0.0800 | 0.9000 |"
