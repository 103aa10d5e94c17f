"""A training run whose workdir is a `gs://` bucket (`fake_gcs`: offline, in this process):
train -> checkpoint -> resume -> convert (export), every file through `dajax.paths` (Orbax's arrays
through TensorStore's GCS driver), nothing written to a local `gs:` folder."""

import logging

import jax
import numpy as np
import pytest
from tiny_configs import tiny_student

from dajax import checkpoints, convert
from dajax.training import teacher
from dajax.training.metrics_log import read_metrics
from tests.fake_gcs import fake_gcs


def _params(path):
    return [np.asarray(a) for a in jax.tree.leaves(checkpoints.load_inference_params(path)[1])]


@pytest.mark.slow
def test_train_resume_and_export_with_a_bucket_workdir(tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.chdir(tmp_path)  # where `os.path.abspath("gs://...")` would have written
    caplog.set_level(logging.INFO)
    config = tiny_student().teacher_stage.copy_and_resolve_references()  # 2 steps, saves at 2
    workdir = "gs://bucket/runs/teacher"
    with fake_gcs() as bucket:
        assert teacher.run(config, workdir) == f"{workdir}/export"
        after_2 = _params(f"{workdir}/export")
        config.total_steps = 3
        teacher.run(config, workdir)
        assert "resumed from step 2" in caplog.text
        assert [m["step"] for m in read_metrics(workdir)] == [1, 2, 3]

        out = "gs://bucket/models/teacher"
        assert convert.main([workdir, out]) == 0  # the workdir source, read from the bucket
        assert "exported step 3" in capsys.readouterr().out
        after_3 = _params(out)
        for a, b in zip(_params(f"{workdir}/export"), after_3, strict=True):
            np.testing.assert_array_equal(a, b)  # the run's own export is step 3 as well
        assert any(not np.array_equal(a, b) for a, b in zip(after_2, after_3, strict=True))

        files = {key.removeprefix("/bucket/runs/teacher/") for key in bucket.store}
        for name in ("config.json", "model_config.json", "metrics.jsonl", "curves.png"):
            assert name in files
        assert any(f.startswith("tb/events.out.tfevents") for f in files)
        assert any(f.startswith("checkpoints/3/") for f in files)
    assert not (tmp_path / "gs:").exists()
