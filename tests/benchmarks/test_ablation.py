"""`benchmarks/ablation.py`'s summary: mean and standard deviation over seeds, per row."""

import pytest

from benchmarks.ablation import ROWS, markdown, summarise


def test_rows_switch_on_one_ingredient_at_a_time():
    keys = ("unlabeled", "color_blur", "cutmix", "feature")
    switches = [tuple(r[k] for k in keys) for r in ROWS.values()]
    # L_u alone has none of S (no jitter, no blur, no CutMix); + S has all of it; + L_feat.
    want = [(True, False, False, False), (True, True, True, False), (True, True, True, True)]
    assert switches == want


def test_summary_is_mean_and_std_over_seeds():
    per_seed = [
        {"teacher": {"abs_rel": 0.2, "a1": 0.6}, "student": {"abs_rel": 0.1, "a1": 0.8}},
        {"teacher": {"abs_rel": 0.4, "a1": 0.7}, "student": {"abs_rel": 0.3, "a1": 0.9}},
    ]
    summary = summarise(per_seed)
    assert summary["teacher"]["abs_rel"] == pytest.approx((0.3, 0.1))
    assert summary["student"]["a1"] == pytest.approx((0.85, 0.05))
    table = markdown(summary, [0, 1], 12.0, "the teacher's encoder")
    assert "| student | 0.2000 ± 0.1000 | 0.8500 ± 0.0500 |" in table
    assert table.startswith("seeds [0, 1], mean ± std")
