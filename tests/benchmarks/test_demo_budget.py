"""`benchmarks/demo_budget.py`: its table of training budgets."""

from benchmarks.demo_budget import markdown


def test_table_gives_training_rows_their_budget():
    results = {
        "teacher, 150 steps": {"abs_rel": 0.17, "a1": 0.7},
        "oracle: ground truth on a 6x6 grid": {"abs_rel": 0.08, "a1": 0.9},
    }
    runs = {"teacher, 150 steps": {"steps": 150, "images": 1200, "minutes": 1.25}}
    table = markdown(results, runs).splitlines()
    assert table[2] == "| teacher, 150 steps | 150 | 1200 | 1.2 | 0.1700 | 0.7000 |"
    assert table[3] == "| oracle: ground truth on a 6x6 grid |  |  |  | 0.0800 | 0.9000 |"
