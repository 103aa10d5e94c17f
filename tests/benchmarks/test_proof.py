"""`benchmarks/proof.py`: the content measure's closed forms, the held-out family, and the whole
command at a tiny scale (every row and seed in the JSON, the table, the plot)."""

import json

import numpy as np
import pytest

from benchmarks import proof
from configs import student as student_config
from dajax.data.registry import build_source
from tests.training.tiny_configs import tiny_student


def _disparity_maps(n=5, h=12, w=10, seed=0):
    return np.random.default_rng(seed).uniform(0.1, 2.0, (n, h, w)).astype(np.float32)


def test_content_closed_forms():
    gt = _disparity_maps()
    same = np.repeat(gt[:1], len(gt), axis=0)  # one map for every image
    assert proof.content(same, gt) == pytest.approx(0.0, abs=1e-12)
    assert proof.content(np.ones_like(gt), gt) == 0.0  # constant: normalised to 0, not NaN
    assert proof.content(gt, gt) == pytest.approx(1.0)
    # per-image positive scale and shift change nothing
    scale = np.array([0.5, 2.0, 3.0, 7.0, 0.1])[:, None, None]
    shift = np.array([-1.0, 0.0, 4.0, 0.3, 9.0])[:, None, None]
    assert proof.content(scale * gt + shift, gt) == pytest.approx(1.0)
    noisy = gt + _disparity_maps(seed=1)
    assert proof.content(scale * noisy + shift, gt) == pytest.approx(proof.content(noisy, gt))


def test_normalisation_is_median_and_mean_absolute_deviation():
    d = np.array([[[0.0, 1.0], [2.0, 5.0]]])  # median 1.5, mean |d - 1.5| = 1.5
    np.testing.assert_allclose(proof.normalise_per_image(d), (d - 1.5) / 1.5)


def test_ground_truth_disparity_puts_the_sky_at_zero():
    record = {"depth": np.array([[2.0, 0.0]]), "mask": np.array([[True, False]])}
    np.testing.assert_array_equal(proof.ground_truth_disparity(record), [[0.5, 0.0]])


def test_heldout_seed_picks_scenes_no_training_set_uses():
    a, b = (proof.proof_config("proof", 0, h) for h in (3, 4))
    heldout = {a.final_eval.data.seed, b.final_eval.data.seed}
    assert heldout.isdisjoint({1, 2, a.data.unlabeled.seed})
    assert a.final_eval.data.seed != b.final_eval.data.seed
    assert proof.heldout_family(-1) >= proof.HELDOUT_BASE  # any int gives a valid seed
    one, other = (build_source(c.final_eval.data)[0]["image"] for c in (a, b))
    assert not np.array_equal(one, other)
    # drawn like the unlabeled pool: the same cameras
    for key in ("pitch_range", "roll_range"):
        assert a.final_eval.data[key] == a.data.unlabeled[key]


def test_gap_closed_and_checks():
    def seed(s, teacher, student):
        scores = {"ramp": 0.2, "constant": 0.3, "oracle": 0.1, "teacher": teacher}
        scores |= {"student_lu": student, "student_lu_s": student, "student": student}
        return [
            {"name": n, "seed": s, "absrel": scores[n], "delta1": 0.5, "content": 0.6}
            for n in proof.ROWS
        ]

    entries = seed(0, 0.14, 0.12) + seed(1, 0.14, 0.13)
    np.testing.assert_allclose(proof.gap_closed(entries)["teacher"], [0.6, 0.6])
    checks = [c["holds"] for c in proof.checks(entries).values()]
    assert checks == [True, True, True, True]  # margin 0.015, teacher std 0
    checks = [c["holds"] for c in proof.checks(seed(0, 0.16, 0.17)).values()]
    assert checks == [False, True, False, None]
    table = proof.markdown(entries, "header")
    assert "| teacher | 0.1400 ± 0.0000 | 0.5000 ± 0.0000 | 0.6000 ± 0.0000 | 0.6000 ± " in table
    assert "| ramp | 0.2000 ± 0.0000 | 0.5000 ± 0.0000 | 0.6000 ± 0.0000 |  |" in table
    assert "| student | 0.1250 ± 0.0071 |" in table  # sample std: 0.005 * sqrt(2)


@pytest.mark.slow
def test_proof_command_at_tiny_scale(tmp_path, monkeypatch):
    """Teacher -> pseudo-labels -> three students -> evaluation; every row lands in the JSON
    with finite scores, beside the metadata (one seed: each stage's set-up alone takes seconds;
    `test_gap_closed_and_checks` covers several)."""

    tiny = tiny_student(steps=1)
    monkeypatch.setattr(
        student_config, "get_config", lambda arg: tiny.copy_and_resolve_references()
    )
    out, path = tmp_path / "proof", tmp_path / "scores.json"
    argv = ["--seeds", "3", "--heldout-seed", "5", "--workdir", str(tmp_path / "runs")]
    assert proof.main(argv + ["--out", str(out), "--json", str(path)]) == 0
    payload = json.loads(path.read_text())
    rows = payload["rows"]
    assert [(r["name"], r["seed"]) for r in rows] == [(n, 3) for n in proof.ROWS]
    for r in rows:
        assert all(np.isfinite(r[k]) for k in ("absrel", "delta1", "content")), r
    assert [r["content"] for r in rows if r["name"] in ("ramp", "constant")] == [0.0, 0.0]
    assert payload["heldout_seed"] == 5 and payload["command"].endswith(str(path))
    assert set(payload["wall_seconds"]["per_seed"]) == {"3"}
    assert payload["machine"]["cores_usable"] >= 1 and payload["machine"]["jax"]
    table = (tmp_path / "proof.md").read_text()
    assert all(f"| {name} |" in table for name in proof.ROWS)
    assert (tmp_path / "proof.png").stat().st_size > 0
