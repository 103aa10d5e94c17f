"""`dajax.eval.oracle`: the token-grid oracle (per-cell mean disparity, interpolated back),
the gap-closed share, and the demo table's oracle row and column."""

import numpy as np
import pytest

from dajax.eval.align import relative_depth_metrics
from dajax.eval.evaluate import RAMP_ROW, _with_gap_closed, format_table
from dajax.eval.oracle import ORACLE_ROW, gap_closed, grid_oracle


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


def test_gap_closed_is_zero_at_the_ramp_and_one_at_the_oracle():
    assert gap_closed(0.20, ramp=0.20, oracle=0.10) == 0.0
    assert gap_closed(0.10, ramp=0.20, oracle=0.10) == 1.0
    assert gap_closed(0.15, ramp=0.20, oracle=0.10) == pytest.approx(0.5)
    assert gap_closed(0.25, ramp=0.20, oracle=0.10) == pytest.approx(-0.5)  # worse than the ramp


def test_demo_table_gives_models_their_share_of_the_gap():
    results = {
        "trivial: constant disparity": {"images": 4, "abs_rel": 0.40, "a1": 0.2},
        RAMP_ROW: {"images": 4, "abs_rel": 0.20, "a1": 0.6},
        ORACLE_ROW: {"images": 4, "abs_rel": 0.10, "a1": 0.9},
        "teacher": {"images": 4, "abs_rel": 0.16, "a1": 0.7},
    }
    table = format_table(results, "relative")
    lines = _with_gap_closed(table, results, {"teacher": "runs/t"}).splitlines()
    assert lines[0].endswith("| gap closed ↑ |")
    assert lines[3] == f"| {RAMP_ROW} | 4 | 0.2000 | 0.6000 |  |"
    assert lines[5] == "| teacher | 4 | 0.1600 | 0.7000 | 0.40 |"
