"""curves.png's data: metrics.jsonl lines grouped per metric, re-logged steps replaced."""

from PIL import Image

from dajax.training.curves import plot_curves, series


def test_a_resumed_runs_relogged_steps_keep_their_newest_values():
    records = [
        {"step": 1, "time": 0.1, "loss": 3.0, "lr/rest": 1e-5},
        {"step": 2, "time": 0.2, "loss": 2.0, "lr/rest": 2e-5},
        {"step": 2, "time": 0.3, "val/abs_rel": 0.4},
        {"step": 2, "time": 9.0, "loss": 2.5, "lr/rest": 2e-5},  # resumed from step 1
        {"step": 3, "time": 9.1, "loss": 1.5, "lr/rest": 3e-5},
    ]
    got = series(records)
    assert got["loss"] == ([1, 2, 3], [3.0, 2.5, 1.5])
    assert got["val/abs_rel"] == ([2], [0.4])
    assert "time" not in got and "step" not in got


def test_panels_follow_the_logged_kinds(tmp_path):
    path = str(tmp_path / "curves.png")
    assert plot_curves([], path) == []
    assert plot_curves([{"step": 1, "loss": 1.0, "lr/rest": 0.1}], path) == [
        "losses",
        "learning rate",
    ]
    with Image.open(path) as png:
        assert png.format == "PNG"
