"""`benchmarks/demo_budget.py`'s token-grid oracle: per-cell mean disparity of the ground truth."""

import numpy as np
import pytest

from benchmarks.demo_budget import grid_oracle, markdown
from dajax.eval.align import relative_depth_metrics


def test_oracle_is_exact_on_depth_constant_per_cell_and_ignores_invalid_pixels():
    cells = np.array([[1.0, 2.0], [4.0, 8.0]], np.float32)
    depth = np.kron(cells, np.ones((3, 3), np.float32))  # [6, 6], one depth per 3x3 cell
    mask = np.ones_like(depth, bool)
    mask[0, 0] = False
    depth[0, 0] = 100.0  # an invalid pixel must not move its cell's mean
    oracle = grid_oracle(depth, mask, 2)
    np.testing.assert_allclose(oracle, np.kron(1.0 / cells, np.ones((3, 3))), rtol=1e-6)
    scores = relative_depth_metrics(oracle[None], depth[None], mask[None], 80.0)
    assert float(scores["abs_rel"][0]) == pytest.approx(0.0, abs=1e-5)


def test_oracle_averages_disparity_and_leaves_empty_cells_zero():
    depth = np.array([[1.0, 4.0], [2.0, 2.0]], np.float32)
    mask = np.array([[True, True], [False, False]])
    oracle = grid_oracle(depth, mask, 1)
    np.testing.assert_allclose(oracle, np.full((2, 2), (1.0 + 0.25) / 2))
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
